"""Build AutoPilot's DAGs: one scheduler per tag from the schedconfig snapshot, plus sync, monitor and cleanup.

Parsing reads only the snapshot file (never the database). A task process builds only its own DAG
(``get_parsing_context().dag_id``). New scheduler DAGs start paused: a scheduler runs once it is unpaused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from airflow.sdk import DAG, get_parsing_context

from autopilot_ops.airflow.config import SchedulerConfig
from autopilot_ops.airflow.naming import DAG_PREFIX, SCHEDULER_DAG_TAGS, scheduler_dag_id
from autopilot_ops.airflow.schedconfig_snapshot import TagInfo, read_snapshot
from autopilot_ops.store.queues import DEFAULT_WORKER_QUEUE

SYNC_DAG_ID = "autopilot-sync"
MONITOR_DAG_ID = "autopilot-monitor"
CLEANUP_DAG_ID = "autopilot-cleanup"
START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
DEFAULT_ARGS = {"owner": "autopilot", "retries": 0}


def build_dags(config: SchedulerConfig | None = None) -> dict[str, DAG]:
    """Every AutoPilot DAG, by id; only the one being run when Airflow parses for a task."""
    config = config or SchedulerConfig.from_airflow_conf()
    wanted = get_parsing_context().dag_id
    dags: dict[str, DAG] = {}
    services: dict[str, Callable[[SchedulerConfig], DAG]] = {SYNC_DAG_ID: sync_dag, CLEANUP_DAG_ID: cleanup_dag}
    for dag_id, builder in services.items():
        if wanted in (None, dag_id):
            dags[dag_id] = builder(config)
    if wanted in (None, MONITOR_DAG_ID) or wanted.startswith(DAG_PREFIX):
        tags = read_snapshot(config.snapshot_path)
        if wanted in (None, MONITOR_DAG_ID):
            dags[MONITOR_DAG_ID] = monitor_dag(config, sorted({wq for info in tags for wq in info.routes()}))
        for info in tags:
            dag_id = scheduler_dag_id(info.tag)
            if wanted in (None, dag_id):
                dags[dag_id] = scheduler_dag(info, config)
    return dags


def _store_args(config: SchedulerConfig) -> dict[str, str | None]:
    return {"postgres_conn_id": config.postgres_conn_id, "dsn": config.dsn}


def scheduler_dag(info: TagInfo, config: SchedulerConfig) -> DAG:
    """The scheduler of one tag: a cycle every ``cycle_period`` seconds, one task per back-end kind (per group
    of kinds one operator serves) and Airflow worker queue, run on that worker queue (``queue=``)."""
    from autopilot_ops.airflow.operators.scheduler import OPERATOR_FOR_KIND, PilotSchedulerOperator

    with DAG(
        dag_id=scheduler_dag_id(info.tag),
        description=f"AutoPilot scheduler for tag {info.tag} ({info.queues} queues)",
        schedule=dt.timedelta(seconds=info.cycle_period),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        is_paused_upon_creation=True,
        default_args=DEFAULT_ARGS,
        dagrun_timeout=dt.timedelta(seconds=max(info.cycle_period * 5, 300)),
        tags=[*SCHEDULER_DAG_TAGS, info.tag],
    ) as dag:
        for worker_queue, kinds in info.routes().items():
            grouped: dict[type[PilotSchedulerOperator], list[str]] = {}
            for kind in kinds:
                grouped.setdefault(OPERATOR_FOR_KIND.get(kind, PilotSchedulerOperator), []).append(kind)
            for operator, group in grouped.items():
                operator(
                    task_id=cycle_task_id(group, worker_queue),
                    tag=info.tag,
                    backend_kinds=group,
                    worker_queue=worker_queue,
                    queue=worker_queue,
                    panda_conn_id=config.panda_conn_id,
                    **_store_args(config),
                )
    return dag


def cycle_task_id(kinds: list[str], worker_queue: str) -> str:
    """``cycle_<kinds>``, with ``_on_<worker queue>`` for a queue other than ``default``."""
    task_id = f"cycle_{'_'.join(k.replace('-', '_') for k in kinds)}"
    return task_id if worker_queue == DEFAULT_WORKER_QUEUE else f"{task_id}_on_{worker_queue}"


def _service_dag(dag_id: str, description: str, schedule: dt.timedelta) -> DAG:
    """A DAG for one of AutoPilot's own housekeeping jobs: unpaused, no catch-up, one run at a time."""
    return DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=DEFAULT_ARGS,
        tags=["autopilot"],
    )


def sync_dag(config: SchedulerConfig) -> DAG:
    """Refresh the snapshot file from ``schedconfig``, so new tags get their DAGs."""
    from autopilot_ops.airflow.operators.sync import SnapshotSyncOperator

    description = "Refresh the schedconfig snapshot that AutoPilot's DAGs are built from"
    with _service_dag(SYNC_DAG_ID, description, dt.timedelta(minutes=5)) as dag:
        SnapshotSyncOperator(task_id="write_snapshot", snapshot_path=str(config.snapshot_path), **_store_args(config))
    return dag


def monitor_dag(config: SchedulerConfig, worker_queues: Sequence[str] = ()) -> DAG:
    """Update pilot states from every back end and carry out kill requests: one sweep task per Airflow worker
    queue the schedulers' cycles run on (``queue=``), each for the back ends of the queues routed there, so a
    back end is asked from the host that can reach it, as its cycles do."""
    from autopilot_ops.airflow.operators.pilot_monitor import PilotMonitorOperator

    with _service_dag(MONITOR_DAG_ID, "Update pilot states from the back ends", dt.timedelta(minutes=2)) as dag:
        if not set(worker_queues) - {DEFAULT_WORKER_QUEUE}:  # no routing: one sweep of every back end
            PilotMonitorOperator(task_id="sweep_pilots", **_store_args(config))
            return dag
        for worker_queue in worker_queues:
            PilotMonitorOperator(
                task_id=sweep_task_id(worker_queue), worker_queue=worker_queue, queue=worker_queue,
                **_store_args(config),
            )
    return dag


def sweep_task_id(worker_queue: str) -> str:
    """``sweep_pilots``, with ``_on_<worker queue>`` for a queue other than ``default``."""
    return "sweep_pilots" if worker_queue == DEFAULT_WORKER_QUEUE else f"sweep_pilots_on_{worker_queue}"


def cleanup_dag(config: SchedulerConfig) -> DAG:
    """Remove old pilot logs and old rows (the old cleanSpace)."""
    from autopilot_ops.airflow.operators.cleanup import AutopilotCleanupOperator

    with _service_dag(CLEANUP_DAG_ID, "Remove old pilot logs and old rows", dt.timedelta(hours=1)) as dag:
        AutopilotCleanupOperator(task_id="cleanup", log_root=str(config.log_root), **_store_args(config))
    return dag
