"""Fault 8 (issue 10 s5): a pilot killed with SIGTERM or SIGKILL, or cancelled through the local back end
while its payload ignores SIGTERM. The payload's whole process tree dies with the pilot, the job reaches a
final state on the server, nothing is submitted twice, and the next cycle is normal."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from autopilot_ops.pilot import errorcodes
from autopilot_ops.store.connection import Store
from tests.faults.test_faults import (  # noqa: F401  (devserver_process is a fixture)
    AUTOPILOT,
    QUEUE,
    DevServerProcess,
    devserver_process,
    load_test_queues,
    make_cycle,
    pilot_command,
    pilot_pids,
    pilots_done,
    query,
    wait_for,
)

#: A payload with a child: writes both pids to ``$1``; with ``$2`` = ``ignore-term`` neither obeys SIGTERM.
TREE_SCRIPT = '#!/bin/sh\n[ "$2" = ignore-term ] && trap "" TERM\nsleep 300 &\necho $$ $! > "$1"\nwait\n'


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def submit_tree(panda: DevServerProcess, pid_file: Path, *extra: str) -> int:
    (panda.files / "tree.sh").write_text(TREE_SCRIPT)
    argv = [AUTOPILOT, "panda-devserver", "submit", "--server", panda.url, "--queue", QUEUE, "--count", "1"]
    argv += ["--transformation", f"{panda.url}/tree.sh", "--job-pars", " ".join([str(pid_file), *extra])]
    done = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=30, check=True)
    [[panda_id, *_]] = json.loads(done.stdout)
    return int(panda_id)


def payload_pids(pid_file: Path) -> list[int]:
    wait_for(lambda: pid_file.exists() and len(pid_file.read_text().split()) == 2, "the payload and its child")
    return [int(pid) for pid in pid_file.read_text().split()]


@pytest.fixture
def reaper() -> Callable[[list[int]], None]:
    """Registers pids to SIGKILL at the end, so that a failing test leaves nothing running."""
    registered: list[int] = []
    yield registered.extend
    for pid in registered:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_pilot_takes_its_payload_with_it(
    store: Store,
    devserver_process: Callable[[float], DevServerProcess],  # noqa: F811
    tmp_path: Path,
    reaper: Callable[[list[int]], None],
    signum: signal.Signals,
) -> None:
    panda = devserver_process(4)
    load_test_queues(store, tmp_path)
    job_id = submit_tree(panda, tmp_path / "payload.pids")
    cycle = make_cycle(store, panda.url, tmp_path, pilot_command(tmp_path))
    assert cycle.run("run-1").submitted == 1
    wait_for(lambda: panda.statuses()[job_id] == "running", "the job running")
    tree = payload_pids(tmp_path / "payload.pids")
    reaper(tree)
    [pilot] = pilot_pids(tmp_path / "state")
    os.kill(pilot, signum)
    wait_for(lambda: not any(alive(pid) for pid in tree), "the payload and its child gone", timeout=15)
    job = wait_for(lambda: (j := panda.job(job_id))["status"] == "failed" and j, "the job failed", timeout=30)
    if signum == signal.SIGTERM:  # the pilot reported it
        assert job["pilot_error_code"] == errorcodes.SIGNAL_ERRORS[signal.SIGTERM]
    else:  # nobody could: PanDA's lost-heartbeat watcher failed it
        assert job["dispatcher_error_code"] == 100
    report = cycle.run("run-2")
    assert report.stats_error is None and report.submitted == 0
    assert [row["state"] for row in query(store, "SELECT state FROM pilots")] == ["failed"]  # one pilot, once


def test_a_cancel_reaches_a_payload_that_ignores_sigterm(
    store: Store,
    devserver_process: Callable[[float], DevServerProcess],  # noqa: F811
    tmp_path: Path,
    reaper: Callable[[list[int]], None],
) -> None:
    """The back end TERMs the pilot, which TERMs its payload and would wait 120 s for it; after its own grace
    (1 s) the back end KILLs the pilot, and the payload's tree dies with it."""
    panda = devserver_process(4)
    backend = load_test_queues(store, tmp_path)
    job_id = submit_tree(panda, tmp_path / "payload.pids", "ignore-term")
    cycle = make_cycle(store, panda.url, tmp_path, (*pilot_command(tmp_path), "--kill-grace", "120"))
    assert cycle.run("run-1").submitted == 1
    wait_for(lambda: panda.statuses()[job_id] == "running", "the job running")
    tree = payload_pids(tmp_path / "payload.pids")
    reaper(tree)
    [batch_id] = [row["batch_id"] for row in query(store, "SELECT batch_id FROM pilots")]
    backend.cancel([batch_id])
    wait_for(lambda: not any(alive(pid) for pid in tree), "the payload and its child gone", timeout=15)
    wait_for(lambda: pilots_done(store, backend), "the back end sees the pilot gone")
    job = wait_for(lambda: (j := panda.job(job_id))["status"] == "failed" and j, "the job failed", timeout=30)
    assert job["dispatcher_error_code"] == 100
    assert cycle.run("run-2").stats_error is None
