"""The local back end against real detached processes."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autopilot_ops.backends.base import BackendError, PilotSpec, PilotState, PilotStatus
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.backends.registry import create_backend


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.fixture
def log_root(tmp_path: Path) -> Path:
    return tmp_path / "logs"


@pytest.fixture
def backend(log_root: Path) -> Iterator[LocalBackend]:
    created = LocalBackend("local-test", {"log_root": str(log_root), "kill_grace_s": 0.5})
    yield created
    # Leave no pilot behind, whatever the test did.
    created.cancel([p.batch_id for p in created.find_pilots("Q1", "cycle-1") or []])


def spec(log_root: Path, script: str, queue: str = "Q1", **kwargs) -> PilotSpec:
    return PilotSpec(
        queue=queue, cycle_id="cycle-1", scheduler="test", command=["sh", "-c", script], log_root=log_root, **kwargs
    )


def final_status(backend: LocalBackend, batch_id: str) -> PilotStatus:
    wait_for(lambda: backend.status([batch_id])[batch_id].state.is_final, f"{batch_id} to end")
    return backend.status([batch_id])[batch_id]


def test_registered_under_kind_local(log_root: Path) -> None:
    created = create_backend("local", "via-registry", {"log_root": str(log_root)})
    assert isinstance(created, LocalBackend)
    assert created.state_dir == log_root / ".local-backend" / "via-registry"


def test_exit_codes_logs_and_environment(backend: LocalBackend, log_root: Path) -> None:
    failing = backend.submit(
        2, spec(log_root, 'echo "hi $GREETING"; echo oops >&2; exit 3', environment={"GREETING": "a b"})
    )
    finishing = backend.submit(1, spec(log_root, "exit 0", queue="queue/with space"))

    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert len({p.batch_id for p in failing}) == 2
    for pilot in failing:
        status = final_status(backend, pilot.batch_id)
        assert (status.state, status.exit_code) == (PilotState.FAILED, 3)
        assert status.started_at is not None and status.ended_at is not None
        assert status.started_at <= status.ended_at
        assert pilot.stdout == log_root / day / "Q1" / f"{pilot.batch_id}.out"
        assert pilot.stdout.read_text() == "hi a b\n"
        assert pilot.stderr.read_text() == "oops\n"
        assert backend.log_paths(pilot.batch_id) == (pilot.stdout, pilot.stderr)
    done = final_status(backend, finishing[0].batch_id)
    assert (done.state, done.exit_code) == (PilotState.FINISHED, 0)
    assert finishing[0].stdout.parent == log_root / day / "queue_with_space"


def test_relative_paths_are_taken_from_the_scheduler_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    backend = LocalBackend("relative", {"state_dir": "state"})
    [pilot] = backend.submit(1, spec(Path("logs"), "echo here"))
    assert final_status(backend, pilot.batch_id).state is PilotState.FINISHED
    assert pilot.stdout.is_absolute() and pilot.stdout.is_relative_to(tmp_path / "logs")
    assert pilot.stdout.read_text() == "here\n"
    assert backend.state_dir == tmp_path / "state"


def test_unknown_ids_are_left_out(backend: LocalBackend, log_root: Path) -> None:
    assert backend.submit(0, spec(log_root, "exit 0")) == []
    assert backend.status(["nonsense", "20200101T000000-0123abcd-0"]) == {}
    assert backend.log_paths("20200101T000000-0123abcd-0") is None
    backend.cancel(["nonsense"])


def test_running_then_cancel_kills_the_whole_process_group(
    backend: LocalBackend, log_root: Path, tmp_path: Path
) -> None:
    child_file = tmp_path / "child.pid"
    [pilot] = backend.submit(1, spec(log_root, f"sleep 300 & echo $! > {child_file}; wait"))
    wait_for(lambda: child_file.is_file() and child_file.read_text().strip() != "", "the pilot's child")
    child = int(child_file.read_text())
    assert backend.status([pilot.batch_id])[pilot.batch_id].state is PilotState.RUNNING

    backend.cancel([pilot.batch_id])

    status = backend.status([pilot.batch_id])[pilot.batch_id]
    assert status.state is PilotState.CANCELLED
    wait_for(lambda: not pid_alive(child), "the pilot's child to die")


def test_cancel_kills_a_pilot_that_ignores_term(backend: LocalBackend, log_root: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    [pilot] = backend.submit(1, spec(log_root, f"trap '' TERM; touch {ready}; while :; do sleep 0.1; done"))
    wait_for(ready.exists, "the pilot to ignore TERM")

    backend.cancel([pilot.batch_id])

    assert backend.status([pilot.batch_id])[pilot.batch_id].state is PilotState.CANCELLED
    assert subprocess.run(["pgrep", "-f", f"touch {ready}"], capture_output=True).returncode == 1


def test_cancel_of_a_finished_pilot_keeps_its_result(backend: LocalBackend, log_root: Path) -> None:
    [pilot] = backend.submit(1, spec(log_root, "exit 5"))
    final_status(backend, pilot.batch_id)
    backend.cancel([pilot.batch_id])
    status = backend.status([pilot.batch_id])[pilot.batch_id]
    assert (status.state, status.exit_code) == (PilotState.FAILED, 5)


def test_pilots_outlive_the_scheduler_and_are_found_again(log_root: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    scheduler = f"""
import json, sys
from pathlib import Path
from autopilot_ops.backends.base import PilotSpec
from autopilot_ops.backends.local import LocalBackend
backend = LocalBackend("restart", {{"log_root": {str(log_root)!r}}})
spec = PilotSpec(queue="Q1", cycle_id="c9", scheduler="s", log_root=Path({str(log_root)!r}),
                 command=["sh", "-c", "while [ ! -e {gate} ]; do sleep 0.05; done; exit 7"])
