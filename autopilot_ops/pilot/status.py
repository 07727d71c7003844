"""The interactive pilot's terminal: log lines and the payload's output scroll above one status line (job id,
phase, time in the job), which is cleared and redrawn at the bottom; colours where the terminal supports them;
a summary of each job at the end. Standard library only (the bundle has no ``rich``).

On a terminal (``isatty``) the status line lives on the last line; otherwise it is printed once per phase change,
so a log file reads as a sequence of phases. Colours follow the usual conventions: none when ``NO_COLOR`` is set,
``TERM`` is ``dumb`` or the stream is not a terminal.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

from autopilot_ops.record import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO, TextIO

RESET = "\033[0m"
#: ANSI colours by phase (its first word) and by log level.
PHASE_COLOURS = {"running": "\033[32m", "stage-in": "\033[36m", "stage-out": "\033[36m", "acquiring": "\033[2m",
                 "final": "\033[35m", "failed": "\033[31m", "finished": "\033[1;32m"}
LEVEL_COLOURS = {logging.WARNING: "\033[33m", logging.ERROR: "\033[31m", logging.CRITICAL: "\033[1;31m"}
_CLEAR = "\r\033[K"


def supports_colour(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb"


class JobTimes(Record, frozen=False):
    """How long one job spent in each phase, in the order the phases came."""

    job_id: int
    phases: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


class StatusLine:
    """The terminal of an interactive pilot; safe to use from the pilot's threads."""

    def __init__(self, stream: TextIO, colour: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.colour = supports_colour(stream) if colour is None else colour
        self.job_id: int | None = None
        self.phase = "idle"
        self.since = time.monotonic()
        self.jobs: dict[int, JobTimes] = {}
        self._phase_since = self.since
        self._lock = threading.RLock()
        self._shown = False  # the status line is on the screen (tty only)

    # -- the status line --------------------------------------------------------------------------------
    def set(self, job_id: int | None, phase: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._close_phase(now)
            if job_id != self.job_id:
                self.since = now
                if job_id is not None:
                    self.jobs.setdefault(job_id, JobTimes(job_id, started=now))
            self.job_id, self.phase, self._phase_since = job_id, phase, now
            self.draw(newline=not self.tty)

    def draw(self, newline: bool = False) -> None:
        """Redraw the status line (on a terminal), or print it (``newline``, elsewhere)."""
        with self._lock:
            text = self._paint(self.text(), PHASE_COLOURS.get(self.phase.split()[0].strip("()"), ""))
            if self.tty:
                self.stream.write(_CLEAR + text)
                self._shown = True
            elif newline:
                self.stream.write(text + "\n")
            self.stream.flush()

    def text(self) -> str:
        job = f"job {self.job_id}" if self.job_id is not None else "no job"
        return f"[autopilot] {job} | {self.phase} | {time.monotonic() - self.since:.0f} s"

    # -- output above it --------------------------------------------------------------------------------
    def write_above(self, text: str) -> None:
        """Write ``text`` (whole lines) above the status line, then redraw it."""
        with self._lock:
            if self._shown:
                self.stream.write(_CLEAR)
                self._shown = False
            self.stream.write(text if text.endswith("\n") else text + "\n")
            if self.tty:
                self.draw()
            else:
                self.stream.flush()

    def log_handler(self) -> logging.Handler:
        """A logging handler that writes its records above the status line, coloured by level."""
        return _AboveHandler(self)

    def echo(self, target: BinaryIO) -> BinaryIO:
        """Where a payload stream is copied: whole lines above the status line when ``target`` is the same
        terminal, else ``target`` itself."""
        if not (self.tty and _isatty(target)):
            return target
        return _LineEcho(self, target)  # type: ignore[return-value]

    # -- the end ----------------------------------------------------------------------------------------
    def summary(self, outcomes: Sequence[object]) -> str:
        """One block per job: its state, exit code, the time in each phase and in all, and its work dir."""
        with self._lock:
            self._close_phase(time.monotonic())
        lines = []
        for outcome in outcomes:
            job_id = getattr(outcome, "panda_id", None)
            state = getattr(outcome, "state", "?")
            times = self.jobs.get(job_id) if job_id is not None else None
            head = f"job {job_id if job_id is not None else '-'}: {self._paint(state, PHASE_COLOURS.get(state, ''))}"
            exit_code = getattr(outcome, "payload_exit_code", None)
            head += f", payload exit code {exit_code if exit_code is not None else '-'}"
            code = getattr(outcome, "pilot_error_code", 0)
            if code:
                head += f", pilot error {code}: {getattr(outcome, 'pilot_error_diag', '')}"
            lines.append(head)
            if times is not None:
                spent = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in times.phases)
                lines.append(f"  {spent}; {sum(s for _, s in times.phases):.1f} s in all")
            workdir = getattr(outcome, "workdir", None)
            if workdir:
                lines.append(f"  work dir {workdir}")
        return "\n".join(lines) if lines else "no job run"

    def close(self, outcomes: Sequence[object]) -> None:
        """Leave the status line and print the summary."""
        with self._lock:
            if self._shown:
                self.stream.write(_CLEAR)
                self._shown = False
            self.stream.write("[autopilot] summary\n" + self.summary(outcomes) + "\n")
            self.stream.flush()

    def _close_phase(self, now: float) -> None:
        if self.job_id is not None and self.job_id in self.jobs and self.phase != "idle":
            self.jobs[self.job_id].phases.append((self.phase, now - self._phase_since))
            self._phase_since = now

    def _paint(self, text: str, colour: str) -> str:
        return f"{colour}{text}{RESET}" if self.colour and colour else text


class _AboveHandler(logging.Handler):
    def __init__(self, status: StatusLine) -> None:
        super().__init__()
        self.status = status
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            self.status.write_above(self.status._paint(text, LEVEL_COLOURS.get(record.levelno, "")))
        except Exception:  # as logging's own handlers do
            self.handleError(record)


class _LineEcho:
    """A payload stream's copy on the terminal, a whole line at a time above the status line."""

    def __init__(self, status: StatusLine, target: BinaryIO) -> None:
        self.status, self.target, self.pending = status, target, b""

    def write(self, data: bytes) -> int:
        self.pending += data
        if b"\n" in self.pending:
            whole, _, self.pending = self.pending.rpartition(b"\n")
            self._emit(whole + b"\n")
        return len(data)

    def flush(self) -> None:
        """Nothing to do: a partial line waits for its end (or for ``end_of_stream``)."""

    def end_of_stream(self) -> None:
        """The payload closed the stream: a last line without its newline is shown too."""
        if self.pending:
            self._emit(self.pending + b"\n")
            self.pending = b""

    def _emit(self, data: bytes) -> None:
        with self.status._lock:
            if self.status._shown:
                self.status.stream.write(_CLEAR)
                self.status.stream.flush()
                self.status._shown = False
            self.target.write(data)
            self.target.flush()
            self.status.draw()


def _isatty(stream: BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
