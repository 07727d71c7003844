"""``autopilot up`` and ``autopilot down`` as real processes: the demo's jobs run through pilots that the demo
scheduler DAG submitted, a second ``up`` reuses the running services, ``down`` leaves no process behind."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extras
import pytest

from autopilot_ops.panda.devserver.database import Database
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.quickstart.database import slurm_answers
from autopilot_ops.quickstart.processes import MARKER_VARIABLE

from .conftest import Quickstart, make_quickstart

pytestmark = pytest.mark.airflow

DEMO_JOBS = 50
FINAL_PILOT_STATES = ("finished", "failed", "cancelled", "missed")


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[Quickstart, str]]:
    """One quick start brought up with 50 demo jobs; its ``up`` output."""
    quickstart = make_quickstart(AUTOPILOT_DEMO_JOBS=str(DEMO_JOBS))
    try:
        result = quickstart.run("up")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield quickstart, result.stdout
    finally:
        quickstart.run("down", timeout=120)
        shutil.rmtree(quickstart.home.parent, ignore_errors=True)


def store_rows(quickstart: Quickstart, sql: str) -> list[dict]:
    port = quickstart.env["AUTOPILOT_EMBEDDED_PG_PORT"]
    conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:{port}/autopilot")
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def panda_jobs(quickstart: Quickstart) -> list[dict]:
    database = Database(quickstart.home / "panda-devserver.db")
    try:
        store = JobStore(database)
        return [store.job(summary["panda_id"]) for summary in store.jobs()]
    finally:
        database.close()


def our_processes(quickstart: Quickstart) -> list[str]:
    """Processes that run in our AIRFLOW_HOME or carry its AIRFLOW_HOME, or our marker, in their environment."""
    markers = {f"AIRFLOW_HOME={quickstart.airflow_home}".encode(), f"{MARKER_VARIABLE}={quickstart.home}".encode()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = set(Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"))
            cwd = os.readlink(f"/proc/{entry}/cwd")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        ours = markers & environ or cwd.startswith(str(quickstart.home)) or str(quickstart.home) in cmdline
        if state != "Z" and ours:
            found.append(f"{entry} {cmdline}")
    return found


def test_up_runs_every_demo_job_through_pilots_the_scheduler_submitted(demo: tuple[Quickstart, str]) -> None:
    quickstart, output = demo
    assert f"{DEMO_JOBS}/{DEMO_JOBS} jobs finished" in output
    jobs = panda_jobs(quickstart)
    assert len(jobs) == DEMO_JOBS
    assert [job["status"] for job in jobs] == ["finished"] * DEMO_JOBS
    for job in jobs:
        outputs = [f["lfn"] for f in job["files"] if f["type"] == "output"]
        assert len(outputs) == 1 and outputs[0] in job["job_output_report"], job["panda_id"]
        assert [h["status"] for h in job["history"]].count("sent") == 1, job["history"]  # acquired once
    deadline = time.monotonic() + 150  # the next cycle (30 s) or the monitor DAG (2 min) records the pilots' ends
    while time.monotonic() < deadline:
        pilots = store_rows(quickstart, "SELECT queue, cycle_id, batch_id, state FROM pilots")
        if pilots and all(p["state"] in FINAL_PILOT_STATES for p in pilots):
            break
        time.sleep(3)
    assert pilots and {p["state"] for p in pilots} <= set(FINAL_PILOT_STATES), pilots
    cycles = store_rows(quickstart, "SELECT queue, cycle_id, submitted, reason FROM cycles")
    assert cycles and all(c["reason"] for c in cycles)
    expected = ["DEMO_SITE_A", "DEMO_SITE_A_MCORE", "DEMO_SITE_B", *(["DEMO_SLURM"] if slurm_answers() else [])]
    assert sorted({c["queue"] for c in cycles}) == expected
    if slurm_answers():  # the Slurm queue's pilots are array jobs: batch ids <job>_<task>
        assert any(p["queue"] == "DEMO_SLURM" and "_" in p["batch_id"] for p in pilots), pilots
    # no double submission: each cycle's pilots are exactly those it counted, each batch id once
    per_cycle = {(c["queue"], c["cycle_id"]): c["submitted"] for c in cycles}
    for queue, cycle_id in per_cycle:
        assert per_cycle[queue, cycle_id] == sum(1 for p in pilots if (p["queue"], p["cycle_id"]) == (queue, cycle_id))
    assert len({p["batch_id"] for p in pilots}) == len(pilots) == sum(per_cycle.values())


def test_second_up_reuses_the_running_services(demo: tuple[Quickstart, str]) -> None:
    quickstart, _ = demo
    before = quickstart.service_pids()
    assert sorted(before) == [
        "airflow-api-server",
        "airflow-dag-processor",
        "airflow-scheduler",
        "airflow-triggerer",
        "panda-devserver",
    ]
    again = quickstart.run("up")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout and "demo jobs were injected before" in again.stdout
    assert quickstart.service_pids() == before
    assert len(panda_jobs(quickstart)) == DEMO_JOBS


def test_down_leaves_no_process_behind(demo: tuple[Quickstart, str]) -> None:
    quickstart, _ = demo
    assert our_processes(quickstart)
    result = quickstart.run("down", timeout=120)
    assert result.returncode == 0, result.stderr
    assert our_processes(quickstart) == []
    assert quickstart.service_pids() == {}
    assert not (quickstart.home / "postgres" / "pgdata" / "postmaster.pid").exists()
    again = quickstart.run("down", timeout=60)
    assert again.returncode == 0, again.stderr
    assert "no AutoPilot service was running" in again.stdout
