"""The ``controls`` table (remote regulation of submission, per queue or per tag) and kill requests.

Controls
    A control row holds ``paused``, ``drain``, ``fixed_number``, ``max_per_cycle``, ``expires_at`` and
    ``reason`` for one queue or one tag. :func:`active_controls` returns the unexpired ones that apply to a
    queue as policy :class:`~autopilot_ops.policy.Control` objects, ready for ``Snapshot.controls``; the
    policy merges them (``autopilot_ops.policy.decide``: any pause or drain holds, the queue's own
    ``fixed_number`` beats its tags', the smallest ``max_per_cycle`` holds). Every change is audited in
    ``pilot_events`` (``control-set`` / ``control-cleared``, with the old and new values).

Kill requests (the contract with the scheduler core)
    :func:`request_kill` writes one audit row ``what='kill-pilots'`` for the queue and one row
    ``what='kill-requested'`` per live pilot of the queue, with ``pilot_id`` set and ``details``
    ``{"request": <id of the kill-pilots row>, "backend", "batch_id", "reason"}``. The scheduler core, on
    its next sweep, takes :func:`pending_kill_requests`, cancels those pilots through their back end, and
    records per pilot ``what='kill-done'`` or ``what='kill-failed'`` (``details.error``). A request stops
    being pending once such a row follows it, or once the pilot is no longer live.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg2.extras

from autopilot_ops.policy import Control
from autopilot_ops.store.events import record_event
from autopilot_ops.store.pilots import LIVE_STATES

SCOPES = ("queue", "tag")
#: The settable fields of a control, with their values when unset.
DEFAULTS: dict[str, Any] = {
    "paused": False,
    "drain": False,
    "fixed_number": None,
    "max_per_cycle": None,
    "expires_at": None,
    "reason": None,
}
KILL_REQUESTED = "kill-requested"
KILL_DONE = "kill-done"
KILL_FAILED = "kill-failed"

_COLUMNS = "scope, target, paused, drain, fixed_number, max_per_cycle, expires_at, set_by, set_at, reason"


class UnknownTarget(LookupError):
    """The queue or tag a control names does not exist in ``schedconfig``."""


def _check_scope(scope: str) -> None:
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of: {', '.join(SCOPES)}")


def target_exists(cur: Any, scope: str, target: str) -> bool:
    """Whether ``schedconfig`` has the queue, or a queue with the tag."""
    _check_scope(scope)
    if scope == "queue":
        cur.execute("SELECT 1 FROM schedconfig WHERE panda_queue = %s", (target,))
    else:
        cur.execute("SELECT 1 FROM schedconfig WHERE %s = ANY(tags) LIMIT 1", (target,))
    return cur.fetchone() is not None


def get_control(cur: Any, scope: str, target: str) -> dict[str, Any] | None:
    _check_scope(scope)
    cur.execute(f"SELECT {_COLUMNS} FROM controls WHERE scope = %s AND target = %s", (scope, target))
    row = cur.fetchone()
    return dict(row) if row else None


def list_controls(cur: Any) -> list[dict[str, Any]]:
    cur.execute(f"SELECT {_COLUMNS} FROM controls ORDER BY scope, target")
    return [dict(row) for row in cur.fetchall()]


def set_control(cur: Any, scope: str, target: str, changes: Mapping[str, Any], who: str) -> dict[str, Any]:
    """Apply ``changes`` (a subset of :data:`DEFAULTS`' keys) to the control; fields not named keep their value.

    Raises ``UnknownTarget`` if the queue or tag does not exist, ``ValueError`` for an unknown field.
    """
    unknown = sorted(set(changes) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown control field(s): {', '.join(unknown)}")
    if not target_exists(cur, scope, target):
        raise UnknownTarget(f"no {scope} named {target!r} in schedconfig")
    cur.execute(f"SELECT {_COLUMNS} FROM controls WHERE scope = %s AND target = %s FOR UPDATE", (scope, target))
    old = cur.fetchone()
    values = {name: (old[name] if old else default) for name, default in DEFAULTS.items()}
    values.update(changes)
    cur.execute(
        f"INSERT INTO controls (scope, target, paused, drain, fixed_number, max_per_cycle, expires_at, set_by, "
        f"reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (scope, target) DO UPDATE SET "
        f"paused = EXCLUDED.paused, drain = EXCLUDED.drain, fixed_number = EXCLUDED.fixed_number, "
        f"max_per_cycle = EXCLUDED.max_per_cycle, expires_at = EXCLUDED.expires_at, set_by = EXCLUDED.set_by, "
        f"set_at = now(), reason = EXCLUDED.reason RETURNING {_COLUMNS}",
        (
            scope,
            target,
            values["paused"],
            values["drain"],
            values["fixed_number"],
            values["max_per_cycle"],
            values["expires_at"],
            who,
            values["reason"],
        ),
    )
    new = dict(cur.fetchone())
    record_event(
        cur,
        who,
        "control-set",
        queue=target if scope == "queue" else None,
        details={
            "scope": scope,
            "target": target,
            "old": _jsonable(old),
            "new": _jsonable(new),
            "changed": sorted(changes),
        },
    )
    return new


def clear_control(cur: Any, scope: str, target: str, who: str) -> bool:
    """Remove the control; return False if there was none. Audited as ``control-cleared``."""
    _check_scope(scope)
    cur.execute(f"DELETE FROM controls WHERE scope = %s AND target = %s RETURNING {_COLUMNS}", (scope, target))
    old = cur.fetchone()
    if old is None:
        return False
    record_event(
        cur,
        who,
        "control-cleared",
        queue=target if scope == "queue" else None,
        details={"scope": scope, "target": target, "old": _jsonable(old)},
    )
    return True


def control_from_row(row: Mapping[str, Any]) -> Control:
    """A ``controls`` row as the policy's :class:`~autopilot_ops.policy.Control`."""
    return Control(
        scope=row["scope"],
        target=row["target"],
        set_by=row["set_by"],
        paused=row["paused"],
        drain=row["drain"],
        fixed_number=row["fixed_number"],
        max_per_cycle=row["max_per_cycle"],
        expires_at=row["expires_at"],
        reason=row["reason"],
    )


def controls_in_scope(cur: Any, queues: Sequence[str], tags: Sequence[str]) -> list[Control]:
    """Every control set on any of ``queues`` or ``tags``, in one query; expired ones included, so that the
    policy can say in its trace that they expired."""
    cur.execute(
        f"SELECT {_COLUMNS} FROM controls WHERE (scope = 'queue' AND target = ANY(%s)) "
        "OR (scope = 'tag' AND target = ANY(%s)) ORDER BY scope = 'tag', target",
        (list(queues), list(tags)),
    )
    return [control_from_row(row) for row in cur.fetchall()]


def active_controls(cur: Any, queue: str, tags: Sequence[str], now: dt.datetime) -> tuple[Control, ...]:
    """The controls on ``queue`` and on its ``tags`` not expired at ``now``, the queue's own first."""
    return tuple(c for c in controls_in_scope(cur, [queue], tags) if c.expires_at is None or c.expires_at > now)


def request_kill(
    cur: Any, queue: str, who: str, reason: str | None = None, states: Sequence[str] = LIVE_STATES
) -> list[int]:
    """Ask for the cancellation of the queue's pilots in ``states`` (live ones only); return their ids."""
    bad = sorted(set(states) - set(LIVE_STATES))
    if bad:
        raise ValueError(f"state(s) {', '.join(bad)} are not live states ({', '.join(LIVE_STATES)})")
    cur.execute(
        "SELECT id, queue, backend, batch_id FROM pilots WHERE queue = %s AND state = ANY(%s) ORDER BY id FOR UPDATE",
        (queue, list(states)),
    )
    pilots = cur.fetchall()
    cur.execute(
        "INSERT INTO pilot_events (who, what, queue, details) VALUES (%s, 'kill-pilots', %s, %s) RETURNING id",
        (who, queue, psycopg2.extras.Json({"reason": reason, "states": list(states), "pilots": len(pilots)})),
    )
    request_kill_of(cur, pilots, who, reason, cur.fetchone()["id"])
    return [p["id"] for p in pilots]


def request_kill_of(
    cur: Any, pilots: Sequence[Mapping[str, Any]], who: str, reason: str | None, request_id: int | None = None
) -> None:
    """A ``kill-requested`` event for each of ``pilots`` (rows with ``id``, ``queue``, ``backend`` and
    ``batch_id``): the next sweep of each back end cancels them and answers each with ``kill-done``."""
    if not pilots:
        return
    psycopg2.extras.execute_values(
        cur,
        "INSERT INTO pilot_events (who, what, queue, pilot_id, details) VALUES %s",
        [
            (
                who,
                KILL_REQUESTED,
                p["queue"],
                p["id"],
                psycopg2.extras.Json(
                    {"request": request_id, "backend": p["backend"], "batch_id": p["batch_id"], "reason": reason}
                ),
            )
            for p in pilots
        ],
    )


def pending_kill_requests(cur: Any, backend: str | None = None) -> list[dict[str, Any]]:
    """Live pilots with a ``kill-requested`` event not yet answered by ``kill-done``/``kill-failed``."""
    cur.execute(
        "SELECT DISTINCT ON (p.id) p.id AS pilot_id, p.queue, p.backend, p.batch_id, e.id AS event_id, "
        "e.who, e.details->>'reason' AS reason FROM pilot_events e JOIN pilots p ON p.id = e.pilot_id "
        "WHERE e.what = %s AND p.state = ANY(%s) AND (%s::text IS NULL OR p.backend = %s) "
        "AND NOT EXISTS (SELECT 1 FROM pilot_events d WHERE d.pilot_id = e.pilot_id AND d.id > e.id "
        "AND d.what IN (%s, %s)) ORDER BY p.id, e.id",
        (KILL_REQUESTED, list(LIVE_STATES), backend, backend, KILL_DONE, KILL_FAILED),
    )
    return [dict(row) for row in cur.fetchall()]


def _jsonable(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {key: value.isoformat() if isinstance(value, dt.datetime) else value for key, value in row.items()}
