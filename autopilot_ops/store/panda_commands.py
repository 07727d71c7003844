"""Commands PanDA gave this pilot factory, what became of each, and PanDA's numbers of new workers per queue."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2.extras


@dataclass(frozen=True)
class WorkerTarget:
    """PanDA's number of new workers for one queue, job type and resource type, from one command."""

    queue: str
    job_type: str
    resource_type: str
    n_workers: int
    command_id: int
    received_at: dt.datetime
    expires_at: dt.datetime


def record_received(cur: Any, harvester_id: str, commands: Sequence[Any]) -> list[int]:
    """Store newly received commands (each once); the ids of those not applied yet."""
    if commands:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO panda_commands (harvester_id, command_id, command, params, created_at) VALUES %s "
            "ON CONFLICT DO NOTHING",
            [
                (harvester_id, c.command_id, c.command, psycopg2.extras.Json(c.params), c.creation_date)
                for c in commands
            ],
        )
    cur.execute(
        "SELECT command_id FROM panda_commands WHERE harvester_id = %s AND command_id = ANY(%s) AND applied_at IS NULL",
        (harvester_id, [c.command_id for c in commands]),
    )
    return [row["command_id"] for row in cur.fetchall()]


def lock_unapplied(cur: Any, harvester_id: str, command_id: int) -> bool:
    """Lock a command for applying it; ``False`` if it was applied already (by this or another scheduler)."""
    cur.execute(
        "SELECT applied_at FROM panda_commands WHERE harvester_id = %s AND command_id = %s FOR UPDATE",
        (harvester_id, command_id),
    )
    row = cur.fetchone()
    return row is not None and row["applied_at"] is None


def mark_applied(cur: Any, harvester_id: str, command_id: int, outcome: str, now: dt.datetime) -> None:
    cur.execute(
        "UPDATE panda_commands SET applied_at = %s, outcome = %s WHERE harvester_id = %s AND command_id = %s",
        (now, outcome, harvester_id, command_id),
    )


def unacknowledged(cur: Any, harvester_id: str) -> list[int]:
    """Commands applied but not yet acknowledged to PanDA (an acknowledgement lost in an outage included)."""
    cur.execute(
        "SELECT command_id FROM panda_commands WHERE harvester_id = %s AND applied_at IS NOT NULL "
        "AND acknowledged_at IS NULL ORDER BY command_id",
        (harvester_id,),
    )
    return [row["command_id"] for row in cur.fetchall()]


def mark_acknowledged(cur: Any, harvester_id: str, command_ids: Sequence[int], now: dt.datetime) -> None:
    cur.execute(
        "UPDATE panda_commands SET acknowledged_at = %s WHERE harvester_id = %s AND command_id = ANY(%s)",
        (now, harvester_id, list(command_ids)),
    )


def replace_worker_targets(
    cur: Any, queue: str, params: Mapping[str, Mapping[str, int]], command_id: int, now: dt.datetime,
    expires_at: dt.datetime,
) -> list[WorkerTarget]:
    """Set PanDA's numbers for ``queue`` from ``{job type: {resource type: n}}``, replacing all earlier ones
    (Harvester's ``db_proxy.py: set_queue_limit`` resets them before it sets the new ones)."""
    cur.execute("DELETE FROM panda_worker_targets WHERE queue = %s", (queue,))
    targets = [
        WorkerTarget(queue, job_type, resource_type, int(n or 0), command_id, now, expires_at)
        for job_type, by_resource in params.items()
        for resource_type, n in by_resource.items()
    ]
    if targets:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO panda_worker_targets (queue, job_type, resource_type, n_workers, command_id, received_at, "
            "expires_at) VALUES %s",
            [(t.queue, t.job_type, t.resource_type, t.n_workers, t.command_id, t.received_at, t.expires_at)
             for t in targets],
        )
    return targets


def worker_targets(cur: Any, queues: Sequence[str]) -> dict[str, list[WorkerTarget]]:
    """PanDA's numbers for ``queues`` (expired ones included: the policy says they expired)."""
    cur.execute(
        "SELECT queue, job_type, resource_type, n_workers, command_id, received_at, expires_at "
        "FROM panda_worker_targets WHERE queue = ANY(%s) ORDER BY queue, job_type, resource_type",
        (list(queues),),
    )
    found: dict[str, list[WorkerTarget]] = {}
    for row in cur.fetchall():
        found.setdefault(row["queue"], []).append(WorkerTarget(**row))
    return found


def commands_of_queue(cur: Any, queue: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest commands that named ``queue`` (``SET_N_WORKERS_JOBTYPE:<queue>``, or a kill at it), for the
    monitor: received, applied and acknowledged times and the outcome."""
    cur.execute(
        "SELECT harvester_id, command_id, command, params, received_at, applied_at, acknowledged_at, outcome "
        "FROM panda_commands WHERE command = %s OR params->'computingSite' ? %s "
        "ORDER BY received_at DESC, command_id DESC LIMIT %s",
        (f"SET_N_WORKERS_JOBTYPE:{queue}", queue, limit),
    )
    return [dict(row) for row in cur.fetchall()]
