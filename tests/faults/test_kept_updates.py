"""A final update a pilot could not deliver reaches PanDA from any node: the pilot hands it to the kept dir
its back end gave it (``AUTOPILOT_KEPT_DIR``, under the scheduler's log root), and the next cycle sends it.
Files there are trusted no further than a pilot: forged or misdirected ones are refused, with the reason."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from autopilot_ops.panda.client import PandaClient
from autopilot_ops.pilot.outbox import FinalUpdate, Outbox
from autopilot_ops.scheduler.kept_updates import deliver_kept_updates
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
