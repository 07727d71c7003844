"""The ``backends`` registry: submission back ends that queues refer to by name."""

from __future__ import annotations

from typing import Any

import psycopg2.extras

_SELECT = (
    "SELECT name, kind, submit_host, parameters, enabled, owner, worker_queue, created_at, updated_at FROM backends"
)


class BackendInUse(Exception):
    """A back end cannot be removed while queues refer to it."""


def upsert_backend(
    cur: Any,
    name: str,
    kind: str,
    submit_host: str | None = None,
    parameters: dict[str, Any] | None = None,
    enabled: bool = True,
    owner: str | None = None,
    worker_queue: str | None = None,
) -> bool:
    """Add or update a back end; return True if it was new. ``worker_queue``: the Airflow worker queue its
    queues' cycle tasks run on (``None``: the default one)."""
    cur.execute(
        "INSERT INTO backends (name, kind, submit_host, parameters, enabled, owner, worker_queue) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET kind = EXCLUDED.kind, submit_host = EXCLUDED.submit_host, "
        "parameters = EXCLUDED.parameters, enabled = EXCLUDED.enabled, owner = EXCLUDED.owner, "
        "worker_queue = EXCLUDED.worker_queue, updated_at = now() "
        "RETURNING (xmax = 0) AS inserted",
        (name, kind, submit_host, psycopg2.extras.Json(parameters or {}), enabled, owner, worker_queue),
    )
    return cur.fetchone()["inserted"]


def list_backends(cur: Any) -> list[dict[str, Any]]:
    cur.execute(_SELECT + " ORDER BY name")
    return [dict(row) for row in cur.fetchall()]


def get_backend(cur: Any, name: str) -> dict[str, Any] | None:
    cur.execute(_SELECT + " WHERE name = %s", (name,))
    row = cur.fetchone()
    return dict(row) if row else None


def backend_names(cur: Any) -> set[str]:
    cur.execute("SELECT name FROM backends")
    return {row["name"] for row in cur.fetchall()}


def remove_backend(cur: Any, name: str) -> bool:
    """Remove a back end; return False if it did not exist. Raises ``BackendInUse`` if queues use it."""
    cur.execute("SELECT panda_queue FROM schedconfig WHERE backend = %s ORDER BY panda_queue LIMIT 5", (name,))
    users = [row["panda_queue"] for row in cur.fetchall()]
    if users:
        raise BackendInUse(f"back end {name!r} is used by queues: {', '.join(users)}")
    cur.execute("DELETE FROM backends WHERE name = %s", (name,))
    return cur.rowcount > 0
