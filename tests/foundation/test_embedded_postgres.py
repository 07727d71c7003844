"""The embedded PostgreSQL server used by the run command, and by the tests on machines without one."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import psycopg2
import pytest

from autopilot_ops.store.embedded import EmbeddedPostgres, EmbeddedPostgresError, find_bindir
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


PLAIN_USER = "autopilot-pgtest"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (the server then runs as postgres)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_clone() -> Path:
    """A clone's state dir under a 0700 directory, as under /root or in ``mktemp -d``."""
    top = Path(tempfile.mkdtemp(prefix="autopilot-clone-"))
    assert stat.S_IMODE(top.stat().st_mode) == 0o700
    return top / "clone" / ".autopilot" / "postgres"


@needs_root
def test_root_runs_the_server_from_a_private_directory() -> None:
    data_dir = private_clone()
    server = EmbeddedPostgres(data_dir, free_port(), database="test")
    try:
        server.start()
        cluster = server.cluster_dir
        assert cluster == server.relocated_dir and (cluster / "pgdata" / "PG_VERSION").exists()
        with psycopg2.connect(server.dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone()[0] == "postgres"
        conn.close()
        assert server.is_running()
        server.stop()
        assert not server.is_running()
    finally:
        server.remove()
        shutil.rmtree(data_dir.parents[2], ignore_errors=True)
    assert not cluster.exists()


def _plain_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(PLAIN_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PLAIN_USER], check=True)
        return pwd.getpwnam(PLAIN_USER)


def _python_for(user: str) -> str:
    """An interpreter ``user`` can run with this one's packages: this one, else the system one of its version."""
    candidates = [sys.executable, f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"]
    for candidate in candidates:
        probe = subprocess.run(
            ["runuser", "-u", user, "--", candidate, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(sys.version_info[:2])):
            return candidate
    pytest.skip(f"no Python {sys.version_info[:2]} that {user} can run")


PLAIN_USER_SCRIPT = """
import os, sys
from pathlib import Path
import psycopg2
from autopilot_ops.store.embedded import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[1]), int(sys.argv[2]), database="test")
server.start()
conn = psycopg2.connect(server.dsn)
with conn.cursor() as cur:
    cur.execute("SELECT 1")
    assert cur.fetchone()[0] == 1
conn.close()
owner = server.pgdata.stat().st_uid
server.stop()
print(owner, os.getuid(), server.cluster_dir)
"""


@needs_root
def test_plain_user_runs_the_server_as_itself_from_a_private_directory(repo_root: Path) -> None:
    user = _plain_user()
    data_dir = private_clone()
    top = data_dir.parents[2]
    os.chown(top, user.pw_uid, user.pw_gid)
    python = _python_for(user.pw_name)
    path = os.pathsep.join([str(repo_root), *sysconfig.get_paths()["purelib"].split(os.pathsep)])
    try:
        command = ["runuser", "-u", user.pw_name, "--", "env", f"PYTHONPATH={path}", python, "-c", PLAIN_USER_SCRIPT]
        result = subprocess.run(
            [*command, str(data_dir), str(free_port())],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        owner, uid, cluster = result.stdout.split()
        assert int(owner) == int(uid) == user.pw_uid
        assert Path(cluster) == data_dir
    finally:
        shutil.rmtree(top, ignore_errors=True)
