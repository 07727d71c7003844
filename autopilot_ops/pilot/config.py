"""Everything one pilot run is configured with: server, queue, limits, storage, plugins, monitoring."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from autopilot_ops.panda.client import PandaAuth, RetryPolicy
from autopilot_ops.record import Record, field


def default_home() -> Path:
    """The pilot's home (outbox of unsent final updates, default storage): ``AUTOPILOT_PILOT_HOME``."""
    return Path(os.environ.get("AUTOPILOT_PILOT_HOME", Path.home() / ".autopilot" / "pilot"))


#: Where the back ends tell a pilot to hand over the final updates it could not deliver.
KEPT_DIR_VARIABLE = "AUTOPILOT_KEPT_DIR"


def default_kept_dir() -> Path | None:
    """``AUTOPILOT_KEPT_DIR``, if set: the scheduler delivers what its pilots leave there."""
    value = os.environ.get(KEPT_DIR_VARIABLE)
    return Path(value) if value else None


#: Harvester's names for the factory and the worker a pilot runs as (pilot3 ``pilot/control/job.py`` reads them
#: into ``acquire_jobs``' ``scheduler_id`` and ``worker_id``; Harvester's submitters export them).
HARVESTER_ID_VARIABLE = "HARVESTER_ID"
WORKER_ID_VARIABLE = "HARVESTER_WORKER_ID"


def default_harvester_id() -> str | None:
    """``HARVESTER_ID``: the pilot factory that submitted this pilot, if one did."""
    return os.environ.get(HARVESTER_ID_VARIABLE) or None


def default_worker_id() -> int | None:
    """This pilot's PanDA worker id: ``HARVESTER_WORKER_ID``, else the first id its submission reserved plus its
    index in it (``AUTOPILOT_FIRST_PILOT_ID`` + ``AUTOPILOT_PILOT_INDEX``, set by AutoPilot's back ends)."""
    value = os.environ.get(WORKER_ID_VARIABLE, "")
    if value.strip().isdigit():
        return int(value)
    first, index = os.environ.get("AUTOPILOT_FIRST_PILOT_ID", ""), os.environ.get("AUTOPILOT_PILOT_INDEX", "")
    if first.strip().isdigit() and index.strip().isdigit():
        return int(first) + int(index)
    return None


def default_pilot_id() -> str:
    """``AUTOPILOT_PILOT_ID`` as set by the scheduler's back end, else ``<host>:<pid>``."""
    return os.environ.get("AUTOPILOT_PILOT_ID") or f"{socket.gethostname()}:{os.getpid()}"


class PilotConfig(Record):
    """One pilot's settings; every duration is in seconds."""

    queue: str
    server_url: str = ""
    protocol: str = "v1"
    auth: PandaAuth = field(default_factory=PandaAuth)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    request_timeout: float = 60.0
    prod_source_label: str | None = "managed"
    resource_type: str | None = None
    node: str = field(default_factory=socket.gethostname)
    computing_element: str | None = None
    memory_mb: int | None = None
    disk_space_mb: int | None = None
    #: keep taking jobs while the pilot has run less than this (the queue's time floor); 0: one job
    time_floor: float = 0.0
    max_jobs: int | None = None
    once: bool = False
    heartbeat_interval: float = 1800.0
    kill_grace: float = 10.0
    memory_poll: float = 5.0
    #: the payload is stopped (``NOLOCALSPACE``) when the work dir's disk has less free space than this (MB);
    #: pilot3's ``free_space_limit_running`` is 1 GB
    min_free_space_mb: int = 1024
    #: multiplies ``minRamCount`` to give the memory limit
    memory_factor: float = 1.0
    workdir: Path = field(default_factory=Path.cwd)
    keep_workdir: bool = False
    home: Path = field(default_factory=default_home)
    #: transformation URLs must start with one of these
    allow_url_prefixes: tuple[str, ...] = ()
    #: optional sha256 pins of transformation URLs
    trf_sha256: Mapping[str, str] = field(default_factory=dict)
    #: ``{scope}``, ``{lfn}``, ``{dataset}``, ``{guid}`` and ``{rse}`` (its ``ddmEndPoint``) are filled in per file
    input_url: str | None = None
    output_url: str | None = None
    #: force a data mover by name; by default each URL's scheme picks one
    mover: str | None = None
    mover_options: Mapping[str, str] = field(default_factory=dict)
    vo: str = "generic"
    vo_options: Mapping[str, str] = field(default_factory=dict)
    monitor_url: str | None = None
    monitor_token: str | None = None
    pilot_id: str = field(default_factory=default_pilot_id)
    #: the pilot factory and worker this pilot is to PanDA, sent with ``acquire_jobs`` so PanDA links the jobs
    harvester_id: str | None = field(default_factory=default_harvester_id)
    worker_id: int | None = field(default_factory=default_worker_id)
    interactive: bool = False
    #: how long a final update is retried across a server outage before it is kept for later
    final_patience: float = 1800.0
    #: when the batch slot ends (epoch seconds; ``pilot/slot.py``): final-update retries stop before it
    slot_end: float | None = None
    #: a final update given up on moves here from the home's outbox, for the scheduler to deliver
    kept_dir: Path | None = None

    @property
    def storage_url(self) -> str:
        """The default storage when no input/output URL is configured: ``<home>/storage/<scope>/<lfn>``."""
        return (self.home / "storage").as_uri() + "/{scope}/{lfn}"

    @property
    def outbox(self) -> Path:
        return self.home / "outbox"

    @property
    def fallback_outbox(self) -> Path:
        """Where final updates are kept when the home cannot be written (grid pool accounts)."""
        return self.workdir / ".autopilot-outbox"
