"""Fault 3, the scheduler's other calls (issue 10 s5): as a pilot factory it takes PanDA's commands and reports
its workers, heartbeat and statistics, and it sends on its pilots' kept final updates. A hostile server answers
each of these calls with something that is not a PanDA reply: the cycle still ends, says which call failed,
submits what the (good) statistics call asks for once, keeps the final update for later, and the next cycle
against a good server is normal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.panda.client import PandaClient, RetryPolicy
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.panda.factory import FactoryClient
from autopilot_ops.pilot.outbox import FinalUpdate, Outbox
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.scheduler.kept_updates import kept_dir_of
from autopilot_ops.store.connection import Store
from tests.faults.test_hostile_replies import HOSTILE, HostileServer

HARVESTER_ID = "autopilot-hostile"
QUEUES = """
backends:
  - {{name: local, kind: local, parameters: {{state_dir: "{state}", kill_grace_s: 1}}}}
defaults: {{backend: local, tags: [t1], queue_limit: 10, max_per_cycle: 2, max_pilots: 10, cycle_period: 60}}
queues:
  - {{name: Q1, site: S1}}
"""
FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02)


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request: pytest.FixtureRequest) -> Iterator[HostileServer]:
    server = HostileServer(request.param)
    yield server
    server.close()


def make_cycle(store: Store, stats_url: str, calls_url: str, log_root: Path) -> SchedulingCycle:
    """Statistics from ``stats_url``; kept updates and the factory's calls to ``calls_url``."""
    settings = CycleSettings(
        tag="t1", scheduler_id="t1@hostile", pilot_command=("sleep", "60"), log_root=log_root, panda_url=stats_url,
        backend_kinds=("local",),
    )  # fmt: skip
    calls = PandaClient(calls_url, retry=FAST, timeout=10)
    return SchedulingCycle(
        store,
        settings,
        PandaClient(stats_url).active_job_stats_by_site,
        calls,
        factory=FactoryClient(calls, HARVESTER_ID),
    )


def pilot_rows(store: Store) -> list[dict]:
    with store.transaction() as cur:
        cur.execute("SELECT cycle_id, batch_id FROM pilots")
        return [dict(r) for r in cur.fetchall()]


def test_hostile_replies_to_the_factory_and_kept_update_calls(
    store: Store, hostile: HostileServer, tmp_path: Path
) -> None:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(state=tmp_path / "state"))
    load_queues(store, str(path))
    log_root = tmp_path / "logs"
    backend = LocalBackend("local", {"state_dir": str(tmp_path / "state")})
    with DevServer(tmp_path / "panda") as panda:
        panda.set_queue("Q1", harvester=HARVESTER_ID)
        panda.submit_jobs("Q1", 4, f"{panda.url}/noop.sh", "")
        fields = {"site_name": "Q1", "node": "wn1", "pilot_error_code": 0}
        kept = Outbox(kept_dir_of(log_root)).keep(FinalUpdate(99, "finished", fields, hostile.url, "v1"))

        report = make_cycle(store, panda.url, hostile.url, log_root).run("run-1")
        assert report.stats_error is None
        assert report.commands is not None and "/api/v1/harvester/acquire_commands" in str(report.commands.error)
        assert report.workers is not None and "/api/v1/harvester/" in str(report.workers.error)
        assert report.factory is not None
        if hostile.kind != "wrong-types":  # a success envelope with stray data is a good answer to a report
            assert "/api/v1/harvester/" in str(report.factory.error)
        assert report.kept is not None and report.kept.delivered == report.kept.rejected == 0
        assert "/api/v1/pilot/update_job" in str(report.kept.stopped)
        assert kept.exists(), "a final update that met a hostile reply is kept for the next cycle"
        assert len(hostile.requests) <= 5 * FAST.attempts, hostile.requests  # bounded: no crash loop
        assert report.submitted == 2 and len(pilot_rows(store)) == 2

        good = make_cycle(store, panda.url, panda.url, log_root).run("run-2")  # the next cycle is normal
        assert good.stats_error is None and good.submitted == 2
        assert good.commands is not None and good.commands.error is None
        assert good.workers is not None and good.workers.error is None
        rows = pilot_rows(store)
        assert len({r["batch_id"] for r in rows}) == len(rows) == 4
        assert sorted(r["cycle_id"] for r in rows) == ["run-1", "run-1", "run-2", "run-2"]
        backend.cancel([r["batch_id"] for r in rows])
