"""Local back end: pilots run as detached processes on this machine and outlive the scheduler.

Each submission gets a directory under the back end's state directory and one supervisor process, detached
(double fork, own session), which plays the batch system: it starts the ``n`` pilots with ``posix_spawn``, each
in its own process group (so a cancel reaches the pilot's children), records each pilot's ``/proc/<pid>/stat``
line (its start time guards against PID reuse), then reaps the pilots and writes each one's exit status to a
file. ``submit`` returns once every pilot's log files exist and the first pilot runs; the others are queued
until the supervisor reaches them. All state is in files, so a new ``LocalBackend`` with the same state
directory finds earlier pilots.

Files of a submission: ``submission.json`` (queue, cycle, log directory, n), ``pids`` (one line per pilot
reached: ``<i> <stat line>``, or ``<i> -`` when it was cancelled before it started, or ``<i> !`` when it could
not start), ``<i>.exit`` (exit code; negative: the signal that killed it), ``<i>.cancelled`` and
``supervisor.pid``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from autopilot_ops import config
from autopilot_ops.backends.base import (
    PILOT_ID_VARIABLE,
    PILOT_INDEX_VARIABLE,
    Backend,
    BackendError,
    PilotSpec,
    PilotState,
    PilotStatus,
    SubmittedPilot,
    safe_name,
)
from autopilot_ops.backends.credentials import pilot_environment

_BATCH_ID = re.compile(r"^(?P<submission>\d{8}T\d{6}-[0-9a-f]{8})-(?P<index>\d+)$")
_META = "submission.json"
_SKIPPED = "-"  # in ``pids``: cancelled before it started
_UNSTARTABLE = "!"  # in ``pids``: posix_spawn failed
_STARTED = "started"  # the supervisor's one line to the caller
_SPAWN_THREADS = 8


class LocalBackend(Backend):
    """Pilots as detached local processes, tracked by PID and exit-status files.

    Parameters: ``state_dir`` (default ``<log_root>/.local-backend/<name>`` when ``log_root`` is given, else
    ``<AUTOPILOT_HOME>/local-backend/<name>``), ``workdir`` (the pilots' working directory; default their
    log directory) and ``kill_grace_s`` (seconds between TERM and KILL on cancel; default 5).
    Walltime, memory and core count are not enforced. A credential is given to the pilots by its path.
    """

    kind = "local"

    def __init__(self, name: str, parameters: Mapping[str, Any] | None = None, submit_host: str | None = None):
        super().__init__(name, parameters, submit_host)
        if submit_host:
            raise BackendError(f"local back end {name!r}: submit_host {submit_host!r} is not supported")
        self.state_dir = _state_dir(name, self.parameters).absolute()
        self.kill_grace_s = float(self.parameters.get("kill_grace_s", 5))

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        """Hand ``n`` pilots to a new detached supervisor; returns once their log files exist and one runs."""
        if n <= 0:
            return []
        if not spec.command:
            raise ValueError(f"pilot spec for queue {spec.queue!r}: field 'command' is empty")
        log_dir = spec.log_dir().absolute()  # the supervisor runs in the pilots' working directory
        log_dir.mkdir(parents=True, exist_ok=True)
        submission, sub_dir = self._new_submission_dir()
        meta = {
            "queue": spec.queue,
            "cycle_id": spec.cycle_id,
            "scheduler": spec.scheduler,
            "log_dir": str(log_dir),
            "n": n,
            "submitted_at": _utcnow().isoformat(),
        }
        (sub_dir / _META).write_text(json.dumps(meta))
        workdir = Path(self.parameters.get("workdir") or log_dir)
        argv = [sys.executable, "-m", __name__, str(sub_dir), str(log_dir), f"{submission}-", str(n)]
        try:
            done = subprocess.run(
                [*argv, *spec.command],
                cwd=workdir,
                env={**os.environ, **spec.environment, **pilot_environment(spec.credential)},
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"local back end {self.name!r}: starting pilots in {workdir} failed: {exc}") from exc
        if done.stdout.strip() != _STARTED:
            shutil.rmtree(sub_dir, ignore_errors=True)  # no pilot started: leave no submission record behind
            raise BackendError(
                f"local back end {self.name!r}: the supervisor in {sub_dir} started no pilot: "
                f"{done.stderr.strip()[-2000:] or f'exit status {done.returncode}, no error output'}"
            )
        return [_pilot(submission, i, log_dir) for i in range(n)]

    def status(self, batch_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """State of each pilot from its files and ``/proc``; unknown ids are left out."""
        result: dict[str, PilotStatus] = {}
        submissions: dict[Path, _Submission | None] = {}
        for batch_id, (sub_dir, index) in self._locate(batch_ids).items():
            if sub_dir not in submissions:
                submissions[sub_dir] = _Submission.load(sub_dir)
            submission = submissions[sub_dir]
            if submission is not None and index < submission.n:
                result[batch_id] = submission.pilot_status(index)
        return result

    def cancel(self, batch_ids: Sequence[str]) -> None:
        """Mark the pilots cancelled (the supervisor skips those it has not started), TERM the process group of
        each running one, then KILL what is left after ``kill_grace_s``."""
        marked: dict[Path, list[int]] = {}
        for sub_dir, index in self._locate(batch_ids).values():
            if (sub_dir / _META).is_file() and _exit_status(sub_dir, index) is None:
                (sub_dir / f"{index}.cancelled").touch()
                marked.setdefault(sub_dir, []).append(index)
        groups: list[int] = []
        for sub_dir, indexes in marked.items():
            stats = _wait_recorded(sub_dir, indexes)
            for index in indexes:
                pid = _live_pid(stats.get(index, ""))
                if pid is not None and _signal_group(pid, signal.SIGTERM):
                    groups.append(pid)
        groups = _wait_gone(groups, self.kill_grace_s)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        _wait_gone(groups, 5.0)  # KILL cannot be ignored; only a loaded machine makes this wait

    def find_pilots(self, queue: str, cycle_id: str) -> list[SubmittedPilot] | None:
        """Every pilot submitted for ``(queue, cycle_id)``, from the submission records."""
        pilots = []
        for sub_dir in sorted(self.state_dir.glob("*/")) if self.state_dir.is_dir() else []:
            meta = _read_meta(sub_dir)
            if meta is not None and meta["queue"] == queue and meta["cycle_id"] == cycle_id:
                pilots += [_pilot(sub_dir.name, i, Path(meta["log_dir"])) for i in range(int(meta["n"]))]
        return pilots

    def log_paths(self, batch_id: str) -> tuple[Path, Path] | None:
        """The pilot's ``.out`` and ``.err`` files, from its submission record."""
        located = self._locate([batch_id]).get(batch_id)
        meta = _read_meta(located[0]) if located else None
        if meta is None or located[1] >= int(meta["n"]):
            return None
        log_dir = Path(meta["log_dir"])
        return log_dir / f"{batch_id}.out", log_dir / f"{batch_id}.err"

    def _new_submission_dir(self) -> tuple[str, Path]:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        while True:
            submission = f"{_utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
            path = self.state_dir / submission
            try:
                path.mkdir()
            except FileExistsError:
                continue
            return submission, path

    def _locate(self, batch_ids: Sequence[str]) -> dict[str, tuple[Path, int]]:
        located = {}
        for batch_id in batch_ids:
            match = _BATCH_ID.match(batch_id)
            if match:
                located[batch_id] = (self.state_dir / match["submission"], int(match["index"]))
        return located


