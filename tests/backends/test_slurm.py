"""The Slurm back end against the real single-node cluster of scripts/slurm-local.sh."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopilot_ops.backends.base import BackendError, PilotSpec, PilotState, PilotStatus, SubmittedPilot
from autopilot_ops.backends.registry import create_backend
from autopilot_ops.backends.slurm import SlurmBackend, parse_jobcomp_line

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(shutil.which("sinfo") is None, reason="sinfo not found: Slurm is not installed here"),
]

SLURM_CONF = Path("/etc/slurm/slurm.conf")


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def scontrol(*args: str) -> str:
    return subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def backend(log_root: Path) -> Iterator[SlurmBackend]:
    created = SlurmBackend("slurm-test", {"log_root": str(log_root)})
    submitted: list[str] = []
    submit = created.submit

    def recording_submit(n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        pilots = submit(n, spec)
        submitted.extend(p.batch_id for p in pilots)
        return pilots

    created.submit = recording_submit  # type: ignore[method-assign]
    yield created
    created.cancel(submitted)


def spec(log_root: Path, script: str, **kwargs) -> PilotSpec:
    kwargs.setdefault("queue", "Q1")
    return PilotSpec(cycle_id="cycle-1", scheduler="test", command=["sh", "-c", script], log_root=log_root, **kwargs)


def final_statuses(backend: SlurmBackend, ids: list[str]) -> dict[str, PilotStatus]:
    def ended() -> bool:
        statuses = backend.status(ids)
        return len(statuses) == len(ids) and all(s.state.is_final for s in statuses.values())

    wait_for(ended, f"{len(ids)} jobs to end")
    return backend.status(ids)


def test_registered_under_kind_slurm() -> None:
    assert isinstance(create_backend("slurm", "via-registry"), SlurmBackend)


def test_array_exit_codes_and_logs(backend: SlurmBackend, log_root: Path) -> None:
    failing = backend.submit(
        3, spec(log_root, 'echo "hi $GREETING"; echo oops >&2; exit 3', environment={"GREETING": "a 'b'"})
    )
    finishing = backend.submit(1, spec(log_root, "exit 0", queue="queue/two"))

    job = failing[0].batch_id.split("_")[0]
    assert [p.batch_id for p in failing] == [f"{job}_0", f"{job}_1", f"{job}_2"]
    statuses = final_statuses(backend, [p.batch_id for p in failing + finishing])
    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    for pilot in failing:
        status = statuses[pilot.batch_id]
        assert (status.state, status.exit_code) == (PilotState.FAILED, 3)
        assert status.started_at is not None and status.ended_at is not None
        assert pilot.stdout == log_root / day / "Q1" / f"{pilot.batch_id}.out"
        assert pilot.stdout.read_text() == "hi a 'b'\n"
        assert pilot.stderr.read_text() == "oops\n"
        assert backend.log_paths(pilot.batch_id) == (pilot.stdout, pilot.stderr)
    done = statuses[finishing[0].batch_id]
    assert (done.state, done.exit_code) == (PilotState.FINISHED, 0)
    assert finishing[0].stdout.parent == log_root / day / "queue_two"


def test_a_pilot_killed_by_a_signal(backend: SlurmBackend, log_root: Path) -> None:
    [pilot] = backend.submit(1, spec(log_root, "kill -9 $$"))
    status = final_statuses(backend, [pilot.batch_id])[pilot.batch_id]
    assert status.state is PilotState.FAILED
    assert status.exit_code is None and "signal 9" in (status.reason or "")


def test_resources_reach_the_job(backend: SlurmBackend, log_root: Path) -> None:
    pilot_spec = spec(
        log_root,
        "sleep 300",
        corecount=2,
        memory_mb=100,
        walltime_s=600,
        parameters={"partition": "debug", "sbatch_args": ["--begin=now+1hour"]},
    )
    [pilot] = backend.submit(1, pilot_spec)
    job = scontrol("show", "job", "-o", pilot.batch_id)
    assert "TimeLimit=00:10:00" in job
    assert "MinMemoryNode=100M" in job
    assert "NumCPUs=2" in job
    assert "Partition=debug" in job
    assert "JobName=autopilot.Q1.cycle-1 " in job


def test_spec_parameters_override_the_backend_and_sbatch_errors_are_clear(log_root: Path) -> None:
    backend = SlurmBackend("bad-partition", {"partition": "no-such-partition", "sbatch_args": ["--hold"]})
    with pytest.raises(BackendError, match=r"`sbatch .*--partition=no-such-partition.*` exited 1: .*invalid partition"):
        backend.submit(1, spec(log_root, "true"))
    [pilot] = backend.submit(1, spec(log_root, "true", parameters={"partition": "debug"}))
    try:
        assert "Partition=debug" in scontrol("show", "job", "-o", pilot.batch_id)
    finally:
        backend.cancel([pilot.batch_id])


def test_queued_held_released_and_cancelled_before_start(backend: SlurmBackend, log_root: Path) -> None:
    pilots = backend.submit(2, spec(log_root, "sleep 300", parameters={"sbatch_args": "--begin=now+1hour"}))
    ids = [p.batch_id for p in pilots]
    assert {s.state for s in backend.status(ids).values()} == {PilotState.QUEUED}

    scontrol("hold", ids[0])
    held = backend.status(ids)
    assert held[ids[0]].state is PilotState.HELD
    assert held[ids[0]].reason in ("JobHeldAdmin", "JobHeldUser")
    assert held[ids[1]].state is PilotState.QUEUED
    scontrol("release", ids[0])
    assert backend.status([ids[0]])[ids[0]].state is PilotState.QUEUED

    backend.cancel(ids)
    assert {s.state for s in backend.status(ids).values()} == {PilotState.CANCELLED}


def test_submitted_on_hold(backend: SlurmBackend, log_root: Path) -> None:
    [pilot] = backend.submit(1, spec(log_root, "true", parameters={"sbatch_args": ["--hold"]}))
    status = backend.status([pilot.batch_id])[pilot.batch_id]
    assert (status.state, status.reason) == (PilotState.HELD, "JobHeldUser")


def test_running_then_cancelled(backend: SlurmBackend, log_root: Path, tmp_path: Path) -> None:
    started = tmp_path / "started"
    [pilot] = backend.submit(1, spec(log_root, f"touch {started}; sleep 300"))
    wait_for(started.exists, "the pilot to start")
    status = backend.status([pilot.batch_id])[pilot.batch_id]
    assert status.state is PilotState.RUNNING and status.started_at is not None

    backend.cancel([pilot.batch_id, "999999999_0"])

    status = final_statuses(backend, [pilot.batch_id])[pilot.batch_id]
    assert status.state is PilotState.CANCELLED


def test_array_of_many(backend: SlurmBackend, log_root: Path) -> None:
    pilots = backend.submit(120, spec(log_root, "exit 0"))
    ids = [p.batch_id for p in pilots]
    assert len(set(ids)) == 120
    statuses = final_statuses(backend, ids)
    assert {(s.state, s.exit_code) for s in statuses.values()} == {(PilotState.FINISHED, 0)}


def test_find_pilots_by_queue_and_cycle(backend: SlurmBackend, log_root: Path) -> None:
    pilot_spec = spec(log_root, "true", queue="find-me", parameters={"sbatch_args": ["--hold"]})
    pilots = backend.submit(3, pilot_spec)
    assert backend.find_pilots("find-me", "cycle-1") == pilots
    assert backend.find_pilots("find-me", "no-such-cycle") == []


def test_unknown_ids_are_left_out(backend: SlurmBackend) -> None:
    assert backend.status(["999999998_0", "999999999_3", "not-an-id"]) == {}
    assert backend.status(["999999999_0"]) == {}
    assert backend.log_paths("999999999_0") is None


def test_jobs_the_controller_forgot_come_from_the_completion_log(
    backend: SlurmBackend, log_root: Path, tmp_path: Path
) -> None:
    pilots = backend.submit(2, spec(log_root, "exit 4"))
    final_statuses(backend, [p.batch_id for p in pilots])
    job = pilots[0].batch_id.split("_")[0]
    jobcomp = Path(re.search(r"JobCompLoc\s*=\s*(\S+)", scontrol("show", "config"))[1])

    def logged() -> list[dict[str, str]]:
        records = [parse_jobcomp_line(line) for line in jobcomp.read_text().splitlines()]
        return [r for r in records if r.get("ArrayJobId") == job]

    wait_for(lambda: len(logged()) == 2, "both tasks in the completion log")
    records = {r["ArrayTaskId"]: r for r in logged()}
    assert records["0"]["JobState"] == "FAILED" and records["0"]["ExitCode"] == "4:0"
    assert records["1"]["Tres"].startswith("cpu=1,")

    # The controller keeps jobs for MinJobAge (300 s) after they end. Give the real log lines an id it never
    # issued, so that squeue does not know them and status() must read the completion log.
    forgotten = str(int(job) + 900_000_000)
    lines = [line for line in jobcomp.read_text().splitlines() if f" ArrayJobId={job} " in line]
    copy = tmp_path / "jobcomp.log"
    copy.write_text("".join(line.replace(f"ArrayJobId={job} ", f"ArrayJobId={forgotten} ") + "\n" for line in lines))
    reader = SlurmBackend("slurm-test", {"jobcomp_log": str(copy)})
    statuses = reader.status([f"{forgotten}_0", f"{forgotten}_1", f"{forgotten}_2"])
    assert set(statuses) == {f"{forgotten}_0", f"{forgotten}_1"}
    assert {(s.state, s.exit_code) for s in statuses.values()} == {(PilotState.FAILED, 4)}
    assert all("completion log" in (s.reason or "") for s in statuses.values())


def test_parse_jobcomp_line_keeps_spaces_and_equals_in_values() -> None:
    line = (
        "JobId=7 UserId=root(0) GroupId=root(0) Name=my job JobState=CANCELLED Partition=debug "
        "Tres=cpu=1,mem=10M,node=1 WorkDir=/tmp/a b ExitCode=0:15 "
    )
    record = parse_jobcomp_line(line)
    assert record["Name"] == "my job"
    assert record["Tres"] == "cpu=1,mem=10M,node=1"
    assert record["WorkDir"] == "/tmp/a b"
    assert record["ExitCode"] == "0:15"


@pytest.fixture
def dead_cluster_conf(tmp_path: Path) -> Path:
    """This cluster's configuration, pointing at a controller port nobody listens on."""
    lines = [
        line for line in SLURM_CONF.read_text().splitlines() if not line.startswith(("SlurmctldPort", "MessageTimeout"))
    ]
    conf = tmp_path / "dead-slurm.conf"
    conf.write_text("\n".join([*lines, "SlurmctldPort=6899", "MessageTimeout=1"]) + "\n")
    return conf


