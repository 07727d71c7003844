"""Pilot lifecycle against the real local back end and PostgreSQL: idempotent submission, crash
reconciliation, state tracking, timeouts and per-queue locking."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import replace

import psycopg2
import pytest

from autopilot_ops.backends.base import BackendError, PilotSpec, PilotState, PilotStatus
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.scheduler.locks import QUEUE_LOCK_KEY, SWEEP_LOCK_KEY, LockLost, locks_of
from autopilot_ops.scheduler.pilot_sweep import next_state, sweep_backend, utcnow
from autopilot_ops.scheduler.submission import PilotSubmitter
from autopilot_ops.store.connection import Store
from autopilot_ops.store.controls import pending_kill_requests, request_kill
from autopilot_ops.store.pilots import Transition, apply_transitions, queue_activity
from autopilot_ops.store.submissions import begin_submission

from .conftest import wait_for


def pilots(store: Store) -> list[dict]:
    with store.transaction() as cur:
        cur.execute("SELECT * FROM pilots ORDER BY id")
        return [dict(r) for r in cur.fetchall()]


def events(store: Store, what: str) -> list[dict]:
    with store.transaction() as cur:
        cur.execute("SELECT * FROM pilot_events WHERE what = %s ORDER BY id", (what,))
        return [dict(r) for r in cur.fetchall()]


def test_submit_records_pilots_and_a_rerun_does_not_submit_twice(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    life = PilotSubmitter(store, local_backend, "test")
    first = life.submit(3, make_spec())
    assert (first.submitted, first.missed, first.skipped) == (3, 0, None)
    again = life.submit(3, make_spec())
    assert again.submitted == 0 and "already submitted (done)" in again.skipped
    rows = pilots(store)
    assert len(rows) == 3 and {r["state"] for r in rows} == {"submitted"}
    assert all(r["stdout_path"].endswith(".out") for r in rows)
    assert len(events(store, "submitted")) == 1


def test_states_follow_the_back_end_to_final_with_exit_codes(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    life = PilotSubmitter(store, local_backend, "test")
    life.submit(1, make_spec(cycle_id="ok"))
    life.submit(1, make_spec(cycle_id="bad", command=("sh", "-c", "exit 82")))

    def all_final() -> bool:
        sweep_backend(life.store, life.backend, life.who)
        return all(r["state"] in ("finished", "failed") for r in pilots(store))

    wait_for(all_final)
    by_cycle = {r["cycle_id"]: r for r in pilots(store)}
    assert by_cycle["ok"]["state"] == "finished" and by_cycle["ok"]["exit_code"] == 0
    assert by_cycle["bad"]["exit_code"] == 82
    assert all(r["ended_at"] is not None for r in by_cycle.values())
    transitions = events(store, "pilot-state")
    assert {e["details"]["to"] for e in transitions} >= {"finished"}


def test_a_failing_back_end_counts_as_missed(store: Store, make_spec: Callable[..., PilotSpec], tmp_path) -> None:
    broken = LocalBackend("local", {"state_dir": str(tmp_path / "state"), "workdir": str(tmp_path / "missing")})
    outcome = PilotSubmitter(store, broken, "test").submit(2, make_spec())
    assert (outcome.submitted, outcome.missed) == (0, 2)
    with store.transaction() as cur:
        cur.execute("SELECT state, detail FROM submissions")
        row = cur.fetchone()
    assert row["state"] == "failed" and "starting pilots" in row["detail"]
    assert pilots(store) == []
    assert events(store, "submit-failed")[0]["details"]["requested"] == 2


def test_crash_between_key_and_record_is_reconciled(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    spec = make_spec(cycle_id="crashed", command=("sleep", "30"))
    with store.transaction() as cur:
        assert begin_submission(cur, spec.queue, spec.cycle_id, "local", 2) is None
    local_backend.submit(2, spec)  # the scheduler died right after this call
    life = PilotSubmitter(store, local_backend, "test")
    outcome = life.submit(1, make_spec(cycle_id="next", command=("sleep", "30")))
    assert outcome.reconciled == 2 and outcome.submitted == 1
    assert sorted(r["cycle_id"] for r in pilots(store)) == ["crashed", "crashed", "next"]
    with store.transaction() as cur:
        cur.execute("SELECT cycle_id, state FROM submissions ORDER BY cycle_id")
        assert [(r["cycle_id"], r["state"]) for r in cur.fetchall()] == [("crashed", "reconciled"), ("next", "done")]
    local_backend.cancel([r["batch_id"] for r in pilots(store)])


def test_pilots_found_after_a_crash_are_recorded_with_their_label_bundle_and_scheduler(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    """The scheduler dies once the back end has the pilots, before it records them: the pilots found after the
    crash get the prodSourceLabel, bundle version and scheduler their submission was made with, so that they
    count for that scheduler (and ask PanDA for that label) like any other."""

    class DiesAfterSubmitting(LocalBackend):
        def submit(self, n, spec):
            super().submit(n, spec)
            raise SystemExit("killed")  # not an Exception: nothing settles the key

    spec = replace(make_spec(cycle_id="crashed", command=("sleep", "30")), scheduler="t1@dep-a", pilot_version="3.1.0")
    with pytest.raises(SystemExit):
        PilotSubmitter(store, DiesAfterSubmitting("local", local_backend.parameters), "test").submit(2, spec, "ptest")
    assert pilots(store) == []
    assert PilotSubmitter(store, local_backend, "test").reconcile("Q1") == 2
    recovered = pilots(store)
    assert [(r["prod_source_label"], r["pilot_version"], r["scheduler"]) for r in recovered] == [
        ("ptest", "3.1.0", "t1@dep-a")] * 2
    local_backend.cancel([r["batch_id"] for r in recovered])


def test_vanished_pilot_is_failed_and_a_running_one_is_kept(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    life = PilotSubmitter(store, local_backend, "test")
    life.submit(1, make_spec(cycle_id="slow", command=("sleep", "60")))
    with store.transaction() as cur:
        cur.execute("INSERT INTO schedconfig (panda_queue, site, queued_timeout) VALUES ('Q1', 'S', 10)")
        cur.execute(
            "INSERT INTO pilots (queue, backend, batch_id, submitted_at) "
            "VALUES ('Q1', 'local', 'no-such-pilot', now() - interval '10 minutes')"
        )
    # The local back end reports a started pilot as running; pretend it is still queued, 1 min later.
    [real] = [r for r in pilots(store) if r["batch_id"] != "no-such-pilot"]
    with store.transaction() as cur:
        cur.execute("UPDATE pilots SET state = 'queued' WHERE id = %s", (real["id"],))
    report = sweep_backend(life.store, life.backend, life.who, utcnow() + dt.timedelta(minutes=1))
    states = {r["batch_id"]: (r["state"], r["state_reason"]) for r in pilots(store)}
    assert states["no-such-pilot"] == ("failed", "batch job vanished from the back end")
    # Running, not queued: the queued timeout does not apply to it.
    assert states[real["batch_id"]][0] == "running"
    assert report.cancelled == []
    local_backend.cancel([real["batch_id"]])


class Unreachable(LocalBackend):
    """A local back end whose daemon is down: status and cancel fail, as Slurm's do when slurmctld is."""

    def status(self, batch_ids):
        raise BackendError("back end unreachable")

    def cancel(self, batch_ids):
        raise BackendError("back end unreachable")


