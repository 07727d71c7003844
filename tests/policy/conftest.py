"""Policy test helpers: a compact snapshot builder (counts as keywords, queue limits as the rest)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import pytest

from autopilot_ops.policy import (
    Control,
    JobCount,
    PandaTarget,
    PilotCounts,
    QueueConfig,
    RecentActivity,
    Snapshot,
)

NOW = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.timezone.utc)


def build_snapshot(
    activated: int | Mapping[str, int] = 0,
    *,
    queued: int = 0,
    running: int = 0,
    held: int = 0,
    attempts: int = 0,
    missed: int = 0,
    ended: int = 0,
    empty: int = 0,
    controls: Sequence[Control] = (),
    panda_targets: Sequence[PandaTarget] = (),
    instances: int = 1,
    age: float | None = 60.0,
    poll: float = 300.0,
    global_cap: int | None = None,
    now: dt.datetime = NOW,
    **queue: object,
) -> Snapshot:
    """``activated`` is a count of ``managed`` jobs or a mapping label -> count (all resource type SCORE)."""
    by_label = {"managed": activated} if isinstance(activated, int) else dict(activated)
    queue.setdefault("panda_queue", "TEST_QUEUE")
    return Snapshot(
        queue=QueueConfig(**queue),  # type: ignore[arg-type]
        activated=tuple(JobCount(label, "SCORE", count) for label, count in by_label.items()),
        pilots=PilotCounts(queued=queued, running=running, held=held),
        recent=RecentActivity(attempts=attempts, missed=missed, ended=ended, empty=empty),
        controls=tuple(controls),
        instances=instances,
        panda_data_age=age,
        poll_period=poll,
        global_cap=global_cap,
        now=now,
        panda_targets=tuple(panda_targets),
    )


@pytest.fixture(scope="session")
def make_snapshot() -> Callable[..., Snapshot]:
    return build_snapshot
