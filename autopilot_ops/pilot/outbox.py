"""Final job updates kept on disk until the server has acknowledged them, so none is ever lost.

Each update is written (atomically) before it is sent and removed once the server has answered; one the
server refuses outright (``success`` false) moves to ``rejected/`` with the reason; one that fails for any
other reason (server down, an HTTP 4xx such as expired credentials, a broken reply) stays. Any later pilot
on the node, or ``autopilot pilot resend``, sends what is left.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.errors import PandaError, PandaRefused
from autopilot_ops.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)


class FinalUpdate(Record):
    """One ``update_job`` call that must reach the server."""

    job_id: int
    job_status: str
    fields: dict[str, Any]
    server_url: str
    protocol: str

    def to_json(self) -> str:
        return json.dumps(vars(self), sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> FinalUpdate:
        try:
            data = json.loads(path.read_text())
            return cls(
                int(data["job_id"]),
                str(data["job_status"]),
                dict(data["fields"]),
                str(data["server_url"]),
                str(data["protocol"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable final update {path}: {exc}") from exc


class ResendSummary(Record):
    sent: int
    rejected: int
    pending: int


class Outbox:
    """A directory of pending final updates, one JSON file per job."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, job_id: int) -> Path:
        return self.directory / f"{job_id}.json"

    def keep(self, update: FinalUpdate) -> Path:
        """Write ``update`` to disk (write, fsync, rename), replacing any older one for the job."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(update.job_id)
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        with open(partial, "w") as handle:
            handle.write(update.to_json())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
        return path

    def done(self, job_id: int) -> None:
        self._path(job_id).unlink(missing_ok=True)

    def reject(self, job_id: int, reason: str) -> None:
        """Move the update aside with the server's reason: resending it would be refused again."""
        rejected = self.directory / "rejected"
        rejected.mkdir(parents=True, exist_ok=True)
        path = self._path(job_id)
        if path.exists():
            os.replace(path, rejected / path.name)
            (rejected / f"{job_id}.reason").write_text(
                f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {reason}\n"
            )

    def pending(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.json"))

    def resend(self, client_for: Callable[[FinalUpdate], PandaClient]) -> ResendSummary:
        """Send every pending update; stop at the first one the server cannot be reached for."""
        sent = rejected = 0
        paths = self.pending()
        for index, path in enumerate(paths):
            try:
                update = FinalUpdate.from_file(path)
            except ValueError as exc:
                log.error("%s", exc)
                os.replace(path, path.with_suffix(".unreadable"))
                continue
            try:
                client_for(update).update_job(update.job_id, update.job_status, **update.fields)
            except PandaRefused as exc:
                log.error("server refused the final update of job %d: %s", update.job_id, exc)
                self.reject(update.job_id, str(exc))
                rejected += 1
                continue
            except PandaError as exc:  # unreachable, HTTP 4xx (credentials?), broken reply: try again later
                log.warning("final update of job %d still not delivered: %s", update.job_id, exc)
                return ResendSummary(sent, rejected, len(paths) - index)
            log.info("delivered the kept final update of job %d (%s)", update.job_id, update.job_status)
            self.done(update.job_id)
            sent += 1
        return ResendSummary(sent, rejected, 0)
