"""The ``pilots`` table: pilots we submitted, their states, and the counts the policy reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2.extras

from autopilot_ops.backends.base import SubmittedPilot

LIVE_STATES = ("submitted", "queued", "running", "held")
FINAL_STATES = ("finished", "failed", "cancelled", "missed")
_FINAL_SQL = "(" + ", ".join(f"'{state}'" for state in FINAL_STATES) + ")"
#: pilot3's exit code for "no jobs from PanDA": such a pilot ended empty (pilot/util/auxiliary.py, NOJOBS).
NO_JOBS_EXIT_CODE = 82


#: Serialises reservations of pilot ids, so that each one's ids are consecutive.
_RESERVE_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('autopilot.pilot_ids'))"


def reserve_pilot_ids(cur: Any, n: int) -> int:
    """Reserve ``n`` consecutive pilot ids; return the first. Pilot ``i`` of a submission gets ``first + i``,
    its PanDA worker id, known to it before the back end tells its batch id."""
    if n < 1:
        raise ValueError(f"cannot reserve {n} pilot ids")
    cur.execute(_RESERVE_LOCK_SQL)
    cur.execute("SELECT nextval(pg_get_serial_sequence('pilots', 'id')) AS first")
    first = int(cur.fetchone()["first"])
    if n > 1:
        cur.execute("SELECT setval(pg_get_serial_sequence('pilots', 'id'), %s)", (first + n - 1,))
    return first


def insert_pilots(
    cur: Any,
    queue: str,
    backend: str,
    cycle_id: str,
    pilots: Sequence[SubmittedPilot],
    first_pilot_id: int | None = None,
    prod_source_label: str | None = None,
    pilot_version: str | None = None,
    scheduler: str | None = None,
) -> dict[str, int]:
    """Record newly submitted pilots (ignoring ones already recorded); return their ids by batch id. With
    ``first_pilot_id`` (the submission's reservation), pilot ``p`` gets id ``first_pilot_id + p.index``;
    ``prod_source_label`` is what they ask PanDA for, ``pilot_version`` the bundle they run and ``scheduler`` the
    one that submitted them (``None``: not known, as for pilots a submission of an older schema left behind)."""
    if not pilots:
        return {}
    if first_pilot_id is None:
        cur.execute(_RESERVE_LOCK_SQL)  # its ids come from the sequence too: none may fall in a reservation
        rows = psycopg2.extras.execute_values(
            cur,
            "INSERT INTO pilots (queue, backend, batch_id, cycle_id, stdout_path, stderr_path, prod_source_label, "
            "pilot_version, scheduler) VALUES %s ON CONFLICT DO NOTHING RETURNING id, batch_id",
            [(queue, backend, p.batch_id, cycle_id, str(p.stdout), str(p.stderr), prod_source_label, pilot_version,
              scheduler) for p in pilots],
            fetch=True,
        )
    else:
        rows = psycopg2.extras.execute_values(
            cur,
            "INSERT INTO pilots (id, queue, backend, batch_id, cycle_id, stdout_path, stderr_path, prod_source_label, "
            "pilot_version, scheduler) VALUES %s ON CONFLICT DO NOTHING RETURNING id, batch_id",
            [(first_pilot_id + p.index, queue, backend, p.batch_id, cycle_id, str(p.stdout), str(p.stderr),
              prod_source_label, pilot_version, scheduler) for p in pilots],
            fetch=True,
        )
    return {row["batch_id"]: row["id"] for row in rows}


def live_pilots(cur: Any, backend: str) -> list[dict[str, Any]]:
    """Pilots of ``backend`` not yet in a final state, with their queue's lifecycle timeouts."""
    cur.execute(
        "SELECT p.id, p.queue, p.batch_id, p.state, p.submitted_at, p.state_changed_at, p.last_seen, p.stdout_path, "
        "coalesce(s.queued_timeout, 172800) AS queued_timeout, coalesce(s.held_timeout, 3600) AS held_timeout, "
        "coalesce(s.unknown_timeout, 3600) AS unknown_timeout "
        "FROM pilots p LEFT JOIN schedconfig s ON s.panda_queue = p.queue "
        "WHERE p.backend = %s AND p.state IN %s ORDER BY p.id",
        (backend, LIVE_STATES),
    )
    return [dict(row) for row in cur.fetchall()]


@dataclass(frozen=True)
class Transition:
    """A pilot's move to a new state, with what the back end said."""

    pilot_id: int
    queue: str
    old: str
    new: str
    reason: str | None = None
    exit_code: int | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None


def apply_transitions(cur: Any, transitions: Sequence[Transition], who: str, now: dt.datetime) -> list[Transition]:
    """Write new states and their ``pilot_events`` rows in bulk, each only if the pilot is still in the state
    the transition starts from (compare-and-set): a stale sweep cannot move a pilot that another sweep moved
    meanwhile, and a final state stays final. Returns the transitions applied."""
    if not transitions:
        return []
    updated = psycopg2.extras.execute_values(
        cur,
        "UPDATE pilots p SET state = v.new, state_reason = v.reason, state_changed_at = v.now, last_seen = v.now, "
        "exit_code = coalesce(v.exit_code, p.exit_code), "
        "started_at = coalesce(p.started_at, v.started_at, CASE WHEN v.new = 'running' THEN v.now END), "
        f"ended_at = CASE WHEN v.new IN {_FINAL_SQL} THEN coalesce(v.ended_at, v.now) ELSE p.ended_at END "
        "FROM (VALUES %s) AS v (id, old, new, reason, exit_code, started_at, ended_at, now) "
        f"WHERE p.id = v.id AND p.state = v.old AND p.state NOT IN {_FINAL_SQL} RETURNING p.id",
        [(t.pilot_id, t.old, t.new, t.reason, t.exit_code, t.started_at, t.ended_at, now) for t in transitions],
        template="(%s::bigint, %s, %s, %s, %s::integer, %s::timestamptz, %s::timestamptz, %s::timestamptz)",
        fetch=True,
    )
    done = {row["id"] for row in updated}
    applied = [t for t in transitions if t.pilot_id in done]
    if applied:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO pilot_events (at, who, what, queue, pilot_id, details) VALUES %s",
            [
                (
                    now,
                    who,
                    "pilot-state",
                    t.queue,
                    t.pilot_id,
                    psycopg2.extras.Json({"from": t.old, "to": t.new, "reason": t.reason, "exit_code": t.exit_code}),
                )
                for t in applied
            ],
        )
    return applied


