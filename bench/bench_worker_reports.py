"""Reporting 10,000 pilot changes to PanDA as workers (``harvester/update_workers``, 100 per call) against the
dev server, from a fresh schema of $AUTOPILOT_BENCH_DSN; print JSON.

- ``requests``: ``update_workers`` calls per report of all changes (target <= 100);
- ``report_median_s``: the sweep's wall time for one report of all changes (target <= 1 s);
  ``calls_median_s`` is the time spent inside the 100 calls (PanDA's side, HTTP and JSON), and
  ``outside_calls_median_s`` the rest: the PostgreSQL query and what of the marks and worker dicts does not hide
  behind the calls;
- a second report right after sends nothing (``resend_requests`` 0): accepted states are not sent again.

The dev server runs in its own process (``autopilot panda-devserver --quiet``), as PanDA does on its own host: in
this process it would share the sweep's interpreter lock, and its CPU would count as the sweep's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg2.extras
from pgschema import fresh_store

from autopilot_ops.panda.client import PandaClient, RetryPolicy
from autopilot_ops.panda.factory import FactoryClient
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.worker_reports import report_workers
from autopilot_ops.store.connection import Store

PILOTS = int(os.environ.get("BENCH_PILOTS", "10000"))
QUEUES = 100
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def seed(store: Store, tmp: Path) -> list[str]:
    names = [f"BENCH_W{i:03d}" for i in range(QUEUES)]
    queues = tmp / "queues.json"
    queues.write_text(json.dumps({
        "backends": [{"name": "local", "kind": "local"}],
        "defaults": {"backend": "local", "tags": ["bench"]},
        "queues": [{"name": name, "site": "SITE"} for name in names],
    }))
    load_queues(store, str(queues))
    now = dt.datetime.now(dt.timezone.utc)
    with store.transaction() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO pilots (queue, backend, batch_id, state, submitted_at, started_at, stdout_path) VALUES %s",
            [(names[i % QUEUES], "local", f"b{i}", "running", now, now, f"/logs/{i}.out") for i in range(PILOTS)],
            page_size=5000,
        )
    return names


@contextlib.contextmanager
def devserver(db: Path) -> Iterator[str]:
    """``autopilot panda-devserver`` on a free loopback port, open to all (loopback only); yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [str(Path(sys.executable).with_name("autopilot")), "panda-devserver", "--port", str(port),
               "--db", str(db), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v1/system/is_alive", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the dev server did not start (exit code {process.poll()})") from None
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def main() -> int:
    times, call_times, outside_times, calls, resend = [], [], [], [], []
    with fresh_store() as store, tempfile.TemporaryDirectory() as tmp, devserver(Path(tmp) / "panda.db") as url:
        names = seed(store, Path(tmp))
        factory = FactoryClient(PandaClient(url, retry=RetryPolicy(attempts=1), timeout=10), "bench-factory")
        for _ in range(REPEATS):
            with store.transaction() as cur:
                cur.execute("UPDATE pilots SET worker_reported_state = NULL, worker_reported_at = NULL")
            now = dt.datetime.now(dt.timezone.utc)
            sent_s = [0.0]
            update = factory.update_workers

            def timed_update(workers, _update=update, _sent=sent_s):
                started = time.perf_counter()
                try:
                    return _update(workers)
                finally:
                    _sent[0] += time.perf_counter() - started

            factory.update_workers = timed_update  # type: ignore[method-assign]
            started = time.perf_counter()
            report = report_workers(store, factory, names, now, monitor_url="http://mon.example/autopilot",
                                    log_root=Path("/logs"))
            times.append(time.perf_counter() - started)
            factory.update_workers = update  # type: ignore[method-assign]
            call_times.append(sent_s[0])
            outside_times.append(times[-1] - sent_s[0])
            assert report.accepted == PILOTS and report.error is None, report
            calls.append(report.calls)
            resend.append(report_workers(store, factory, names, now).calls)
    result = {
        "bench": "worker_reports",
        "pilot_changes": PILOTS,
        "repeats": REPEATS,
        "requests": statistics.median(calls),
        "resend_requests": max(resend),
        "report_median_s": round(statistics.median(times), 3),
        "calls_median_s": round(statistics.median(call_times), 3),
        "outside_calls_median_s": round(statistics.median(outside_times), 3),
        "target": {"requests": 100, "report_s": 1.0},
    }
    result["within_target"] = result["requests"] <= 100 and result["report_median_s"] <= 1.0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
