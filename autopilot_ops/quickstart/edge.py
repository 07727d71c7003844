"""``autopilot up --executor edge``: Airflow's EdgeExecutor (``apache-airflow-providers-edge3``), whose workers
pull their tasks from the API server over HTTP (``/edge_worker/v1``), as a site's submit host behind a firewall
would; two Edge workers on this machine, routed as the Celery ones (see :mod:`celery`)."""

from __future__ import annotations

from autopilot_ops.quickstart.celery import TASK_HEARTBEAT_TIMEOUT, WORKER_CONCURRENCY, WORKERS, worker_queues
from autopilot_ops.quickstart.processes import Service
from autopilot_ops.quickstart.settings import Settings
from autopilot_ops.store.queues import DEFAULT_WORKER_QUEUE

EXECUTOR_CLASS = "airflow.providers.edge3.executors.EdgeExecutor"


def edge_environment(settings: Settings) -> dict[str, str]:
    """The EdgeExecutor's settings: the API server serves the workers' API; workers poll it every second."""
    return {
        "AIRFLOW__CORE__EXECUTOR": EXECUTOR_CLASS,
        "AIRFLOW__EDGE__API_ENABLED": "True",
        "AIRFLOW__EDGE__API_URL": f"{settings.airflow_url}/edge_worker/v1/rpcapi",
        "AIRFLOW__EDGE__JOB_POLL_INTERVAL": "1",
        "AIRFLOW__EDGE__HEARTBEAT_INTERVAL": "10",
        "AIRFLOW__EDGE__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__OPERATORS__DEFAULT_QUEUE": DEFAULT_WORKER_QUEUE,
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(TASK_HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    }


def edge_workers(settings: Settings, env: dict[str, str]) -> list[Service]:
    """``airflow edge worker`` services, each with its own worker name and PID file."""
    airflow = str(settings.venv_bin / "airflow")
    return [
        Service(
            f"airflow-edge-worker-{index}",
            [
                airflow,
                "edge",
                "worker",
                "--edge-hostname",
                f"autopilot-edge-{index}",
                "--queues",
                ",".join(worker_queues(settings, index)),
                "--concurrency",
                str(WORKER_CONCURRENCY),
                "--pid",  # the worker's own PID file, one per worker (ours is the service's)
                str(settings.airflow_home / f"edge-worker-{index}.pid"),
            ],
            settings.services_dir,
            env,
            cwd=settings.airflow_home,
        )
        for index in range(1, WORKERS + 1)
    ]
