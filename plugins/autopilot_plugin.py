"""Airflow plugin: mounts AutoPilot's monitor and control app at ``/autopilot`` and links it from the UI.

The app lives in ``autopilot_ops.airflow.webapp``; it authenticates every request itself, because Airflow 3
mounts plugin apps without authentication.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from autopilot_ops.airflow.webapp.app import create_app

URL_PREFIX = "/autopilot"


class AutoPilotPlugin(AirflowPlugin):
    name = "autopilot"
    # airflow/api_fastapi/app.py: init_plugins mounts each app at its url_prefix
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "AutoPilot monitor"}]
    # airflow/api_fastapi/core_api/datamodels/plugins.py: ExternalViewResponse (a navigation entry)
    external_views = [
        {"name": "AutoPilot", "href": f"{URL_PREFIX}/", "destination": "nav",
         "url_route": "autopilot"},
    ]
