"""Fixtures for the monitor app: machine tokens from a real Airflow Variable, seeded queues, pilots, cycles."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
import pytest
import requests
import uvicorn

# Airflow writes its config under AIRFLOW_HOME on import: keep it out of the user's home.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="autopilot-airflow-home-"))

from fastapi.testclient import TestClient

from autopilot_ops.airflow.webapp.app import create_app
from autopilot_ops.airflow.webapp.settings import WebSettings
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.store.connection import Store
from autopilot_ops.store.schema import apply_schema

TOKENS = {
    "op": "op-token-0123456789abcdef",
    "pilot": "pilot-token-0123456789abcdef",
    "viewer": "viewer-token-0123456789abcdef",
}


@pytest.fixture
def api_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Variable ``autopilot_api_tokens``, through Airflow's environment-variable secrets backend."""
    monkeypatch.setenv("AIRFLOW_VAR_AUTOPILOT_API_TOKENS", json.dumps({
        TOKENS["op"]: {"identity": "panda-server", "role": "op"},
        TOKENS["pilot"]: "pilots",
        TOKENS["viewer"]: {"identity": "dashboard", "role": "viewer"},
    }))


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    root = tmp_path / "logs"
    root.mkdir()
    return root


@pytest.fixture
def settings(pg_dsn: str, log_root: Path) -> WebSettings:
    return WebSettings(dsn=pg_dsn, log_root=log_root, token_cache_seconds=0)


@pytest.fixture
def devserver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DevServer]:
    """The PanDA dev server (token auth) on loopback, and the Airflow connection ``panda_dev`` to it."""
    with DevServer(tmp_path / "panda", auth="token") as srv:
        monkeypatch.setenv("AIRFLOW_CONN_PANDA_DEV", json.dumps({
            "conn_type": "panda", "host": srv.url, "password": srv.token,
            "extra": {"origin": "autopilot", "protocol": "v1"},
        }))
        yield srv


@pytest.fixture
def live_url(store: Any, settings: WebSettings, api_tokens: None) -> Iterator[str]:
    """The app served by a real uvicorn server on loopback; its base URL (``http://127.0.0.1:<port>``)."""
    app = create_app(settings)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, root_path="/autopilot",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start on loopback")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        app.state.store_pool.close()


@pytest.fixture
def client(store: Any, settings: WebSettings, api_tokens: None) -> Iterator[TestClient]:
    """The app as Airflow mounts it (prefix ``/autopilot``), on a fresh schema with the tables applied."""
    app = create_app(settings)
    with TestClient(app, root_path="/autopilot") as test_client:
        yield test_client
    app.state.store_pool.close()


class Seed:
    """Rows for the app to show: queues (with their back end), pilots, cycles; and the audit rows written."""

    def __init__(self, store: Any):
        self.store = store

    def queue(self, name: str, tags: list[str], site: str = "SITE_A", backend: str = "local-1") -> None:
        with self.store.transaction() as cur:
            cur.execute("INSERT INTO backends (name, kind) VALUES (%s, 'local') ON CONFLICT DO NOTHING", (backend,))
            cur.execute(
                "INSERT INTO schedconfig (panda_queue, site, tags, backend) VALUES (%s, %s, %s, %s)",
                (name, site, tags, backend),
            )

    def pilot(self, queue: str, batch_id: str, state: str, **columns: Any) -> int:
        values = {"queue": queue, "backend": "local-1", "batch_id": batch_id, "state": state, **columns}
        with self.store.transaction() as cur:
            cur.execute(
                f"INSERT INTO pilots ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
                list(values.values()),
            )
            return cur.fetchone()["id"]

    def cycle(self, queue: str, cycle_id: str, at: dt.datetime, inputs: dict[str, Any], decided: int,
              reason: list[str]) -> None:
        with self.store.transaction() as cur:
            cur.execute(
                "INSERT INTO cycles (cycle_id, queue, scheduler, started_at, ended_at, inputs, decided, reason, "
                "submitted) VALUES (%s, %s, 'sched-1', %s, %s, %s, %s, %s, %s)",
                (cycle_id, queue, at, at, psycopg2.extras.Json(inputs), decided, reason, decided),
            )

    def events(self, what: str) -> list[dict[str, Any]]:
        with self.store.transaction() as cur:
            cur.execute("SELECT * FROM pilot_events WHERE what = %s ORDER BY id", (what,))
            return [dict(row) for row in cur.fetchall()]

    def row(self, sql: str, *args: Any) -> dict[str, Any] | None:
        with self.store.transaction() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
            return dict(row) if row else None


