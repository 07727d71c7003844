"""The interface every submission back end implements, and the records it exchanges with the scheduler."""

from __future__ import annotations

import abc
import datetime as dt
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from autopilot_ops.credentials.model import Credential

#: The environment variable in which every back end gives a pilot its batch id (the pilot's name to the monitor).
PILOT_ID_VARIABLE = "AUTOPILOT_PILOT_ID"
#: The environment variable in which every back end gives a pilot its index in its submission (0 to n-1).
PILOT_INDEX_VARIABLE = "AUTOPILOT_PILOT_INDEX"
#: The first of the pilot ids reserved for a submission: a pilot's id (its PanDA worker id) is this plus its index.
FIRST_PILOT_ID_VARIABLE = "AUTOPILOT_FIRST_PILOT_ID"


class PilotState(str, enum.Enum):
    """Pilot states, as stored in the ``pilots`` table."""

    SUBMITTED = "submitted"
    QUEUED = "queued"
    RUNNING = "running"
    HELD = "held"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"
    MISSED = "missed"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({PilotState.FINISHED, PilotState.FAILED, PilotState.CANCELLED, PilotState.MISSED})


class BackendError(Exception):
    """The back end could not do what was asked (its command failed, its daemon is down, ...)."""


@dataclass(frozen=True)
class PilotSpec:
    """What one submission asks for: ``n`` identical pilots for one queue in one cycle."""

    queue: str
    cycle_id: str
    scheduler: str
    command: Sequence[str]
    log_root: Path
    environment: Mapping[str, str] = field(default_factory=dict)
    corecount: int = 1
    memory_mb: int | None = None
    walltime_s: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    #: the credential file the pilots carry (a token or a proxy; a path, never its value)
    credential: Credential | None = None
    #: the pilot bundle version the pilots run (``None``: not a bundle, e.g. this host's own environment)
    pilot_version: str | None = None

    def log_dir(self, day: dt.date | None = None) -> Path:
        """``<log_root>/<YYYY-MM-DD>/<queue>``: where this submission's pilot logs go."""
        day = day or dt.datetime.now(dt.timezone.utc).date()
        return self.log_root / day.isoformat() / safe_name(self.queue)


@dataclass(frozen=True)
class SubmittedPilot:
    """One pilot the back end accepted: its batch id, where its stdout and stderr will be, and its index in its
    submission (what the pilot was given in ``AUTOPILOT_PILOT_INDEX``)."""

    batch_id: str
    stdout: Path
    stderr: Path
    index: int


@dataclass(frozen=True)
class PilotStatus:
    """What the back end knows of one pilot."""

    state: PilotState
    exit_code: int | None = None
    reason: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None


class Backend(abc.ABC):
    """A way to run pilots: submit them in bulk, ask their state, cancel them, and find their logs."""

    #: The ``backends.kind`` this class serves (``local``, ``slurm``, ``condor``, ...).
    kind: ClassVar[str]

    def __init__(self, name: str, parameters: Mapping[str, Any] | None = None, submit_host: str | None = None):
        self.name = name
        self.parameters = dict(parameters or {})
        self.submit_host = submit_host

    @abc.abstractmethod
    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        """Submit ``n`` pilots in as few batch-system calls as the back end allows."""

    @abc.abstractmethod
    def status(self, batch_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """Current status of the given pilots. Ids the back end no longer knows are left out."""

    @abc.abstractmethod
    def cancel(self, batch_ids: Sequence[str]) -> None:
        """Cancel the given pilots; ids already gone are ignored."""

    def find_pilots(self, queue: str, cycle_id: str) -> list[SubmittedPilot] | None:
        """Pilots this back end holds for ``(queue, cycle_id)``, to reconcile a submission interrupted by a
        crash; ``None`` when the back end cannot tell (the submission is then counted as missed)."""
        return None

    @abc.abstractmethod
    def log_paths(self, batch_id: str) -> tuple[Path, Path] | None:
        """The stdout and stderr files of a pilot, or ``None`` when they cannot be found."""

    def returned_kept_dir(self, batch_id: str, stdout: Path) -> Path | None:
        """Where the back end brings back the kept dir of an ended pilot (the final updates it could not deliver)
        whose stdout is ``stdout``; ``None`` when its pilots write to the scheduler's kept dir themselves (local,
        Slurm: a shared log root)."""
        return None


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(name: str) -> str:
    """``name`` with every character outside ``[A-Za-z0-9_.-]`` replaced, safe as one path component."""
    cleaned = _UNSAFE.sub("_", name)
    return cleaned if cleaned not in ("", ".", "..") else "_"
