"""The ``cycles`` table (one row per queue per cycle), and the ``schedulers`` registry."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2.extras


@dataclass(frozen=True)
class CycleRow:
    cycle_id: str
    queue: str
    scheduler: str
    started_at: dt.datetime
    inputs: dict[str, Any]
    decided: int
    reason: Sequence[str]
    submitted: int
    failed: int


def record_cycles(cur: Any, rows: Sequence[CycleRow]) -> None:
    """Write the cycle's rows in bulk; a re-run of the same cycle adds to the counts it already has."""
    if not rows:
        return
    psycopg2.extras.execute_values(
        cur,
        "INSERT INTO cycles (cycle_id, queue, scheduler, started_at, ended_at, inputs, decided, reason, submitted, "
        "failed) VALUES %s ON CONFLICT (queue, cycle_id) DO UPDATE SET ended_at = EXCLUDED.ended_at, "
        "inputs = EXCLUDED.inputs, decided = EXCLUDED.decided, reason = EXCLUDED.reason, "
        "submitted = cycles.submitted + EXCLUDED.submitted, failed = cycles.failed + EXCLUDED.failed",
        [
            (
                r.cycle_id,
                r.queue,
                r.scheduler,
                r.started_at,
                psycopg2.extras.Json(r.inputs),
                r.decided,
                list(r.reason),
                r.submitted,
                r.failed,
            )
            for r in rows
        ],
        template="(%s, %s, %s, %s, now(), %s, %s, %s::text[], %s, %s)",
        page_size=1000,
    )


def heartbeat_scheduler(cur: Any, scheduler_id: str, tag: str, host: str, owner: str, now: dt.datetime) -> None:
    cur.execute(
        "INSERT INTO schedulers (id, tag, owner, host, last_cycle) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET tag = EXCLUDED.tag, host = EXCLUDED.host, last_cycle = EXCLUDED.last_cycle",
        (scheduler_id, tag, owner, host, now),
    )


def scheduler_started_at(cur: Any, scheduler_id: str) -> dt.datetime | None:
    """When the scheduler ``scheduler_id`` first ran a cycle."""
    cur.execute("SELECT started_at FROM schedulers WHERE id = %s", (scheduler_id,))
    row = cur.fetchone()
    return row["started_at"] if row else None


def live_instances(cur: Any, tag: str, since: dt.datetime) -> int:
    """Scheduler instances of ``tag`` that ran a cycle since ``since`` (at least 1: the caller)."""
    cur.execute(
        "SELECT count(*) AS n FROM schedulers WHERE tag = %s AND last_cycle >= %s",
        (tag, since),
    )
    return max(int(cur.fetchone()["n"]), 1)


def last_good_stats(cur: Any, queues: Sequence[str]) -> dict[str, tuple[int, dt.datetime, dict[str, int] | None]]:
    """Per queue, the activated count of the newest good PanDA statistics reply, when it came, and its counts per
    ``label/resource type`` (``None`` where a cycle did not record them), from the ``stats_at`` the cycles record in
    ``inputs`` (a cycle without a reply carries the last one forward)."""
    cur.execute(
        "SELECT DISTINCT ON (queue) queue, (inputs->>'activated')::integer AS activated, "
        "(inputs->>'stats_at')::timestamptz AS stats_at, inputs->'activated_by_label' AS by_label FROM cycles "
        "WHERE queue = ANY(%s) AND inputs->>'stats_at' IS NOT NULL AND inputs->>'activated' IS NOT NULL "
        "ORDER BY queue, started_at DESC",
        (list(queues),),
    )
    return {row["queue"]: (row["activated"], row["stats_at"], row["by_label"]) for row in cur.fetchall()}
