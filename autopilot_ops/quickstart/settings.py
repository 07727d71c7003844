"""The quick start's ports, paths and URLs, each overridable from the environment."""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from autopilot_ops.config import EMBEDDED_PG_PORT, state_dir

#: The executors ``autopilot up --executor`` runs Airflow with.
EXECUTORS = ("local", "celery", "edge")
_WORKER_QUEUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,49}")

#: Where the repository's ``dags/`` and ``plugins/`` folders are (the package sits in the repository root).
REPO_ROOT = Path(__file__).resolve().parents[2]


class QuickstartError(RuntimeError):
    """A step of ``autopilot up`` or ``autopilot down`` failed; the message names the step and how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Everything ``autopilot up`` starts is placed by these values."""

    home: Path
    panda_port: int
    airflow_port: int
    pg_port: int
    demo_jobs: int
    #: Airflow's executor: ``local`` (LocalExecutor), ``celery`` (CeleryExecutor, a Redis broker, two workers) or
    #: ``edge`` (EdgeExecutor, two Edge workers polling the API server)
    executor: str = "local"
    redis_port: int = 26379
    #: the Airflow worker queues the second Celery or Edge worker serves besides ``default``
    worker_queues: tuple[str, ...] = ()

    @classmethod
    def from_environment(cls, executor: str | None = None) -> Settings:
        executor = executor or os.environ.get("AUTOPILOT_EXECUTOR", "").strip() or "local"
        if executor not in EXECUTORS:
            raise QuickstartError(f"executor {executor!r} is not one of: {', '.join(EXECUTORS)}")
        return cls(
            home=state_dir(),
            panda_port=_port("AUTOPILOT_PANDA_PORT", 25080),
            airflow_port=_port("AUTOPILOT_AIRFLOW_PORT", 8080),
            pg_port=EMBEDDED_PG_PORT,
            demo_jobs=_count("AUTOPILOT_DEMO_JOBS", 12),
            executor=executor,
            redis_port=_port("AUTOPILOT_REDIS_PORT", 26379),
            worker_queues=_names("AUTOPILOT_WORKER_QUEUES"),
        )

    @property
    def services_dir(self) -> Path:
        """PID files and log files of the background services."""
        return self.home / "services"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def panda_url(self) -> str:
        return f"http://127.0.0.1:{self.panda_port}"

    @property
    def airflow_url(self) -> str:
        return f"http://127.0.0.1:{self.airflow_port}"

    @property
    def monitor_url(self) -> str:
        return f"{self.airflow_url}/autopilot/"

    @property
    def venv_bin(self) -> Path:
        """The directory of this interpreter's ``airflow`` and ``autopilot`` scripts."""
        return Path(sys.executable).parent


def _port(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise QuickstartError(f"{variable}={raw!r} is not a port number (1-65535)")
    return int(raw)


def _names(variable: str) -> tuple[str, ...]:
    """A comma-separated list of Airflow worker queue names (the queue files' name rule)."""
    names = tuple(part.strip() for part in os.environ.get(variable, "").split(",") if part.strip())
    for name in names:
        if not _WORKER_QUEUE.fullmatch(name):
            raise QuickstartError(
                f"{variable}: {name!r} is not a worker queue name (letters, digits, '_', '-', '.', at most 50)"
            )
    return names


def _count(variable: str, default: int) -> int:
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise QuickstartError(f"{variable}={raw!r} is not a whole number")
    return int(raw)


def require_free_port(port: int, service: str, setting: str) -> None:
    """Raise a :class:`QuickstartError` naming ``port`` and the ``setting`` that moves it, if it is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise QuickstartError(
                f"{service}: port {port} on 127.0.0.1 is taken by another program; "
                f"stop it, or set {setting} to a free port"
            ) from None
