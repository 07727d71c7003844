"""The monitor app with 2,000 queues in 200 tags at 500 sites: time the overview (all tags, one tag, one site),
a queue page (as it opens, filtered by state and sorted), a pilot page and ``/api/queues``; print JSON (median
seconds over a few requests, through the app's ASGI stack, machine token).

Data: 10 cycles and 20 pilots per queue (20,000 cycle rows, 40,000 pilots submitted over the last 24 h, each
with its state changes and a job in ``pilot_events``). In a fresh schema of $AUTOPILOT_BENCH_DSN (default: the
local test server), dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time

import psycopg2.extras

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-home-"))

from fastapi.testclient import TestClient
from pgschema import fresh_store

from autopilot_ops.airflow.webapp.app import create_app
from autopilot_ops.airflow.webapp.settings import WebSettings
from autopilot_ops.store.connection import Store

QUEUES, TAGS, CYCLES, PILOTS = 2000, 200, 10, 20
REQUESTS = int(os.environ.get("BENCH_REPEATS", "5"))
TOKEN = "bench-token-0123456789abcdef"


def seed(store: Store) -> int:
    """The rows; the id of a pilot that ran (for its page)."""
    now = dt.datetime.now(dt.timezone.utc)
    names = [f"BENCH_Q{i:04d}" for i in range(QUEUES)]
    with store.transaction() as cur:
        cur.execute("INSERT INTO backends (name, kind) VALUES ('local-1', 'local')")
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO schedconfig (panda_queue, site, tags, backend) VALUES %s",
            [(name, f"SITE{i % 500}", [f"tag{i % TAGS:03d}"], "local-1") for i, name in enumerate(names)],
        )
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO cycles (cycle_id, queue, started_at, inputs, decided, reason) VALUES %s",
            [
                (
                    f"c{c}",
                    name,
                    now - dt.timedelta(minutes=5 * c),
                    json.dumps({"queued": c, "running": 2 * c, "activated": 3 * c}),
                    c,
                    [f"activated={3 * c}", f"submit {c}"],
                )
                for name in names
                for c in range(CYCLES)
            ],
            page_size=5000,
        )
        states = ("queued", "running", "finished", "failed")
        rows = []
        for q, name in enumerate(names):
            for p in range(PILOTS):
                state = states[p % 4]
                submitted = now - dt.timedelta(minutes=(q * 7 + p * 71) % (24 * 60))
                started = submitted + dt.timedelta(minutes=10) if state != "queued" else None
                ended = submitted + dt.timedelta(minutes=40) if state in ("finished", "failed") else None
                rows.append((name, "local-1", f"{name}-{p}", state, submitted, started, ended, ended or submitted))
        ids = psycopg2.extras.execute_values(
            cur,
            "INSERT INTO pilots (queue, backend, batch_id, state, submitted_at, started_at, ended_at, "
            "state_changed_at) VALUES %s RETURNING id, queue, state, started_at",
            rows,
            page_size=5000,
            fetch=True,
        )
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO pilot_events (at, who, what, queue, pilot_id, details) VALUES %s",
            [event for row in ids if row["started_at"] for event in (
                (row["started_at"], "sweep", "pilot-state", row["queue"], row["id"],
                 json.dumps({"from": "queued", "to": "running"})),
                (row["started_at"], "pilots", "pilot.job", row["queue"], row["id"],
                 json.dumps({"job_id": 1000000 + row["id"]})),
            )],
            page_size=5000,
        )
        cur.execute("ANALYZE")
    return next(row["id"] for row in ids if row["started_at"])


def median_seconds(client: TestClient, path: str) -> float:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    times = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        reply = client.get(path, headers=headers)
        times.append(time.perf_counter() - start)
        if reply.status_code != 200:
            raise RuntimeError(f"GET {path}: HTTP {reply.status_code}: {reply.text[:200]}")
    return round(statistics.median(times), 4)


def main() -> int:
    with fresh_store() as store:
        pilot_id = seed(store)
        os.environ["AIRFLOW_VAR_AUTOPILOT_API_TOKENS"] = json.dumps({TOKEN: {"identity": "bench", "role": "viewer"}})
        app = create_app(WebSettings(dsn=store.dsn, token_cache_seconds=60))
        with TestClient(app, root_path="/autopilot") as client:
            client.get("/api/queues", headers={"Authorization": f"Bearer {TOKEN}"})  # warm the pool and tokens
            result = {
                "queues": QUEUES,
                "tags": TAGS,
                "cycles": QUEUES * CYCLES,
                "pilots": QUEUES * PILOTS,
                "requests": REQUESTS,
                "overview_page_s": median_seconds(client, "/"),
                "overview_one_tag_s": median_seconds(client, "/?tag=tag042"),
                "overview_one_site_s": median_seconds(client, "/?site=SITE42"),
                "queue_page_s": median_seconds(client, "/queues/BENCH_Q0042"),
                "queue_page_filtered_sorted_s": median_seconds(client, "/queues/BENCH_Q0042?state=running&sort=-exit"),
                "pilot_page_s": median_seconds(client, f"/pilots/{pilot_id}"),
                "api_queues_s": median_seconds(client, "/api/queues"),
            }
        app.state.store_pool.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