@dataclass
class _Submission:
    """One submission's records: its metadata and what the supervisor recorded of each pilot it reached."""

    dir: Path
    meta: Mapping[str, Any]
    stats: Mapping[int, str]

    @classmethod
    def load(cls, sub_dir: Path) -> _Submission | None:
        meta = _read_meta(sub_dir)
        return cls(sub_dir, meta, _recorded_stats(sub_dir)) if meta is not None else None

    @property
    def n(self) -> int:
        return int(self.meta["n"])

    @cached_property
    def supervised(self) -> bool:
        return _supervisor_alive(self.dir)

    def pilot_status(self, index: int) -> PilotStatus:
        started_at = _start_time(self.stats.get(index, ""))
        code = _exit_status(self.dir, index)
        if code is None and _live_pid(self.stats.get(index, "")) is not None:
            return PilotStatus(PilotState.RUNNING, started_at=started_at)
        supervised = code is None and self.supervised
        if code is None:
            code = _exit_status(self.dir, index)  # the supervisor may have written it since
        cancelled = (self.dir / f"{index}.cancelled").exists()
        if code is not None:
            ended_at = _mtime(self.dir / f"{index}.exit")
            if started_at and ended_at:  # the start time counts clock ticks (10 ms): keep it before the end
                started_at = min(started_at, ended_at)
            if code == 0:
                return PilotStatus(PilotState.FINISHED, 0, None, started_at, ended_at)
            state = PilotState.CANCELLED if cancelled else PilotState.FAILED
            reason = _join("cancelled" if cancelled else None, f"signal {-code}" if code < 0 else f"exit status {code}")
            return PilotStatus(state, max(code, 0) or None, reason, started_at, ended_at)
        if cancelled:
            ended_at = _mtime(self.dir / f"{index}.cancelled")
            return PilotStatus(PilotState.CANCELLED, None, "cancelled", started_at, ended_at)
        if supervised:  # not started yet, or just ended with its exit status on its way
            state = PilotState.RUNNING if index in self.stats else PilotState.QUEUED
            return PilotStatus(state, started_at=started_at)
        if index not in self.stats:
            return PilotStatus(PilotState.FAILED, None, "never started: its supervisor ended first")
        return PilotStatus(PilotState.FAILED, None, "pilot process ended without an exit status", started_at)