def mark_seen(cur: Any, pilot_ids: Sequence[int], now: dt.datetime) -> None:
    if pilot_ids:
        cur.execute("UPDATE pilots SET last_seen = %s WHERE id = ANY(%s)", (now, list(pilot_ids)))


@dataclass(frozen=True)
class QueueActivity:
    """Per queue: live pilots by state, and pilots ended (and ended empty) since the window opened."""

    queued: int = 0
    running: int = 0
    held: int = 0
    ended: int = 0
    empty: int = 0


def queue_activity(
    cur: Any, queues: Sequence[str], since: dt.datetime, scheduler: str | None = None
) -> dict[str, QueueActivity]:
    """Counts for the policy, in one query for all ``queues``; with ``scheduler``, of its own pilots only (and of
    those no scheduler is known for). A pilot ended empty if it exited with pilot3's "no jobs" code, or ran less
    than its queue's ``empty_runtime`` seconds."""
    cur.execute(
        "SELECT p.queue, "
        "count(*) FILTER (WHERE p.state IN ('submitted', 'queued')) AS queued, "
        "count(*) FILTER (WHERE p.state = 'running') AS running, "
        "count(*) FILTER (WHERE p.state = 'held') AS held, "
        "count(*) FILTER (WHERE p.state IN ('finished', 'failed') AND p.ended_at >= %(since)s) AS ended, "
        "count(*) FILTER (WHERE p.state IN ('finished', 'failed') AND p.ended_at >= %(since)s AND "
        "(p.exit_code = %(nojobs)s OR "
        "p.ended_at - coalesce(p.started_at, p.ended_at) < coalesce(s.empty_runtime, 60) * interval '1 second')) "
        "AS empty "
        "FROM pilots p LEFT JOIN schedconfig s ON s.panda_queue = p.queue "
        "WHERE p.queue = ANY(%(queues)s) AND (p.state IN %(live)s OR p.ended_at >= %(since)s) "
        "AND (%(scheduler)s::text IS NULL OR p.scheduler IS NULL OR p.scheduler = %(scheduler)s) GROUP BY p.queue",
        {"since": since, "nojobs": NO_JOBS_EXIT_CODE, "queues": list(queues), "live": LIVE_STATES,
         "scheduler": scheduler},
    )
    return {
        row["queue"]: QueueActivity(row["queued"], row["running"], row["held"], row["ended"], row["empty"])
        for row in cur.fetchall()
    }
