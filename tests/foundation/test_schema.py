"""The schema applies twice without change and records its version."""

from __future__ import annotations

import psycopg2
import pytest

from autopilot_ops.store.connection import Store
from autopilot_ops.store.schema import TABLES, apply_schema, latest_version, schema_status


def test_schema_is_idempotent_and_versioned(pg_dsn: str) -> None:
    with Store(pg_dsn) as store:
        assert schema_status(store).version is None
        latest = latest_version()
        assert apply_schema(store) == latest
        assert apply_schema(store) == latest
        status = schema_status(store)
        assert status.version == latest and status.pending == 0
        assert set(status.row_counts) == set(TABLES)
        assert all(count == 0 for count in status.row_counts.values())
        with store.transaction() as cur:
            cur.execute("SELECT count(*) AS n FROM schema_version")
            assert cur.fetchone()["n"] == latest


def test_schema_rejects_unknown_status_and_pilot_state(store: Store) -> None:
    with pytest.raises(psycopg2.errors.CheckViolation), store.transaction() as cur:
        cur.execute("INSERT INTO schedconfig (panda_queue, site, status) VALUES ('Q', 'S', 'sleeping')")
    with pytest.raises(psycopg2.errors.CheckViolation), store.transaction() as cur:
        cur.execute("INSERT INTO pilots (queue, backend, batch_id, state) VALUES ('Q', 'b', '1', 'lost')")


def test_failed_transaction_leaves_nothing_and_store_recovers(store: Store) -> None:
    with pytest.raises(psycopg2.errors.UniqueViolation), store.transaction() as cur:
        cur.execute("INSERT INTO backends (name, kind) VALUES ('a', 'local')")
        cur.execute("INSERT INTO backends (name, kind) VALUES ('a', 'local')")
    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM backends")
        assert cur.fetchone()["n"] == 0


def _kill_backend_of(store: Store) -> int:
    with store.transaction() as cur:
        cur.execute("SELECT pg_backend_pid() AS pid")
        pid = cur.fetchone()["pid"]
    killer = psycopg2.connect(store.dsn)
    killer.autocommit = True
    with killer.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    killer.close()
    return pid


def test_store_reconnects_after_the_connection_dies(pg_dsn: str) -> None:
    with Store(pg_dsn, check_idle_after_s=3600) as store:  # no idle check: the dead connection is found by use
        pid = _kill_backend_of(store)
        with pytest.raises(psycopg2.OperationalError), store.transaction() as cur:
            cur.execute("SELECT 1")
        with store.transaction() as cur:
            cur.execute("SELECT pg_backend_pid() AS pid")
            assert cur.fetchone()["pid"] != pid


def test_idle_connection_is_checked_before_reuse(pg_dsn: str) -> None:
    with Store(pg_dsn, check_idle_after_s=0) as store:
        pid = _kill_backend_of(store)
        with store.transaction() as cur:  # the dead connection is replaced before the transaction starts
            cur.execute("SELECT pg_backend_pid() AS pid")
            assert cur.fetchone()["pid"] != pid
