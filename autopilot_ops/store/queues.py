"""``schedconfig`` rows: read, write in bulk, delete, and change status."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg2.extras

from autopilot_ops.queues.model import COLUMNS, STATUSES, QueueDefinition

#: Which scheduler serves a queue: its first tag, or its site when it has no tag (SQL over ``schedconfig``).
SCHEDULER_TAG_SQL = "coalesce(tags[1], site)"
#: The Airflow worker queue of a queue's cycle task when neither the queue nor its back end names one.
DEFAULT_WORKER_QUEUE = "default"
#: The worker queue a queue's cycle task runs on (SQL over ``schedconfig s LEFT JOIN backends b``).
WORKER_QUEUE_SQL = f"coalesce(s.worker_queue, b.worker_queue, '{DEFAULT_WORKER_QUEUE}')"

_JSON_COLUMNS = ("backend_parameters", "credentials", "attributes")
_SELECT = f"SELECT {', '.join(COLUMNS)}, source, updated_at FROM schedconfig"


def read_queues(cur: Any) -> dict[str, dict[str, Any]]:
    """Every stored queue, by name."""
    cur.execute(_SELECT)
    return {row["panda_queue"]: dict(row) for row in cur.fetchall()}


def get_queue(cur: Any, name: str) -> dict[str, Any] | None:
    cur.execute(_SELECT + " WHERE panda_queue = %s", (name,))
    row = cur.fetchone()
    return dict(row) if row else None


def list_queues(cur: Any, tag: str | None = None, site: str | None = None) -> list[dict[str, Any]]:
    clauses, args = [], []
    if tag:
        clauses.append("%s = ANY(tags)")
        args.append(tag)
    if site:
        clauses.append("site = %s")
        args.append(site)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    cur.execute(_SELECT + where + " ORDER BY panda_queue", args)
    return [dict(row) for row in cur.fetchall()]


def upsert_queues(cur: Any, queues: Sequence[QueueDefinition], source: str) -> None:
    """Insert or update ``queues`` in one statement per page."""
    if not queues:
        return
    columns = (*COLUMNS, "source")
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name in columns if name != "panda_queue")
    template = "(" + ", ".join("%s::jsonb" if name in _JSON_COLUMNS else "%s" for name in columns) + ")"
    rows = [_row_values(queue, source) for queue in queues]
    psycopg2.extras.execute_values(
        cur,
        f"INSERT INTO schedconfig ({', '.join(columns)}) VALUES %s "
        f"ON CONFLICT (panda_queue) DO UPDATE SET {updates}, updated_at = now()",
        rows,
        template=template,
        page_size=1000,
    )


def _row_values(queue: QueueDefinition, source: str) -> tuple[Any, ...]:
    row = queue.as_row()
    values = [psycopg2.extras.Json(row[name]) if name in _JSON_COLUMNS else row[name] for name in COLUMNS]
    return (*values, source)


def delete_queues(cur: Any, names: Iterable[str]) -> int:
    names = list(names)
    if not names:
        return 0
    cur.execute("DELETE FROM schedconfig WHERE panda_queue = ANY(%s)", (names,))
    return cur.rowcount


def set_queue_status(cur: Any, name: str, status: str) -> str | None:
    """Set a queue's status; return the previous one, or ``None`` if the queue does not exist."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r} (expected one of: {', '.join(STATUSES)})")
    cur.execute(
        "UPDATE schedconfig new SET status = %s, updated_at = now() FROM schedconfig old "
        "WHERE new.panda_queue = old.panda_queue AND new.panda_queue = %s RETURNING old.status",
        (status, name),
    )
    row = cur.fetchone()
    return row["status"] if row else None
