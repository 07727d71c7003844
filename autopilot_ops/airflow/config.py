"""Scheduler settings from the ``[autopilot]`` section of ``airflow.cfg`` (``AIRFLOW__AUTOPILOT__<KEY>``)."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from autopilot_ops.config import state_dir


def default_pilot_command() -> str:
    """The pilot as the local back end runs it: this environment's ``python -m autopilot_ops.pilot run``
    (lighter than the ``autopilot`` command, which loads the scheduler's modules too), asking PanDA for jobs of
    the label the pilot was submitted for."""
    return (
        f"{shlex.quote(sys.executable)} -m autopilot_ops.pilot run --queue {{queue}} --server {{panda_url}} "
        "--prod-source-label {label}"
    )


#: The deployment id when none is configured: one AutoPilot installation, counted as one instance.
DEFAULT_DEPLOYMENT_ID = "default"


def scheduler_id_for(tag: str, deployment_id: str) -> str:
    """The id a tag's scheduler has in the ``schedulers`` table: ``<tag>@<deployment id>``. Every Celery or
    Edge worker of one deployment gives the same id, so the policy's instance count (distinct ids of a tag)
    counts deployments serving the tag, not the hosts its tasks happened to run on."""
    if not deployment_id or any(c.isspace() or c == "@" for c in deployment_id):
        raise ValueError(f"[autopilot] deployment_id: {deployment_id!r} must be a non-empty name without '@' or spaces")
    return f"{tag}@{deployment_id}"


@dataclass(frozen=True)
class SchedulerConfig:
    snapshot_path: Path
    log_root: Path
    postgres_conn_id: str | None
    dsn: str | None
    panda_conn_id: str
    pilot_command: tuple[str, ...]
    global_cap: int | None
    deployment_id: str = DEFAULT_DEPLOYMENT_ID
    #: the monitor's public URL (``[api] base_url`` + ``/autopilot``), for the log links PanDA shows
    monitor_url: str | None = None

    @classmethod
    def from_airflow_conf(cls) -> SchedulerConfig:
        from airflow.sdk import conf

        def option(key: str, fallback: str | None = None) -> str | None:
            return conf.get("autopilot", key, fallback=fallback) or fallback

        home = state_dir()
        cap = option("global_cap")
        return cls(
            snapshot_path=Path(option("snapshot_path", str(home / "schedconfig-snapshot.json"))),
            log_root=Path(os.environ.get("AUTOPILOT_LOG_ROOT") or option("log_root", str(home / "logs"))),
            postgres_conn_id=option("postgres_conn_id"),
            dsn=os.environ.get("AUTOPILOT_DSN") or option("dsn"),
            panda_conn_id=option("panda_conn_id", "panda_default"),
            pilot_command=tuple(shlex.split(option("pilot_command", default_pilot_command()))),
            global_cap=int(cap) if cap else None,
            deployment_id=os.environ.get("AUTOPILOT_DEPLOYMENT_ID")
            or option("deployment_id", DEFAULT_DEPLOYMENT_ID)
            or DEFAULT_DEPLOYMENT_ID,
            monitor_url=_monitor_url(conf.get("api", "base_url", fallback=None)),
        )


def _monitor_url(base_url: str | None) -> str | None:
    return f"{base_url.rstrip('/')}/autopilot" if base_url else None