print(json.dumps([p.batch_id for p in backend.submit(3, spec)]))
"""
    # The scheduler is a separate process that exits right after submitting.
    done = subprocess.run([sys.executable, "-c", scheduler], capture_output=True, text=True, timeout=60, check=True)
    ids = json.loads(done.stdout)

    again = LocalBackend("restart", {"log_root": str(log_root)})
    try:
        assert {s.state for s in again.status(ids).values()} <= {PilotState.QUEUED, PilotState.RUNNING}
        wait_for(lambda: {s.state for s in again.status(ids).values()} == {PilotState.RUNNING}, "all to run")
        assert [p.batch_id for p in again.find_pilots("Q1", "c9")] == ids
        assert again.find_pilots("Q1", "other-cycle") == []
        gate.touch()
        for batch_id in ids:
            status = final_status(again, batch_id)
            assert (status.state, status.exit_code) == (PilotState.FAILED, 7)
    finally:
        again.cancel(ids)


def test_many_pilots_in_one_submission(backend: LocalBackend, log_root: Path) -> None:
    pilots = backend.submit(100, spec(log_root, "exit 0"))
    ids = [p.batch_id for p in pilots]
    assert len(set(ids)) == 100
    # The supervisor starts them one after the other: each is queued, running or done.
    assert {s.state for s in backend.status(ids).values()} <= {
        PilotState.QUEUED,
        PilotState.RUNNING,
        PilotState.FINISHED,
    }
    wait_for(lambda: all(s.state.is_final for s in backend.status(ids).values()), "100 pilots to end")
    assert {(s.state, s.exit_code) for s in backend.status(ids).values()} == {(PilotState.FINISHED, 0)}


def recorded_pid(backend: LocalBackend, batch_id: str) -> int:
    submission, index = batch_id.rsplit("-", 1)
    lines = dict(line.split(" ", 1) for line in (backend.state_dir / submission / "pids").read_text().splitlines())
    return int(lines[index].split()[0])


def test_a_pilot_killed_by_a_signal_is_failed(backend: LocalBackend, log_root: Path) -> None:
    [pilot] = backend.submit(1, spec(log_root, "sleep 300"))
    os.killpg(recorded_pid(backend, pilot.batch_id), 9)
    status = final_status(backend, pilot.batch_id)
    assert (status.state, status.exit_code, status.reason) == (PilotState.FAILED, None, "signal 9")


def test_a_pilot_whose_supervisor_died_is_failed(backend: LocalBackend, log_root: Path) -> None:
    [pilot] = backend.submit(1, spec(log_root, "sleep 300"))
    sub_dir = backend.state_dir / pilot.batch_id.rsplit("-", 1)[0]
    os.kill(int((sub_dir / "supervisor.pid").read_text().split()[0]), 9)
    assert backend.status([pilot.batch_id])[pilot.batch_id].state is PilotState.RUNNING
    os.killpg(recorded_pid(backend, pilot.batch_id), 9)
    status = final_status(backend, pilot.batch_id)
    assert (status.state, status.exit_code) == (PilotState.FAILED, None)
    assert status.reason == "pilot process ended without an exit status"


def test_a_reused_pid_is_not_taken_for_the_pilot(backend: LocalBackend, log_root: Path) -> None:
    [pilot] = backend.submit(1, spec(log_root, "sleep 300"))
    sub_dir = backend.state_dir / pilot.batch_id.rsplit("-", 1)[0]
    os.kill(int((sub_dir / "supervisor.pid").read_text().split()[0]), 9)
    os.killpg(recorded_pid(backend, pilot.batch_id), 9)
    wait_for(lambda: backend.status([pilot.batch_id])[pilot.batch_id].state.is_final, "the pilot to die")

    # Another live process now holds the recorded PID: the same start time makes it "the pilot"...
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        stat = Path(f"/proc/{stranger.pid}/stat").read_text().strip()
        (sub_dir / "pids").write_text(f"0 {stat}\n")
        assert backend.status([pilot.batch_id])[pilot.batch_id].state is PilotState.RUNNING
        # ...while a different start time (the PID was reused) does not.
        head, _, tail = stat.rpartition(")")
        fields = tail.split()
        fields[19] = str(int(fields[19]) + 1)
        (sub_dir / "pids").write_text(f"0 {head}) {' '.join(fields)}\n")
        assert backend.status([pilot.batch_id])[pilot.batch_id].state is PilotState.FAILED
    finally:
        stranger.kill()
        stranger.wait()


def test_cancel_right_after_submit_leaves_nothing_running(backend: LocalBackend, log_root: Path) -> None:
    pilots = backend.submit(300, spec(log_root, "sleep 300"))
    ids = [p.batch_id for p in pilots]
    assert all(p.stdout.is_file() and p.stderr.is_file() for p in pilots)

    backend.cancel(ids)  # some are not started yet: the supervisor must skip them

    assert {s.state for s in backend.status(ids).values()} == {PilotState.CANCELLED}
    submission = ids[0].rsplit("-", 1)[0]
    records = (backend.state_dir / submission / "pids").read_text().splitlines()
    assert len(records) == 300
    started = [int(line.split()[1]) for line in records if line.split()[1] != "-"]
    assert not [pid for pid in started if pid_alive(pid)]


def test_a_command_that_cannot_start_fails_the_submission(backend: LocalBackend, log_root: Path) -> None:
    bad = PilotSpec(queue="Q1", cycle_id="cycle-1", scheduler="test", command=["/nonexistent/pilot"], log_root=log_root)
    with pytest.raises(BackendError, match=r"started no pilot: cannot start pilot 0 \(/nonexistent/pilot"):
        backend.submit(3, bad)
    assert backend.find_pilots("Q1", "cycle-1") == []


def test_submit_host_is_refused(log_root: Path) -> None:
    with pytest.raises(BackendError, match="submit_host 'elsewhere' is not supported"):
        LocalBackend("remote", {"log_root": str(log_root)}, submit_host="elsewhere")


def test_each_pilot_gets_its_batch_id_and_index_in_the_environment(backend: LocalBackend, log_root: Path) -> None:
    pilots = backend.submit(2, spec(log_root, 'echo "$AUTOPILOT_PILOT_ID $AUTOPILOT_PILOT_INDEX"'))
    assert [p.index for p in pilots] == [0, 1]
    for pilot in pilots:
        assert final_status(backend, pilot.batch_id).state is PilotState.FINISHED
        assert pilot.stdout.read_text().strip() == f"{pilot.batch_id} {pilot.index}"
