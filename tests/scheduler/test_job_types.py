"""Job types end to end: PanDA's per-label statistics from the dev server decide each label's pilots; real pilots
on the local back end ask for their own label and run the jobs of that label, and the monitor shows it; a server
without the per-label call is asked the older one, and the reason says so."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from autopilot_ops.airflow.webapp.app import create_app
from autopilot_ops.airflow.webapp.settings import WebSettings
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.panda.factory import FactoryClient
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.scheduler.job_stats import job_stats
from autopilot_ops.store.connection import Store

from .conftest import wait_for

QUEUES = """
backends:
  - {{name: local, kind: local, parameters: {{state_dir: "{state}"}}}}
defaults: {{backend: local, tags: [t1], queue_limit: 20, cycle_period: 60}}
queues:
  - {{name: ANALY_Q, site: S1, prod_source_labels: [user]}}
  - {{name: UNI_Q, site: S2, prod_source_labels: [managed, user]}}
  - {{name: TEST_Q, site: S3, status: test, test_pilots: 1}}
"""
HARVESTER_ID = "autopilot-job-types"
VIEWER_TOKEN = "viewer-token-0123456789abcdef"
REPLIES = json.loads((Path(__file__).parents[1] / "data" / "panda-server-1.0.4" / "replies.json").read_text())


@pytest.fixture
def panda(tmp_path: Path) -> Iterator[DevServer]:
    files = tmp_path / "files"
    files.mkdir()
    (files / "ok.sh").write_text("#!/bin/sh\necho payload ran\n")
    with DevServer(tmp_path / "panda", files_dir=files) as server:
        yield server


@pytest.fixture
def queues(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(state=tmp_path / "state"))
    load_queues(store, str(path))


def real_pilot(tmp_path: Path) -> tuple[str, ...]:
    """The real pilot, one job, asking for the label it was submitted for."""
    return (
        sys.executable, "-m", "autopilot_ops.pilot", "run", "--queue", "{queue}", "--server", "{panda_url}",
        "--prod-source-label", "{label}", "--allow-url-prefix", "{panda_url}/", "--max-jobs", "1",
        "--time-floor", "0", "--heartbeat", "1", "--final-patience", "0", "--workdir", str(tmp_path / "work"),
    )  # fmt: skip


def make_cycle(
    store: Store, url: str, tmp_path: Path, command: tuple[str, ...], factory: FactoryClient | None = None
) -> SchedulingCycle:
    settings = CycleSettings(
        tag="t1", scheduler_id="t1@test", pilot_command=command, log_root=tmp_path / "logs", panda_url=url,
        environment={"AUTOPILOT_PILOT_HOME": str(tmp_path / "pilot-home")},
    )
    client = PandaClient(url)
    return SchedulingCycle(store, settings, lambda: job_stats(client), client, factory=factory)


def pilots_of(store: Store, queue: str) -> list[dict]:
    with store.transaction() as cur:
        cur.execute("SELECT * FROM pilots WHERE queue = %s ORDER BY id", (queue,))
        return [dict(row) for row in cur.fetchall()]


def row_of(store: Store, cycle_id: str, queue: str) -> dict:
    with store.transaction() as cur:
        cur.execute("SELECT * FROM cycles WHERE cycle_id = %s AND queue = %s", (cycle_id, queue))
        return dict(cur.fetchone())


def all_final(store: Store, tmp_path: Path) -> bool:
    backend = LocalBackend("local", {"state_dir": str(tmp_path / "state")})
    ids = [row["batch_id"] for q in ("ANALY_Q", "UNI_Q", "TEST_Q") for row in pilots_of(store, q)]
    return all(status.state.is_final for status in backend.status(ids).values())


def test_analysis_queue_pilots_ask_for_and_run_user_jobs(store: Store, queues: None, panda: DevServer,
                                                         tmp_path: Path) -> None:
    user_jobs = panda.submit_jobs("ANALY_Q", 2, f"{panda.url}/ok.sh", "", prod_source_label="user")
    managed_jobs = panda.submit_jobs("ANALY_Q", 3, f"{panda.url}/ok.sh", "")
    report = make_cycle(store, panda.url, tmp_path, real_pilot(tmp_path)).run("run-1")
    [analy] = [r for r in report.results if r.queue == "ANALY_Q"]
    assert analy.decision.n == 2, "only the user jobs count for an analysis queue"
    assert analy.decision.labels == (("user", 2),)
    row = row_of(store, "run-1", "ANALY_Q")
    assert row["inputs"]["activated_by_label"] == {"managed/Undefined": 3, "user/Undefined": 2}
    assert row["reason"][0] == "activated=2 (user=2) [not served: managed=3]"
    assert [p["prod_source_label"] for p in pilots_of(store, "ANALY_Q")] == ["user", "user"]
    wait_for(lambda: all(panda.job(i)["status"] == "finished" for i in user_jobs), timeout=60)
    wait_for(lambda: all_final(store, tmp_path), timeout=60)
    assert all(panda.job(i)["status"] == "activated" for i in managed_jobs), "user pilots took no managed job"
    assert {p["cycle_id"] for p in pilots_of(store, "ANALY_Q")} == {"run-1"}, "a queue's first label keeps the key"


def test_unified_queue_gets_pilots_of_both_kinds_in_proportion(store: Store, queues: None, panda: DevServer,
                                                               tmp_path: Path) -> None:
    managed = panda.submit_jobs("UNI_Q", 4, f"{panda.url}/ok.sh", "")
    user = panda.submit_jobs("UNI_Q", 2, f"{panda.url}/ok.sh", "", prod_source_label="user")
    with store.transaction() as cur:
        cur.execute("UPDATE schedconfig SET max_per_cycle = 3 WHERE panda_queue = 'UNI_Q'")
    cycle = make_cycle(store, panda.url, tmp_path, real_pilot(tmp_path))
    report = cycle.run("run-1")
    [uni] = [r for r in report.results if r.queue == "UNI_Q"]
    assert uni.decision.labels == (("managed", 2), ("user", 1)) and uni.outcome.submitted == 3
    assert "labels: managed 2 (of 4 activated), user 1 (of 2)" in row_of(store, "run-1", "UNI_Q")["reason"]
    mine = pilots_of(store, "UNI_Q")
    assert sorted((p["prod_source_label"], p["cycle_id"]) for p in mine) == [
        ("managed", "run-1"), ("managed", "run-1"), ("user", "run-1.user")]
    assert cycle.run("run-1").submitted == 0, "each label's submission has its key: a re-run submits nothing"
    wait_for(lambda: all_final(store, tmp_path), timeout=60)
    done = {i for i in managed + user if panda.job(i)["status"] == "finished"}
    assert len(done & set(managed)) == 2 and len(done & set(user)) == 1


def test_a_failed_statistics_call_reuses_the_last_good_counts_per_label(
    store: Store, queues: None, panda: DevServer, tmp_path: Path
) -> None:
    panda.submit_jobs("UNI_Q", 4, f"{panda.url}/ok.sh", "")
    panda.submit_jobs("UNI_Q", 2, f"{panda.url}/ok.sh", "", prod_source_label="user")
    make_cycle(store, panda.url, tmp_path, ("true",)).run("run-1")
    wait_for(lambda: all_final(store, tmp_path), timeout=30)
    with store.transaction() as cur:  # the pilots took no job: no empty-pilot trickle here
        cur.execute("UPDATE schedconfig SET empty_share_limit = NULL")
    settings = make_cycle(store, panda.url, tmp_path, ("true",)).settings

    def down() -> dict:
        raise ConnectionError("PanDA is down")

    report = SchedulingCycle(store, settings, down).run("run-2")
    [uni] = [r for r in report.results if r.queue == "UNI_Q"]
    assert uni.decision.labels == (("managed", 4), ("user", 2)), uni.decision
    reason = row_of(store, "run-2", "UNI_Q")["reason"]
    assert reason[0].startswith("PanDA statistics failed") and "activated=6 (managed=4 user=2)" in reason


def test_test_queue_pilots_ask_for_test_jobs(store: Store, queues: None, panda: DevServer, tmp_path: Path) -> None:
    test_jobs = panda.submit_jobs("TEST_Q", 1, f"{panda.url}/ok.sh", "", prod_source_label="test")
    report = make_cycle(store, panda.url, tmp_path, real_pilot(tmp_path)).run("run-1")
    [test_q] = [r for r in report.results if r.queue == "TEST_Q"]
    assert test_q.decision.labels == (("test", 1),)
    assert [p["prod_source_label"] for p in pilots_of(store, "TEST_Q")] == ["test"]
    wait_for(lambda: panda.job(test_jobs[0])["status"] == "finished", timeout=60)


def test_the_pilot_command_gets_its_label(store: Store, queues: None, panda: DevServer, tmp_path: Path) -> None:
    panda.submit_jobs("UNI_Q", 1, f"{panda.url}/ok.sh", "")
    panda.submit_jobs("UNI_Q", 1, f"{panda.url}/ok.sh", "", prod_source_label="user")
    make_cycle(store, panda.url, tmp_path, ("sh", "-c", "echo label={label} queue={queue}")).run("run-1")
    wait_for(lambda: all_final(store, tmp_path), timeout=30)
    outputs = sorted(Path(p["stdout_path"]).read_text().strip() for p in pilots_of(store, "UNI_Q"))
    assert outputs == ["label=managed queue=UNI_Q", "label=user queue=UNI_Q"]


def test_workers_and_their_statistics_carry_the_pilots_own_label(
    store: Store, queues: None, panda: DevServer, tmp_path: Path
) -> None:
    panda.set_queue("UNI_Q", harvester=HARVESTER_ID)
    panda.submit_jobs("UNI_Q", 1, f"{panda.url}/ok.sh", "")
    panda.submit_jobs("UNI_Q", 1, f"{panda.url}/ok.sh", "", prod_source_label="user")
    factory = FactoryClient(PandaClient(panda.url), HARVESTER_ID)
    report = make_cycle(store, panda.url, tmp_path, ("true",), factory).run("run-1")
    assert report.workers is not None and report.workers.accepted >= 2
    labels = {p["id"]: p["prod_source_label"] for p in pilots_of(store, "UNI_Q")}
    reported = {w["workerID"]: w["jobType"] for w in panda.workers(HARVESTER_ID) if w["workerID"] in labels}
    assert reported == labels and sorted(labels.values()) == ["managed", "user"]
    assert report.factory is not None and "UNI_Q" in report.factory.statistics
    by_type = panda.worker_statistics()["UNI_Q"][HARVESTER_ID]
    assert {job_type: sum(n for states in by_rt.values() for n in states.values())
            for job_type, by_rt in by_type.items()} == {"managed": 1, "user": 1}


def test_job_labels_count_for_the_pilots_that_fetch_them(panda: DevServer) -> None:
    """``getJobs`` gives ``panda`` jobs to user pilots and ``test``/``prod_test`` ones to managed pilots."""
    for label, n in (("panda", 1), ("user", 2), ("prod_test", 3), ("managed", 4), ("install", 5)):
        panda.submit_jobs("UNI_Q", n, f"{panda.url}/ok.sh", "", prod_source_label=label)
    panda.submit_jobs("UNI_Q", 6, f"{panda.url}/ok.sh", "", core_count=8, extra={"resource_type": "MCORE"})
    stats = job_stats(PandaClient(panda.url))
    assert stats.note is None
    counts = {(c.prod_source_label, c.resource_type): c.count for c in stats.activated["UNI_Q"]}
    assert counts == {("user", "Undefined"): 3, ("managed", "Undefined"): 7, ("install", "Undefined"): 5,
                      ("managed", "MCORE"): 6}


def test_queue_page_shows_each_pilots_label(store: Store, queues: None, panda: DevServer, pg_dsn: str,
                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor tells analysis (``user``) pilots from production (``managed``) ones."""
    viewer = {VIEWER_TOKEN: {"identity": "dashboard", "role": "viewer"}}
    monkeypatch.setenv("AIRFLOW_VAR_AUTOPILOT_API_TOKENS", json.dumps(viewer))
    panda.submit_jobs("UNI_Q", 1, f"{panda.url}/ok.sh", "")
    panda.submit_jobs("UNI_Q", 1, f"{panda.url}/ok.sh", "", prod_source_label="user")
    make_cycle(store, panda.url, tmp_path, ("true",)).run("run-1")
    (tmp_path / "logs").mkdir(exist_ok=True)
    app = create_app(WebSettings(dsn=pg_dsn, log_root=tmp_path / "logs", token_cache_seconds=0))
    with TestClient(app, root_path="/autopilot") as client:
        page = client.get("/queues/UNI_Q", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}).text
    app.state.store_pool.close()
    table = page[page.index("Recent pilots</h2>"):page.index("<h2>Recent events</h2>")]
    assert ">label</th>" in table
    assert sorted(re.findall(r"<td>(managed|user)</td>", table)) == ["managed", "user"]


