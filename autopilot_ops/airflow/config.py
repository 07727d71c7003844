"""Scheduler settings from the ``[autopilot]`` section of ``airflow.cfg`` (``AIRFLOW__AUTOPILOT__<KEY>``)."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from autopilot_ops.config import state_dir
from autopilot_ops.pilot.shelf import BundleShelf, default_bundle_dir
from autopilot_ops.scheduler.cycle import DEFAULT_BUSY_WAIT_S
from autopilot_ops.scheduler.pilot_launch import WRAPPER_COMMAND, PilotBundles, bundle_url_template

#: The deployment id when none is configured: one AutoPilot installation, counted as one instance.
DEFAULT_DEPLOYMENT_ID = "default"


def cycle_id_for(run_id: str, deployment_id: str) -> str:
    """The cycle id of a DAG run: its run id, with the deployment's id where there are several (two Airflows give
    their runs the same ids, and a cycle id keys its submissions and cycle rows)."""
    return run_id if deployment_id == DEFAULT_DEPLOYMENT_ID else f"{run_id}@{deployment_id}"


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
    #: the pilot bundles the wrapper fetches (``None``: no URL is known for them)
    bundles: PilotBundles | None = None
    #: seconds a cycle waits for the queues another scheduler is cycling (``[autopilot] busy_queue_wait``)
    busy_wait_s: float = DEFAULT_BUSY_WAIT_S

    @classmethod
    def from_airflow_conf(cls) -> SchedulerConfig:
        from airflow.sdk import conf

        def option(key: str, fallback: str | None = None) -> str | None:
            return conf.get("autopilot", key, fallback=fallback) or fallback

        home = state_dir()
        cap = option("global_cap")
        busy_wait = option("busy_queue_wait")
        return cls(
            snapshot_path=Path(option("snapshot_path", str(home / "schedconfig-snapshot.json"))),
            log_root=Path(os.environ.get("AUTOPILOT_LOG_ROOT") or option("log_root", str(home / "logs"))),
            postgres_conn_id=option("postgres_conn_id"),
            dsn=os.environ.get("AUTOPILOT_DSN") or option("dsn"),
            panda_conn_id=option("panda_conn_id", "panda_default"),
            pilot_command=tuple(shlex.split(option("pilot_command", WRAPPER_COMMAND))),
            global_cap=int(cap) if cap else None,
            deployment_id=os.environ.get("AUTOPILOT_DEPLOYMENT_ID")
            or option("deployment_id", DEFAULT_DEPLOYMENT_ID)
            or DEFAULT_DEPLOYMENT_ID,
            monitor_url=_monitor_url(conf.get("api", "base_url", fallback=None)),
            bundles=_bundles(option("pilot_bundle_dir"), option("pilot_bundle_url"),
                             conf.get("api", "base_url", fallback=None)),
            busy_wait_s=_seconds("busy_queue_wait", busy_wait) if busy_wait else DEFAULT_BUSY_WAIT_S,
        )


def _bundles(directory: str | None, url_template: str | None, base_url: str | None) -> PilotBundles | None:
    """The bundles in ``[autopilot] pilot_bundle_dir`` (the plugin's directory), fetched from
    ``[autopilot] pilot_bundle_url`` (with ``{version}``), else from the plugin under ``[api] base_url``."""
    template = url_template or (bundle_url_template(base_url) if base_url else None)
    if template is None:
        return None
    return PilotBundles(BundleShelf(Path(directory) if directory else default_bundle_dir()), template)


def _seconds(key: str, value: str) -> float:
    """A non-negative number of seconds from ``[autopilot] <key>``; a clear error naming the key otherwise."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(f"[autopilot] {key}: {value!r} is not a number of seconds >= 0")
    return seconds


def _monitor_url(base_url: str | None) -> str | None:
    return f"{base_url.rstrip('/')}/autopilot" if base_url else None
