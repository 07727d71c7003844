"""Helpers of the scale-out tests: the demo queues with one queue routed to a worker queue, and Airflow's
metadata database of a quick start."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import psycopg2.extras

from ..quickstart.conftest import Quickstart

#: The worker queue DEMO_SITE_B is routed to; only the quick start's second worker serves it.
WORKER_QUEUE = "site-b"


def routed_demo_queues(directory: Path) -> Path:
    """The demo queues, with DEMO_SITE_B's cycle task routed to the worker queue ``site-b``."""
    text = (Path(__file__).parents[2] / "autopilot_ops" / "data" / "demo-queues.yaml").read_text()
    marker = "    panda_site: DEMO_B\n"
    assert marker in text
    path = directory / "queues.yaml"
    path.write_text(text.replace(marker, marker + f"    worker_queue: {WORKER_QUEUE}\n"))
    return path


def airflow_rows(quickstart: Quickstart, sql: str, *args: object) -> list[dict]:
    port = quickstart.env["AUTOPILOT_EMBEDDED_PG_PORT"]
    conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:{port}/airflow")
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql, args)
            return cur.fetchall()
    finally:
        conn.close()
