"""Fixtures for the monitor app: machine tokens from a real Airflow Variable, seeded queues, pilots, cycles."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2.extras
import pytest
import uvicorn

# Airflow writes its config under AIRFLOW_HOME on import: keep it out of the user's home.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="autopilot-airflow-home-"))

from fastapi.testclient import TestClient

from autopilot_ops.airflow.webapp.app import create_app
from autopilot_ops.airflow.webapp.settings import WebSettings

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
