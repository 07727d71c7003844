"""Issue 10, section 5, faults 5 and 6: slurmctld stopped during a cycle and a sweep, and the HTCondor schedd
stopped, then started again; and the schedd refusing part of a submission.

Against the real Slurm of scripts/slurm-local.sh and the real pool of scripts/condor-local.sh, with PostgreSQL
and the dev PanDA server. The pilots are real ones: the wrapper and the bundle from the plugin's route, as in
tests/scheduler/test_bundle_pilots.py, each taking one dev-server job whose payload waits for a file. The daemon
is stopped while two pilots hold running jobs, and the payloads are let go while it is down. Each fault test
asserts, through ``SchedulingCycle`` runs:

- zero jobs lost: every job the server handed out (three) was handed out once and ends ``finished`` there (the
  two held through the outage included: none fails, not even with a pilot error code);
- zero double submissions: each key yields its pilots once (the outage cycle's key none, a key left pending by
  a crashed scheduler stays pending through the outage and is then settled with none), none is falsely failed;
- during the outage the sweep changes nothing and the cycle's submission fails with an error naming the back end;
- the next cycle is normal: it submits the pilot for the third job, and the sweeps follow every pilot to
  ``finished``.

The daemon is always started again in a ``finally``: other tests share it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autopilot_ops.backends.base import Backend, BackendError, PilotSpec
from autopilot_ops.backends.condor import CondorBackend
from autopilot_ops.backends.registry import backend_from_row
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleReport, QueueResult, SchedulingCycle
from autopilot_ops.scheduler.pilot_sweep import sweep_backend
from autopilot_ops.scheduler.submission import PilotSubmitter
from autopilot_ops.store.backends import upsert_backend
from autopilot_ops.store.connection import Store
from autopilot_ops.store.submissions import begin_submission
from tests.faults.conftest import assert_no_job_lost
from tests.faults.test_faults import WAIT_SCRIPT, wait_for
from tests.scheduler.test_bundle_pilots import (  # noqa: F401  (panda, plugin_url and shared are fixtures)
    CONDOR_ENV,
    JOB_OWNER,
    make_cycle,
    panda,
    plugin_url,
    shared,
    story,
)

REPO = Path(__file__).resolve().parents[2]
SLURM_SCRIPT = REPO / "scripts" / "slurm-local.sh"
CONDOR_SCRIPT = REPO / "scripts" / "condor-local.sh"
CONDOR_HOME = Path(os.environ.get("AUTOPILOT_CONDOR_HOME", "/var/lib/autopilot-condor"))
CONDOR_USER = os.environ.get("AUTOPILOT_CONDOR_USER", "autopilot")
LIMIT_FILE = CONDOR_HOME / "root" / "etc" / "condor" / "config.d" / "90-autopilot-fault-test.conf"
#: One queue on the back end under test: two pilots in the first cycle, room for a third.
QUEUES = """
backends:
  - {{name: {backend}, kind: {kind}, parameters: {parameters}}}
defaults: {{tags: [t1], queue_limit: 5, max_per_cycle: 2, max_pilots: 3, cycle_period: 60}}
queues:
  - {{name: {queue}, site: S1, backend: {backend}}}
"""

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the scripts stop and start daemons as root")


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


def pending_key(store: Store, backend: str, queue: str, cycle_id: str) -> None:
    """A key as a scheduler killed mid-submission leaves it: written, never settled."""
    with store.transaction() as cur:
        assert begin_submission(cur, queue, cycle_id, backend, 1) is None


class Fault:
    """One fault run: a queue on the back end ``backend``, its cycle of real pilots, and three dev-server jobs
    whose payloads wait for the file ``go``."""

    def __init__(self, store: Store, server: DevServer, cycle: SchedulingCycle, backend: str, queue: str, go: Path):
        self.store, self.panda, self.cycle = store, server, cycle
        self.backend, self.queue, self.go = backend, queue, go
        self.jobs = server.submit_jobs(queue, 3, f"{server.url}/wait.sh", str(go))

    def statuses(self) -> list[str]:
        return [self.panda.job(i)["status"] for i in self.jobs]

    def story(self) -> str:
        return "\n".join(story(self.store, self.panda, self.queue, i) for i in self.jobs)

    def run(self, cycle_id: str) -> CycleReport:
        report = self.cycle.run(cycle_id)
        assert report.stats_error is None, report.stats_error
        return report

    def sweep(self) -> list[str]:
        """One sweep of the back end alone (no decision, so no submission); the pilots' recorded states."""
        sweep_backend(self.store, backend_of(self.store, self.backend), "test")
        return [r["state"] for r in pilot_rows(self.store)]

    def result(self, report: CycleReport) -> QueueResult:
        [result] = report.results
        return result

    def wait(self, check: Callable[[], bool], what: str, timeout: float) -> None:
        try:
            wait_for(check, what, timeout=timeout)
        except AssertionError as exc:
            pytest.fail(f"{exc}\n{self.story()}")


