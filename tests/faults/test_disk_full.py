"""Fault 9 (issue 10 s5): the pilot's work disk fills up (a small tmpfs). The job fails with pilot3's
``NOLOCALSPACE`` (1098), whether the payload hits the full disk itself or the pilot sees the free space run
below its limit first, and the final update, with the log, still reaches the server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_ops.pilot import errorcodes
from tests.pilot.conftest import QUEUE, make_script, panda, pilot  # noqa: F401  (fixtures)


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


def run_filler(panda, pilot, make_script, work_disk: Path, body: str, *options: str) -> dict:  # noqa: F811
    trf = str(make_script("fill.sh", body))
    job_id = panda.submit_jobs(QUEUE, 1, trf, "", out_files=["out.dat"], extra={"maxDiskCount": 10})[0]
    result = pilot.run(panda.url, "--workdir", str(work_disk), *options)
    assert result.returncode == 0, result.stderr
    job = panda.job(job_id)
    assert job["status"] == "failed", result.stderr
    assert job["pilot_error_code"] == errorcodes.NOLOCALSPACE, job["pilot_error_diag"]
    log_lfn = next(f["lfn"] for f in job["files"] if f["type"] == "log")
    assert log_lfn in json.loads(job["job_output_report"])  # the log was made and staged out all the same
    assert not list(work_disk.iterdir())  # the work dir is gone, the disk free again
    return job


def test_a_payload_that_fills_the_disk_fails_with_nolocalspace(panda, pilot, make_script, work_disk):  # noqa: F811
    job = run_filler(
        panda, pilot, make_script, work_disk, "dd if=/dev/zero of=out.dat bs=64k\n", "--min-free-space", "1"
    )
    assert "payload failed with exit code 1" in job["pilot_error_diag"]
    assert "MB free in" in job["pilot_error_diag"]


def test_the_pilot_stops_a_payload_before_the_disk_is_full(panda, pilot, make_script, work_disk):  # noqa: F811
    body = (
        "i=0\nwhile [ $i -lt 600 ]; do\n"
        "  head -c 524288 /dev/zero >> scratch.bin || exit 1; sleep 0.05; i=$((i + 1))\ndone\n"
    )
    job = run_filler(
        panda, pilot, make_script, work_disk, body, "--min-free-space", "6", "--memory-poll", "0.1", "--kill-grace", "1"
    )
    assert "too little space left" in job["pilot_error_diag"] and "limit 6 MB" in job["pilot_error_diag"]
    assert "payload failed" not in job["pilot_error_diag"]  # the pilot stopped it, the disk never filled
