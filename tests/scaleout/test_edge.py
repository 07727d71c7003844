"""``autopilot up --executor edge`` as real processes: two Edge workers pull their tasks from the API server over
HTTP, the demo's jobs are done, DEMO_SITE_B's cycle task runs only on the worker that serves ``site-b``, and
``down`` leaves no process behind."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from ..quickstart.conftest import Quickstart, make_quickstart
from ..quickstart.test_up_down import our_processes, panda_jobs
from .conftest import WORKER_QUEUE, airflow_rows, routed_demo_queues

pytestmark = [pytest.mark.airflow, pytest.mark.timeout(600)]

DEMO_JOBS = 12


@pytest.fixture(scope="module")
def edge() -> Iterator[tuple[Quickstart, str]]:
    quickstart = make_quickstart(AUTOPILOT_DEMO_JOBS=str(DEMO_JOBS), AUTOPILOT_WORKER_QUEUES=WORKER_QUEUE)
    quickstart.env["AUTOPILOT_DEMO_QUEUES"] = str(routed_demo_queues(quickstart.home.parent))
    try:
        result = quickstart.run("up", "--executor", "edge")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        yield quickstart, result.stdout
    finally:
        quickstart.run("down", timeout=120)
        shutil.rmtree(quickstart.home.parent, ignore_errors=True)


def test_demo_jobs_finish_on_two_edge_workers_routed_by_worker_queue(edge: tuple[Quickstart, str]) -> None:
    quickstart, output = edge
    assert f"{DEMO_JOBS}/{DEMO_JOBS} jobs finished" in output and "EdgeExecutor, 2 Edge workers" in output
    assert [job["status"] for job in panda_jobs(quickstart)] == ["finished"] * DEMO_JOBS
    assert "redis" not in quickstart.service_pids()
    jobs = airflow_rows(quickstart, "SELECT task_id, queue, edge_worker, state FROM edge_job")
    routed = {(j["queue"], j["edge_worker"]) for j in jobs if j["task_id"] == "cycle_local_on_site-b"}
    assert routed == {(WORKER_QUEUE, "autopilot-edge-2")}
    assert {j["edge_worker"] for j in jobs} == {"autopilot-edge-1", "autopilot-edge-2"}  # both pulled tasks
    workers = airflow_rows(quickstart, "SELECT worker_name FROM edge_worker ORDER BY worker_name")
    assert [w["worker_name"] for w in workers] == ["autopilot-edge-1", "autopilot-edge-2"]


def test_down_stops_the_edge_workers_too(edge: tuple[Quickstart, str]) -> None:
    quickstart, _ = edge
    result = quickstart.run("down", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "airflow-edge-worker-1" in result.stdout and "airflow-edge-worker-2" in result.stdout
    assert our_processes(quickstart) == [] and quickstart.service_pids() == {}