class _OldServer(BaseHTTPRequestHandler):
    """PanDA's recorded replies: the per-label call is forbidden, the older one answers."""

    def do_GET(self) -> None:
        if self.path.startswith("/api/v1/statistics/active_job_stats_by_site"):
            status, body = 200, json.dumps({"success": True, "message": "",
                                            "data": {"ANALY_Q": {"activated": 3, "assigned": 0, "running": 0}}})
        else:
            method = self.path.split("?")[0].rsplit("/", 1)[-1]
            forbidden = REPLIES["unknown_method"]
            status, body = forbidden["http"], forbidden["body"].replace("no_such_method", method)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def old_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _OldServer)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_server_without_per_label_statistics_is_asked_the_older_call(store: Store, queues: None,
                                                                       old_server: str, tmp_path: Path) -> None:
    stats = job_stats(PandaClient(old_server))
    assert stats.note is not None and "active_job_stats_by_site, label *" in stats.note
    assert "HTTP 403: ERROR : method active_job_detailed_stats_by_site is forbidden" in stats.note
    report = make_cycle(store, old_server, tmp_path, ("true",)).run("run-1", dry_run=True)
    [analy] = [r for r in report.results if r.queue == "ANALY_Q"]
    assert analy.decision.n == 3 and analy.decision.labels == (("user", 3),)
    assert analy.decision.reason[0] == "activated=3 (*=3)"
    real = make_cycle(store, old_server, tmp_path, ("true",)).run("run-2")
    assert real.stats_error is None
    assert row_of(store, "run-2", "ANALY_Q")["reason"][0] == stats.note