@pytest.fixture
def seed(store: Any) -> Seed:
    return Seed(store)


@pytest.fixture
def bearer() -> Any:
    """``bearer("op")``: the Authorization header of the machine token with that role."""
    return lambda role: {"Authorization": f"Bearer {TOKENS[role]}"}


AIRFLOW_USERS = {"alice": ("admin", "alice-pw"), "olga": ("op", "olga-pw"), "vic": ("viewer", "vic-pw")}
MACHINE_TOKEN = "machine-token-0123456789abcdef"
#: A stand-in for the DAG factory's output: one scheduler DAG (tagged) and one service DAG (not).
TEST_DAGS = '''
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from autopilot_ops.airflow.naming import SCHEDULER_DAG_TAGS, scheduler_dag_id

with DAG(scheduler_dag_id("alpha"), schedule=None, tags=[*SCHEDULER_DAG_TAGS, "alpha"],
         is_paused_upon_creation=True):
    EmptyOperator(task_id="cycle")
with DAG("autopilot_sync", schedule=None, tags=["autopilot", "sync"]):
    EmptyOperator(task_id="sync")
'''


class AirflowServer:
    """A real ``airflow api-server`` with the AutoPilot plugin, SimpleAuthManager users and a test DAG."""

    def __init__(self, url: str, env: dict[str, str], store: Any):
        self.url = url
        self.env = env
        self.store = store

    def token(self, user: str) -> str:
        reply = requests.post(f"{self.url}/auth/token", json={"username": user, "password": AIRFLOW_USERS[user][1]},
                              timeout=30)
        reply.raise_for_status()
        return reply.json()["access_token"]


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"{what} failed: {result.stderr[-3000:]}")


@pytest.fixture(scope="session")
def airflow_server(pg_server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowServer]:
    """Started once per session (about 25 s: ``db migrate``, ``dags reserialize``, the server's start)."""
    home = tmp_path_factory.mktemp("airflow-home")
    (home / "dags").mkdir()
    (home / "dags" / "autopilot_test_dags.py").write_text(TEST_DAGS)
    (home / "passwords.json").write_text(json.dumps({user: pw for user, (_, pw) in AIRFLOW_USERS.items()}))
    (home / "logs-root").mkdir()
    schema = f"t_airflow_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(pg_server_dsn)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{pg_server_dsn}{'&' if '?' in pg_server_dsn else '?'}options=-csearch_path%3D{schema}"
    store = Store(dsn)
    apply_schema(store)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "AUTOPILOT_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(Path(__file__).resolve().parents[2] / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, (r, _) in AIRFLOW_USERS.items()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__AUTOPILOT__DSN": dsn,
        "AIRFLOW__AUTOPILOT__LOG_ROOT": str(home / "logs-root"),
        "AIRFLOW_VAR_AUTOPILOT_API_TOKENS": json.dumps({MACHINE_TOKEN: {"identity": "panda", "role": "op"}}),
        "AIRFLOW__AUTOPILOT__API_TOKENS_CONN_ID": "autopilot_api",
        "AIRFLOW__AUTOPILOT__API_TOKEN_CACHE_SECONDS": "0",
    })
    airflow = str(Path(sys.executable).with_name("airflow"))
    _run([airflow, "db", "migrate"], env, "airflow db migrate")
    log = (home / "api-server.log").open("w")
    process = subprocess.Popen([airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _run([airflow, "dags", "reserialize"], env, "airflow dags reserialize")
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"airflow api-server exited: {(home / 'api-server.log').read_text()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("airflow api-server did not answer within 120 s")
            try:
                if requests.get(f"{url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        yield AirflowServer(url, env, store)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()
        store.close()
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
