"""Table-driven cases for decide(): worked examples from AutoPyFactory's and Harvester's formulae, the
gates and the controls. Each case gives the inputs, the number, and lines the reason trace must hold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from autopilot_ops.policy import Control, Decision, Snapshot, decide

NOW = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


def queue_control(**fields: Any) -> Control:
    return Control(scope="queue", target="TEST_QUEUE", set_by="alice", **fields)


def tag_control(tag: str, **fields: Any) -> Control:
    return Control(scope="tag", target=tag, set_by="bob", **fields)


# (id, snapshot inputs, expected n, lines expected in the trace, in this order)
CASES: list[tuple[str, dict[str, Any], int, list[str]]] = [
    # AutoPyFactory sched/Ready.py: activated - pending.
    (
        "apf-ready",
        dict(activated=120, queued=30),
        90,
        ["activated=120 (managed=120)", "Q_eff=unbounded (no queue_limit)", "target 120 - queued 30 -> 90"],
    ),
    # Ready then sched/MaxPerCycle.py: the issue's own example.
    (
        "apf-ready-maxpercycle",
        dict(activated=120, queued=30, max_per_cycle=50),
        50,
        ["target 120 - queued 30 -> 90", "max_per_cycle 50 (queue): 90 -> 50"],
    ),
    # sched/MaxToRun.py: min(n, max_to_run - pending - running).
    (
        "apf-maxtorun",
        dict(activated=500, queued=20, running=70, max_pilots=100),
        10,
        ["target 500 - queued 20 -> 480", "max_pilots 100 - alive 90 = 10: 480 -> 10"],
    ),
    # MaxToRun over its limit: AutoPyFactory returns 50 - 60 = -10; here 0.
    (
        "apf-maxtorun-negative",
        dict(activated=500, queued=20, running=40, max_pilots=50),
        0,
        ["max_pilots 50 - alive 60 = 0: 480 -> 0"],
    ),
    # sched/Scale.py with factor 0.5 rounds up, as jobs_per_pilot=2 does.
    ("apf-scale", dict(activated=7, jobs_per_pilot=2), 4, ["n_act=ceil(7/1 instances/2 jobs_per_pilot)=4"]),
    # sched/StatusTest.py: a test queue gets a small fixed number...
    ("apf-statustest", dict(activated=0, status="test"), 1, ["status test: keep 1 queued, queued 0 -> 1"]),
    # ... but not again while its test pilot still waits (AutoPyFactory submits again every cycle).
    (
        "apf-statustest-pending",
        dict(activated=0, status="test", queued=1),
        0,
        ["status test: keep 1 queued, queued 1 -> 0"],
    ),
    (
        "test-status-capped",
        dict(status="test", test_pilots=5, max_per_cycle=2),
        2,
        ["status test: keep 5 queued, queued 0 -> 5", "max_per_cycle 2 (queue): 5 -> 2"],
    ),
    # sched/StatusOffline.py.
    ("apf-statusoffline", dict(activated=1000, status="offline"), 0, ["status offline -> 0"]),
    # sched/Throttle.py: short pilots over half of those ended -> 1.
    (
        "apf-throttle",
        dict(activated=40, ended=10, empty=6),
        1,
        ["target 40 - queued 0 -> 40", "empty 6/10=60% > 50% -> trickle: 40 -> 1"],
    ),
    # Throttle returns 1 even with no demand; here the trickle stays at 0.
    ("apf-throttle-no-demand", dict(activated=0, ended=10, empty=6), 0, ["empty 6/10=60% > 50% -> trickle: 0 -> 0"]),
    # Ready from three factories on one queue would submit 3 x 90; each instance takes a third.
    ("apf-three-factories", dict(activated=90, instances=3), 30, ["n_act=ceil(90/3 instances/1 jobs_per_pilot)=30"]),
    # Harvester worker_adjuster: nQueueLimitWorker=10, 100 activated, 4 queued -> 6.
    (
        "harvester-static-limit",
        dict(activated=100, queued=4, queue_limit=10),
        6,
        ["Q_eff=10 (queue_limit 10)", "target 10 - queued 4 -> 6"],
    ),
    # ... and maxWorkers=50 with 4 queued + 44 running -> min(6, 2).
    (
        "harvester-maxworkers",
        dict(activated=100, queued=4, running=44, queue_limit=10, max_pilots=50),
        2,
        ["max_pilots 50 - alive 48 = 2: 6 -> 2"],
    ),
    # ... and maxNewWorkersPerCycle=1.
    (
        "harvester-maxnewworkerspercycle",
        dict(activated=100, queued=4, queue_limit=10, max_per_cycle=1),
        1,
        ["max_per_cycle 1 (queue): 6 -> 1"],
    ),
    # Harvester db_proxy.get_worker_limits: nQueueLimitWorkerRatio=20 (%) of 200 running = 40.
    (
        "harvester-ratio",
        dict(activated=1000, queued=15, running=200, queue_ratio=0.2, min_queued=10),
        25,
        ["Q_eff=40 (ratio 0.2 x running 200 = 40)", "target 40 - queued 15 -> 25"],
    ),
    # ... 20 % of 20 running = 4 < nQueueLimitWorkerMin=10 -> 10.
    (
        "harvester-ratio-min",
        dict(activated=1000, queued=3, running=20, queue_ratio=0.2, min_queued=10),
        7,
        ["Q_eff=10 (ratio 0.2 x running 20 = 4, raised to 10 (min_queued))", "target 10 - queued 3 -> 7"],
    ),
    (
        "ratio-max",
        dict(activated=5000, running=1000, queue_ratio=0.5, max_queued=100),
        100,
        ["Q_eff=100 (ratio 0.5 x running 1000 = 500, lowered to max_queued 100)"],
    ),
    # With a ratio and nothing running Harvester's limit is 0, read as "no limit"; here 1 pilot starts it.
    (
        "ratio-cold-start",
        dict(activated=10, queue_ratio=0.5),
        1,
        ["Q_eff=1 (ratio 0.5 x running 0 = 0, raised to 1 (a ratio needs a first pilot))"],
    ),
    # 0.29 * 100 is 28.999999999999996 in floating point; the target is still 29.
    (
        "ratio-binary-fraction",
        dict(activated=1000, running=100, queue_ratio=0.29),
        29,
        ["Q_eff=29 (ratio 0.29 x running 100 = 29)"],
    ),
    # Harvester activateWorkerFactor=auto with 2 harvesters: int(30 * 0.5) = 15 - 5 queued = 10.
    (
        "harvester-two-instances",
        dict(activated=30, queued=5, queue_limit=100, instances=2),
        10,
        ["n_act=ceil(30/2 instances/1 jobs_per_pilot)=15", "target 15 - queued 5 -> 10"],
    ),
    # Odd counts round up here (Harvester: int(15.5) = 15).
    (
        "two-instances-odd",
        dict(activated=31, queued=5, queue_limit=100, instances=2),
        11,
        ["n_act=ceil(31/2 instances/1 jobs_per_pilot)=16"],
    ),
    # Harvester reads nQueueLimitWorker=0 as "no limit"; here 0 is zero.
    ("queue-limit-zero", dict(activated=100, queue_limit=0), 0, ["Q_eff=0 (queue_limit 0)"]),
    ("max-per-cycle-zero", dict(activated=100, max_per_cycle=0), 0, ["max_per_cycle 0 (queue): 100 -> 0"]),
    (
        "min-queued-over-limit",
        dict(activated=100, queue_limit=2, min_queued=5),
        5,
        ["Q_eff=5 (queue_limit 2, raised to 5 (min_queued))"],
    ),
    # Harvester submits one pilot to a queue with no jobs unless noPilotsWhenNoActiveJobs; here opt-in.
    ("no-jobs", dict(activated=0), 0, ["activated=0", "target 0 - queued 0 -> 0"]),
    (
        "keep-one-pilot",
        dict(activated=0, keep_one_pilot=True),
        1,
        ["keep_one_pilot: nothing activated, none queued or running -> 1"],
    ),
    (
        "keep-one-pilot-already-running",
        dict(activated=0, running=1, keep_one_pilot=True),
        0,
        ["target 0 - queued 0 -> 0"],
    ),
    (
        "keep-one-pilot-held-only",
        dict(activated=0, held=3, keep_one_pilot=True),
        1,
        ["target 0 - queued 0 (held 3 not counted) -> 0", "keep_one_pilot"],
    ),
    ("global-cap", dict(activated=100, global_cap=20), 20, ["global cap 20: 100 -> 20"]),
    # Held pilots are not queued, but they are alive.
    (
        "held-not-queued",
        dict(activated=100, queued=10, held=50, queue_limit=20),
        10,
        ["target 20 - queued 10 (held 50 not counted) -> 10"],
    ),
    (
        "held-count-as-alive",
        dict(activated=100, queued=10, held=50, queue_limit=20, max_pilots=65),
        5,
        ["max_pilots 65 - alive 60 = 5: 10 -> 5"],
    ),
    ("missed-trickle", dict(activated=40, attempts=10, missed=6), 1, ["missed 6/10=60% > 50% -> trickle: 40 -> 1"]),
    ("missed-too-few-to-judge", dict(activated=40, attempts=4, missed=4), 40, ["target 40 - queued 0 -> 40"]),
    ("missed-at-limit", dict(activated=40, attempts=10, missed=5), 40, ["target 40 - queued 0 -> 40"]),
    (
        "throttle-off",
        dict(activated=40, attempts=10, missed=10, missed_rate_limit=None),
        40,
        ["target 40 - queued 0 -> 40"],
    ),
    (
        "labels",
        dict(activated={"managed": 50, "ptest": 30, "user": 20}, prod_source_labels=("managed", "user")),
        70,
        ["activated=70 (managed=50 user=20) [not served: ptest=30]"],
    ),
    ("brokeroff", dict(activated=100, status="brokeroff"), 0, ["status brokeroff -> 0"]),
    ("stale", dict(activated=100, age=901.0, poll=300.0), 0, ["PanDA data 901s old > 3 polls x 300s = 900s -> 0"]),
    ("fresh-at-limit", dict(activated=100, age=900.0, poll=300.0), 100, ["target 100 - queued 0 -> 100"]),
    (
        "stale-polls-knob",
        dict(activated=100, age=90.0, poll=60.0, stale_polls=1),
        0,
        ["PanDA data 90s old > 1 polls x 60s = 60s -> 0"],
    ),
    ("no-panda-data", dict(activated=100, age=None), 0, ["no PanDA data yet -> 0"]),
    (
        "paused",
        dict(activated=100, controls=[queue_control(paused=True, reason="downtime")]),
        0,
        ["control queue:TEST_QUEUE (by alice: downtime) paused -> 0"],
    ),
    (
        "drained-by-tag",
        dict(activated=100, controls=[tag_control("cern", drain=True)]),
        0,
        ["control tag:cern (by bob) drains -> 0"],
    ),
    (
        "pause-expired",
        dict(activated=100, controls=[queue_control(paused=True, expires_at=NOW - HOUR)]),
        100,
        [
            "control queue:TEST_QUEUE (by alice) expired at 2026-11-26T07:00:00+00:00 -> ignored",
            "target 100 - queued 0 -> 100",
        ],
    ),
    (
        "pause-expires-later",
        dict(activated=100, controls=[queue_control(paused=True, expires_at=NOW + HOUR)]),
        0,
        ["control queue:TEST_QUEUE (by alice) paused -> 0"],
    ),
    (
        "fixed-number",
        dict(activated=0, controls=[queue_control(fixed_number=7)]),
        7,
        ["control queue:TEST_QUEUE (by alice) fixed_number 7 -> 7", "submit 7"],
    ),
    (
        "fixed-number-capped",
        dict(activated=0, running=95, max_pilots=100, controls=[queue_control(fixed_number=70)]),
        5,
        ["control queue:TEST_QUEUE (by alice) fixed_number 70 -> 70", "max_pilots 100 - alive 95 = 5: 70 -> 5"],
    ),
    (
        "fixed-queue-beats-tag",
        dict(controls=[tag_control("t1", fixed_number=10), queue_control(fixed_number=20)]),
        20,
        ["control queue:TEST_QUEUE (by alice) fixed_number 20 -> 20"],
    ),
    (
        "fixed-smallest-tag",
        dict(controls=[tag_control("t1", fixed_number=10), tag_control("t2", fixed_number=4)]),
        4,
        ["control tag:t2 (by bob) fixed_number 4 -> 4"],
    ),
    ("fixed-on-offline", dict(status="offline", controls=[queue_control(fixed_number=7)]), 0, ["status offline -> 0"]),
    ("fixed-on-stale", dict(age=None, controls=[queue_control(fixed_number=7)]), 0, ["no PanDA data yet -> 0"]),
    (
        "control-max-per-cycle",
        dict(activated=100, max_per_cycle=50, controls=[tag_control("cern", max_per_cycle=5)]),
        5,
        ["max_per_cycle 5 (control tag:cern (by bob)): 100 -> 5"],
    ),
    (
        "queue-max-per-cycle-smaller",
        dict(activated=100, max_per_cycle=3, controls=[tag_control("cern", max_per_cycle=5)]),
        3,
        ["max_per_cycle 3 (queue): 100 -> 3"],
    ),
]


@pytest.mark.parametrize(
    ("inputs", "expected_n", "expected_lines"), [case[1:] for case in CASES], ids=[case[0] for case in CASES]
)
def test_case(
    make_snapshot: Callable[..., Snapshot], inputs: dict[str, Any], expected_n: int, expected_lines: list[str]
) -> None:
    decision = decide(make_snapshot(now=NOW, **inputs))
    assert decision.n == expected_n, str(decision)
    assert decision.reason[-1] == f"submit {expected_n}"
    # Each expected line is a prefix of a trace line, in the order given.
    position = 0
    for expected in expected_lines:
        found = next(
            (i for i in range(position, len(decision.reason)) if decision.reason[i].startswith(expected)), None
        )
        assert found is not None, f"{expected!r} not in order in {decision.reason}"
        position = found + 1


def test_gate_trace_is_short(make_snapshot: Callable[..., Snapshot]) -> None:
    decision = decide(make_snapshot(activated=100, status="offline", max_per_cycle=1))
    assert decision == Decision(0, ("status offline -> 0", "submit 0"))


def test_decision_reads_as_one_line(make_snapshot: Callable[..., Snapshot]) -> None:
    decision = decide(make_snapshot(activated=120, queued=30, max_per_cycle=50))
    assert str(decision) == (
        "activated=120 (managed=120); n_act=ceil(120/1 instances/1 jobs_per_pilot)=120; "
        "Q_eff=unbounded (no queue_limit); target 120 - queued 30 -> 90; "
        "max_per_cycle 50 (queue): 90 -> 50; submit 50"
    )


def test_caps_that_do_not_bind_stay_out_of_the_trace(make_snapshot: Callable[..., Snapshot]) -> None:
    decision = decide(make_snapshot(activated=10, max_pilots=100, max_per_cycle=50, global_cap=20))
    assert decision.n == 10
    assert not any(line.startswith(("max_pilots", "max_per_cycle", "global cap")) for line in decision.reason)
