"""How the pilot tells PanDA about a job: intermediate updates (best effort) and final ones (never lost).

Without a client (``--dry-run``) updates are only logged.

A final update is kept on disk (the home's outbox, else the work dir's when the home cannot be written; with
no writable disk it is sent all the same), then sent until the server answers, with backoff, for ``patience``
seconds but never past the batch slot's end; meanwhile the pilot takes no new job. One given up on moves to
the ``handover`` directory when there is one (``AUTOPILOT_KEPT_DIR``), which the scheduler delivers from
(``scheduler/kept_updates.py``): the scheduler's own kept dir where the log root is shared (local, Slurm), else a
directory of the job's scratch dir that the back end brings back when the job ends (HTCondor file transfer); else
it stays for the node's next pilot. A local disk error never stops the final update.
"""

from __future__ import annotations

import logging
import time

from autopilot_ops.panda.client import PandaClient, RetryPolicy
from autopilot_ops.panda.errors import PandaError, PandaHTTPError, PandaRefused
from autopilot_ops.pilot.outbox import FinalUpdate, Outbox

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

#: ``update_job`` commands that tell the pilot to kill the job (``command`` back channel).
KILL_COMMANDS = ("tobekilled", "softkill")

#: Heartbeats are tried once: the next heartbeat is the retry, and the payload must not wait on a dead server.
HEARTBEAT_RETRY = RetryPolicy(attempts=1)

#: Final-update retries stop this many seconds before the slot's end, leaving time to keep the update.
SLOT_END_MARGIN = 60.0
#: The longest wait between two rounds of final-update tries.
MAX_FINAL_WAIT = 60.0


class Reporter:
    """Sends job updates through ``client``, keeping final ones in ``outbox`` until acknowledged."""

    def __init__(
        self,
        client: PandaClient | None,
        outbox: Outbox,
        *,
        fallback: Outbox | None = None,
        patience: float = 0.0,
        slot_end: float | None = None,
        handover: Outbox | None = None,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.fallback = fallback
        self.handover = handover
        self.patience = patience
        self.slot_end = slot_end
        #: set when a final update could not be delivered (kept on disk for a later pilot)
        self.undelivered = 0

    def update(self, job_id: int, job_status: str, **fields: Any) -> str | None:
        """A non-final update; returns the server's command (e.g. ``tobekilled``), None if none or unsent."""
        if self.client is None:
            log.info("dry run: job %d would be reported %s %s", job_id, job_status, _brief(fields))
            return None
        try:
            reply = self.client.update_job(job_id, job_status, retry=HEARTBEAT_RETRY, **fields)
        except PandaError as exc:
            log.warning("update of job %d to %s not delivered: %s", job_id, job_status, exc)
            return None
        if reply.command:
            log.info("server command for job %d: %s", job_id, reply.command)
        return reply.command

    def final(self, job_id: int, job_status: str, **fields: Any) -> bool:
        """The final update: kept on disk first, sent until acknowledged or out of patience."""
        if self.client is None:
            log.info("dry run: job %d would end %s %s", job_id, job_status, _brief(fields))
            return True
        params = {key: value for key, value in fields.items() if value is not None}
        update = FinalUpdate(job_id, job_status, params, self.client.url, self.client.protocol)
        kept = self._keep(update)
        deadline = self._deadline()
        wait = max(self.client.retry.backoff, 0.1)
        while True:
            try:
                self.client.update_job(job_id, job_status, **params)
            except PandaRefused as exc:
                log.error("server refused the final update of job %d: %s", job_id, exc)
                self._settle(kept, "reject", job_id, str(exc))
                return False
            except PandaError as exc:  # unreachable or a broken reply: try again; HTTP 4xx (credentials?): keep
                pause = 0 if isinstance(exc, PandaHTTPError) else min(wait, MAX_FINAL_WAIT, deadline - time.monotonic())
                if pause <= 0 or self.client.sleep(pause):  # out of patience, or a signal cut the wait short
                    self.undelivered += 1
                    kept = self._hand_over(update, kept)
                    where = kept.directory if kept else f"nowhere (no writable disk); the update: {update.to_json()}"
                    log.error(
                        "final update of job %d (%s) not delivered, kept in %s: %s", job_id, job_status, where, exc
                    )
                    return False
                log.warning("final update of job %d not delivered (%s); trying again in %.0f s", job_id, exc, pause)
                wait *= 2
                continue
            self._settle(kept, "done", job_id)
            return True

    def _deadline(self) -> float:
        """The monotonic time after which a final update is no longer retried."""
        seconds = self.patience
        if self.slot_end is not None:
            seconds = min(seconds, self.slot_end - SLOT_END_MARGIN - time.time())
        return time.monotonic() + max(seconds, 0.0)

    def _keep(self, update: FinalUpdate) -> Outbox | None:
        """Write ``update`` to the outbox, else to the fallback; ``None`` when no disk could take it."""
        for box in (self.outbox, self.fallback):
            if box is None:
                continue
            try:
                box.keep(update)
                return box
            except OSError as exc:
                log.warning("cannot keep the final update of job %d in %s: %s", update.job_id, box.directory, exc)
        return None

    def _hand_over(self, update: FinalUpdate, kept: Outbox | None) -> Outbox | None:
        """Move a given-up update to the hand-over directory; where it stays when that cannot be written."""
        if self.handover is None:
            return kept
        try:
            self.handover.keep(update)
        except OSError as exc:
            log.warning("cannot hand the final update of job %d to %s: %s", update.job_id, self.handover.directory, exc)
            return kept
        self._settle(kept, "done", update.job_id)
        return self.handover

    @staticmethod
    def _settle(kept: Outbox | None, action: str, *args: Any) -> None:
        """``done`` or ``reject`` a kept update; a disk error here only leaves the file behind."""
        if kept is None:
            return
        try:
            getattr(kept, action)(*args)
        except OSError as exc:
            log.warning("cannot settle the kept final update in %s: %s", kept.directory, exc)


def _brief(fields: dict[str, Any]) -> str:
    shown = {key: value for key, value in fields.items() if value is not None and key != "job_output_report"}
    return " ".join(f"{key}={value}" for key, value in shown.items())