def run_fault(fault: Fault, stop: Callable[[], None], start: Callable[[], None]) -> None:
    """Two pilots hold running jobs; the daemon is stopped and the payloads let go; a cycle runs during the
    outage; the daemon is started; the next cycle is normal; and then the three checks of issue 10 s5."""
    assert fault.result(fault.run("c1")).outcome.submitted == 2
    fault.wait(lambda: sorted(fault.statuses()) == ["activated", "running", "running"], "two jobs running", 120)
    fault.wait(lambda: fault.sweep() == ["running", "running"], "the two pilots recorded running", 30)
    before = pilot_rows(fault.store)
    stop()
    try:
        fault.go.touch()  # the payloads end while the daemon is down: the pilots need only the PanDA server
        pending_key(fault.store, fault.backend, fault.queue, "crashed")
        report = fault.run("c2")  # the cycle during the outage: sweep, reconcile, decide 1, submit
        sweep = report.sweeps[fault.backend]
        assert sweep.backend_error and fault.backend in sweep.backend_error, sweep
        outcome = fault.result(report).outcome
        assert (outcome.submitted, outcome.missed) == (0, 1), outcome
        assert f"back end {fault.backend!r}" in outcome.skipped, outcome.skipped
        assert pilot_rows(fault.store) == before, "a sweep with the daemon down changed pilot states"
        assert submission_states(fault.store)["crashed"] == "pending", "a key settled with the back end down"
        fault.wait(lambda: sorted(fault.statuses()) == ["activated", "finished", "finished"], "jobs finished", 60)
    finally:
        start()
    report = fault.run("c3")  # the next cycle is normal: it settles the crashed key and submits for the third job
    assert submission_states(fault.store)["crashed"] == "reconciled"
    assert fault.result(report).outcome.submitted == 1, fault.result(report)
    ended = {"finished", "failed", "cancelled", "lost"}
    fault.wait(lambda: set(fault.sweep()) <= ended, "every pilot ended", 120)  # sweeps alone: no decision races
    assert fault.result(fault.run("c4")).decision.n == 0, "nothing is activated any more"
    assert_no_job_lost(fault.panda, fault.jobs, acquired=3)
    rows = pilot_rows(fault.store)
    assert [r["state"] for r in rows] == ["finished"] * 3, fault.story()
    assert sorted(r["cycle_id"] for r in rows) == ["c1", "c1", "c3"], rows
    assert len({r["batch_id"] for r in rows}) == 3, rows
    states = submission_states(fault.store)
    assert (states["c1"], states["c2"], states["c3"]) == ("done", "failed", "done"), states


@pytest.fixture
def fault_of(
    store: Store, panda: DevServer, plugin_url: str, tmp_path: Path, shared: Path  # noqa: F811
) -> Callable[[str, str, dict[str, Any]], Fault]:
    """Loads one queue on a back end and builds its cycle of wrapper-and-bundle pilots and its jobs."""
    (tmp_path / "files" / "wait.sh").write_text(WAIT_SCRIPT)

    def build(kind: str, queue: str, parameters: dict[str, Any]) -> Fault:
        path = tmp_path / "queues.yaml"
        path.write_text(QUEUES.format(backend=kind, kind=kind, parameters=json.dumps(parameters), queue=queue))
        load_queues(store, str(path))
        cycle = make_cycle(store, panda, plugin_url, tmp_path, shared)
        return Fault(store, panda, cycle, kind, queue, shared / "go")

    return build


def backend_of(store: Store, name: str) -> Backend:
    with store.transaction() as cur:
        cur.execute("SELECT * FROM backends WHERE name = %s", (name,))
        return backend_from_row(name, cur.fetchone())


def cancel_all(store: Store, backend: str) -> None:
    backend_of(store, backend).cancel([r["batch_id"] for r in pilot_rows(store)])


# -- fault 5: slurmctld -------------------------------------------------------------------------------


@needs_root
@pytest.mark.slurm
def test_slurmctld_stopped_during_a_cycle_and_a_sweep(store: Store, fault_of: Callable[..., Fault]) -> None:
    if shutil.which("sinfo") is None:
        pytest.skip("sinfo not found: Slurm is not installed here")
    script(SLURM_SCRIPT, "start")
    fault = fault_of("slurm", "SLURM_FAULT", {"command_timeout_s": 60})
    try:
        run_fault(
            fault, lambda: script(SLURM_SCRIPT, "stop-controller"), lambda: script(SLURM_SCRIPT, "start-controller")
        )
    finally:
        script(SLURM_SCRIPT, "start-controller")
        cancel_all(store, "slurm")


# -- fault 6: the HTCondor schedd ---------------------------------------------------------------------


@pytest.fixture
def condor_log_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="autopilot-condor-faults-", dir="/tmp"))  # /tmp is shared with the pool
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def condor_pool() -> None:
    done = subprocess.run([str(CONDOR_SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.skip(f"scripts/condor-local.sh start failed: {done.stderr.strip()[-2000:]}")


@pytest.fixture
def condor(
    store: Store, condor_pool: None, condor_log_root: Path
) -> Iterator[tuple[PilotSubmitter, Callable[[str], PilotSpec]]]:
    """A submitter of idle ``sleep`` pilots (they never run), for the schedd's own answers to a submission."""
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
        backend.cancel([r["batch_id"] for r in pilot_rows(store)])


@needs_root
@pytest.mark.condor
@pytest.mark.skipif(not CONDOR_ENV.exists(), reason="the HTCondor pool of scripts/condor-local.sh is not set up")
def test_schedd_stopped_and_started(store: Store, condor_pool: None, fault_of: Callable[..., Fault]) -> None:
    params = {"config_file": str(CONDOR_ENV), "job_owner": JOB_OWNER, "history_s": 600}
    fault = fault_of("condor", "CONDOR_FAULT", params)
    try:
        run_fault(fault, lambda: script(CONDOR_SCRIPT, "stop-schedd"), lambda: script(CONDOR_SCRIPT, "start-schedd"))
    finally:
        script(CONDOR_SCRIPT, "start-schedd")
        cancel_all(store, "condor")


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