def test_dead_controller_gives_a_clear_error(dead_cluster_conf: Path, log_root: Path) -> None:
    dead = SlurmBackend("dead", {"slurm_conf": str(dead_cluster_conf)})
    with pytest.raises(BackendError, match=r"`squeue .*` exited 1: .*Unable to contact slurm controller"):
        dead.status(["1_0"])
    with pytest.raises(BackendError, match=r"`sbatch .*` exited 1: .*Unable to contact slurm controller"):
        dead.submit(1, spec(log_root, "true"))
    with pytest.raises(BackendError, match=r"`scancel 1_0` exited \d+: .*Unable to contact slurm controller"):
        dead.cancel(["1_0"])
    assert dead.find_pilots("Q1", "cycle-1") is None  # cannot tell: the key stays pending, not missed


def test_submit_host_runs_commands_through_ssh(log_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in `ssh` that records its arguments and runs the remote command line here.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "ssh-calls"
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nwhile [ "$1" != -- ]; do shift; done\nexec sh -c "$2"\n')
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    remote = SlurmBackend("remote", {"sbatch_args": ["--hold"]}, submit_host="login.example")

    pilots = remote.submit(2, spec(log_root, "true"))
    statuses = remote.status([p.batch_id for p in pilots])
    remote.cancel([p.batch_id for p in pilots])

    assert {s.state for s in statuses.values()} == {PilotState.HELD}
    recorded = calls.read_text().splitlines()
    assert [line.split(" -- ")[0] for line in recorded] == ["-o BatchMode=yes login.example"] * 3
    assert [line.split(" -- ")[1].split()[2] for line in recorded] == ["sbatch", "squeue", "scancel"]


def test_each_array_task_gets_its_batch_id_and_index_in_the_environment(backend: SlurmBackend, log_root: Path) -> None:
    pilots = backend.submit(2, spec(log_root, 'echo "$AUTOPILOT_PILOT_ID $AUTOPILOT_PILOT_INDEX"'))
    assert [p.index for p in pilots] == [0, 1]
    final_statuses(backend, [p.batch_id for p in pilots])
    wait_for(lambda: all(p.stdout.exists() and p.stdout.read_text() for p in pilots), "the pilots' output")
    assert [p.stdout.read_text().strip() for p in pilots] == [f"{p.batch_id} {p.index}" for p in pilots]


def test_a_submission_whose_reply_was_lost_returns_the_pilots_slurm_made(
    log_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in `ssh` that runs the remote command and then loses the connection (exit 255, no output)
    # the first time: sbatch made the array, but its reply never came back.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dropped = tmp_path / "dropped"
    fake_ssh = bin_dir / "ssh"
    fake_ssh.write_text(
        '#!/bin/sh\nwhile [ "$1" != -- ]; do shift; done\n'
        f'if [ ! -e {dropped} ]; then touch {dropped}; sh -c "$2" >/dev/null 2>&1; '
        'echo "Connection to login.example closed by remote host." >&2; exit 255; fi\n'
        'exec sh -c "$2"\n'
    )
    fake_ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    remote = SlurmBackend("remote", {"sbatch_args": ["--hold"]}, submit_host="login.example")
    pilots = remote.submit(2, spec(log_root, "true", queue=f"LOST_{time.time_ns()}"))
    try:
        assert dropped.exists()
        assert [p.batch_id.split("_")[1] for p in pilots] == ["0", "1"]
        assert {s.state for s in remote.status([p.batch_id for p in pilots]).values()} == {PilotState.HELD}
    finally:
        remote.cancel([p.batch_id for p in pilots])


def test_a_refused_submission_still_raises(backend: SlurmBackend, log_root: Path) -> None:
    with pytest.raises(BackendError, match=r"slurm back end 'slurm-test': `sbatch .*invalid partition"):
        backend.submit(1, spec(log_root, "true", queue=f"REFUSED_{time.time_ns()}", parameters={"partition": "x"}))
