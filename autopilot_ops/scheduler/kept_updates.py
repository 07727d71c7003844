"""Final job updates that pilots could not deliver and handed over to ``<log_root>/kept``
(``AUTOPILOT_KEPT_DIR``, ``pilot/reporting.py``): each cycle sends those of the queues it holds, so an
update kept on any node reaches PanDA with no one's help. A node that shares the log root (local, Slurm) writes
there itself; one that does not (HTCondor with file transfer) writes the kept dir of its scratch dir, which the back
end brings back next to the pilot's logs (``Backend.returned_kept_dir``), and the sweep that sees the pilot end moves
those files here (:func:`collect_returned`): one directory per ended pilot, never a scan of the log root.

A file there is only trusted as far as a pilot is: the scheduler sends an update only to its own PanDA
server, only a final state (``finished``/``failed``), only ``update_job`` parameters the pilot sends
(``panda/client.py: LEGACY_UPDATE_NAMES``), and only for a queue (``site_name``) this cycle serves. Anything
else is moved to ``rejected/`` with the reason. Each delivery or refusal is a ``pilot_events`` row.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_ops.backends.base import Backend
from autopilot_ops.panda.client import LEGACY_UPDATE_NAMES, PandaClient
from autopilot_ops.panda.errors import PandaError, PandaRefused
from autopilot_ops.pilot.outbox import FinalUpdate, Outbox
from autopilot_ops.store.connection import Store
from autopilot_ops.store.events import record_event

log = logging.getLogger(__name__)

#: At most this many updates are sent per cycle, so that a backlog cannot hold up submission.
MAX_PER_CYCLE = 200
FINAL_STATES = ("finished", "failed")
#: What a kept update's fields may hold: ``update_job``'s parameters, less the two it is called with.
UPDATE_FIELDS = frozenset(LEGACY_UPDATE_NAMES) - {"job_id", "job_status"}


def kept_dir_of(log_root: Path) -> Path:
    """The hand-over directory of a scheduler whose pilots log under ``log_root``."""
    return log_root / "kept"


def kept_dir_for_log_dir(log_dir: Path) -> Path:
    """The hand-over directory of the scheduler whose pilots log in ``log_dir``
    (``<log_root>/<day>/<queue>``, ``PilotSpec.log_dir``)."""
    return kept_dir_of(log_dir.parent.parent)


def collect_returned(backend: Backend, pilots: Iterable[Mapping[str, Any]]) -> int:
    """Move the updates the back end brought back with these ended pilots (rows with ``batch_id`` and
    ``stdout_path``) into their scheduler's kept dir, where the cycle checks them as any other; the number moved.
    Only plain ``*.json`` files move, never over a file already there; anything else stays where it came back."""
    moved = 0
    for pilot in pilots:
        if not pilot.get("stdout_path"):
            continue
        stdout = Path(pilot["stdout_path"])
        returned = backend.returned_kept_dir(pilot["batch_id"], stdout)
        if returned is None or not returned.is_dir() or returned.is_symlink():
            continue
        kept = kept_dir_for_log_dir(stdout.parent)
        for path in sorted(returned.glob("*.json")):
            if path.is_symlink() or not path.is_file():
                log.warning("pilot %s: %s is not a plain file; left where it came back", pilot["batch_id"], path)
                continue
            try:
                kept.mkdir(parents=True, exist_ok=True)
                os.link(path, kept / path.name)  # never replaces: a file of that name is another pilot's
                path.unlink()
            except OSError as exc:
                log.warning("pilot %s: returned update %s not moved to %s: %s", pilot["batch_id"], path, kept, exc)
                continue
            moved += 1
            log.info("pilot %s: returned final update %s moved to %s", pilot["batch_id"], path.name, kept)
    return moved


@dataclass
class DeliveryReport:
    delivered: int = 0
    rejected: int = 0
    #: why delivery stopped early (the server unreachable), if it did
    stopped: str | None = None
    notes: list[str] = field(default_factory=list)


def refusal(update: FinalUpdate, server_url: str) -> str | None:
    """Why a kept update must not be sent on, or ``None`` when it may."""
    if update.server_url.rstrip("/") != server_url.rstrip("/"):
        return f"meant for {update.server_url!r}, not this scheduler's PanDA server {server_url!r}"
    if update.job_status not in FINAL_STATES:
        return f"job_status {update.job_status!r} is not a final state {FINAL_STATES}"
    unknown = sorted(set(update.fields) - UPDATE_FIELDS)
    if unknown:
        return f"fields {unknown} are not update_job parameters a pilot sends"
    return None


def deliver_kept_updates(
    directory: Path, client: PandaClient, queues: Collection[str], store: Store, who: str
) -> DeliveryReport:
    """Send the updates in ``directory`` whose queue is in ``queues``; stop when the server is unreachable."""
    report = DeliveryReport()
    box = Outbox(directory)
    for path in box.pending():
        if report.delivered + report.rejected >= MAX_PER_CYCLE:
            report.stopped = f"{MAX_PER_CYCLE} updates this cycle; the rest next cycle"
            break
        try:
            update = FinalUpdate.from_file(path)
            if path.name != f"{update.job_id}.json":
                raise ValueError(f"kept final update {path}: not named for its job ({update.job_id}.json)")
        except ValueError as exc:
            os.replace(path, path.with_suffix(".unreadable"))
            report.notes.append(str(exc))
            log.warning("%s", exc)
            continue
        queue = update.fields.get("site_name")
        if queue not in queues:
            continue  # another scheduler's queue; or a file naming none, which no cycle sends
        reason = refusal(update, client.url)
        if reason is None:
            try:
                reply = client.update_job(update.job_id, update.job_status, **update.fields)
            except PandaRefused as exc:
                reason = f"refused by the server: {exc}"
            except PandaError as exc:
                report.stopped = f"PanDA unreachable: {exc}"
                break
        if reason is not None:
            box.reject(update.job_id, reason)
            report.rejected += 1
            _record(store, who, "kept final update rejected", str(queue), update, reason=reason)
            log.warning("kept final update %s not sent: %s", path, reason)
            continue
        box.done(update.job_id)
        report.delivered += 1
        _record(store, who, "kept final update delivered", str(queue), update, command=reply.command)
        log.info("delivered the kept final update of job %d (%s), queue %s", update.job_id, update.job_status, queue)
    return report


def _record(store: Store, who: str, what: str, queue: str, update: FinalUpdate, **details: object) -> None:
    with store.transaction() as cur:
        record_event(
            cur,
            who,
            what,
            queue,
            details={
                "panda_id": update.job_id,
                "job_status": update.job_status,
                "node": update.fields.get("node"),
                **details,
            },
        )
