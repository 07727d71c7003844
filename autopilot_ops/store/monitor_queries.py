"""Read-only queries behind the monitor pages and the ``/api/queues`` summary.

``cycles.inputs`` is written by the scheduler core (``autopilot_ops.scheduler.observe``); the monitor reads
its ``activated``, ``queued``, ``running`` and ``held`` keys, and shows nothing for a missing one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from autopilot_ops.store.pilots import LIVE_STATES
from autopilot_ops.store.queues import SCHEDULER_TAG_SQL

#: Final pilots are counted on the overview when they ended within this window.
RECENT_WINDOW = dt.timedelta(hours=24)
SERIES_KEYS = ("queued", "running", "activated")


def queue_summaries(cur: Any, queue: str | None = None, tag: str | None = None) -> list[dict[str, Any]]:
    """One row per queue (or only ``queue``, or only the queues of scheduler ``tag``): its scheduler tag,
    pilots by state, and its last cycle.

    ``pilots`` counts live pilots and those that reached a final state within :data:`RECENT_WINDOW`.
    """
    cur.execute(
        f"SELECT s.panda_queue AS queue, s.site, s.tags, s.status, s.backend, s.cycle_period, s.panda_workers, "
        f"{SCHEDULER_TAG_SQL} AS scheduler_tag, "
        f"c.cycle_id AS last_cycle_id, c.started_at AS last_cycle_at, c.decided AS last_decided, "
        f"c.submitted AS last_submitted, c.failed AS last_failed, c.reason AS last_reason, "
        f"c.inputs AS last_inputs "
        f"FROM schedconfig s LEFT JOIN LATERAL (SELECT cycle_id, started_at, decided, submitted, failed, reason, "
        f"inputs FROM cycles WHERE queue = s.panda_queue ORDER BY started_at DESC LIMIT 1) c ON true "
        f"WHERE (%s::text IS NULL OR s.panda_queue = %s) AND (%s::text IS NULL OR {SCHEDULER_TAG_SQL} = %s) "
        f"ORDER BY scheduler_tag, s.panda_queue",
        (queue, queue, tag, tag),
    )
    rows = [dict(row) for row in cur.fetchall()]
    counts = pilot_counts(cur, [row["queue"] for row in rows] if queue or tag else None)
    for row in rows:
        row["pilots"] = counts.get(row["queue"], {})
        inputs = row.pop("last_inputs") or {}
        row["activated"] = inputs.get("activated")
    return rows


def pilot_counts(cur: Any, queues: list[str] | None = None) -> dict[str, dict[str, int]]:
    """``{queue: {state: n}}`` of live pilots and of pilots that ended within :data:`RECENT_WINDOW`, for
    ``queues`` (default: every queue)."""
    cur.execute(
        "SELECT queue, state, count(*) AS n FROM pilots WHERE (%s::text[] IS NULL OR queue = ANY(%s)) "
        "AND (state = ANY(%s) OR state_changed_at > now() - %s) GROUP BY queue, state",
        (queues, queues, list(LIVE_STATES), RECENT_WINDOW),
    )
    counts: dict[str, dict[str, int]] = {}
    for row in cur.fetchall():
        counts.setdefault(row["queue"], {})[row["state"]] = int(row["n"])
    return counts


def recent_cycles(cur: Any, queue: str, limit: int = 30) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT cycle_id, scheduler, started_at, ended_at, inputs, decided, reason, submitted, failed "
        "FROM cycles WHERE queue = %s ORDER BY started_at DESC LIMIT %s",
        (queue, limit),
    )
    return [dict(row) for row in cur.fetchall()]


def recent_pilots(cur: Any, queue: str, limit: int = 50) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT id, backend, batch_id, cycle_id, state, state_reason, submitted_at, state_changed_at, "
        "exit_code, stdout_path, stderr_path, last_heartbeat "
        "FROM pilots WHERE queue = %s ORDER BY id DESC LIMIT %s",
        (queue, limit),
    )
    return [dict(row) for row in cur.fetchall()]


def cycle_series(cur: Any, queue: str, limit: int = 200) -> list[dict[str, Any]]:
    """The latest ``limit`` cycles' time and :data:`SERIES_KEYS` counts, oldest first."""
    cur.execute(
        "SELECT started_at, (inputs->>'queued')::int AS queued, (inputs->>'running')::int AS running, "
        "(inputs->>'activated')::int AS activated FROM (SELECT started_at, inputs FROM cycles "
        "WHERE queue = %s ORDER BY started_at DESC LIMIT %s) recent ORDER BY started_at",
        (queue, limit),
    )
    return [dict(row) for row in cur.fetchall()]


def recent_events(cur: Any, queue: str, limit: int = 30) -> list[dict[str, Any]]:
    cur.execute(
        "SELECT id, at, who, what, pilot_id, details FROM pilot_events WHERE queue = %s ORDER BY at DESC, id DESC "
        "LIMIT %s",
        (queue, limit),
    )
    return [dict(row) for row in cur.fetchall()]


def queue_controls(cur: Any, queue: str, tags: list[str]) -> list[dict[str, Any]]:
    """Every control row on the queue or its tags, expired ones included (the page marks them)."""
    cur.execute(
        "SELECT scope, target, paused, drain, fixed_number, max_per_cycle, expires_at, set_by, set_at, reason "
        "FROM controls WHERE (scope = 'queue' AND target = %s) OR (scope = 'tag' AND target = ANY(%s)) "
        "ORDER BY scope, target",
        (queue, tags),
    )
    return [dict(row) for row in cur.fetchall()]


def find_pilot(cur: Any, queue: str, pilot_id: int | None, batch_id: str | None) -> dict[str, Any] | None:
    """The pilot of ``queue`` with this database id, or else with this batch id."""
    if pilot_id is not None:
        cur.execute("SELECT id, queue, backend, batch_id FROM pilots WHERE id = %s", (pilot_id,))
    else:
        cur.execute(
            "SELECT id, queue, backend, batch_id FROM pilots WHERE queue = %s AND batch_id = %s "
            "ORDER BY id DESC LIMIT 1",
            (queue, batch_id),
        )
    row = cur.fetchone()
    return dict(row) if row else None
