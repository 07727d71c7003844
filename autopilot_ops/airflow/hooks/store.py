"""The AutoPilot store on an Airflow Postgres connection, or on a DSN."""

from __future__ import annotations

from airflow.sdk import BaseHook

from autopilot_ops.store.connection import Store


class AutopilotStoreHook(BaseHook):
    """``get_conn()`` is a :class:`~autopilot_ops.store.connection.Store` on ``dsn`` when given, else on the
    Postgres connection ``postgres_conn_id``. The store is opened once per hook and closed by ``close()``."""

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
            self._store = Store(self.dsn) if self.dsn else Store.from_connection_id(self.postgres_conn_id or "")
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
