"""The store an AutoPilot operator works on: a Postgres connection id or a DSN."""

from __future__ import annotations

from autopilot_ops.store.connection import Store


def open_store(task_id: str, postgres_conn_id: str | None, dsn: str | None) -> Store:
    if dsn:
        return Store(dsn)
    if postgres_conn_id:
        return Store.from_connection_id(postgres_conn_id)
    raise ValueError(f"task {task_id}: set postgres_conn_id or dsn (or [autopilot] dsn in airflow.cfg)")
