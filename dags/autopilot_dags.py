"""AutoPilot's DAGs: a scheduler per tag, plus sync, monitor and cleanup. Built by ``autopilot_ops``."""

from autopilot_ops.airflow.dag_factory import build_dags

globals().update(build_dags())
