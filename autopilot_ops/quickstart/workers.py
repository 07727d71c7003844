"""The workers of ``autopilot up --executor``: none for ``local``, Celery or Edge workers otherwise."""

from __future__ import annotations

from autopilot_ops.quickstart.celery import celery_environment, celery_workers
from autopilot_ops.quickstart.edge import EXECUTOR_CLASS, edge_environment, edge_workers
from autopilot_ops.quickstart.processes import Service
from autopilot_ops.quickstart.settings import Settings

#: ``[core] executor`` for each choice of ``--executor``.
EXECUTOR_CLASSES = {"local": "LocalExecutor", "celery": "CeleryExecutor", "edge": EXECUTOR_CLASS}


def executor_environment(settings: Settings) -> dict[str, str]:
    """The executor's own Airflow settings (beyond the LocalExecutor's defaults)."""
    if settings.executor == "celery":
        return celery_environment(settings)
    if settings.executor == "edge":
        return edge_environment(settings)
    return {}


def worker_services(settings: Settings, env: dict[str, str]) -> list[Service]:
    """The workers the chosen executor needs (none for the LocalExecutor)."""
    if settings.executor == "celery":
        return celery_workers(settings, env)
    if settings.executor == "edge":
        return edge_workers(settings, env)
    return []


def every_worker(settings: Settings) -> list[Service]:
    """The workers of every executor, for stopping them whichever ran."""
    return [*celery_workers(settings, {}), *edge_workers(settings, {})]
