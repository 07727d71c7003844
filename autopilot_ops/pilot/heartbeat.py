"""Heartbeats from a thread while the pilot is busy in a call that cannot poll: a transfer, log packing.

PanDA's lost-heartbeat watcher (``jobdispatcher/Watcher.py``) fails a job whose ``modificationTime`` grows
old in ``starting`` or ``running``; pilot3 heartbeats from its own monitor thread for the same reason
(``pilot/control/job.py: send_heartbeat_if_time``). While the payload runs, supervision sends them itself.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from autopilot_ops.pilot.reporting import KILL_COMMANDS, Reporter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)


class PhaseHeartbeat:
    """``with PhaseHeartbeat(reporter, job_id, "starting", 60, node=...) as beat:`` sends ``state`` every
    ``interval`` seconds until the block ends; ``beat.kill_command`` holds a kill command the server sent."""

    def __init__(self, reporter: Reporter, job_id: int, state: str, interval: float, **fields: Any) -> None:
        self.reporter = reporter
        self.job_id = job_id
        self.state = state
        self.interval = interval
        self.fields = fields
        self.kill_command: str | None = None
        self.sent = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> PhaseHeartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            command = self.reporter.update(self.job_id, self.state, **self.fields)
            self.sent += 1
            if command in KILL_COMMANDS and self.kill_command is None:
                log.warning("job %d: server sent %s while the pilot was busy (%s)", self.job_id, command, self.state)
                self.kill_command = command
