"""Fault 9 (issue 10 s5): the pilot's work disk fills up (a small tmpfs). The job fails with pilot3's
``NOLOCALSPACE`` (1098), whether the payload hits the full disk itself or the pilot sees the free space run
below its limit first, and the final update, with the log, still reaches the server.

The pilot is a real one, started by a scheduling cycle through the local back end with its work dir on the
tmpfs: each key's pilots are recorded once, and the next cycle is normal (it sweeps the pilot to its final
state and submits a pilot for the next job, which finishes on the freed disk)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.pilot import errorcodes
from autopilot_ops.store.connection import Store
from tests.faults.test_faults import QUEUE, load_test_queues, make_cycle, pilot_command, pilots_done, query, wait_for
from tests.faults.test_scheduler_faults import assert_no_double_submission
from tests.pilot.conftest import make_script, panda  # noqa: F401  (fixtures)


@pytest.fixture
def work_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs for the pilot's work dir."""
    mount = tmp_path / "work-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def on_disk(tmp_path: Path, work_disk: Path, *options: str) -> tuple[str, ...]:
    """The fault suite's pilot command with its work dir on ``work_disk`` and ``options`` added."""
    command = pilot_command(tmp_path)
    index = command.index("--workdir") + 1
    return (*command[:index], str(work_disk), *command[index + 1 :], *options)


def pilot_logs(tmp_path: Path) -> str:
    return "".join(path.read_text() for path in sorted((tmp_path / "logs").glob("*/*/*.err")))


def run_filler(
    store: Store,
    panda: DevServer,  # noqa: F811
    make_script: Callable[[str, str], Path],  # noqa: F811
    work_disk: Path,
    tmp_path: Path,
    body: str,
    *options: str,
) -> dict:
    """One cycle submits a pilot that takes the filling job; the next cycle sweeps it and submits a pilot for
    a trivial job, which finishes on the same disk; a third sweeps that one. Returns the filling job."""
    backend = load_test_queues(store, tmp_path)
    trf = str(make_script("fill.sh", body))
    job_id = panda.submit_jobs(QUEUE, 1, trf, "", out_files=["out.dat"], extra={"maxDiskCount": 10})[0]
    cycle = make_cycle(store, panda.url, tmp_path, on_disk(tmp_path, work_disk, *options))
    assert cycle.run("run-1").submitted == 1
    wait_for(lambda: pilots_done(store, backend), "the pilot ends")
    job = panda.job(job_id)
    assert job["status"] == "failed", pilot_logs(tmp_path)
    assert job["pilot_error_code"] == errorcodes.NOLOCALSPACE, job["pilot_error_diag"]
    log_lfn = next(f["lfn"] for f in job["files"] if f["type"] == "log")
    assert log_lfn in json.loads(job["job_output_report"])  # the log was made and staged out all the same
    assert not list(work_disk.iterdir())  # the work dir is gone, the disk free again

    noop = str(make_script("noop.sh", "exit 0\n"))
    [next_job] = panda.submit_jobs(QUEUE, 1, noop, "", extra={"maxDiskCount": 10})  # 10 MB of the 16
    report = cycle.run("run-2")  # the next cycle is normal
    assert report.stats_error is None
    assert [t.new for t in report.sweeps["local"].transitions] == ["finished"]  # the pilot itself exited 0
    row = query(store, "SELECT decided, submitted, reason FROM cycles WHERE cycle_id = 'run-2'")[0]
    assert (row["decided"], row["submitted"]) == (1, 1), row["reason"]
    wait_for(lambda: pilots_done(store, backend), "the run-2 pilot ends")
    assert panda.job(next_job)["status"] == "finished", pilot_logs(tmp_path)  # the freed disk takes a job
    assert not list(work_disk.iterdir())

    report = cycle.run("run-3")
    assert [t.new for t in report.sweeps["local"].transitions] == ["finished"]
    assert query(store, "SELECT decided, submitted FROM cycles WHERE cycle_id = 'run-3'") == [
        {"decided": 0, "submitted": 0}
    ]
    assert query(store, "SELECT cycle_id, state FROM submissions ORDER BY cycle_id") == [
        {"cycle_id": "run-1", "state": "done"},
        {"cycle_id": "run-2", "state": "done"},
    ]
    assert assert_no_double_submission(store, backend) == 2  # one pilot per key, recorded once
    assert query(store, "SELECT DISTINCT state FROM pilots") == [{"state": "finished"}]
    return job


def test_a_payload_that_fills_the_disk_fails_with_nolocalspace(
    store: Store,
    panda: DevServer,  # noqa: F811
    make_script: Callable[[str, str], Path],  # noqa: F811
    work_disk: Path,
    tmp_path: Path,
) -> None:
    job = run_filler(
        store, panda, make_script, work_disk, tmp_path, "dd if=/dev/zero of=out.dat bs=64k\n", "--min-free-space", "1"
    )
    assert "payload failed with exit code 1" in job["pilot_error_diag"]
    assert "MB free in" in job["pilot_error_diag"]


def test_the_pilot_stops_a_payload_before_the_disk_is_full(
    store: Store,
    panda: DevServer,  # noqa: F811
    make_script: Callable[[str, str], Path],  # noqa: F811
    work_disk: Path,
    tmp_path: Path,
) -> None:
    body = (
        "i=0\nwhile [ $i -lt 600 ]; do\n"
        "  head -c 524288 /dev/zero >> scratch.bin || exit 1; sleep 0.05; i=$((i + 1))\ndone\n"
    )
    options = ("--min-free-space", "6", "--memory-poll", "0.1", "--kill-grace", "1")
    job = run_filler(store, panda, make_script, work_disk, tmp_path, body, *options)
    assert "too little space left" in job["pilot_error_diag"] and "limit 6 MB" in job["pilot_error_diag"]
    assert "payload failed" not in job["pilot_error_diag"]  # the pilot stopped it, the disk never filled
