"""Final updates when the pilot's disk fails it: an unwritable home (grid pool accounts) and a full disk.
A local disk error never stops the final update."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from autopilot_ops.panda.client import PandaClient
from autopilot_ops.pilot.outbox import Outbox
from autopilot_ops.pilot.reporting import Reporter

QUEUE = "LOCAL_QUEUE"


def test_home_that_is_a_file_falls_back_to_the_work_dir(panda, pilot, make_script):
    pilot.root.mkdir(parents=True)
    pilot.home.write_text("not a directory")  # as unwritable as a home can be, even for root
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("ok.sh", "exit 0\n")), "")[0]
    result = pilot.run(panda.url, "--output-url", (pilot.root / "se").as_uri() + "/{scope}/{lfn}")
    assert result.returncode == 0, result.stderr
    assert "cannot keep the final update" in result.stderr
    assert panda.job(job_id)["status"] == "finished"


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, filled up."""
    mount = tmp_path / "full"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={mount}/filler", "bs=4k"], capture_output=True)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_home_on_a_full_disk(panda, pilot, make_script, full_tmpfs):
    pilot.root.mkdir(parents=True)
    pilot.home.symlink_to(full_tmpfs)
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("ok.sh", "exit 0\n")), "")[0]
    result = pilot.run(panda.url, "--output-url", (pilot.root / "se").as_uri() + "/{scope}/{lfn}")
    assert result.returncode == 0, result.stderr
    assert "No space left on device" in result.stderr
    assert panda.job(job_id)["status"] == "finished"


def test_no_writable_disk_at_all_still_sends(panda, full_tmpfs, tmp_path):
    job_id = panda.submit_jobs(QUEUE, 1, "/bin/true", "")[0]
    with PandaClient(panda.url) as client:
        client.acquire_jobs(QUEUE)
        a_file = tmp_path / "a-file"
        a_file.write_text("")
        reporter = Reporter(client, Outbox(full_tmpfs / "outbox"), fallback=Outbox(a_file / "outbox"))
        assert reporter.final(job_id, "failed", pilot_error_code=1305, pilot_error_diag="disk full")
    job = panda.job(job_id)
    assert (job["status"], job["pilot_error_code"]) == ("failed", 1305)
