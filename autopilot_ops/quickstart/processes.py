"""Background services with a PID file and a log file, each in its own session so that stopping one stops
its whole process group; and a sweep for stragglers that left the group.

A PID file holds ``<pid> <start time>``; the start time (field 22 of ``/proc/<pid>/stat``) guards against a
reused PID, so a stale file never leads to signalling someone else's process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Set in every service's environment to ``AUTOPILOT_HOME``; children inherit it, so ``down`` finds them.
MARKER_VARIABLE = "AUTOPILOT_QUICKSTART_HOME"


@dataclass
class Service:
    """One background process (and its process group): ``argv`` started in ``directory``'s PID and log files."""

    name: str
    argv: Sequence[str]
    directory: Path
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None

    @property
    def pid_file(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / f"{self.name}.log"

    def pid(self) -> int | None:
        """The PID of the running service, or ``None`` (no PID file, process gone, or PID reused)."""
        try:
            pid_text, started = self.pid_file.read_text(encoding="utf-8").split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return pid if process_start_time(pid) == started else None

    def start(self) -> int:
        """Start the service in a new session, output appended to its log file; return its PID."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,
            )
        started = process_start_time(process.pid)
        tmp = self.pid_file.with_suffix(".pid.tmp")
        tmp.write_text(f"{process.pid} {started}\n", encoding="utf-8")
        tmp.replace(self.pid_file)
        return process.pid

    def stop(self, grace: float = 15.0) -> bool:
        """TERM the service's process group, KILL what is left after ``grace`` seconds; whether it ran."""
        return bool(stop_services([self], grace))

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


def stop_services(services: Sequence[Service], grace: float = 15.0) -> list[str]:
    """Stop the services' process groups together (see :func:`terminate_groups`); the names of those that ran."""
    running = {service.name: pid for service in services if (pid := service.pid()) is not None}
    terminate_groups(running.values(), grace)
    for service in services:
        service.pid_file.unlink(missing_ok=True)
    return list(running)


def process_start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/<pid>/stat`` (start time in clock ticks), or ``None`` if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _process_group(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else int(fields[2])


def _live_members(groups: set[int]) -> list[int]:
    return [pid for pid in _all_pids() if _process_group(pid) in groups]


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def terminate_groups(groups: Iterable[int], grace: float) -> None:
    """Stop process groups: SIGTERM each leader and give it ``grace`` seconds to exit after stopping its
    children (an Airflow scheduler whose LocalExecutor workers are signalled with it hangs), then SIGTERM the
    members left behind (``airflow standalone``'s components outlive it), and SIGKILL the groups 5 s later."""
    wanted = set(groups)
    for leader in wanted:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(leader, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(process_start_time(leader) for leader in wanted) and time.monotonic() < deadline:
        time.sleep(0.2)
    for signum in (signal.SIGTERM, signal.SIGKILL):
        if not _live_members(wanted):
            return
        _signal_groups(wanted, signum)
        deadline = time.monotonic() + 5.0
        while _live_members(wanted) and time.monotonic() < deadline:
            time.sleep(0.2)


def _signal_groups(groups: set[int], signum: int) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)


def processes_of(home: Path, airflow_home: Path) -> list[int]:
    """PIDs (not this process nor its ancestors) that carry our marker or ``AIRFLOW_HOME``, or run in
    ``airflow_home``: what is left of a quick start after its services' groups were stopped."""
    markers = {f"{MARKER_VARIABLE}={home}".encode(), f"AIRFLOW_HOME={airflow_home}".encode()}
    spared = _self_and_ancestors()
    found = []
    for pid in _all_pids():
        if pid in spared or process_start_time(pid) is None:
            continue
        try:
            environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if markers & environ or cwd == airflow_home or airflow_home in cwd.parents:
            found.append(pid)
    return found


def _self_and_ancestors() -> set[int]:
    spared, pid = set(), os.getpid()
    while pid > 1 and pid not in spared:
        spared.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2 :].split()[1])
    return spared


def kill_processes(pids: Sequence[int], grace: float = 5.0) -> None:
    """SIGTERM ``pids``, then SIGKILL those still alive after ``grace`` seconds."""
    started = {pid: process_start_time(pid) for pid in pids}
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        alive = [pid for pid, start in started.items() if start and process_start_time(pid) == start]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(process_start_time(pid) == started[pid] for pid in alive):
            time.sleep(0.1)
