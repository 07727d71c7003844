"""The policy's input: one frozen snapshot of a queue per cycle, checked when it is built.

Every limit follows one rule: ``None`` means no limit and ``0`` means zero. Harvester reads 0 as "no limit"
in some places and as "zero" in others (see :mod:`autopilot_ops.policy.rules`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autopilot_ops.policy.credentials import CredentialLifetime

# The values allowed by the CHECK on schedconfig.status in sql/tables.sql.
STATUSES = frozenset({"online", "offline", "test", "brokeroff"})
CONTROL_SCOPES = frozenset({"queue", "tag"})
#: How a queue applies PanDA's numbers of new workers (``QueueConfig.panda_workers``).
PANDA_WORKERS_MODES = ("target", "cap", "ignore")


def _check_int(owner: str, name: str, value: object, *, minimum: int = 0, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or None" if optional else "")
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")


def _check_number(owner: str, name: str, value: object, *, maximum: float = math.inf, optional: bool = False) -> None:
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= maximum
    ):
        allowed = "a finite number >= 0" if maximum == math.inf else f"a number in [0, {maximum:g}]"
        allowed += " or None" if optional else ""
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value!r}")


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """A queue's limits: the ``schedconfig`` columns the policy reads, plus policy knobs with no column yet.

    Columns (``None`` = no limit):

    - ``status``: ``online``, ``test``, ``offline`` or ``brokeroff``.
    - ``prod_source_labels``: the labels this queue serves; activated jobs with other labels are not counted.
    - ``queue_limit``: queued pilots to aim for when no ratio is set (Harvester's ``nQueueLimitWorker``).
      Ignored when ``queue_ratio`` is set.
    - ``queue_ratio``: aim for ``floor(ratio * running)`` queued pilots, a fraction (Harvester's
      ``nQueueLimitWorkerRatio`` is a percentage: ratio = percent / 100).
    - ``min_queued``: lower bound of the queued target (0: none). With a ratio the bound is at least 1.
    - ``max_queued``: upper bound of the queued target.
    - ``max_pilots``: queued + running + held pilots in all (Harvester's ``maxWorkers``).
    - ``max_per_cycle``: pilots submitted in one cycle (Harvester's ``maxNewWorkersPerCycle``).
    - ``jobs_per_pilot``: PanDA jobs one pilot runs; divides the activated jobs.

    Knobs (not columns yet):

    - ``test_pilots``: queued pilots kept on a queue in status ``test``.
    - ``keep_one_pilot``: submit one pilot when nothing is activated and no pilot is queued or running.
    - ``missed_rate_limit``: missed / attempted submissions above which the queue gets a trickle (None: off).
    - ``empty_share_limit``: empty / ended pilots above which the queue gets a trickle (None: off).
    - ``throttle_min_count``: the fewest attempts (or ended pilots) a rate is judged on.
    - ``stale_polls``: PanDA data older than this many poll periods stops submission.
    - ``panda_workers``: how PanDA's ``SET_N_WORKERS_JOBTYPE`` numbers apply: ``target`` (the number of new
      pilots, Harvester's slave mode), ``cap`` (at most that many) or ``ignore``.
    """

    panda_queue: str
    status: str = "online"
    prod_source_labels: tuple[str, ...] = ("managed",)
    queue_limit: int | None = None
    queue_ratio: float | None = None
    min_queued: int = 0
    max_queued: int | None = None
    max_pilots: int | None = None
    max_per_cycle: int | None = None
    jobs_per_pilot: int = 1
    test_pilots: int = 1
    keep_one_pilot: bool = False
    missed_rate_limit: float | None = 0.5
    empty_share_limit: float | None = 0.5
    throttle_min_count: int = 5
    stale_polls: int = 3
    panda_workers: str = "target"

    def __post_init__(self) -> None:
        if not isinstance(self.panda_queue, str) or not self.panda_queue:
            raise ValueError(f"QueueConfig: panda_queue must be a non-empty string, got {self.panda_queue!r}")
        owner = f"queue {self.panda_queue!r}"
        if self.status not in STATUSES:
            raise ValueError(f"{owner}: status must be one of {sorted(STATUSES)}, got {self.status!r}")
        labels = self.prod_source_labels
        if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
            raise ValueError(f"{owner}: prod_source_labels must be a sequence of strings, got {labels!r}")
        object.__setattr__(self, "prod_source_labels", tuple(labels))
        for name in ("queue_limit", "max_queued", "max_pilots", "max_per_cycle"):
            _check_int(owner, name, getattr(self, name), optional=True)
        _check_number(owner, "queue_ratio", self.queue_ratio, optional=True)
        _check_int(owner, "min_queued", self.min_queued)
        _check_int(owner, "jobs_per_pilot", self.jobs_per_pilot, minimum=1)
        _check_int(owner, "test_pilots", self.test_pilots)
        _check_number(owner, "missed_rate_limit", self.missed_rate_limit, maximum=1, optional=True)
        _check_number(owner, "empty_share_limit", self.empty_share_limit, maximum=1, optional=True)
        _check_int(owner, "throttle_min_count", self.throttle_min_count, minimum=1)
        _check_int(owner, "stale_polls", self.stale_polls, minimum=1)
        if self.panda_workers not in PANDA_WORKERS_MODES:
            raise ValueError(f"{owner}: panda_workers must be one of {list(PANDA_WORKERS_MODES)}, "
                             f"got {self.panda_workers!r}")

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> QueueConfig:
        """From a ``schedconfig`` row (or ``QueueDefinition.as_row()``): other columns are ignored, and a
        knob is read whenever the row has a column of that name."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{name: value for name, value in row.items() if name in names})


@dataclass(frozen=True, slots=True)
class JobCount:
    """PanDA's activated jobs for the queue with one prodSourceLabel and resource type."""

    prod_source_label: str
    resource_type: str
    count: int

    def __post_init__(self) -> None:
        _check_int(f"JobCount({self.prod_source_label}, {self.resource_type})", "count", self.count)


@dataclass(frozen=True, slots=True)
class PilotCounts:
    """Our live pilots for the queue, by state (``submitted`` counts as queued)."""

    queued: int = 0
    running: int = 0
    held: int = 0

    def __post_init__(self) -> None:
        for name in ("queued", "running", "held"):
            _check_int("PilotCounts", name, getattr(self, name))

    @property
    def alive(self) -> int:
        """Every pilot the batch system still holds: held ones count against ``max_pilots`` too."""
        return self.queued + self.running + self.held


@dataclass(frozen=True, slots=True)
class RecentActivity:
    """Outcomes in the last window: submissions attempted and missed, pilots ended and ended empty."""

    attempts: int = 0
    missed: int = 0
    ended: int = 0
    empty: int = 0

    def __post_init__(self) -> None:
        for name in ("attempts", "missed", "ended", "empty"):
            _check_int("RecentActivity", name, getattr(self, name))
        if self.missed > self.attempts:
            raise ValueError(f"RecentActivity: missed ({self.missed}) exceeds attempts ({self.attempts})")
        if self.empty > self.ended:
            raise ValueError(f"RecentActivity: empty ({self.empty}) exceeds ended ({self.ended})")


@dataclass(frozen=True, slots=True)
class Control:
    """One row of the ``controls`` table that applies to the queue (its own, or one of its tags')."""

    scope: str
    target: str
    set_by: str
    paused: bool = False
    drain: bool = False
    fixed_number: int | None = None
    max_per_cycle: int | None = None
    expires_at: dt.datetime | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.scope not in CONTROL_SCOPES:
            raise ValueError(f"Control: scope must be one of {sorted(CONTROL_SCOPES)}, got {self.scope!r}")
        owner = f"control {self.label}"
        _check_int(owner, "fixed_number", self.fixed_number, optional=True)
        _check_int(owner, "max_per_cycle", self.max_per_cycle, optional=True)
        if self.expires_at is not None and (
            not isinstance(self.expires_at, dt.datetime) or self.expires_at.tzinfo is None
        ):
            raise ValueError(f"{owner}: expires_at must be a timezone-aware datetime, got {self.expires_at!r}")

    @property
    def label(self) -> str:
        return f"{self.scope}:{self.target}"

    def describe(self) -> str:
        """``queue:X (by alice: downtime)``, for the reason trace."""
        why = f": {self.reason}" if self.reason else ""
        return f"control {self.label} (by {self.set_by}{why})"


@dataclass(frozen=True, slots=True)
class PandaTarget:
    """PanDA's number of new workers for the queue, one job type and resource type, from one command."""

    command_id: int
    job_type: str
    resource_type: str
    n_workers: int
    expires_at: dt.datetime

    def __post_init__(self) -> None:
        owner = f"PanDA command {self.command_id}"
        _check_int(owner, "n_workers", self.n_workers)
        if not isinstance(self.expires_at, dt.datetime) or self.expires_at.tzinfo is None:
            raise ValueError(f"{owner}: expires_at must be a timezone-aware datetime, got {self.expires_at!r}")

    def describe(self) -> str:
        """``PanDA command 123 SET_N_WORKERS_JOBTYPE managed/SCORE=12``, for the reason trace."""
        what = f"{self.job_type}/{self.resource_type}={self.n_workers}"
        return f"PanDA command {self.command_id} SET_N_WORKERS_JOBTYPE {what}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything :func:`~autopilot_ops.policy.rules.decide` looks at for one queue in one cycle.

    - ``instances``: live scheduler instances serving the queue; each submits its share ``1/instances``.
    - ``pilots``: every instance's live pilots of the queue (the caps bound them all); ``own_pilots``: this
      instance's, counted against its share where there are several (``None``: the same as ``pilots``).
    - ``panda_data_age``: seconds since PanDA's job counts were fetched; ``None`` if they never were.
    - ``poll_period``: seconds between PanDA polls; data older than ``stale_polls`` of them is stale.
    - ``global_cap``: the scheduler-wide ceiling on pilots for one queue in one cycle (Harvester's
      ``submitter.maxNewWorkers``); ``None`` = none.
    - ``now``: the time controls' ``expires_at`` is compared with. It is needed as soon as a control has
      an expiry, so the caller may pass every control row and leave expiry to the policy (and the trace).
    - ``panda_targets``: PanDA's numbers of new workers for the queue (``SET_N_WORKERS_JOBTYPE``); they always
      expire, so they need ``now``.
    - ``credentials``: the lifetimes of the credentials the queue's pilots would carry, as read this cycle.
    """

    queue: QueueConfig
    activated: tuple[JobCount, ...] = ()
    pilots: PilotCounts = PilotCounts()
    own_pilots: PilotCounts | None = None
    recent: RecentActivity = RecentActivity()
    controls: tuple[Control, ...] = ()
    instances: int = 1
    panda_data_age: float | None = None
    poll_period: float = 300.0
    global_cap: int | None = None
    now: dt.datetime | None = None
    panda_targets: tuple[PandaTarget, ...] = ()
    credentials: tuple[CredentialLifetime, ...] = ()

    def __post_init__(self) -> None:
        owner = f"snapshot of {getattr(self.queue, 'panda_queue', self.queue)!r}"
        for name, kind in (("queue", QueueConfig), ("pilots", PilotCounts), ("recent", RecentActivity)):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"{owner}: {name} must be a {kind.__name__}, got {getattr(self, name)!r}")
        if self.own_pilots is not None and not isinstance(self.own_pilots, PilotCounts):
            raise ValueError(f"{owner}: own_pilots must be a PilotCounts, got {self.own_pilots!r}")
        for name, kind in (("activated", JobCount), ("controls", Control), ("panda_targets", PandaTarget),
                           ("credentials", CredentialLifetime)):
            items = tuple(getattr(self, name))
            bad = [item for item in items if not isinstance(item, kind)]
            if bad:
                raise ValueError(f"{owner}: {name} must hold {kind.__name__} items, got {bad[0]!r}")
            object.__setattr__(self, name, items)
        _check_int(owner, "instances", self.instances, minimum=1)
        _check_number(owner, "panda_data_age", self.panda_data_age, optional=True)
        _check_number(owner, "poll_period", self.poll_period)
        if self.poll_period <= 0:
            raise ValueError(f"{owner}: poll_period must be > 0 seconds, got {self.poll_period!r}")
        _check_int(owner, "global_cap", self.global_cap, optional=True)
        if self.now is not None and (not isinstance(self.now, dt.datetime) or self.now.tzinfo is None):
            raise ValueError(f"{owner}: now must be a timezone-aware datetime, got {self.now!r}")
        expiring = [c for c in self.controls if c.expires_at is not None]
        if expiring and self.now is None:
            raise ValueError(f"{owner}: now is needed to check the expiry of {expiring[0].describe()}")
        if self.panda_targets and self.now is None:
            raise ValueError(f"{owner}: now is needed to check the expiry of {self.panda_targets[0].describe()}")
