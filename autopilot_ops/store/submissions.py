"""The ``submissions`` table: one key per (queue, cycle), written before the back end is called."""

from __future__ import annotations

import datetime as dt
from typing import Any

PENDING, DONE, FAILED, RECONCILED = "pending", "done", "failed", "reconciled"


def begin_submission(
    cur: Any,
    queue: str,
    cycle_id: str,
    backend: str,
    requested: int,
    first_pilot_id: int | None = None,
    prod_source_label: str | None = None,
    pilot_version: str | None = None,
    scheduler: str | None = None,
) -> str | None:
    """Record the key, with the first of the pilot ids reserved for it and what its pilots are (their
    prodSourceLabel, bundle version and scheduler, for pilots found after a crash); return ``None`` if it is new,
    else the state of the earlier submission with this key."""
    cur.execute(
        "INSERT INTO submissions (queue, cycle_id, backend, requested, first_pilot_id, prod_source_label, "
        "pilot_version, scheduler) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (queue, cycle_id) DO NOTHING RETURNING state",
        (queue, cycle_id, backend, requested, first_pilot_id, prod_source_label, pilot_version, scheduler),
    )
    if cur.fetchone() is not None:
        return None
    cur.execute("SELECT state FROM submissions WHERE queue = %s AND cycle_id = %s", (queue, cycle_id))
    return cur.fetchone()["state"]


def finish_submission(cur: Any, queue: str, cycle_id: str, state: str, detail: str | None = None) -> None:
    cur.execute(
        "UPDATE submissions SET state = %s, detail = %s, completed_at = now() WHERE queue = %s AND cycle_id = %s",
        (state, detail, queue, cycle_id),
    )


def pending_submissions(cur: Any, queue: str) -> list[dict[str, Any]]:
    """Submissions of ``queue`` whose outcome was never recorded (the scheduler died during them)."""
    cur.execute(
        "SELECT queue, cycle_id, backend, requested, first_pilot_id, prod_source_label, pilot_version, scheduler, "
        "created_at FROM submissions "
        "WHERE queue = %s AND state = %s ORDER BY created_at",
        (queue, PENDING),
    )
    return [dict(row) for row in cur.fetchall()]


def submission_outcomes(cur: Any, queues: list[str], since: dt.datetime) -> dict[str, tuple[int, int]]:
    """Per queue, pilots asked for since ``since`` and how many of them were missed (never submitted)."""
    cur.execute(
        "SELECT queue, sum(requested) AS attempts, "
        "coalesce(sum(requested) FILTER (WHERE state = 'failed'), 0) AS missed "
        "FROM submissions WHERE queue = ANY(%s) AND created_at >= %s GROUP BY queue",
        (queues, since),
    )
    return {row["queue"]: (int(row["attempts"]), int(row["missed"])) for row in cur.fetchall()}


def queues_with_pending(cur: Any, queues: list[str]) -> list[str]:
    """Those of ``queues`` with a submission left pending, for the observe step to reconcile first."""
    cur.execute(
        "SELECT DISTINCT queue FROM submissions WHERE queue = ANY(%s) AND state = %s ORDER BY queue",
        (queues, PENDING),
    )
    return [row["queue"] for row in cur.fetchall()]


def settle_pending(cur: Any, queue: str, cycle_id: str, detail: str) -> bool:
    """Mark the key ``failed`` if it is still pending (an error stopped its cycle); whether it was."""
    cur.execute(
        "UPDATE submissions SET state = %s, detail = %s, completed_at = now() "
        "WHERE queue = %s AND cycle_id = %s AND state = %s RETURNING queue",
        (FAILED, detail, queue, cycle_id, PENDING),
    )
    return cur.fetchone() is not None
