"""Fixtures shared by every test: a real PostgreSQL server and an isolated schema per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from autopilot_ops.store.connection import Store
from autopilot_ops.store.embedded import EmbeddedPostgres, port_is_free
from autopilot_ops.store.schema import apply_schema

DEFAULT_TEST_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _answers(dsn: str) -> bool:
    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
    except psycopg2.OperationalError:
        return False
    return True


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """``$AUTOPILOT_TEST_DSN``; else the local server on 5432 if it answers; else a throwaway server."""
    explicit = os.environ.get("AUTOPILOT_TEST_DSN")
    if explicit:
        yield explicit
        return
    if _answers(DEFAULT_TEST_DSN):
        yield DEFAULT_TEST_DSN
        return
    server = throwaway_server()
    server.start()
    try:
        yield server.dsn
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def throwaway_server() -> EmbeddedPostgres:
    """An embedded server on a free port, in a fresh directory the ``postgres`` user can reach."""
    port = next(p for p in range(56432, 56632) if port_is_free(p))
    return EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="autopilot-pg-")), port, database="test")


@pytest.fixture
def pg_dsn(pg_server_dsn: str) -> Iterator[str]:
    """A DSN whose ``search_path`` is a fresh schema, dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(pg_server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in pg_server_dsn else "?"
    try:
        yield f"{pg_server_dsn}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


@pytest.fixture
def store(pg_dsn: str) -> Iterator[Store]:
    """A store on an isolated schema with AutoPilot's tables in it."""
    with Store(pg_dsn) as s:
        apply_schema(s)
        yield s


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def service_is_up(script: Path) -> bool:
    """Whether the service of a ``scripts/*-local.sh`` answers (its ``status``)."""
    return subprocess.run([str(script), "status"], capture_output=True).returncode == 0


def service_settings(script: Path) -> dict[str, str]:
    """The client settings a ``scripts/*-local.sh`` prints with ``env`` (its ``export NAME=value`` lines); the test
    fails, naming the script, when the service is down (``.ci/run`` starts it)."""
    if not service_is_up(script):
        pytest.fail(f"the service of {script.name} is not running: run {script} start")
    lines = subprocess.run([str(script), "env"], capture_output=True, text=True, check=True).stdout.splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)
