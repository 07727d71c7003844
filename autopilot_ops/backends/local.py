"""Local back end: pilots run as detached processes on this machine and outlive the scheduler.

Each submission gets a directory under the back end's state directory and one detached bash process, in a
session of its own. It starts the ``n`` pilots, each in its own process group (so a cancel reaches the pilot's
children), records each pilot's ``/proc/<pid>/stat`` line (its start time guards against PID reuse), then
stays as the pilots' supervisor and writes each pilot's exit status to a file as it ends. All state is in
files, so a new ``LocalBackend`` with the same state directory finds earlier pilots.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autopilot_ops import config
from autopilot_ops.backends.base import (
    Backend,
    BackendError,
    PilotSpec,
    PilotState,
    PilotStatus,
    SubmittedPilot,
    safe_name,
)

# Arguments: <submission dir> <log dir> <batch id prefix> <n> <pilot argv...>. Job control (set -m) gives each
# background pilot its own process group. Closing stdout tells the caller that every pilot has started; the
# process then reaps the pilots (wait -n -p, bash >= 5.1) and writes <dir>/<i>.exit for each.
_SUPERVISOR = r"""
set -m
dir=$1 logs=$2 prefix=$3 n=$4
shift 4
echo $$ >"$dir/supervisor.pid"
declare -A index
for ((i = 0; i < n; i++)); do
    "$@" </dev/null >"$logs/$prefix$i.out" 2>"$logs/$prefix$i.err" &
    index[$!]=$i
    read -r stat 2>/dev/null <"/proc/$!/stat" || stat=""  # empty if the pilot already ended
    echo "$i $stat"
done >"$dir/pids"
exec </dev/null >>"$dir/supervisor.log" 2>&1
while :; do
    pid=
    wait -n -p pid
    status=$?
    [ -n "$pid" ] || break
    echo "$status" >"$dir/${index[$pid]}.exit"
done
"""
# Starts the supervisor in the background and returns at once, so it is nobody's child to reap.
_DETACH = 'bash -c "$1" "${@:2}" &'

_BATCH_ID = re.compile(r"^(?P<submission>\d{8}T\d{6}-[0-9a-f]{8})-(?P<index>\d+)$")
_META = "submission.json"


class LocalBackend(Backend):
    """Pilots as detached local processes, tracked by PID and exit-status files.

    Parameters: ``state_dir`` (default ``<log_root>/.local-backend/<name>`` when ``log_root`` is given, else
    ``<AUTOPILOT_HOME>/local-backend/<name>``), ``workdir`` (the pilots' working directory; default their
    log directory) and ``kill_grace_s`` (seconds between TERM and KILL on cancel; default 5).
    Walltime, memory and core count are not enforced. An exit status above 128 is the shell's ``128 + signal``.
    """

    kind = "local"

    def __init__(self, name: str, parameters: Mapping[str, Any] | None = None, submit_host: str | None = None):
        super().__init__(name, parameters, submit_host)
        if submit_host:
            raise BackendError(f"local back end {name!r}: submit_host {submit_host!r} is not supported")
        self.state_dir = _state_dir(name, self.parameters)
        self.kill_grace_s = float(self.parameters.get("kill_grace_s", 5))

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        """Start ``n`` pilots under one detached supervisor; returns once every pilot has started."""
        if n <= 0:
            return []
        if not spec.command:
            raise ValueError(f"pilot spec for queue {spec.queue!r}: field 'command' is empty")
        log_dir = spec.log_dir()
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
        argv = ["bash", "-c", _DETACH, "detach", _SUPERVISOR, "supervisor", str(sub_dir), str(log_dir)]
        try:
            done = subprocess.run(
                [*argv, f"{submission}-", str(n), *spec.command],
                cwd=workdir,
                env={**os.environ, **spec.environment},
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=max(60.0, n * 0.1),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendError(f"local back end {self.name!r}: starting pilots in {workdir} failed: {exc}") from exc
        started = len(_recorded_stats(sub_dir))
        if done.returncode != 0 or started != n:
            raise BackendError(
                f"local back end {self.name!r}: {started} of {n} pilots started in {sub_dir}: "
                f"{done.stderr.strip()[-2000:] or 'no error output'}"
            )
        return [_pilot(submission, i, log_dir) for i in range(n)]

    def status(self, batch_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """State of each pilot from its files and ``/proc``; unknown ids are left out."""
        result: dict[str, PilotStatus] = {}
        submissions: dict[Path, tuple[dict[str, Any], dict[int, str]] | None] = {}
        for batch_id, (sub_dir, index) in self._locate(batch_ids).items():
            if sub_dir not in submissions:
                meta = _read_meta(sub_dir)
                submissions[sub_dir] = (meta, _recorded_stats(sub_dir)) if meta else None
            known = submissions[sub_dir]
            if known is not None and index in known[1]:
                result[batch_id] = _pilot_status(sub_dir, index, known[0], known[1][index])
        return result

    def cancel(self, batch_ids: Sequence[str]) -> None:
        """TERM each live pilot's process group, then KILL what is left after ``kill_grace_s``."""
        groups: list[int] = []
        stats: dict[Path, dict[int, str]] = {}
        for sub_dir, index in self._locate(batch_ids).values():
            if _exit_status(sub_dir, index) is not None:
                continue
            if sub_dir not in stats:
                stats[sub_dir] = _recorded_stats(sub_dir)
            if index not in stats[sub_dir]:
                continue
            (sub_dir / f"{index}.cancelled").touch()
            pid = _live_pid(stats[sub_dir][index])
            if pid is not None and _signal_group(pid, signal.SIGTERM):
                groups.append(pid)
        deadline = time.monotonic() + self.kill_grace_s
        while groups and time.monotonic() < deadline:
            time.sleep(0.05)
            groups = [pgid for pgid in groups if _signal_group(pgid, 0)]
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)

    def find_pilots(self, queue: str, cycle_id: str) -> list[SubmittedPilot] | None:
        """Every pilot started for ``(queue, cycle_id)``, from the submission records."""
        pilots = []
        for sub_dir in sorted(self.state_dir.glob("*/")) if self.state_dir.is_dir() else []:
            meta = _read_meta(sub_dir)
            if meta is None or meta["queue"] != queue or meta["cycle_id"] != cycle_id:
                continue
            pilots += [_pilot(sub_dir.name, i, Path(meta["log_dir"])) for i in sorted(_recorded_stats(sub_dir))]
        return pilots

    def log_paths(self, batch_id: str) -> tuple[Path, Path] | None:
        """The pilot's ``.out`` and ``.err`` files, from its submission record."""
        located = self._locate([batch_id]).get(batch_id)
        meta = _read_meta(located[0]) if located else None
        if meta is None:
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
    return SubmittedPilot(batch_id, log_dir / f"{batch_id}.out", log_dir / f"{batch_id}.err")