def _state_dir(name: str, parameters: Mapping[str, Any]) -> Path:
    if parameters.get("state_dir"):
        return Path(parameters["state_dir"])
    if parameters.get("log_root"):
        return Path(parameters["log_root"]) / ".local-backend" / safe_name(name)
    return config.state_dir() / "local-backend" / safe_name(name)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pilot(submission: str, index: int, log_dir: Path) -> SubmittedPilot:
    batch_id = f"{submission}-{index}"
    return SubmittedPilot(batch_id, log_dir / f"{batch_id}.out", log_dir / f"{batch_id}.err", index)


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _read_meta(sub_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((sub_dir / _META).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackendError(f"local back end: submission record {sub_dir / _META} is unreadable: {exc}") from exc


def _recorded_stats(sub_dir: Path) -> dict[int, str]:
    """Pilot index -> what the supervisor recorded (a stat line, ``-`` or ``!``); complete lines only."""
    try:
        text = (sub_dir / "pids").read_text()
    except FileNotFoundError:
        return {}
    stats = {}
    for line in text.split("\n")[:-1]:
        index, _, stat = line.partition(" ")
        if not index.isdigit():
            raise BackendError(f"local back end: PID record {sub_dir}/pids has a bad line {line[:80]!r}")
        stats[int(index)] = stat
    return stats


def _wait_recorded(sub_dir: Path, indexes: Sequence[int]) -> dict[int, str]:
    """The ``pids`` records once the supervisor has reached every one of ``indexes`` (or has ended)."""
    while True:
        stats = _recorded_stats(sub_dir)
        if all(i in stats for i in indexes) or not _supervisor_alive(sub_dir):
            return stats
        time.sleep(0.02)


def _supervisor_alive(sub_dir: Path) -> bool:
    """Whether the submission's supervisor still runs: it will start the pilots it has not reached, and
    record the exit status of every pilot that ends."""
    try:
        return _live_pid((sub_dir / "supervisor.pid").read_text()) is not None
    except FileNotFoundError:
        return False


def _exit_status(sub_dir: Path, index: int) -> int | None:
    """The pilot's exit code (negative: killed by that signal), or ``None`` while it has none."""
    try:
        text = (sub_dir / f"{index}.exit").read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise BackendError(f"local back end: exit-status file {sub_dir}/{index}.exit holds {text!r}") from exc


def _mtime(path: Path) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
    except FileNotFoundError:
        return None


def _live_pid(recorded: str) -> int | None:
    """The PID of a recorded stat line if that very process (same start time) still runs and is no zombie."""
    if recorded.strip() in ("", _SKIPPED, _UNSTARTABLE):
        return None
    pid, start = _stat_fields(recorded)
    if pid is None:
        raise BackendError(f"local back end: bad recorded /proc stat line {recorded[:80]!r}")
    try:
        current = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    _, now_start = _stat_fields(current)
    state = current.rpartition(")")[2].split()[0]
    return pid if now_start == start and state != "Z" else None


def _stat_fields(stat: str) -> tuple[int | None, str | None]:
    """PID and start time (field 22) of a ``/proc/<pid>/stat`` line; the command name may hold spaces."""
    head, _, tail = stat.strip().rpartition(")")
    fields = tail.split()
    pid_text = head.partition(" (")[0]
    if not pid_text.isdigit() or len(fields) < 20:
        return None, None
    return int(pid_text), fields[19]


def _start_time(recorded: str) -> dt.datetime | None:
    """When the process of a recorded stat line started (its start time counts clock ticks since boot)."""
    _, ticks = _stat_fields(recorded) if recorded.strip() not in ("", _SKIPPED, _UNSTARTABLE) else (None, None)
    if ticks is None:
        return None
    return _boot_time() + dt.timedelta(seconds=int(ticks) / os.sysconf("SC_CLK_TCK"))


def _boot_time() -> dt.datetime:
    """Now minus the uptime: finer than ``btime`` in ``/proc/stat``, which is whole seconds."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return _utcnow() - dt.timedelta(seconds=uptime)


def _wait_gone(groups: list[int], timeout_s: float) -> list[int]:
    """Wait up to ``timeout_s`` for the process groups to end; return those still there."""
    deadline = time.monotonic() + timeout_s
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        live = _live_groups()
        groups = [pgid for pgid in groups if pgid in live]
    return groups


def _live_groups() -> set[int]:
    """Process groups with a member that is not a zombie. (An orphan killed with its group is reparented to
    init, which may take seconds to reap it, so ``killpg(pgid, 0)`` would still see the group.)"""
    live = set()
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z":
            live.add(int(fields[2]))
    return live


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; ``False`` when the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def _write_exit(sub_dir: Path, index: int, code: int) -> None:
    temporary = sub_dir / f"{index}.exit.tmp"
    temporary.write_text(f"{code}\n")
    temporary.replace(sub_dir / f"{index}.exit")


def _spawn(command: list[str], stdout: Path, stderr: Path, pilot_id: str, index: int) -> int:
    """Start one pilot in a process group of its own, its output going to its log files, with its batch id
    in ``AUTOPILOT_PILOT_ID`` (how the pilot names itself to the monitor) and its index in the submission."""
    create = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    files = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(stdout), create, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, str(stderr), create, 0o644),
    ]
    env = {**os.environ, PILOT_ID_VARIABLE: pilot_id, PILOT_INDEX_VARIABLE: str(index)}
    return os.posix_spawnp(command[0], command, env, file_actions=files, setpgroup=0)


def _supervise(sub_dir: Path, log_dir: Path, prefix: str, n: int, command: list[str]) -> int:
    """The supervisor (run as ``python -m``, detached): start the pilots, record them, reap them.

    ``posix_spawn`` blocks until the child has exec'd; on a busy machine that wait is mostly scheduling delay,
    so after the first pilot the others are started from a few threads.
    """
    if os.fork() > 0:
        os._exit(0)  # the caller reaps this parent at once; the child is nobody's to reap
    (sub_dir / "supervisor.pid").write_text(Path(f"/proc/{os.getpid()}/stat").read_text())
    try:  # every pilot's log files exist once submit returns, as its result promises
        for i in range(n):
            for suffix in (".out", ".err"):
                os.close(os.open(log_dir / f"{prefix}{i}{suffix}", os.O_WRONLY | os.O_CREAT, 0o644))
    except OSError as exc:
        print(f"cannot create the pilots' log files in {log_dir}: {exc}", file=sys.stderr)
        return 1
    index_of: dict[int, int] = {}
    lock = threading.Lock()
    with (sub_dir / "pids").open("a") as records:

        def start(i: int) -> bool:
            if (sub_dir / f"{i}.cancelled").exists():
                record, pid = _SKIPPED, None
            else:
                try:
                    pid = _spawn(command, log_dir / f"{prefix}{i}.out", log_dir / f"{prefix}{i}.err", f"{prefix}{i}", i)
                    record = Path(f"/proc/{pid}/stat").read_text().strip()  # unreaped, so still there
                except OSError as exc:
                    # posix_spawn reports a failure to open the log files like one to run the command.
                    print(f"cannot start pilot {i} ({command[0]}, logs in {log_dir}): {exc}", file=sys.stderr)
                    record, pid = _UNSTARTABLE, None
            with lock:
                if pid is not None:
                    index_of[pid] = i
                elif record == _UNSTARTABLE and index_of:
                    _write_exit(sub_dir, i, 127)
                records.write(f"{i} {record}\n")
                records.flush()
            return pid is not None

        if not start(0):
            return 1  # nothing started: the caller reports the error, and no pilot is left behind
        print(_STARTED, flush=True)
        log = os.open(sub_dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)  # the caller's pipes close here, so it returns
        with ThreadPoolExecutor(_SPAWN_THREADS) as pool:
            list(pool.map(start, range(1, n)))
    while index_of:
        pid, wait_status = os.wait()
        if pid in index_of:
            _write_exit(sub_dir, index_of.pop(pid), os.waitstatus_to_exitcode(wait_status))
    return 0


if __name__ == "__main__":
    _dir, _logs, _prefix, _n, *_command = sys.argv[1:]
    sys.exit(_supervise(Path(_dir), Path(_logs), _prefix, int(_n), _command))
