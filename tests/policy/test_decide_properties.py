"""Properties of decide() that hold whatever the input (hypothesis)."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from autopilot_ops.policy import (
    Control,
    JobCount,
    PilotCounts,
    QueueConfig,
    RecentActivity,
    Snapshot,
    decide,
)

NOW = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.timezone.utc)
LABELS = ("managed", "user", "ptest", "rc_test2")

limits = st.none() | st.integers(0, 300)
rates = st.none() | st.floats(0, 1)
rarely = st.integers(0, 7).map(lambda draw: draw == 0)

queue_configs = st.builds(
    QueueConfig,
    panda_queue=st.just("Q"),
    status=st.sampled_from(["online", "online", "test", "offline", "brokeroff"]),
    prod_source_labels=st.lists(st.sampled_from(LABELS), max_size=3, unique=True).map(tuple),
    queue_limit=limits,
    queue_ratio=st.none() | st.floats(0, 3),
    min_queued=st.integers(0, 30),
    max_queued=limits,
    max_pilots=limits,
    max_per_cycle=limits,
    jobs_per_pilot=st.integers(1, 8),
    test_pilots=st.integers(0, 5),
    keep_one_pilot=st.booleans(),
    missed_rate_limit=rates,
    empty_share_limit=rates,
    throttle_min_count=st.integers(1, 10),
    stale_polls=st.integers(1, 5),
)


@st.composite
def recent_activity(draw: st.DrawFn) -> RecentActivity:
    attempts = draw(st.integers(0, 200))
    ended = draw(st.integers(0, 200))
    return RecentActivity(
        attempts=attempts,
        missed=draw(st.integers(0, attempts)),
        ended=ended,
        empty=draw(st.integers(0, ended)),
    )


controls = st.builds(
    Control,
    scope=st.sampled_from(["queue", "tag"]),
    target=st.sampled_from(["Q", "t1", "t2"]),
    set_by=st.just("operator"),
    paused=rarely,
    drain=rarely,
    fixed_number=st.none() | st.none() | st.integers(0, 300),
    max_per_cycle=limits,
    expires_at=st.none() | st.integers(-7200, 7200).map(lambda s: NOW + dt.timedelta(seconds=s)),
)

snapshots = st.builds(
    Snapshot,
    queue=queue_configs,
    activated=st.lists(
        st.builds(JobCount, st.sampled_from(LABELS), st.sampled_from(["SCORE", "MCORE"]), st.integers(0, 5000)),
        max_size=6,
    ).map(tuple),
    pilots=st.builds(PilotCounts, st.integers(0, 500), st.integers(0, 2000), st.integers(0, 100)),
    recent=recent_activity(),
    controls=st.lists(controls, max_size=3).map(tuple),
    instances=st.integers(1, 5),
    panda_data_age=st.none() | st.floats(0, 1200),
    poll_period=st.floats(1, 600),
    global_cap=limits,
    now=st.just(NOW),
)


def in_force(snapshot: Snapshot) -> list[Control]:
    return [c for c in snapshot.controls if c.expires_at is None or c.expires_at > NOW]


@settings(max_examples=400, deadline=None)
@given(snapshots)
def test_never_negative_and_never_above_a_cap(snapshot: Snapshot) -> None:
    decision = decide(snapshot)
    n = decision.n
    assert isinstance(n, int) and n >= 0
    assert decision.reason[-1] == f"submit {n}"
    queue = snapshot.queue
    if queue.max_per_cycle is not None:
        assert n <= queue.max_per_cycle
    if queue.max_pilots is not None:
        assert n <= max(queue.max_pilots - snapshot.pilots.alive, 0)
    if snapshot.global_cap is not None:
        assert n <= snapshot.global_cap
    for control in in_force(snapshot):
        if control.max_per_cycle is not None:
            assert n <= control.max_per_cycle


@settings(max_examples=200, deadline=None)
@given(snapshots, st.sampled_from(["offline", "brokeroff"]))
def test_offline_and_brokeroff_give_zero(snapshot: Snapshot, status: str) -> None:
    closed = dataclasses.replace(snapshot, queue=dataclasses.replace(snapshot.queue, status=status))
    decision = decide(closed)
    assert decision.n == 0
    assert decision.reason == (f"status {status} -> 0", "submit 0")


@settings(max_examples=200, deadline=None)
@given(snapshots, st.sampled_from(["paused", "drain"]), st.sampled_from(["queue", "tag"]))
def test_pause_and_drain_give_zero(snapshot: Snapshot, what: str, scope: str) -> None:
    stop = Control(scope=scope, target="Q", set_by="operator", expires_at=NOW + dt.timedelta(minutes=5), **{what: True})
    decision = decide(dataclasses.replace(snapshot, controls=(*snapshot.controls, stop)))
    assert decision.n == 0


@settings(max_examples=200, deadline=None)
@given(snapshots, st.none() | st.floats(0.001, 10_000))
def test_stale_or_missing_panda_data_gives_zero(snapshot: Snapshot, overdue: float | None) -> None:
    age = None if overdue is None else snapshot.queue.stale_polls * snapshot.poll_period + overdue
    decision = decide(dataclasses.replace(snapshot, panda_data_age=age))
    assert decision.n == 0


@settings(max_examples=200, deadline=None)
@given(snapshots, st.integers(1, 100))
def test_more_queued_pilots_never_ask_for_more(snapshot: Snapshot, more: int) -> None:
    pilots = snapshot.pilots
    busier = dataclasses.replace(snapshot, pilots=dataclasses.replace(pilots, queued=pilots.queued + more))
    assert decide(busier).n <= decide(snapshot).n


@settings(max_examples=200, deadline=None)
@given(snapshots, st.sampled_from(["missed", "empty"]))
def test_a_throttle_trickles_one_pilot_while_there_is_demand(snapshot: Snapshot, which: str) -> None:
    online = dataclasses.replace(
        snapshot,
        queue=dataclasses.replace(snapshot.queue, status="online", missed_rate_limit=0.5, empty_share_limit=0.5),
        controls=tuple(dataclasses.replace(c, fixed_number=None) for c in snapshot.controls),
        recent=RecentActivity(),
    )
    window = max(online.queue.throttle_min_count, 10)
    failing = (
        RecentActivity(attempts=window, missed=window)
        if which == "missed"
        else RecentActivity(ended=window, empty=window)
    )
    unthrottled = decide(online)
    throttled = decide(dataclasses.replace(online, recent=failing))
    assert throttled.n == min(unthrottled.n, 1)
