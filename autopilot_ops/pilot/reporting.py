"""How the pilot tells PanDA about a job: intermediate updates (best effort) and final ones (never lost).

Without a client (``--dry-run``) updates are only logged.
"""

from __future__ import annotations

import logging
from typing import Any

from autopilot_ops.panda.client import PandaClient, RetryPolicy
from autopilot_ops.panda.errors import PandaError, PandaRefused
from autopilot_ops.pilot.outbox import FinalUpdate, Outbox

log = logging.getLogger(__name__)

#: ``update_job`` commands that tell the pilot to kill the job (``command`` back channel).
KILL_COMMANDS = ("tobekilled", "softkill")

#: Heartbeats are tried once: the next heartbeat is the retry, and the payload must not wait on a dead server.
HEARTBEAT_RETRY = RetryPolicy(attempts=1)


class Reporter:
    """Sends job updates through ``client``, keeping final ones in ``outbox`` until acknowledged."""

    def __init__(self, client: PandaClient | None, outbox: Outbox) -> None:
        self.client = client
        self.outbox = outbox
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
        """The final update: kept on disk first, sent with retries, removed once acknowledged."""
        if self.client is None:
            log.info("dry run: job %d would end %s %s", job_id, job_status, _brief(fields))
            return True
        params = {key: value for key, value in fields.items() if value is not None}
        update = FinalUpdate(job_id, job_status, params, self.client.url, self.client.protocol)
        self.outbox.keep(update)
        try:
            self.client.update_job(job_id, job_status, **params)
        except PandaRefused as exc:
            log.error("server refused the final update of job %d: %s", job_id, exc)
            self.outbox.reject(job_id, str(exc))
            return False
        except PandaError as exc:  # unreachable, HTTP 4xx (credentials?), broken reply: kept for later
            self.undelivered += 1
            log.error(
                "final update of job %d (%s) not delivered, kept in %s: %s",
                job_id,
                job_status,
                self.outbox.directory,
                exc,
            )
            return False
        self.outbox.done(job_id)
        return True


def _brief(fields: dict[str, Any]) -> str:
    shown = {key: value for key, value in fields.items() if value is not None and key != "job_output_report"}
    return " ".join(f"{key}={value}" for key, value in shown.items())