def _read_meta(sub_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((sub_dir / _META).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise BackendError(f"local back end: submission record {sub_dir / _META} is unreadable: {exc}") from exc


def _recorded_stats(sub_dir: Path) -> dict[int, str]:
    """Pilot index -> the ``/proc/<pid>/stat`` line recorded at its start (empty if it had already ended)."""
    try:
        lines = (sub_dir / "pids").read_text().splitlines()
    except FileNotFoundError:
        return {}
    stats = {}
    for line in lines:
        index, _, stat = line.partition(" ")
        if not index.isdigit():
            raise BackendError(f"local back end: PID record {sub_dir}/pids has a bad line {line[:80]!r}")
        stats[int(index)] = stat
    return stats


def _exit_status(sub_dir: Path, index: int) -> int | None:
    """The pilot's exit status, or ``None`` while it runs (an empty file is still being written)."""
    try:
        text = (sub_dir / f"{index}.exit").read_text().strip()
    except FileNotFoundError:
        return None
    if not text:
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


def _pilot_status(sub_dir: Path, index: int, meta: Mapping[str, Any], stat: str) -> PilotStatus:
    started_at = dt.datetime.fromisoformat(meta["submitted_at"])
    cancelled = (sub_dir / f"{index}.cancelled").exists()
    code = _exit_status(sub_dir, index)
    if code is not None:
        ended_at = _mtime(sub_dir / f"{index}.exit")
        if code == 0:
            return PilotStatus(PilotState.FINISHED, 0, None, started_at, ended_at)
        state = PilotState.CANCELLED if cancelled else PilotState.FAILED
        reason = f"exit status {code}" + (f" (signal {code - 128})" if code > 128 else "")
        return PilotStatus(state, code, _join("cancelled" if cancelled else None, reason), started_at, ended_at)
    if _live_pid(stat) is not None:
        return PilotStatus(PilotState.RUNNING, started_at=started_at)
    if cancelled:
        return PilotStatus(PilotState.CANCELLED, None, "cancelled", started_at, _mtime(sub_dir / f"{index}.cancelled"))
    return PilotStatus(PilotState.FAILED, None, "pilot process ended without an exit status", started_at)


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _live_pid(recorded: str) -> int | None:
    """The PID of a recorded stat line if that very process (same start time) still runs and is no zombie."""
    if not recorded.strip():
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


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to a process group; ``False`` when the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True
