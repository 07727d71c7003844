"""Pilot events for the AutoPilot monitor, independent of the batch back end.

With a monitor URL and token, each event is POSTed as JSON (in the background, so a slow monitor never
delays a job); without them, events only go to the pilot's own log.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

from autopilot_ops.netutil import HttpClient

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

_STOP = object()


class EventReporter:
    """Logs events, and posts them to ``url`` with ``Authorization: Bearer <token>`` when both are set."""

    def __init__(
        self, pilot_id: str, queue_name: str, url: str | None = None, token: str | None = None, timeout: float = 5.0
    ) -> None:
        self.pilot_id = pilot_id
        self.queue_name = queue_name
        self.url = url if url and token else None
        self.token = token
        self.timeout = timeout
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        if url and not token:
            log.warning("monitor URL %s given without a token: events are only logged", url)

    def emit(self, event: str, **details: Any) -> None:
        """Record ``event`` (``started``, ``job``, ``job_done``, ``exiting``) with its details."""
        record = {"pilot_id": self.pilot_id, "queue": self.queue_name, "event": event, "time": time.time(), **details}
        log.info("event %s %s", event, " ".join(f"{k}={v}" for k, v in details.items()))
        if self.url is None:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._post_loop, daemon=True, name="monitor-events")
            self._thread.start()
        self._queue.put(record)

    def _post_loop(self) -> None:
        assert self.url is not None
        http = HttpClient(headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        while (record := self._queue.get()) is not _STOP:
            try:
                with http.request("POST", self.url, body=json.dumps(record).encode(), timeout=self.timeout) as reply:
                    reply.read()
                if reply.status >= 400:
                    log.warning("monitor refused event %s: HTTP %d", record["event"], reply.status)
            except (OSError, ValueError) as exc:
                log.warning("monitor unreachable for event %s: %s", record["event"], exc)
        http.close()

    def close(self, wait: float = 10.0) -> None:
        """Deliver what is queued (waiting at most ``wait`` s), then stop the poster."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(wait)
            self._thread = None
