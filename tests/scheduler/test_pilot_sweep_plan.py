"""The sweep's decide step is pure: from what was observed, the pilots' next states and the cancels, with why."""

from __future__ import annotations

import datetime as dt

from autopilot_ops.backends.base import PilotState, PilotStatus
from autopilot_ops.scheduler.pilot_sweep import VANISH_GRACE_S, PilotsObserved, plan_sweep

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)


def pilot(pilot_id: int, state: str = "queued", age_s: float = 600) -> dict:
    submitted = NOW - dt.timedelta(seconds=age_s)
    return {
        "id": pilot_id, "queue": "Q", "batch_id": f"b{pilot_id}", "state": state, "submitted_at": submitted,
        "state_changed_at": submitted, "last_seen": submitted, "queued_timeout": 3600, "held_timeout": 3600,
        "unknown_timeout": 3600,
    }


def test_states_kills_and_vanished_pilots_are_decided_without_io() -> None:
    live = [pilot(1), pilot(2), pilot(3), pilot(4, age_s=VANISH_GRACE_S / 2), pilot(5, state="running")]
    statuses = {
        "b1": PilotStatus(PilotState.RUNNING),
        "b2": PilotStatus(PilotState.QUEUED),
        "b5": PilotStatus(PilotState.FINISHED, exit_code=0),
    }
    kills = {2: {"who": "user:ops", "reason": "drain"}, 5: {"who": "user:ops", "reason": None}}
    plan = plan_sweep(PilotsObserved(live, kills, statuses), NOW)
    assert plan.seen == [1, 2, 5]
    assert [(t.pilot_id, t.old, t.new, t.reason) for t in plan.changes] == [
        (1, "queued", "running", None),
        (3, "queued", "failed", "batch job vanished from the back end"),
        (5, "running", "finished", None),  # already ended: the kill request has nothing left to cancel
    ]
    assert plan.changes[2].exit_code == 0
    cancels = [(t.pilot_id, t.new, t.reason) for t in plan.cancels]
    assert cancels == [(2, "cancelled", "kill requested by user:ops: drain")]


def test_a_silent_back_end_changes_nothing_until_the_unknown_timeout() -> None:
    live = [pilot(1, age_s=600), pilot(2, age_s=4000)]
    plan = plan_sweep(PilotsObserved(live, {}, None, "BackendError: down"), NOW)
    assert plan.seen == [] and plan.changes == []
    assert [(t.pilot_id, t.new) for t in plan.cancels] == [(2, "cancelled")]
    assert plan.cancels[0].reason == "status unknown for 4000s > 3600s"
