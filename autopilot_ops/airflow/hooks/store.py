"""The AutoPilot store on an Airflow Postgres connection, or on a DSN: the one way the Airflow side opens it."""

from __future__ import annotations

from airflow.sdk import BaseHook

from autopilot_ops.store.connection import Store


def open_store(postgres_conn_id: str | None, dsn: str | None, *, owner: str) -> Store:
    """A new store on ``dsn`` when one is given, else on the Postgres connection ``postgres_conn_id``;
    ``owner`` (a task, the monitor) is named in the error when neither is set."""
    if dsn:
        return Store(dsn)
    if postgres_conn_id:
        return Store.from_connection_id(postgres_conn_id)
    raise ValueError(
        f"{owner}: no database configured: set postgres_conn_id or a dsn"
        " ([autopilot] postgres_conn_id or dsn in airflow.cfg, or AUTOPILOT_DSN)"
    )


class AutopilotStoreHook(BaseHook):
    """``get_conn()`` is a :class:`~autopilot_ops.store.connection.Store` on ``dsn`` when given, else on the
    Postgres connection ``postgres_conn_id`` (:func:`open_store`); opened once per hook, closed by ``close()``."""

    conn_name_attr = "postgres_conn_id"
    default_conn_name = "autopilot_db"
    conn_type = "postgres"
    hook_name = "AutoPilot store"

    def __init__(self, postgres_conn_id: str | None = default_conn_name, dsn: str | None = None) -> None:
        super().__init__()
        if not dsn and not postgres_conn_id:
            raise ValueError("AutopilotStoreHook needs a postgres_conn_id or a dsn")
        self.postgres_conn_id = postgres_conn_id
        self.dsn = dsn
        self._store: Store | None = None

    def get_conn(self) -> Store:
        if self._store is None:
            self._store = open_store(self.postgres_conn_id, self.dsn, owner=type(self).__name__)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
