"""PanDA's numbers of new workers (SET_N_WORKERS_JOBTYPE) in the policy: the target, or a cap, as the queue says,
with one line of the reason trace; gates, operators' fixed numbers and caps still rule."""

from __future__ import annotations

import datetime as dt

import pytest

from autopilot_ops.policy import Control, PandaTarget, QueueConfig, decide

from .conftest import NOW, build_snapshot

LATER = NOW + dt.timedelta(minutes=15)


def target(n: int, job_type: str = "managed", resource_type: str = "SCORE", expires: dt.datetime = LATER,
           command_id: int = 123) -> PandaTarget:
    return PandaTarget(command_id, job_type, resource_type, n, expires)


def test_the_target_replaces_the_core_number_and_says_so() -> None:
    decision = decide(build_snapshot(100, queue_limit=50, panda_targets=[target(12)]))
    assert decision.n == 12
    assert "PanDA command 123 SET_N_WORKERS_JOBTYPE managed/SCORE=12 -> target 12" in decision.reason


def test_a_cap_only_lowers_the_number() -> None:
    high = decide(build_snapshot(100, queue_limit=50, panda_workers="cap", panda_targets=[target(12)]))
    assert high.n == 12 and any("-> cap 12: 50 -> 12" in line for line in high.reason)
    low = decide(build_snapshot(3, queue_limit=50, panda_workers="cap", panda_targets=[target(12)]))
    assert low.n == 3


def test_ignore_expired_and_other_labels_leave_the_core_number() -> None:
    assert decide(build_snapshot(100, queue_limit=50, panda_workers="ignore", panda_targets=[target(12)])).n == 50
    expired = decide(build_snapshot(100, queue_limit=50, panda_targets=[target(12, expires=NOW)]))
    assert expired.n == 50 and any("expired at" in line for line in expired.reason)
    assert decide(build_snapshot(100, queue_limit=50, panda_targets=[target(12, job_type="user")])).n == 50


def test_targets_of_served_labels_add_up_across_resource_types() -> None:
    targets = [target(5, resource_type="SCORE"), target(7, resource_type="MCORE"), target(9, job_type="user")]
    assert decide(build_snapshot(100, queue_limit=50, panda_targets=targets)).n == 12


def test_gates_fixed_numbers_and_caps_beat_panda() -> None:
    paused = Control("queue", "TEST_QUEUE", "user:ops", paused=True)
    assert decide(build_snapshot(100, controls=[paused], panda_targets=[target(12)])).n == 0
    fixed = Control("queue", "TEST_QUEUE", "user:ops", fixed_number=2)
    assert decide(build_snapshot(100, controls=[fixed], panda_targets=[target(12)])).n == 2
    assert decide(build_snapshot(100, max_per_cycle=5, panda_targets=[target(12)])).n == 5
    assert decide(build_snapshot(100, status="offline", panda_targets=[target(12)])).n == 0


def test_a_bad_mode_and_a_target_without_now_are_refused() -> None:
    with pytest.raises(ValueError, match="panda_workers must be one of"):
        QueueConfig("Q", panda_workers="obey")
    with pytest.raises(ValueError, match="now is needed"):
        build_snapshot(1, panda_targets=[target(1)], now=None)  # type: ignore[arg-type]
