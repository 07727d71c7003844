"""A final update a pilot could not deliver reaches PanDA from any node: the pilot hands it to the kept dir
its back end gave it (``AUTOPILOT_KEPT_DIR``: under the scheduler's log root where that is shared, else in an
HTCondor job's scratch dir, brought back when the job ends), and the next cycle sends it. Files there are trusted no
further than a pilot: forged or misdirected ones are refused, with the reason."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from autopilot_ops.backends.condor import CondorBackend
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.pilot.outbox import FinalUpdate, Outbox
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.kept_updates import collect_returned, deliver_kept_updates
from autopilot_ops.store.connection import Store
from tests.faults.test_faults import (  # noqa: F401  (devserver_process is a fixture)
    QUEUE,
    DevServerProcess,
    devserver_process,
    load_test_queues,
    make_cycle,
    pilot_command,
    pilots_done,
    query,
    wait_for,
)
from tests.scheduler.test_bundle_pilots import CONDOR_ENV, JOB_OWNER, plugin_url, shared  # noqa: F401 (fixtures)
from tests.scheduler.test_bundle_pilots import make_cycle as bundle_cycle


def test_an_update_kept_during_an_outage_is_delivered_by_the_next_cycle(
    store: Store,
    devserver_process: Callable[[float], DevServerProcess],  # noqa: F811
    tmp_path: Path,
) -> None:
    panda = devserver_process(0)
    backend = load_test_queues(store, tmp_path)
    go = tmp_path / "go"
    [job_id] = panda.submit(1, go)
    cycle = make_cycle(store, panda.url, tmp_path, pilot_command(tmp_path))
    assert cycle.run("run-1").submitted == 1
    wait_for(lambda: panda.statuses()[job_id] == "running", "the job running")

    panda.stop()
    go.touch()  # the payload ends while the server is down; the pilot (no patience) gives up and hands over
    wait_for(lambda: pilots_done(store, backend), "the pilot gone")
    kept = tmp_path / "logs" / "kept" / f"{job_id}.json"
    assert json.loads(kept.read_text())["job_status"] == "finished"
    assert not list((tmp_path / "pilot-home" / "outbox").glob("*.json"))  # handed over, not kept twice

    panda.start()
    assert panda.statuses()[job_id] == "running"
    report = cycle.run("run-2")
    assert report.kept is not None and (report.kept.delivered, report.kept.rejected) == (1, 0)
    job = panda.job(job_id)
    assert job["status"] == "finished"
    assert [h["status"] for h in job["history"]][-2:] == ["holding", "finished"]
    assert not kept.exists()
    [event] = query(store, "SELECT who, what, queue, details FROM pilot_events WHERE what LIKE 'kept%'")
    assert (event["what"], event["queue"]) == ("kept final update delivered", QUEUE)
    assert event["details"]["panda_id"] == job_id
    assert cycle.run("run-3").kept.delivered == 0  # sent once


def keep(directory: Path, update: FinalUpdate) -> Path:
    return Outbox(directory).keep(update)


def test_forged_and_misdirected_updates_are_refused(
    store: Store,
    devserver_process: Callable[[float], DevServerProcess],  # noqa: F811
    tmp_path: Path,
) -> None:
    panda = devserver_process(0)
    ids = panda.submit(4, tmp_path / "never")
    kept = tmp_path / "kept"
    final = {"site_name": QUEUE, "node": "wn1", "pilot_error_code": 0}
    keep(kept, FinalUpdate(ids[0], "finished", final, "http://127.0.0.1:1/elsewhere", "v1"))
    keep(kept, FinalUpdate(ids[1], "running", final, panda.url, "v1"))
    keep(kept, FinalUpdate(ids[2], "failed", {**final, "job_status": "finished", "x": 1}, panda.url, "v1"))
    keep(kept, FinalUpdate(ids[3], "failed", {**final, "site_name": "OTHER_QUEUE"}, panda.url, "v1"))
    (kept / "garbage.json").write_text("{not json")
    misnamed = kept / "999.json"
    misnamed.write_text(FinalUpdate(ids[3], "failed", final, panda.url, "v1").to_json())

    report = deliver_kept_updates(kept, PandaClient(panda.url), [QUEUE], store, "scheduler:test")
    assert (report.delivered, report.rejected) == (0, 3)
    reasons = {path.name: path.read_text() for path in (kept / "rejected").glob("*.reason")}
    assert "not this scheduler's PanDA server" in reasons[f"{ids[0]}.reason"]
    assert "is not a final state" in reasons[f"{ids[1]}.reason"]
    assert "['job_status', 'x'] are not update_job parameters" in reasons[f"{ids[2]}.reason"]
    assert (kept / f"{ids[3]}.json").exists()  # another scheduler's queue: left for it
    assert (kept / "garbage.unreadable").exists() and (kept / "999.unreadable").exists() and not misnamed.exists()
    assert set(panda.statuses().values()) == {"activated"}  # nothing reached the server
    events = query(store, "SELECT what, details FROM pilot_events ORDER BY id")
    assert [e["what"] for e in events] == ["kept final update rejected"] * 3


def test_returned_updates_are_moved_to_the_kept_dir_and_checked_as_any_other(
    store: Store,
    devserver_process: Callable[[float], DevServerProcess],  # noqa: F811
    tmp_path: Path,
) -> None:
    panda = devserver_process(0)
    good, forged, duplicate = panda.submit(3, tmp_path / "never")
    log_dir = tmp_path / "logs" / "2026-01-01" / QUEUE
    returned = log_dir / "12.0.kept"
    final = {"site_name": QUEUE, "node": "wn1", "pilot_error_code": 0}
    keep(returned, FinalUpdate(good, "finished", final, panda.url, "v1"))
    keep(returned, FinalUpdate(forged, "running", final, panda.url, "v1"))
    keep(returned, FinalUpdate(duplicate, "failed", final, panda.url, "v1"))
    kept = tmp_path / "logs" / "kept"
    keep(kept, FinalUpdate(duplicate, "finished", final, panda.url, "v1"))  # already there: never replaced
    (returned / "13.json").symlink_to(kept / f"{duplicate}.json")
    pilot = {"batch_id": "12.0", "stdout_path": str(log_dir / "12.0.out")}

    assert collect_returned(CondorBackend("condor"), [pilot, {"batch_id": "12.1", "stdout_path": None}]) == 2
    assert sorted(p.name for p in returned.iterdir()) == ["13.json", f"{duplicate}.json"]
    report = deliver_kept_updates(kept, PandaClient(panda.url), [QUEUE], store, "scheduler:test")
    assert (report.delivered, report.rejected) == (2, 1)
    assert "is not a final state" in (kept / "rejected" / f"{forged}.reason").read_text()
    assert panda.statuses()[forged] == "activated"  # the two delivered went through holding (no output report)
    assert all("holding" in [h["status"] for h in panda.job(i)["history"]] for i in (good, duplicate))


CONDOR_QUEUES = """
backends:
  - {{name: condor, kind: condor, parameters: {{config_file: "{condor_env}", job_owner: "{owner}", history_s: 600}}}}
