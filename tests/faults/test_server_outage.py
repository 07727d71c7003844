"""Fault 1 (issue 10 s5): the dev PanDA server stopped for 60 s mid-job, the payloads ending during the outage.
The pilots keep trying their final updates, take no new job meanwhile, and the updates arrive once the server
is back, with no one's help: zero jobs lost, and the next cycle is normal."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from autopilot_ops.store.connection import Store
from tests.faults.test_faults import (  # noqa: F401  (devserver_process is a fixture)
    DevServerProcess,
    devserver_process,
    load_test_queues,
    make_cycle,
    pilot_command,
    pilots_done,
    query,
    wait_for,
)

OUTAGE_S = 60.0


def pilot_logs(tmp_path: Path) -> str:
    return "".join(path.read_text() for path in sorted((tmp_path / "logs").glob("*/*/*.err")))


def with_patience(command: tuple[str, ...], seconds: str) -> tuple[str, ...]:
    """``command`` with its ``--final-patience`` value replaced by ``seconds``."""
    index = command.index("--final-patience") + 1
    return (*command[:index], seconds, *command[index + 1 :])


def test_server_stopped_for_60s_mid_job(
    store: Store,
    devserver_process: Callable[[float], DevServerProcess],  # noqa: F811
    tmp_path: Path,
) -> None:
    panda = devserver_process(0)  # no lost-heartbeat watcher: only the pilots' own reports end the jobs
    backend = load_test_queues(store, tmp_path)
    go = tmp_path / "go"
    jobs = panda.submit(2, go)
    command = with_patience(pilot_command(tmp_path), "600")
    cycle = make_cycle(store, panda.url, tmp_path, command)
    assert cycle.run("run-1").submitted == 2
    wait_for(lambda: all(s == "running" for s in panda.statuses().values()), "both jobs running")

    panda.stop()
    stopped_at = time.monotonic()
    go.touch()  # the payloads end while the server is down
    wait_for(lambda: pilot_logs(tmp_path).count("trying again") >= 2, "both pilots retrying their final updates")
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))
    assert not pilots_done(store, backend)  # still waiting on their final updates, not gone with them

    panda.start()  # same port, same database
    wait_for(lambda: pilots_done(store, backend), "the pilots end once their updates are delivered", timeout=120)
    statuses = panda.statuses()
    assert {statuses[i] for i in jobs} == {"finished"}, statuses  # zero jobs lost
    logs = pilot_logs(tmp_path)
    assert "cannot get a job" not in logs  # no acquisition during the outage
    assert logs.count("kept in") == 0
    report = cycle.run("run-2")  # the next cycle is normal: both pilots seen finished (exit 0)
    assert report.stats_error is None
    assert sorted(t.new for t in report.sweeps["local"].transitions) == ["finished", "finished"]
    rows = query(store, "SELECT cycle_id FROM cycles ORDER BY cycle_id")
    assert [r["cycle_id"] for r in rows] == ["run-1", "run-2"]
