"""The interactive pilot's status line: job id, phase, and time in the job."""

from __future__ import annotations

import time
from typing import TextIO


class StatusLine:
    """Redrawn in place on a terminal; printed once per phase change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.job_id: int | None = None
        self.phase = "idle"
        self.since = time.monotonic()

    def set(self, job_id: int | None, phase: str) -> None:
        if job_id != self.job_id:
            self.since = time.monotonic()
        self.job_id, self.phase = job_id, phase
        self.draw(newline=not self.tty)

    def draw(self, newline: bool = False) -> None:
        job = f"job {self.job_id}" if self.job_id is not None else "no job"
        text = f"[autopilot] {job} | {self.phase} | {time.monotonic() - self.since:.0f} s"
        if self.tty:
            self.stream.write(f"\r\033[K{text}" + ("\n" if newline else ""))
        elif newline:
            self.stream.write(text + "\n")
        self.stream.flush()
