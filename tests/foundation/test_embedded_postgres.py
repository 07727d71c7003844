"""The embedded PostgreSQL server used by the run command, and by the tests on machines without one."""

from __future__ import annotations

import glob
import shutil
import socket

import psycopg2
import pytest

from autopilot_ops.store.embedded import EmbeddedPostgresError, find_bindir
from tests.conftest import throwaway_server

pytestmark = pytest.mark.skipif(
    shutil.which("initdb") is None and not glob.glob("/usr/lib/postgresql/*/bin/initdb"),
    reason="no PostgreSQL server binaries on this machine",
)


def test_start_is_idempotent_and_stop_stops() -> None:
    server = throwaway_server()
    try:
        server.start()
        server.start()
        with psycopg2.connect(server.dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone()[0] == "test"
        conn.close()
        assert server.is_running()
        server.stop()
        assert not server.is_running()
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(server.dsn, connect_timeout=2)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def test_taken_port_is_named_in_the_error() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        server = throwaway_server()
        server.port = blocker.getsockname()[1]
        try:
            with pytest.raises(
                EmbeddedPostgresError, match=rf"port {server.port} is taken.*AUTOPILOT_EMBEDDED_PG_PORT"
            ):
                server.start()
        finally:
            shutil.rmtree(server.data_dir, ignore_errors=True)


def test_bindir_has_the_server_tools() -> None:
    bindir = find_bindir()
    assert (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()
