"""Build the monitor and control app that ``plugins/autopilot_plugin.py`` mounts at ``/autopilot``."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from autopilot_ops.airflow.hooks.store import open_store
from autopilot_ops.airflow.webapp import api, bundles, pages
from autopilot_ops.airflow.webapp.auth import Authenticator, authenticator_from_settings
from autopilot_ops.airflow.webapp.db import StorePool
from autopilot_ops.airflow.webapp.settings import WebSettings
from autopilot_ops.pilot.shelf import BundleShelf, default_bundle_dir
from autopilot_ops.store.connection import Store, StoreError


def store_factory_from_settings(settings: WebSettings) -> Callable[[], Store]:
    """Stores opened as the scheduler's tasks open theirs (``hooks/store.py: open_store``)."""

    def factory() -> Store:
        try:
            return open_store(settings.postgres_conn_id, settings.dsn, owner="the AutoPilot monitor")
        except ValueError as exc:
            raise StoreError(str(exc)) from exc

    return factory


def create_app(
    settings: WebSettings | None = None,
    *,
    authenticator: Authenticator | None = None,
    store_factory: Callable[[], Store] | None = None,
) -> FastAPI:
    """The app; by default configured from ``airflow.cfg`` and checking identities through Airflow.

    Nothing connects at build time: the database is opened on the first request that needs it.
    """
    settings = settings or WebSettings.from_airflow_conf()
    app = FastAPI(title="AutoPilot monitor and control", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.state.settings = settings
    app.state.authenticator = authenticator or authenticator_from_settings(
        settings.tokens_variable, settings.tokens_conn_id, settings.token_cache_seconds
    )
    app.state.store_pool = StorePool(store_factory or store_factory_from_settings(settings), settings.store_pool_size)
    app.state.bundle_shelf = BundleShelf(settings.pilot_bundle_dir or default_bundle_dir())
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(bundles.router)
    return app
