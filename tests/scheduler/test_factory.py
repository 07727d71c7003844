"""AutoPilot as a pilot factory of the dev PanDA server (its harvester API): pilots show as workers through to
their final state, PanDA's commands steer the next decision and kill pilots, each command is acknowledged once,
and a PanDA outage loses no worker update."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from autopilot_ops.panda.client import PandaClient, RetryPolicy
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.panda.errors import PandaCommunicationError
from autopilot_ops.panda.factory import FactoryClient
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.scheduler.worker_reports import LogLinks, report_workers
from autopilot_ops.store.connection import Store

from .conftest import wait_for

HARVESTER_ID = "autopilot-test"
QUEUES = """
backends:
  - {{name: local, kind: local, parameters: {{state_dir: "{state}", kill_grace_s: 1}}}}
defaults: {{backend: local, tags: [t1], queue_limit: 10, max_per_cycle: 3, cycle_period: 60, corecount: 8}}
queues:
  - {{name: Q1, site: S1}}
"""
#: a pilot that prints the worker id and factory it runs as, then ends
SAY_WHO = ("sh", "-c", 'echo "$((AUTOPILOT_FIRST_PILOT_ID + AUTOPILOT_PILOT_INDEX)) $HARVESTER_ID"')


@pytest.fixture
def panda(tmp_path: Path) -> Iterator[DevServer]:
    with DevServer(tmp_path / "panda") as server:
        server.set_queue("Q1", harvester=HARVESTER_ID)
        yield server


@pytest.fixture
def queues(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(state=tmp_path / "state"))
    load_queues(store, str(path))


def factory_of(url: str) -> FactoryClient:
    return FactoryClient(PandaClient(url, retry=RetryPolicy(attempts=1), timeout=5), HARVESTER_ID)


def make_cycle(store: Store, panda: DevServer, tmp_path: Path, command=SAY_WHO) -> SchedulingCycle:
    settings = CycleSettings(
        tag="t1", scheduler_id="t1@test", pilot_command=command, log_root=tmp_path / "logs", panda_url=panda.url,
        monitor_url="http://monitor.example/autopilot",
    )
    client = PandaClient(panda.url)
    return SchedulingCycle(store, settings, client.active_job_stats_by_site, client, factory=factory_of(panda.url))


def pilots(store: Store) -> list[dict]:
    with store.transaction() as cur:
        cur.execute("SELECT * FROM pilots ORDER BY id")
        return [dict(r) for r in cur.fetchall()]


def workers(panda: DevServer) -> dict[int, dict]:
    return {w["workerID"]: w for w in panda.workers(HARVESTER_ID)}


def test_pilots_show_as_workers_through_to_their_final_state(store, queues, panda, tmp_path) -> None:
    panda.submit_jobs("Q1", 2, f"{panda.url}/noop.sh", "")
    cycle = make_cycle(store, panda, tmp_path)
    first = cycle.run("c1")
    assert first.submitted == 2 and first.workers is not None and first.workers.accepted == 2
    mine = pilots(store)
    seen = workers(panda)
    assert sorted(seen) == [p["id"] for p in mine], "every pilot is a worker under its own id"
    for pilot in mine:
        worker = seen[pilot["id"]]
        assert worker["status"] == "submitted" and worker["batchID"] == pilot["batch_id"]
        assert worker["computingSite"] == "Q1" and worker["nCore"] == 8 and worker["resourceType"] == "MCORE"
        assert worker["stdOut"].startswith("http://monitor.example/autopilot/logs/")
    assert [i["harvester_id"] for i in panda.harvester_instances()] == [HARVESTER_ID]

    # each pilot was told its worker id and factory, as it sends them with acquire_jobs
    outputs = [Path(p["stdout_path"]) for p in mine]
    wait_for(lambda: all(o.exists() and o.read_text().strip() for o in outputs))
    assert [o.read_text().split() for o in outputs] == [[str(p["id"]), HARVESTER_ID] for p in mine]

    first_ids = [p["id"] for p in mine]
    with store.transaction() as cur:  # no more pilots for this queue: only the first two's lives are followed
        cur.execute("UPDATE schedconfig SET max_per_cycle = 0")
    wait_for(lambda: cycle.run(f"c-{dt.datetime.now().timestamp()}") is not None and all(
        workers(panda)[i]["status"] == "finished" for i in first_ids), timeout=60, interval=1)
    assert {p["state"] for p in pilots(store)} == {"finished"}
    assert all(workers(panda)[i]["endTime"] for i in first_ids)
    again = cycle.run("c-after")
    assert again.workers is not None and again.workers.sent == 0, "a final state is sent once"


def test_set_n_workers_changes_the_next_decision_and_is_acknowledged_once(store, queues, panda, tmp_path) -> None:
    panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
    command_id = panda.add_command(HARVESTER_ID, "SET_N_WORKERS_JOBTYPE:Q1", {"managed": {"SCORE": 2}})
    cycle = make_cycle(store, panda, tmp_path, command=("sleep", "30"))
    report = cycle.run("c1")
    [result] = report.results
    assert result.decision.n == 2, result.decision
    assert f"PanDA command {command_id} SET_N_WORKERS_JOBTYPE managed/SCORE=2 -> target 2" in result.decision.reason
    assert report.commands is not None and report.commands.acknowledged == [command_id]
    assert [c["status"] for c in panda.commands(HARVESTER_ID)] == ["acknowledged"]
    cycle.run("c2")
    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pilot_events WHERE what = 'panda-command'")
        assert cur.fetchone()["n"] == 1, "applied once"
        cur.execute("SELECT acknowledged_at FROM panda_commands")
        assert [r["acknowledged_at"] is not None for r in cur.fetchall()] == [True]


def test_add_sweep_command_kills_the_matching_pilots_in_one_cycle(store, queues, panda, tmp_path) -> None:
    panda.submit_jobs("Q1", 3, f"{panda.url}/noop.sh", "")
    cycle = make_cycle(store, panda, tmp_path, command=("sleep", "60"))
    assert cycle.run("c1").submitted == 3
    with store.transaction() as cur:  # these three are the pilots to kill: no more are submitted
        cur.execute("UPDATE schedconfig SET max_per_cycle = 0")
    wait_for(lambda: cycle.run(f"c-{dt.datetime.now().timestamp()}") is not None and all(
        w["status"] == "running" for w in workers(panda).values()), timeout=30, interval=0.5)
    reply = requests.post(f"{panda.url}/api/v1/harvester/add_sweep_command", timeout=10, json={
        "panda_queue": "Q1", "status_list": ["running"], "ce_list": [], "submission_host_list": []}).json()
    assert reply["success"], reply
    report = cycle.run("c-kill")
    assert report.commands is not None and list(report.commands.outcomes.values()) == ["kill requested for 3 workers"]
    assert sum(len(s.cancelled) for s in report.sweeps.values()) == 3, "cancelled by the same cycle's sweep"
    assert {w["status"] for w in workers(panda).values()} == {"cancelled"}


def test_a_panda_outage_during_reporting_loses_no_worker_update(store, queues, panda, tmp_path) -> None:
    panda.submit_jobs("Q1", 3, f"{panda.url}/noop.sh", "")
    cycle = make_cycle(store, panda, tmp_path, command=("sleep", "30"))
    assert cycle.run("c1").submitted == 3
    with store.transaction() as cur:
        cur.execute("UPDATE pilots SET state = 'running', started_at = now()")
    now = dt.datetime.now(dt.timezone.utc)
    dead = factory_of("http://127.0.0.1:9")  # nothing listens: PanDA is down
    down = report_workers(store, dead, ["Q1"], now)
    assert down.accepted == 0 and down.error is not None
    assert {w["status"] for w in workers(panda).values()} == {"submitted"}
    back = report_workers(store, factory_of(panda.url), ["Q1"], now)
    assert back.accepted == 3 and back.error is None
    assert {w["status"] for w in workers(panda).values()} == {"running"}
    assert report_workers(store, factory_of(panda.url), ["Q1"], now).sent == 0


class FailingAfter:
    """A factory client whose ``update_workers`` works ``calls`` times, then meets a PanDA outage."""

    def __init__(self, factory: FactoryClient, calls: int) -> None:
        self.factory, self.calls_left, self.sizes = factory, calls, []

    def update_workers(self, workers):
        self.sizes.append(len(workers))
        if self.calls_left == 0:
            raise PandaCommunicationError("harvester/update_workers", "connection refused")
        self.calls_left -= 1
        return self.factory.update_workers(workers)


def test_an_outage_mid_report_keeps_what_was_accepted_and_sends_nothing_after_it(store, queues, panda) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    with store.transaction() as cur:
        cur.execute(
            "INSERT INTO pilots (queue, backend, batch_id, state, submitted_at) "
            "SELECT 'Q1', 'local', 'b' || i, 'submitted', now() FROM generate_series(1, 250) AS i"
        )
    flaky = FailingAfter(factory_of(panda.url), calls=1)
    report = report_workers(store, flaky, ["Q1"], now)
    assert (report.calls, report.sent, report.accepted) == (1, 100, 100) and report.error is not None
    assert flaky.sizes == [100, 100], "the third call is never sent"
    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pilots WHERE worker_reported_state IS NOT NULL")
        assert cur.fetchone()["n"] == 100, "the first call's workers are marked, no others"
    rest = report_workers(store, factory_of(panda.url), ["Q1"], now)
    assert (rest.calls, rest.accepted) == (2, 150)
    assert len(workers(panda)) == 250


@pytest.mark.parametrize(
    ("path", "url"),
    [
        ("/logs/a/1.out", "http://mon/autopilot/logs/a/1.out"),
        ("/logs/a b/1#.out", "http://mon/autopilot/logs/a%20b/1%23.out"),
        ("/logs/../etc/passwd", None),
        ("/logsx/1.out", None),
        ("/elsewhere/1.out", None),
        (None, None),
    ],
)
def test_log_links_point_into_the_log_root_only(path, url) -> None:
    assert LogLinks("http://mon/autopilot/", Path("/logs")).url(path) == url
    assert LogLinks(None, Path("/logs")).url(path) is None
