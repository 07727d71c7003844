"""A PostgreSQL connection for AutoPilot, opened from a DSN or an Airflow connection id."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import quote

import psycopg2
import psycopg2.extensions
import psycopg2.extras


class StoreError(Exception):
    """The database could not be reached or refused an operation; the message says which."""


class Store:
    """One lazily opened connection; every write path runs inside ``transaction()``.

    A broken connection (for example after a database restart) is replaced on the next transaction.
    """

    def __init__(self, dsn: str, *, connect_timeout: int = 10):
        self.dsn = dsn
        self._connect_timeout = connect_timeout
        self._conn: psycopg2.extensions.connection | None = None

    @classmethod
    def from_connection_id(cls, conn_id: str) -> Store:
        """A store on the Airflow Postgres connection ``conn_id``."""
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
        return cls(airflow_connection_dsn(conn.host, conn.port, conn.login, conn.password, conn.schema))

    def connection(self) -> psycopg2.extensions.connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg2.connect(self.dsn, connect_timeout=self._connect_timeout)
            except psycopg2.OperationalError as exc:
                raise StoreError(f"cannot connect to PostgreSQL at {redact(self.dsn)}: {exc}".strip()) from exc
        return self._conn

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
