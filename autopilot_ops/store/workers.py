"""Pilots as PanDA's workers: which changes PanDA has not yet accepted, and marking those it has."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from autopilot_ops.store.pilots import LIVE_STATES

#: A live worker is sent again after this long even if nothing changed, so PanDA sees it alive.
RESEND_LIVE_S = 1800

_COLUMNS = (
    "p.id, p.queue, p.backend, p.batch_id, p.state, p.state_reason, p.submitted_at, p.started_at, p.ended_at, "
    "p.exit_code, p.stdout_path, p.stderr_path, s.corecount, s.maxrss, s.prod_source_labels, s.attributes, "
    "s.backend_parameters AS queue_parameters, "
    "b.kind AS backend_kind, b.parameters AS backend_parameters"
)
#: A pilot's own columns in a worker report; its queue's and back end's come once per pair (``worker_contexts``).
_PILOT_COLUMNS = (
    "id", "queue", "backend", "batch_id", "state", "state_reason", "submitted_at", "started_at", "ended_at",
    "exit_code", "stdout_path", "stderr_path", "prod_source_label",
)


def unreported_workers(
    cur: Any, queues: Sequence[str], now: dt.datetime, limit: int, resend_live_s: int = RESEND_LIVE_S
) -> list[dict[str, Any]]:
    """Pilots of ``queues`` whose state PanDA has not accepted, and live ones not sent for ``resend_live_s``,
    oldest first: their own columns (their queues' and back ends' are in :func:`worker_contexts`). Read
    through a plain cursor of the same transaction: a dict cursor's rows cost ten times more to build."""
    with cur.connection.cursor() as plain:
        plain.execute(
            f"SELECT {', '.join(_PILOT_COLUMNS)} FROM pilots "
            "WHERE queue = ANY(%(queues)s) AND (worker_reported_state IS DISTINCT FROM state "
            "OR (state IN %(live)s AND worker_reported_at < %(stale)s)) ORDER BY id LIMIT %(limit)s",
            {
                "queues": list(queues),
                "live": LIVE_STATES,
                "stale": now - dt.timedelta(seconds=resend_live_s),
                "limit": limit,
            },
        )
        return [dict(zip(_PILOT_COLUMNS, row)) for row in plain.fetchall()]


def worker_contexts(cur: Any, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """For each ``(queue, back end)``, what its pilots' worker dicts share: the queue's cores, memory, labels,
    CRIC attributes and back-end parameters, and the back end's kind and parameters (``None`` where missing)."""
    pairs = sorted(set(pairs))
    if not pairs:
        return {}
    cur.execute(
        "SELECT a.queue, a.backend, s.corecount, s.maxrss, s.prod_source_labels, s.attributes, "
        "s.backend_parameters AS queue_parameters, b.kind AS backend_kind, b.parameters AS backend_parameters "
        "FROM unnest(%s::text[], %s::text[]) AS a(queue, backend) "
        "LEFT JOIN schedconfig s ON s.panda_queue = a.queue LEFT JOIN backends b ON b.name = a.backend",
        ([queue for queue, _ in pairs], [backend for _, backend in pairs]),
    )
    return {(row["queue"], row["backend"]): dict(row) for row in cur.fetchall()}


def mark_reported(cur: Any, accepted: Iterable[tuple[int, str]], now: dt.datetime) -> None:
    """Record that PanDA accepted each ``(pilot id, state)``; a pilot that moved on since stays unreported."""
    rows = list(accepted)
    if not rows:
        return
    cur.execute(
        "UPDATE pilots p SET worker_reported_state = a.state, worker_reported_at = %s "
        "FROM unnest(%s::bigint[], %s::text[]) AS a(id, state) WHERE p.id = a.id",
        (now, [r[0] for r in rows], [r[1] for r in rows]),
    )


def worker_counts(cur: Any, queues: Sequence[str], since: dt.datetime) -> list[dict[str, Any]]:
    """Per queue, pilot label and state, pilots live now or ended since ``since``, for the worker statistics."""
    cur.execute(
        "SELECT p.queue, p.prod_source_label, p.state, p.started_at IS NOT NULL AS started, s.corecount, "
        "s.prod_source_labels, count(*) AS n FROM pilots p LEFT JOIN schedconfig s ON s.panda_queue = p.queue "
        "WHERE p.queue = ANY(%s) AND (p.state IN %s OR p.state_changed_at >= %s) "
        "GROUP BY p.queue, p.prod_source_label, p.state, started, s.corecount, s.prod_source_labels",
        (list(queues), LIVE_STATES, since),
    )
    return [dict(row) for row in cur.fetchall()]


def live_workers(cur: Any, queues: Sequence[str] | None = None, ids: Sequence[int] | None = None) -> list[dict]:
    """Live pilots (of ``queues``, or with ``ids``; all when neither is given), with what their worker dicts
    need, locked for a kill request."""
    cur.execute(
        f"SELECT {_COLUMNS} FROM pilots p LEFT JOIN schedconfig s ON s.panda_queue = p.queue "
        "LEFT JOIN backends b ON b.name = p.backend WHERE p.state IN %(live)s "
        "AND (%(queues)s::text[] IS NULL OR p.queue = ANY(%(queues)s::text[])) "
        "AND (%(ids)s::bigint[] IS NULL OR p.id = ANY(%(ids)s::bigint[])) ORDER BY p.id FOR UPDATE OF p",
        {
            "live": LIVE_STATES,
            "queues": list(queues) if queues is not None else None,
            "ids": list(ids) if ids is not None else None,
        },
    )
    return [dict(row) for row in cur.fetchall()]
