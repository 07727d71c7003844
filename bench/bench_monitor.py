"""The monitor app with 2,000 queues in 200 tags: time the overview (all tags, one tag), a queue page and
``/api/queues``; print JSON (median seconds over a few requests, through the app's ASGI stack, machine token).

Data: 10 cycles and 20 pilots per queue (20,000 cycle rows, 40,000 pilots). In a fresh schema of
$AUTOPILOT_BENCH_DSN (default: the local test server), dropped afterwards.
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


def seed(store: Store) -> None:
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
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO pilots (queue, backend, batch_id, state) VALUES %s",
            [(name, "local-1", f"{name}-{p}", states[p % 4]) for name in names for p in range(PILOTS)],
            page_size=5000,
        )
        cur.execute("ANALYZE")


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
        seed(store)
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
                "queue_page_s": median_seconds(client, "/queues/BENCH_Q0042"),
                "api_queues_s": median_seconds(client, "/api/queues"),
            }
        app.state.store_pool.close()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
