"""``autopilot up --executor celery``: Airflow's CeleryExecutor with the quick start's Redis as the broker, and two
Celery workers on this machine. Both serve the ``default`` worker queue; the second also serves the worker
queues of ``AUTOPILOT_WORKER_QUEUES``, so a queue routed there (``worker_queue``) runs only on it."""

from __future__ import annotations

from autopilot_ops.quickstart.processes import Service
from autopilot_ops.quickstart.redis import broker_url
from autopilot_ops.quickstart.settings import Settings
from autopilot_ops.store.queues import DEFAULT_WORKER_QUEUE

WORKERS = 2
#: Task processes per worker: two workers of two on our 2-core machine, as the LocalExecutor's parallelism 4.
WORKER_CONCURRENCY = 2
#: A task whose worker died (SIGKILL, a lost host) is failed after this many seconds without a heartbeat, so
#: its DAG's next cycle is not held up for Airflow's default 5 min (tasks heartbeat every 5 s).
TASK_HEARTBEAT_TIMEOUT = 30


def celery_environment(settings: Settings) -> dict[str, str]:
    """The CeleryExecutor's settings for every Airflow component and worker."""
    return {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CELERY__BROKER_URL": broker_url(settings),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": DEFAULT_WORKER_QUEUE,
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }


def worker_queues(settings: Settings, index: int) -> list[str]:
    """The worker queues of worker ``index`` (1-based)."""
    extra = [queue for queue in settings.worker_queues if queue != DEFAULT_WORKER_QUEUE] if index == WORKERS else []
    return [DEFAULT_WORKER_QUEUE, *extra]


def celery_workers(settings: Settings, env: dict[str, str]) -> list[Service]:
    """``airflow celery worker`` services, each with its own Celery node name and no log server (the API
    server reads task logs from the shared log folder)."""
    airflow = str(settings.venv_bin / "airflow")
    return [
        Service(
            f"airflow-celery-worker-{index}",
            [
                airflow,
                "celery",
                "worker",
                "--skip-serve-logs",
                "--celery-hostname",
                f"autopilot-worker-{index}@%h",
                "--queues",
                ",".join(worker_queues(settings, index)),
                "--concurrency",
                str(WORKER_CONCURRENCY),
                "--without-mingle",
                "--without-gossip",
            ],
            settings.services_dir,
            env,
            cwd=settings.airflow_home,
        )
        for index in range(1, WORKERS + 1)
    ]
