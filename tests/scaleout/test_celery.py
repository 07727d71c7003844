"""``autopilot up --executor celery`` as real processes: Redis on loopback with a password, two Celery workers,
the demo's jobs done, DEMO_SITE_B routed to the worker queue ``site-b`` that only the second worker serves; that
worker SIGKILLed mid-run loses no job and submits nothing twice, and its queue resumes when ``up`` brings it back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from collections.abc import Iterator

import psutil
import pytest

from autopilot_ops.panda.devserver.jobspec import build_job_spec
from autopilot_ops.panda.devserver.submitter import submit_specs
from autopilot_ops.quickstart.devserver import DEMO_N, TRANSFORMATION

from ..quickstart.conftest import Quickstart, free_port, make_quickstart
from ..quickstart.test_up_down import our_processes, panda_jobs, store_rows
from .conftest import WORKER_QUEUE, airflow_rows, routed_demo_queues

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(600)]

DEMO_JOBS = 12
ROUTED = "DEMO_SITE_B"


@pytest.fixture(scope="module")
def celery() -> Iterator[tuple[Quickstart, str]]:
    quickstart = make_quickstart(AUTOPILOT_DEMO_JOBS=str(DEMO_JOBS), AUTOPILOT_REDIS_PORT=str(free_port()))
    quickstart.env["AUTOPILOT_DEMO_QUEUES"] = str(routed_demo_queues(quickstart.home.parent))
    quickstart.env["AUTOPILOT_WORKER_QUEUES"] = WORKER_QUEUE
    try:
        result = quickstart.run("up", "--executor", "celery")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield quickstart, result.stdout
    finally:
        quickstart.run("down", timeout=120)
        shutil.rmtree(quickstart.home.parent, ignore_errors=True)


def worker_log(quickstart: Quickstart, index: int) -> str:
    return (quickstart.home / "services" / f"airflow-celery-worker-{index}.log").read_text(errors="replace")


def wait_until(predicate, timeout: float, what: str, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(interval)


def test_demo_jobs_finish_on_two_celery_workers_routed_by_worker_queue(celery: tuple[Quickstart, str]) -> None:
    quickstart, output = celery
    assert f"{DEMO_JOBS}/{DEMO_JOBS} jobs finished" in output and "CeleryExecutor, 2 Celery workers" in output
    assert [job["status"] for job in panda_jobs(quickstart)] == ["finished"] * DEMO_JOBS
    services = quickstart.service_pids()
    assert {"redis", "airflow-celery-worker-1", "airflow-celery-worker-2"} <= set(services)
    routed = "task_id='cycle_local_on_site-b'"
    assert routed in worker_log(quickstart, 2) and routed not in worker_log(quickstart, 1)
    tasks = airflow_rows(
        quickstart, "SELECT DISTINCT task_id, queue FROM task_instance WHERE dag_id = 'autopilot_demo'"
    )
    assert {(t["task_id"], t["queue"]) for t in tasks} == {
        ("cycle_local", "default"),
        ("cycle_local_on_site-b", "site-b"),
    }
    cycles = store_rows(quickstart, "SELECT DISTINCT queue FROM cycles")
    assert {c["queue"] for c in cycles} == {"DEMO_SITE_A", "DEMO_SITE_A_MCORE", ROUTED}


def test_redis_listens_on_loopback_only_and_wants_its_password(celery: tuple[Quickstart, str]) -> None:
    quickstart, _ = celery
    port = int(quickstart.env["AUTOPILOT_REDIS_PORT"])
    pid = int(quickstart.service_pids()["redis"].split()[0])
    listening = {
        (c.laddr.ip, c.laddr.port) for c in psutil.Process(pid).net_connections("inet") if c.status == "LISTEN"
    }
    assert listening == {("127.0.0.1", port)}
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(200).startswith(b"-NOAUTH")
    password = quickstart.home / "redis" / "password"
    assert (
        password.stat().st_mode & 0o077 == 0 and (quickstart.home / "redis" / "redis.conf").stat().st_mode & 0o077 == 0
    )


def submit(quickstart: Quickstart, queue: str, count: int) -> list[int]:
    url = f"http://127.0.0.1:{quickstart.env['AUTOPILOT_PANDA_PORT']}"
    specs = [
        build_job_spec(queue, f"{url}/{TRANSFORMATION}", f"--n {DEMO_N} --output k{i}.out", out_files=[f"k{i}.out"])
        for i in range(count)
    ]
    return submit_specs(url, specs)


def routed_cycles(quickstart: Quickstart) -> int:
    return len(store_rows(quickstart, f"SELECT 1 FROM cycles WHERE queue = '{ROUTED}'"))


def test_a_killed_worker_loses_no_job_submits_nothing_twice_and_its_queue_resumes(
    celery: tuple[Quickstart, str],
) -> None:
    quickstart, _ = celery
    submit(quickstart, ROUTED, 4)
    submit(quickstart, "DEMO_SITE_A", 4)
    started = airflow_rows(quickstart, "SELECT now() AS t")[0]["t"]
    running = (
        "SELECT 1 FROM task_instance WHERE task_id = 'cycle_local_on_site-b' AND state = 'running' AND start_date > %s"
    )
    wait_until(lambda: airflow_rows(quickstart, running, started), 90, "a routed cycle task running", 0.2)
    worker = int(quickstart.service_pids()["airflow-celery-worker-2"].split()[0])
    os.killpg(worker, signal.SIGKILL)
    killed_at = time.monotonic()
    time.sleep(3)
    before = routed_cycles(quickstart)
    # the other worker goes on with the default worker queue: a cycle of DEMO_SITE_A after the kill
    site_a = "SELECT 1 FROM cycles WHERE queue = 'DEMO_SITE_A' AND started_at > now() - interval '10 seconds'"
    time.sleep(10)
    wait_until(lambda: store_rows(quickstart, site_a), 60, "a DEMO_SITE_A cycle after the kill")
    assert "task_id='cycle_local'" in worker_log(quickstart, 1)
    # the killed task is failed once its heartbeat is missed (30 s), and nothing cycles DEMO_SITE_B meanwhile
    failed = (
        "SELECT 1 FROM task_instance WHERE task_id = 'cycle_local_on_site-b' AND state = 'failed' AND start_date > %s"
    )
    wait_until(lambda: airflow_rows(quickstart, failed, started), 90, "the killed task failed")
    assert routed_cycles(quickstart) == before and time.monotonic() - killed_at > 30
    result = quickstart.run("up", "--executor", "celery")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "airflow-celery-worker-2 was not running: started" in result.stdout
    assert "airflow-celery-worker-1 was not running" not in result.stdout
    wait_until(lambda: routed_cycles(quickstart) > before, 90, "DEMO_SITE_B cycling again")
    jobs = panda_jobs(quickstart)
    assert len(jobs) == DEMO_JOBS + 8 and {job["status"] for job in jobs} == {"finished"}
    assert all([h["status"] for h in job["history"]].count("sent") == 1 for job in jobs)
    pilots = store_rows(quickstart, "SELECT queue, cycle_id, batch_id FROM pilots")
    assert len({p["batch_id"] for p in pilots}) == len(pilots)
    keys = store_rows(quickstart, "SELECT queue, cycle_id, requested FROM submissions")
    rows = {(c["queue"], c["cycle_id"]): c["submitted"] for c in store_rows(quickstart, "SELECT * FROM cycles")}
    for key in keys:
        made = sum(1 for p in pilots if (p["queue"], p["cycle_id"]) == (key["queue"], key["cycle_id"]))
        assert made <= key["requested"], key
        assert rows.get((key["queue"], key["cycle_id"]), made) == made, key


def test_down_stops_redis_and_the_workers_too(celery: tuple[Quickstart, str]) -> None:
    quickstart, _ = celery
    result = quickstart.run("down", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "airflow-celery-worker-1" in result.stdout and "redis" in result.stdout
    assert our_processes(quickstart) == [] and quickstart.service_pids() == {}
