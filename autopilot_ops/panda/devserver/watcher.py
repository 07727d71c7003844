"""The lost-heartbeat watcher: fails jobs whose pilot went silent, as ``jobdispatcher/Watcher.py`` does.

A job in ``sent``, ``starting``, ``running``, ``holding`` or ``transferring`` with no update for ``timeout``
seconds ends ``failed`` with ``jobDispatcherErrorCode`` 100 (``EC_Watcher``, ``lost heartbeat : <time>``),
or 102 (``EC_SendError``) when the pilot never reported after acquiring it; see ``JobStore.fail_lost_heartbeats``.
"""

from __future__ import annotations

import logging
import threading

from autopilot_ops.panda.devserver.jobstore import JobStore

log = logging.getLogger("autopilot.panda.devserver")


class HeartbeatWatcher(threading.Thread):
    """Checks every ``interval`` seconds (by default a quarter of the timeout, between 0.05 and 60 s)."""

    def __init__(self, store: JobStore, timeout: float, interval: float | None = None) -> None:
        super().__init__(name="panda-devserver-watcher", daemon=True)
        if timeout <= 0:
            raise ValueError(f"heartbeat timeout must be positive, got {timeout}")
        self.store = store
        self.timeout = timeout
        self.interval = interval if interval is not None else min(60.0, max(0.05, timeout / 4))
        self._stop_requested = threading.Event()

    def run(self) -> None:
        while not self._stop_requested.wait(self.interval):
            self.check()

    def check(self) -> list[int]:
        """One sweep; returns the ids of the jobs it failed."""
        try:
            failed = self.store.fail_lost_heartbeats(self.timeout)
        except Exception:
            log.exception("lost-heartbeat check failed")
            return []
        for panda_id in failed:
            log.info("job %d failed: no heartbeat for %g s", panda_id, self.timeout)
        return failed

    def stop(self) -> None:
        self._stop_requested.set()
        if self.is_alive():
            self.join()
