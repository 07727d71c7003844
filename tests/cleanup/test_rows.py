"""Row sweeps against the real PostgreSQL: per-state ages, events, cycles, settled submissions, batches."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg2.errors
import pytest

from autopilot_ops.cleanup.rows import RowRetention, delete_in_batches, sweep_rows
from autopilot_ops.store.connection import Store

NOW = dt.datetime.now(dt.timezone.utc)


def ago(hours: float) -> dt.datetime:
    return NOW - dt.timedelta(hours=hours)


def add_pilot(cur: Any, state: str, hours_ago: float) -> int:
    cur.execute(
        "INSERT INTO pilots (queue, backend, batch_id, state, submitted_at, state_changed_at) "
        "VALUES ('Q', 'local', gen_random_uuid()::text, %s, %s, %s) RETURNING id",
        (state, ago(hours_ago + 1), ago(hours_ago)),
    )
    return cur.fetchone()["id"]


def ids(store: Store, table: str) -> set[Any]:
    with store.transaction() as cur:
        cur.execute(f"SELECT id FROM {table}")
        return {row["id"] for row in cur.fetchall()}


def test_pilots_go_by_their_final_state_and_live_ones_stay(store: Store) -> None:
    with store.transaction() as cur:
        gone = [add_pilot(cur, "finished", 25), add_pilot(cur, "failed", 73)]
        gone += [add_pilot(cur, "cancelled", 73), add_pilot(cur, "missed", 100)]
        kept = [add_pilot(cur, "finished", 23), add_pilot(cur, "failed", 71)]
        kept += [add_pilot(cur, "cancelled", 50), add_pilot(cur, "missed", 30)]
        kept += [add_pilot(cur, state, 1000) for state in ("submitted", "queued", "running", "held")]

    report = sweep_rows(store, now=NOW)

    assert ids(store, "pilots") == set(kept)
    assert report.pilots_by_state == {"finished": 1, "failed": 1, "cancelled": 1, "missed": 1}
    assert report.to_dict()["pilots"] == len(gone)


def test_ages_are_configurable_per_state(store: Store) -> None:
    with store.transaction() as cur:
        finished = add_pilot(cur, "finished", 2)
        failed = add_pilot(cur, "failed", 2)
        cancelled = add_pilot(cur, "cancelled", 2)
        missed = add_pilot(cur, "missed", 2)

    retention = RowRetention(finished_hours=1, failed_hours=3, cancelled_hours=1.5, missed_hours=None)
    report = sweep_rows(store, retention, now=NOW)

    assert ids(store, "pilots") == {failed, missed}, "missed follows failed_hours when not set"
    assert finished not in ids(store, "pilots") and cancelled not in ids(store, "pilots")
    assert report.pilots_by_state == {"finished": 1, "failed": 0, "cancelled": 1, "missed": 0}


def test_events_keep_the_longest_pilot_window_or_their_own_age(store: Store) -> None:
    with store.transaction() as cur:
        for hours in (73, 71, 2, 0.5):
            cur.execute("INSERT INTO pilot_events (at, who, what) VALUES (%s, 'test', %s)", (ago(hours), str(hours)))

    def whats() -> set[str]:
        with store.transaction() as cur:
            cur.execute("SELECT what FROM pilot_events")
            return {row["what"] for row in cur.fetchall()}

    assert sweep_rows(store, now=NOW).pilot_events == 1
    assert whats() == {"71", "2", "0.5"}, "by default events live as long as the longest pilot window (72 h)"
    assert sweep_rows(store, RowRetention(failed_hours=100), now=NOW).pilot_events == 0
    assert sweep_rows(store, RowRetention(events_hours=1), now=NOW).pilot_events == 2
    assert whats() == {"0.5"}


def test_old_cycles_and_settled_submissions_go_pending_ones_stay(store: Store) -> None:
    with store.transaction() as cur:
        for cycle_id, days in (("old", 8), ("recent", 6)):
            cur.execute(
                "INSERT INTO cycles (cycle_id, queue, started_at) VALUES (%s, 'Q', %s)", (cycle_id, ago(days * 24))
            )
        for cycle_id, state, created, completed in (
            ("done-old", "done", 9, 8),
            ("failed-old", "failed", 8, 8),
            ("reconciled-no-end", "reconciled", 8, None),
            ("done-recent", "done", 8, 6),
            ("pending-old", "pending", 30, None),
        ):
            cur.execute(
                "INSERT INTO submissions (queue, cycle_id, backend, requested, state, created_at, completed_at) "
                "VALUES ('Q', %s, 'local', 1, %s, %s, %s)",
                (cycle_id, state, ago(created * 24), None if completed is None else ago(completed * 24)),
            )

    report = sweep_rows(store, now=NOW)

    with store.transaction() as cur:
        cur.execute("SELECT cycle_id FROM cycles")
        assert {row["cycle_id"] for row in cur.fetchall()} == {"recent"}
        cur.execute("SELECT cycle_id FROM submissions")
        assert {row["cycle_id"] for row in cur.fetchall()} == {"done-recent", "pending-old"}
    assert (report.cycles, report.submissions) == (1, 3)
    assert sweep_rows(store, RowRetention(cycles_days=0, submissions_days=0), now=NOW).to_dict() == {
        "pilots": 0,
        "pilots_by_state": {"finished": 0, "failed": 0, "cancelled": 0, "missed": 0},
        "pilot_events": 0,
        "cycles": 1,
        "submissions": 1,
    }


@pytest.mark.parametrize("rows", [2500, 3000])
def test_batches_delete_every_old_row_and_nothing_else(store: Store, rows: int) -> None:
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO pilot_events (at, who, what) SELECT %s, 'test', 'old' FROM generate_series(1, %s)",
            (ago(100), rows),
        )
        cur.execute("INSERT INTO pilot_events (at, who, what) VALUES (%s, 'test', 'young')", (ago(1),))
        cur.execute(
            "INSERT INTO pilots (queue, backend, batch_id, state, state_changed_at) "
            "SELECT 'Q', 'local', 'b' || i, 'finished', %s FROM generate_series(1, %s) AS i",
            (ago(30), rows),
        )

    report = sweep_rows(store, RowRetention(batch_size=1000), now=NOW)

    assert report.pilot_events == rows
    assert report.pilots_by_state["finished"] == rows
    with store.transaction() as cur:
        cur.execute("SELECT what FROM pilot_events")
        assert [row["what"] for row in cur.fetchall()] == ["young"]
        cur.execute("SELECT count(*) AS n FROM pilots")
        assert cur.fetchone()["n"] == 0


def test_each_batch_is_its_own_transaction(store: Store) -> None:
    """A failing batch rolls back alone: the batches before it stay deleted."""
    with store.transaction() as cur:
        cur.execute("INSERT INTO pilot_events (who, what) SELECT 'test', 'x' FROM generate_series(1, 25)")
        cur.execute(
            "CREATE FUNCTION refuse_third() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF (SELECT count(*) FROM pilot_events) <= 15 THEN RAISE EXCEPTION 'refused'; END IF; "
            "RETURN OLD; END $$"
        )
        cur.execute("CREATE TRIGGER refuse BEFORE DELETE ON pilot_events FOR EACH ROW EXECUTE FUNCTION refuse_third()")

    sql = "DELETE FROM pilot_events WHERE id IN (SELECT id FROM pilot_events WHERE at < %s LIMIT %s)"
    with pytest.raises(psycopg2.errors.RaiseException, match="refused"):
        delete_in_batches(store, sql, (ago(-1),), 5)

    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pilot_events")
        assert cur.fetchone()["n"] == 15, "two batches of 5 committed, the third rolled back"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"finished_hours": -1}, "finished_hours"),
        ({"cycles_days": -2}, "cycles_days"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_retention_errors_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RowRetention(**kwargs)
