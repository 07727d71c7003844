"""Recovery after faults, against the real parts (PostgreSQL, the dev PanDA server, real pilot and scheduler
processes); print JSON with medians.

- ``final_update_after_outage``: the dev PanDA server is killed while a pilot's payload runs, the payload ends during
  the outage, the server comes back after ``BENCH_OUTAGE_S``; the time from the restart until the job is final on
  the server, delivered by the pilot itself (no resend by hand, no other pilot).
- ``panda_timeout``: PanDA accepts connections and never answers; the time the cycle takes under the fault (it
  must end by itself), then the time of the next cycle once PanDA answers again (normal: both queues submit).
- ``postgres_restart``: PostgreSQL (a throwaway embedded server) restarted between cycles; the time from the
  server being back until a normal cycle has completed, cycles retried every 0.2 s.
- ``sigkill_mid_cycle``: a scheduler process SIGKILLed after its submission key is written and before the back end
  answers; the time of the next cycle, which reconciles the pending key before deciding.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from pgschema import fresh_store

from autopilot_ops.airflow.hooks.panda import PandaHook
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.store.connection import Store
from autopilot_ops.store.schema import apply_schema
from tests.conftest import throwaway_server
from tests.faults.test_faults import DevServerProcess, pilot_command, wait_for
from tests.faults.test_scheduler_faults import QUEUES, SCHEDULER_PROCESS, Silent, cycle_with

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
OUTAGE_S = float(os.environ.get("BENCH_OUTAGE_S", "10"))
DELIVERY_LIMIT_S = 180.0


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def load(store: Store, tmp: Path, max_pilots: int = 100) -> None:
    path = tmp / "queues.yaml"
    path.write_text(QUEUES.format(state=tmp / "state", max_pilots=max_pilots))
    load_queues(store, str(path))


def normal(report) -> bool:
    return report.stats_error is None and report.submitted > 0


def cancel_pilots(tmp: Path) -> None:
    """Stop every local pilot the bench started (their supervisors' process groups)."""
    for pidfile in (tmp / "state").glob("*/supervisor.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.killpg(int(pidfile.read_text().split()[0]), signal.SIGKILL)


def one_outage(tmp: Path) -> float | None:
    """Seconds from the server's restart until the job is final on it; ``None`` if not within the limit."""
    panda = DevServerProcess(tmp / "panda", heartbeat_timeout=0)
    panda.start()
    go = tmp / "go"
    [job_id] = panda.submit(1, go)
    argv = [a.replace("{queue}", "Q1").replace("{panda_url}", panda.url) for a in pilot_command(tmp)]
    for option in ("--retries", "--backoff", "--final-patience"):  # the pilot's own defaults for these
        at = argv.index(option)
        del argv[at : at + 2]
    env = {**os.environ, "AUTOPILOT_PILOT_HOME": str(tmp / "pilot-home")}
    pilot = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: panda.statuses().get(job_id) == "running", "the job running")
        panda.kill()
        go.touch()
        time.sleep(OUTAGE_S)
        panda.start()
        back = time.monotonic()
        try:
            wait_for(lambda: panda.statuses()[job_id] == "finished", "final", timeout=DELIVERY_LIMIT_S)
        except AssertionError:
            return None
        return time.monotonic() - back
    finally:
        pilot.kill()
        pilot.wait()
        panda.stop()


def final_update_after_outage() -> dict:
    delays = []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory() as name:
            delays.append(one_outage(Path(name)))
    delivered = [d for d in delays if d is not None]
    return {
        "outage_s": OUTAGE_S,
        "restart_to_final_median_s": median(delivered) if delivered else None,
        f"undelivered_within_{DELIVERY_LIMIT_S:.0f}s": len(delays) - len(delivered),
    }


def panda_timeout() -> dict:
    under, after = [], []
    for run in range(REPEATS):
        with fresh_store() as store, tempfile.TemporaryDirectory() as name, DevServer(Path(name) / "p") as panda:
            tmp = Path(name)
            load(store, tmp)
            panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
            panda.submit_jobs("Q2", 5, f"{panda.url}/noop.sh", "")
            silent = Silent()
            os.environ["AIRFLOW_CONN_PANDA_BENCH"] = json.dumps({"conn_type": "panda", "host": silent.url})
            hung = cycle_with(store, tmp, panda.url, PandaHook("panda_bench", timeout=3).active_job_stats_by_site)
            start = time.monotonic()
            report = hung.run(f"hung-{run}")
            under.append(time.monotonic() - start)
            silent.close()
            assert report.stats_error is not None and report.submitted == 0
            os.environ["AIRFLOW_CONN_PANDA_BENCH"] = json.dumps({"conn_type": "panda", "host": panda.url})
            good = cycle_with(store, tmp, panda.url, PandaHook("panda_bench", timeout=3).active_job_stats_by_site)
            start = time.monotonic()
            assert normal(good.run(f"good-{run}"))
            after.append(time.monotonic() - start)
            cancel_pilots(tmp)
    return {"hook_timeout_s": 3, "cycle_under_fault_median_s": median(under), "next_cycle_median_s": median(after)}


def postgres_restart() -> dict:
    delays = []
    server = throwaway_server()
    server.start()
    try:
        with Store(server.dsn, connect_timeout=5) as store, tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            apply_schema(store)
            load(store, tmp)
            with DevServer(tmp / "panda") as panda:
                panda.submit_jobs("Q1", 100, f"{panda.url}/noop.sh", "")
                panda.submit_jobs("Q2", 100, f"{panda.url}/noop.sh", "")
                cycle = cycle_with(store, tmp, panda.url, PandaClient(panda.url).active_job_stats_by_site)
                assert normal(cycle.run("before"))
                for run in range(REPEATS):
                    server.stop()
                    server.start()
                    back = time.monotonic()
                    attempt = 0
                    while True:
                        attempt += 1
                        try:
                            if normal(cycle.run(f"after-{run}-{attempt}")):
                                break
                        except Exception:  # the dead connection is found and replaced; try again
                            time.sleep(0.2)
                    delays.append(time.monotonic() - back)
                cancel_pilots(tmp)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    return {"back_to_normal_cycle_median_s": median(delays)}


def one_sigkill(store: Store, tmp: Path, panda: DevServer) -> float:
    """Seconds the next cycle takes after a scheduler process was SIGKILLed between its key and the answer."""
    load(store, tmp, max_pilots=2)
    panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
    panda.submit_jobs("Q2", 5, f"{panda.url}/noop.sh", "")
    fifo = tmp / "block"
    os.mkfifo(fifo)
    argv = [sys.executable, "-c", SCHEDULER_PROCESS, store.dsn, panda.url, str(tmp / "logs"), "k", "1", str(fifo)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: Path(f"{fifo}.submitted").exists(), "the back end called")
    proc.kill()
    proc.wait()
    cycle = cycle_with(store, tmp, panda.url, PandaClient(panda.url).active_job_stats_by_site)
    start = time.monotonic()
    report = cycle.run("after")
    elapsed = time.monotonic() - start
    with store.transaction() as cur:
        cur.execute("SELECT state FROM submissions WHERE cycle_id = 'k-0'")
        assert [r["state"] for r in cur.fetchall()] == ["reconciled"]
    assert report.stats_error is None
    return elapsed


def sigkill_mid_cycle() -> dict:
    recovery = []
    for _ in range(REPEATS):
        with fresh_store() as store, tempfile.TemporaryDirectory() as name, DevServer(Path(name) / "p") as panda:
            recovery.append(one_sigkill(store, Path(name), panda))
            cancel_pilots(Path(name))
    return {"recovering_cycle_median_s": median(recovery)}


def main() -> int:
    # The servers and Airflow's logging write to stdout; keep it for the JSON alone.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    results: dict[str, dict] = {}
    for name, bench in (
        ("panda_timeout", panda_timeout),
        ("postgres_restart", postgres_restart),
        ("sigkill_mid_cycle", sigkill_mid_cycle),
        ("final_update_after_outage", final_update_after_outage),
    ):
        results[name] = bench()
    print(json.dumps({"bench": "recovery", "repeats": REPEATS, **results}, indent=2), file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
