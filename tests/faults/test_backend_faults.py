"""Issue 10, section 5, faults 5 and 6: slurmctld stopped during a cycle and a sweep, and the HTCondor schedd
stopped, then started again; and the schedd refusing part of a submission.

Against the real Slurm of scripts/slurm-local.sh and the real pool of scripts/condor-local.sh, with PostgreSQL.
Each asserts: no double submission (each key yields its pilots once), no pilot falsely failed, the submission
made while the daemon was down fails with an error naming the back end, a key left pending then stays pending
(not ``missed``), and once the daemon is back the next submission and sweep are normal and the earlier pilots
keep their true states. The daemon is always started again in a ``finally``: other tests share it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopilot_ops.backends.base import Backend, BackendError, PilotSpec
from autopilot_ops.backends.condor import CondorBackend
from autopilot_ops.backends.slurm import SlurmBackend
from autopilot_ops.scheduler.pilot_sweep import sweep_backend
from autopilot_ops.scheduler.submission import PilotSubmitter
from autopilot_ops.store.backends import upsert_backend
from autopilot_ops.store.connection import Store
from autopilot_ops.store.submissions import begin_submission

REPO = Path(__file__).resolve().parents[2]
SLURM_SCRIPT = REPO / "scripts" / "slurm-local.sh"
CONDOR_SCRIPT = REPO / "scripts" / "condor-local.sh"
CONDOR_HOME = Path(os.environ.get("AUTOPILOT_CONDOR_HOME", "/var/lib/autopilot-condor"))
CONDOR_USER = os.environ.get("AUTOPILOT_CONDOR_USER", "autopilot")
LIMIT_FILE = CONDOR_HOME / "root" / "etc" / "condor" / "config.d" / "90-autopilot-fault-test.conf"

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the scripts stop and start daemons as root")


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def script(path: Path, command: str) -> None:
    done = subprocess.run([str(path), command], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{path.name} {command}: {done.stderr[-2000:]}"


def pilot_rows(store: Store) -> list[dict]:
    with store.transaction() as cur:
        cur.execute("SELECT cycle_id, batch_id, state FROM pilots ORDER BY id")
        return [dict(r) for r in cur.fetchall()]


def submission_states(store: Store) -> dict[str, str]:
    with store.transaction() as cur:
        cur.execute("SELECT cycle_id, state FROM submissions")
        return {r["cycle_id"]: r["state"] for r in cur.fetchall()}


def pending_key(store: Store, backend: Backend, queue: str, cycle_id: str) -> None:
    """A key as a scheduler killed mid-submission leaves it: written, never settled."""
    with store.transaction() as cur:
        assert begin_submission(cur, queue, cycle_id, backend.name, 1) is None


def check_outage(store: Store, life: PilotSubmitter, make_spec: Callable[[str], PilotSpec], queue: str) -> None:
    """While the daemon is down: the sweep changes nothing, a submission fails naming the back end, and a
    pending key stays pending."""
    before = pilot_rows(store)
    report = sweep_backend(life.store, life.backend, life.who)
    assert report.backend_error and life.backend.name in report.backend_error
    assert pilot_rows(store) == before, "a sweep with the daemon down changed pilot states"

    outcome = life.submit(1, make_spec("during-outage"))
    assert outcome.submitted == 0 and outcome.missed == 1
    assert outcome.skipped and f"back end {life.backend.name!r}" in outcome.skipped

    pending_key(store, life.backend, queue, "crashed")
    assert life.reconcile(queue) == 0
    assert submission_states(store)["crashed"] == "pending", "a key was settled although the back end was down"


def check_recovered(store: Store, life: PilotSubmitter, make_spec: Callable[[str], PilotSpec], live: str) -> None:
    """After the daemon is back: the earlier pilots keep their true state, the next submission is normal,
    the pending key is settled, and every key yielded its pilots once."""
    sweep_backend(life.store, life.backend, life.who)
    before = [r for r in pilot_rows(store) if r["cycle_id"] == "before"]
    assert len(before) == 2 and {r["state"] for r in before} == {live}, before
    assert life.submit(1, make_spec("after")).submitted == 1
    assert submission_states(store)["crashed"] != "pending"
    rows = pilot_rows(store)
    assert not [r for r in rows if r["state"] == "failed"], rows
    assert sorted(r["cycle_id"] for r in rows) == ["after", "before", "before"]
    assert len({r["batch_id"] for r in rows}) == len(rows)


# -- fault 5: slurmctld -------------------------------------------------------------------------------


@pytest.fixture
def slurm(store: Store, tmp_path: Path) -> Iterator[tuple[PilotSubmitter, Callable[[str], PilotSpec]]]:
    if shutil.which("sinfo") is None:
        pytest.skip("sinfo not found: Slurm is not installed here")
    script(SLURM_SCRIPT, "start")
    params = {"log_root": str(tmp_path / "logs"), "command_timeout_s": 60}
    with store.transaction() as cur:
        upsert_backend(cur, "slurm-fault", "slurm", parameters=params)
    backend = SlurmBackend("slurm-fault", params)

    def make_spec(cycle_id: str) -> PilotSpec:
        return PilotSpec("SLURM_FAULT", cycle_id, "test", ["sleep", "300"], tmp_path / "logs")

    try:
        yield PilotSubmitter(store, backend, "test"), make_spec
    finally:
        script(SLURM_SCRIPT, "start-controller")
        backend.cancel([r["batch_id"] for r in pilot_rows(store)])


@needs_root
@pytest.mark.slurm
def test_slurmctld_stopped_during_a_cycle_and_a_sweep(
    store: Store, slurm: tuple[PilotSubmitter, Callable[[str], PilotSpec]]
) -> None:
    life, make_spec = slurm
    assert life.submit(2, make_spec("before")).submitted == 2

    def running() -> bool:
        sweep_backend(life.store, life.backend, life.who)
        return {r["state"] for r in pilot_rows(store)} == {"running"}

    wait_for(running, "the two Slurm pilots to run")
    script(SLURM_SCRIPT, "stop-controller")
    try:
        check_outage(store, life, make_spec, "SLURM_FAULT")
    finally:
        script(SLURM_SCRIPT, "start-controller")
    check_recovered(store, life, make_spec, "running")


# -- fault 6: the HTCondor schedd ---------------------------------------------------------------------


@pytest.fixture
def condor_log_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="autopilot-condor-faults-", dir="/tmp"))  # /tmp is shared with the pool
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def condor(store: Store, condor_log_root: Path) -> Iterator[tuple[PilotSubmitter, Callable[[str], PilotSpec]]]:
    done = subprocess.run([str(CONDOR_SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.skip(f"scripts/condor-local.sh start failed: {done.stderr.strip()[-2000:]}")
    params = {
        "config_file": str(CONDOR_HOME / "client.env"),
        "job_owner": CONDOR_USER,
        "history_s": 600,
        "submit": {"requirements": "False"},  # pilots that stay idle, whatever the pool offers
    }
    with store.transaction() as cur:
        upsert_backend(cur, "condor-fault", "condor", parameters=params)
    backend = CondorBackend("condor-fault", params)

    def make_spec(cycle_id: str) -> PilotSpec:
        return PilotSpec("CONDOR_FAULT", cycle_id, "test", ["/bin/sleep", "300"], condor_log_root)

    try:
        yield PilotSubmitter(store, backend, "test"), make_spec
    finally:
        script(CONDOR_SCRIPT, "start-schedd")
        backend.cancel([r["batch_id"] for r in pilot_rows(store)])


@needs_root
def test_schedd_stopped_and_started(store: Store, condor: tuple[PilotSubmitter, Callable[[str], PilotSpec]]) -> None:
    life, make_spec = condor
    assert life.submit(2, make_spec("before")).submitted == 2
    sweep_backend(life.store, life.backend, life.who)
    assert {r["state"] for r in pilot_rows(store)} == {"queued"}
    script(CONDOR_SCRIPT, "stop-schedd")
    try:
        check_outage(store, life, make_spec, "CONDOR_FAULT")
    finally:
        script(CONDOR_SCRIPT, "start-schedd")
    check_recovered(store, life, make_spec, "queued")


@needs_root
def test_schedd_refusing_part_of_a_submission_leaves_no_pilot_behind(
    condor: tuple[PilotSubmitter, Callable[[str], PilotSpec]],
) -> None:
    """With MAX_JOBS_PER_OWNER below the count, the schedd refuses the proc past the limit and aborts the
    whole transaction: the error names the back end, and no pilot of that submission exists untracked."""
    life, make_spec = condor
    chroot = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "chroot", str(CONDOR_HOME / "root")]
    LIMIT_FILE.write_text("MAX_JOBS_PER_OWNER = 2\n")
    try:
        subprocess.run([*chroot, "condor_reconfig", "-daemon", "schedd"], check=True, capture_output=True)
        time.sleep(1)  # condor_reconfig returns before the schedd has read its configuration
        with pytest.raises(BackendError, match="back end 'condor-fault': HTCondor submit of 5 pilots"):
            life.backend.submit(5, make_spec("over-limit"))
        assert life.backend.find_pilots("CONDOR_FAULT", "over-limit") == []
    finally:
        LIMIT_FILE.unlink(missing_ok=True)
        subprocess.run([*chroot, "condor_reconfig", "-daemon", "schedd"], check=True, capture_output=True)