defaults: {{tags: [t1], queue_limit: 5, max_per_cycle: 1, max_pilots: 1, cycle_period: 60}}
queues:
  - {{name: {queue}, site: S1, backend: condor}}
"""


@pytest.mark.condor
@pytest.mark.skipif(os.geteuid() != 0 or not CONDOR_ENV.exists(), reason="needs root and the HTCondor pool")
def test_an_htcondor_pilot_sharing_no_kept_dir_brings_its_update_back(
    store: Store,
    devserver_process: Callable[[float], DevServerProcess],  # noqa: F811
    plugin_url: str,  # noqa: F811
    tmp_path: Path,
    shared: Path,  # noqa: F811
) -> None:
    """An HTCondor pilot (the wrapper and its bundle, in the chroot) whose final update fails hands it to the kept
    dir of its scratch dir, which the scheduler's kept dir is not: that one is root's, mode 0700, so the job owner
    cannot write there. HTCondor brings it back when the job ends, and the cycle after the outage delivers it."""
    panda = devserver_process(0)
    path = tmp_path / "queues.yaml"
    path.write_text(CONDOR_QUEUES.format(condor_env=CONDOR_ENV, owner=JOB_OWNER, queue=QUEUE))
    load_queues(store, str(path))
    go = shared / "go"
    [job_id] = panda.submit(1, go)
    kept = shared / "logs" / "kept"
    kept.mkdir(parents=True)
    kept.chmod(0o700)
    cycle = bundle_cycle(store, panda, plugin_url, tmp_path, shared)  # type: ignore[arg-type]
    assert cycle.run("kept-c1").submitted == 1
    [pilot] = query(store, "SELECT batch_id, stdout_path FROM pilots")
    wait_for(lambda: panda.statuses()[job_id] == "running", "the job running", timeout=120)

    panda.stop()
    go.touch()  # the payload ends while the server is down; the pilot (no patience) gives up and hands over
    backend = CondorBackend("condor", {"config_file": str(CONDOR_ENV), "job_owner": JOB_OWNER, "history_s": 600})
    wait_for(lambda: backend.status([pilot["batch_id"]])[pilot["batch_id"]].state.is_final, "the pilot gone", 120)
    log = Path(pilot["stdout_path"]).read_text()
    where = re.search(rf"final update of job {job_id} \(finished\) not delivered, kept in (\S+):", log)
    assert where and where[1].endswith("/autopilot-kept") and not where[1].startswith("/tmp/"), log[-3000:]
    returned = backend.returned_kept_dir(pilot["batch_id"], Path(pilot["stdout_path"]))
    assert json.loads((returned / f"{job_id}.json").read_text())["job_status"] == "finished"
    assert not list(kept.iterdir())

    panda.start()
    assert panda.statuses()[job_id] == "running"
    report = cycle.run("kept-c2")  # its sweep sees the pilot end and takes the update; its delivery sends it
    assert report.sweeps["condor"].returned == 1
    assert report.kept is not None and (report.kept.delivered, report.kept.rejected) == (1, 0)
    job = panda.job(job_id)
    assert job["status"] == "finished"
    assert [h["status"] for h in job["history"]][-2:] == ["holding", "finished"]
    assert not list(returned.iterdir()) and not list(kept.glob("*.json"))
    [event] = query(store, "SELECT what, queue, details FROM pilot_events WHERE what LIKE 'kept%'")
    assert (event["what"], event["queue"]) == ("kept final update delivered", QUEUE)
    assert event["details"]["panda_id"] == job_id