def test_a_failed_cancel_is_not_recorded_and_is_retried_next_sweep(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    with store.transaction() as cur:
        cur.execute("INSERT INTO schedconfig (panda_queue, site, unknown_timeout) VALUES ('Q1', 'S', 60)")
    PilotSubmitter(store, local_backend, "test").submit(1, make_spec(command=("sleep", "60")))
    [pilot] = pilots(store)
    later = utcnow() + dt.timedelta(minutes=2)  # status unknown for longer than the queue's 60 s
    down = Unreachable("local", local_backend.parameters)
    report = sweep_backend(store, down, "test", later)
    assert report.backend_error == "cancel failed: BackendError: back end unreachable"
    assert report.cancelled == [] and report.transitions == []
    [row] = pilots(store)
    assert row["state"] == "submitted", "still live at the back end: kept, and counted in max_pilots"
    assert events(store, "cancel-failed")[0]["details"]["pilots"] == [pilot["id"]]
    with store.transaction() as cur:
        assert queue_activity(cur, ["Q1"], utcnow())["Q1"].queued == 1
    # The back end answers again: the pilot is still tracked, and found running.
    report = sweep_backend(store, local_backend, "test", later + dt.timedelta(minutes=1))
    assert report.backend_error is None and pilots(store)[0]["state"] == "running"
    local_backend.cancel([pilot["batch_id"]])


def test_a_failed_kill_request_stays_pending(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    PilotSubmitter(store, local_backend, "test").submit(1, make_spec(command=("sleep", "60")))
    [pilot] = pilots(store)
    with store.transaction() as cur:
        request_kill(cur, "Q1", "alice", reason="test")

    class CancelFails(LocalBackend):
        def cancel(self, batch_ids):
            raise BackendError("scancel: slurmctld down")

    sweep_backend(store, CancelFails("local", local_backend.parameters), "test")
    assert pilots(store)[0]["state"] != "cancelled"
    with store.transaction() as cur:
        assert [k["pilot_id"] for k in pending_kill_requests(cur)] == [pilot["id"]]
    sweep_backend(store, local_backend, "test")
    assert pilots(store)[0]["state"] == "cancelled"
    with store.transaction() as cur:
        assert pending_kill_requests(cur) == []


def test_a_stale_transition_cannot_undo_a_final_state(store: Store) -> None:
    with store.transaction() as cur:
        cur.execute("INSERT INTO pilots (queue, backend, batch_id, state) VALUES ('Q1', 'local', 'b1', 'running') "
                    "RETURNING id")
        pilot_id = cur.fetchone()["id"]
        # Another sweep finished it after this one read it as running.
        cur.execute("UPDATE pilots SET state = 'finished' WHERE id = %s", (pilot_id,))
        stale = Transition(pilot_id, "Q1", "running", "held", "stale sweep")
        assert apply_transitions(cur, [stale], "test", utcnow()) == []
        back = Transition(pilot_id, "Q1", "finished", "running")
        assert apply_transitions(cur, [back], "test", utcnow()) == []
    assert pilots(store)[0]["state"] == "finished"
    assert events(store, "pilot-state") == []


def test_sweeps_of_one_back_end_exclude_each_other(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec], pg_dsn: str
) -> None:
    PilotSubmitter(store, local_backend, "test").submit(1, make_spec(command=("sleep", "60")))
    other = psycopg2.connect(pg_dsn)
    other.autocommit = True
    try:
        with other.cursor() as cur:
            cur.execute(f"SELECT pg_advisory_lock({SWEEP_LOCK_KEY})", ("local",))
        report = sweep_backend(store, local_backend, "test")
        assert report.skipped == "another sweep of back end local is running" and report.seen == 0
        with other.cursor() as cur:
            cur.execute(f"SELECT pg_advisory_unlock({SWEEP_LOCK_KEY})", ("local",))
    finally:
        other.close()
    assert sweep_backend(store, local_backend, "test").seen == 1
    local_backend.cancel([r["batch_id"] for r in pilots(store)])


def test_a_configuration_error_of_the_back_end_settles_the_key(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    outcome = PilotSubmitter(store, local_backend, "test").submit(2, make_spec(command=()))
    assert (outcome.submitted, outcome.missed) == (0, 2)
    assert outcome.skipped.startswith("submit failed: ValueError: pilot spec for queue 'Q1': field 'command'")
    with store.transaction() as cur:
        cur.execute("SELECT state, detail FROM submissions")
        row = cur.fetchone()
    assert row["state"] == "failed" and row["detail"].startswith("ValueError: ")


def test_a_key_the_back_end_cannot_tell_about_stays_pending(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    class CannotList(LocalBackend):
        def find_pilots(self, queue, cycle_id):
            return None

    with store.transaction() as cur:
        begin_submission(cur, "Q1", "crashed", "local", 2)
    life = PilotSubmitter(store, CannotList("local", local_backend.parameters), "test")
    assert life.reconcile("Q1") == 0
    with store.transaction() as cur:
        cur.execute("SELECT state FROM submissions")
        assert cur.fetchone()["state"] == "pending"


def test_a_lost_queue_lock_stops_the_submission(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec], pg_dsn: str
) -> None:
    locks = locks_of(store)
    assert locks.try_lock(QUEUE_LOCK_KEY, ["Q1"]) == {"Q1"}
    admin = psycopg2.connect(pg_dsn)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:  # the lock's connection dies (a server restart, a DBA's terminate)
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid = hashtext('autopilot.queue')::oid AND objid = hashtext(current_schema() || ':Q1')::oid"
            )
            assert cur.rowcount == 1
    finally:
        admin.close()
    with pytest.raises(LockLost):
        PilotSubmitter(store, local_backend, "test").submit(2, make_spec())
    assert pilots(store) == [] and local_backend.find_pilots("Q1", "c1") == []
    # Nothing is held any more: the next submission takes a new lock on a new connection.
    assert PilotSubmitter(store, local_backend, "test").submit(1, make_spec(cycle_id="c2")).submitted == 1


def test_two_schedulers_never_submit_for_one_queue_at_once(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec], pg_dsn: str
) -> None:
    other = psycopg2.connect(pg_dsn)
    other.autocommit = True
    with other.cursor() as cur:
        cur.execute(f"SELECT pg_advisory_lock({QUEUE_LOCK_KEY})", ("Q1",))
    try:
        outcome = PilotSubmitter(store, local_backend, "test").submit(2, make_spec())
        assert outcome.submitted == 0 and outcome.skipped == "another scheduler is submitting for this queue"
        assert PilotSubmitter(store, local_backend, "test").submit(1, make_spec(queue="Q2")).submitted == 1
        with other.cursor() as cur:
            cur.execute(f"SELECT pg_advisory_unlock({QUEUE_LOCK_KEY})", ("Q1",))
    finally:
        other.close()
    assert PilotSubmitter(store, local_backend, "test").submit(2, make_spec()).submitted == 2


NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


def pilot_row(state: str, submitted_ago_s: float, changed_ago_s: float = 0, seen_ago_s: float | None = None) -> dict:
    return {
        "state": state,
        "submitted_at": NOW - dt.timedelta(seconds=submitted_ago_s),
        "state_changed_at": NOW - dt.timedelta(seconds=changed_ago_s),
        "last_seen": None if seen_ago_s is None else NOW - dt.timedelta(seconds=seen_ago_s),
        "queued_timeout": 172800,
        "held_timeout": 3600,
        "unknown_timeout": 3600,
    }


@pytest.mark.parametrize(
    ("row", "status", "answered", "expected"),
    [
        (pilot_row("queued", 172801), PilotStatus(PilotState.QUEUED), True, ("cancelled", "queued for 172801s")),
        (pilot_row("queued", 100), PilotStatus(PilotState.QUEUED), True, None),
        (pilot_row("submitted", 100), PilotStatus(PilotState.QUEUED), True, ("queued", None)),
        (pilot_row("held", 10, 3601), PilotStatus(PilotState.HELD, reason="x"), True, ("cancelled", "held for 3601s")),
        (pilot_row("running", 10), PilotStatus(PilotState.HELD, reason="memory"), True, ("held", "memory")),
        (pilot_row("running", 10), None, True, None),
        (pilot_row("running", 61), None, True, ("failed", "batch job vanished")),
        (pilot_row("running", 9999, seen_ago_s=3601), None, False, ("cancelled", "status unknown for 3601s")),
        (pilot_row("running", 9999, seen_ago_s=60), None, False, None),
        (pilot_row("running", 9999), PilotStatus(PilotState.FINISHED, exit_code=0), True, ("finished", None)),
    ],
)
def test_next_state_rules(row: dict, status: PilotStatus | None, answered: bool, expected) -> None:
    result = next_state(row, status, answered, NOW)
    if expected is None:
        assert result is None
    else:
        state, reason = result
        assert state.value == expected[0]
        assert (reason is None) if expected[1] is None else reason.startswith(expected[1])


def test_kill_request_from_the_control_api_cancels_the_pilots(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    life = PilotSubmitter(store, local_backend, "test")
    life.submit(2, make_spec(command=("sleep", "60")))
    with store.transaction() as cur:
        requested = request_kill(cur, "Q1", "operator", reason="bad node")
    assert len(requested) == 2
    report = sweep_backend(life.store, life.backend, life.who)
    assert sorted(report.cancelled) == sorted(requested)
    rows = pilots(store)
    assert {r["state"] for r in rows} == {"cancelled"}
    assert all(r["state_reason"] == "kill requested by operator: bad node" for r in rows)
    assert len(events(store, "kill-done")) == 2
    with store.transaction() as cur:
        assert pending_kill_requests(cur, "local") == []
    batch_ids = [r["batch_id"] for r in rows]
    wait_for(lambda: all(s.state.is_final for s in local_backend.status(batch_ids).values()))
