"""The monitor and control web app (FastAPI), mounted by the Airflow plugin at ``/autopilot``."""
