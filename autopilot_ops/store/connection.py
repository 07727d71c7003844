"""A PostgreSQL connection for AutoPilot, opened from a DSN or an Airflow connection id."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import psycopg2
import psycopg2.extensions
import psycopg2.extras


class StoreError(Exception):
    """The database could not be reached or refused an operation; the message says which."""


class Store:
    """One lazily opened connection; every write path runs inside ``transaction()``.

    A connection idle for more than ``check_idle_after_s`` is checked (``SELECT 1``) before it is used again:
    a database restart leaves it dead without psycopg2 noticing, and it is replaced instead of failing the next
    transaction. A connection that breaks during a transaction is replaced on the next one.
    """

    def __init__(self, dsn: str, *, connect_timeout: int = 10, check_idle_after_s: float = 1.0):
        self.dsn = dsn
        self._connect_timeout = connect_timeout
        self._check_idle_after_s = check_idle_after_s
        self._conn: psycopg2.extensions.connection | None = None
        self._last_used = 0.0
        #: The advisory locks on their own connection (``autopilot_ops.scheduler.locks``), made on first use.
        self.advisory_locks: Any = None

    @classmethod
    def from_connection_id(cls, conn_id: str) -> Store:
        """A store on the Airflow Postgres connection ``conn_id``."""
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        return cls(airflow_connection_dsn(conn.host, conn.port, conn.login, conn.password, conn.schema))

    def connection(self) -> psycopg2.extensions.connection:
        idle = time.monotonic() - self._last_used
        if self._conn is not None and not self._conn.closed and idle >= self._check_idle_after_s and not self._alive():
            self._conn.close()
        if self._conn is None or self._conn.closed:
            self._conn = self.open_dedicated()
        return self._conn

    def open_dedicated(self) -> psycopg2.extensions.connection:
        """A new connection to the database, owned by the caller (the store's own, and the locks' one)."""
        try:
            return psycopg2.connect(self.dsn, connect_timeout=self._connect_timeout)
        except psycopg2.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {redact(self.dsn)}: {exc}".strip()) from exc

    def _alive(self) -> bool:
        """Whether the open connection still reaches the server."""
        try:
            with self._conn.cursor() as cur:
                cur.execute("SELECT 1")
            self._conn.rollback()
        except psycopg2.Error:
            return False
        return True

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg2.extras.RealDictCursor]:
        """A cursor inside one transaction: committed on success, rolled back on any error."""
        conn = self.connection()
        try:
            with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                yield cur
            conn.commit()
        except BaseException:
            self._abort()
            raise
        finally:
            self._last_used = time.monotonic()

    def _abort(self) -> None:
        """Roll back the open transaction; drop the connection if it is broken."""
        conn = self._conn
        if conn is None:
            return
        try:
            if not conn.closed:
                conn.rollback()
        except psycopg2.Error:
            conn.close()
        if conn.closed:
            self._conn = None

    def close(self) -> None:
        if self.advisory_locks is not None:
            self.advisory_locks.close()
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def airflow_connection_dsn(
    host: str | None, port: int | None, login: str | None, password: str | None, database: str | None
) -> str:
    """A libpq URL from the fields of an Airflow connection."""
    auth = quote(login or "", safe="")
    if password:
        auth += ":" + quote(password, safe="")
    netloc = f"{auth}@" if auth else ""
    netloc += host or "localhost"
    if port:
        netloc += f":{port}"
    return f"postgresql://{netloc}/{quote(database or 'postgres', safe='')}"


def redact(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***``, for messages."""
    parsed = psycopg2.extensions.parse_dsn(dsn)
    if "password" not in parsed:
        return dsn
    return psycopg2.extensions.make_dsn(**{**parsed, "password": "***"})
