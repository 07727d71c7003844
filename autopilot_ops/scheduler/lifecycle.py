"""Pilot lifecycle: idempotent submission, state tracking from the back end, and timeouts.

Submission writes a key ``(queue, cycle_id)`` before the back end is called and completes it after, so a
retried cycle never submits twice; a key left ``pending`` by a crash is reconciled against the back end on the
queue's next submission. A session-level advisory lock per queue keeps two schedulers from submitting for
the same queue at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from autopilot_ops.backends.base import Backend, BackendError, PilotSpec, PilotState, PilotStatus
from autopilot_ops.store.connection import Store
from autopilot_ops.store.controls import KILL_DONE, KILL_FAILED, pending_kill_requests
from autopilot_ops.store.events import record_event
from autopilot_ops.store.pilots import Transition, apply_transitions, insert_pilots, live_pilots, mark_seen
from autopilot_ops.store.submissions import (
    DONE,
    FAILED,
    RECONCILED,
    begin_submission,
    finish_submission,
    pending_submissions,
)

log = logging.getLogger(__name__)

#: The advisory-lock key of a queue; the schema is part of it, so installs sharing a database do not collide.
QUEUE_LOCK_KEY = "hashtext('autopilot.queue'), hashtext(current_schema() || ':' || %s)"

#: A pilot the back end does not list yet, this soon after submission, is not taken for vanished.
VANISH_GRACE_S = 60


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class SubmitOutcome:
    """What one submission did: pilots submitted and missed, or why it did nothing."""

    submitted: int = 0
    missed: int = 0
    skipped: str | None = None
    reconciled: int = 0


@dataclass
class SweepReport:
    """What one status sweep changed."""

    seen: int = 0
    transitions: list[Transition] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    backend_error: str | None = None


class PilotLifecycle:
    """Submits pilots for queues of one back end, and keeps their rows in step with the back end."""

    def __init__(self, store: Store, backend: Backend, who: str):
        self.store = store
        self.backend = backend
        self.who = who

    @contextlib.contextmanager
    def _queue_lock(self, queue: str) -> Iterator[bool]:
        with self.store.transaction() as cur:
            cur.execute(f"SELECT pg_try_advisory_lock({QUEUE_LOCK_KEY}) AS got", (queue,))
            got = cur.fetchone()["got"]
        try:
            yield got
        finally:
            if got:
                with contextlib.suppress(Exception), self.store.transaction() as cur:
                    cur.execute(f"SELECT pg_advisory_unlock({QUEUE_LOCK_KEY})", (queue,))

    def submit(self, n: int, spec: PilotSpec) -> SubmitOutcome:
        """Submit ``n`` pilots for ``spec.queue`` in cycle ``spec.cycle_id``, at most once per key."""
        with self._queue_lock(spec.queue) as got:
            if not got:
                return SubmitOutcome(skipped="another scheduler is submitting for this queue")
            reconciled = self.reconcile(spec.queue)
            if n <= 0:
                return SubmitOutcome(reconciled=reconciled)
            with self.store.transaction() as cur:
                earlier = begin_submission(cur, spec.queue, spec.cycle_id, self.backend.name, n)
            if earlier is not None:
                return SubmitOutcome(
                    skipped=f"cycle {spec.cycle_id} was already submitted ({earlier})", reconciled=reconciled
                )
            try:
                pilots = self.backend.submit(n, spec)
            except BackendError as exc:
                with self.store.transaction() as cur:
                    finish_submission(cur, spec.queue, spec.cycle_id, FAILED, str(exc))
                    record_event(
                        cur,
                        self.who,
                        "submit-failed",
                        queue=spec.queue,
                        details={"cycle": spec.cycle_id, "requested": n, "error": str(exc)},
                    )
                return SubmitOutcome(missed=n, reconciled=reconciled)
            with self.store.transaction() as cur:
                insert_pilots(cur, spec.queue, self.backend.name, spec.cycle_id, pilots)
                finish_submission(cur, spec.queue, spec.cycle_id, DONE, f"{len(pilots)} of {n}")
                record_event(
                    cur,
                    self.who,
                    "submitted",
                    queue=spec.queue,
                    details={
                        "cycle": spec.cycle_id,
                        "requested": n,
                        "submitted": len(pilots),
                        "batch_ids": [p.batch_id for p in pilots[:20]],
                    },
                )
            return SubmitOutcome(submitted=len(pilots), missed=n - len(pilots), reconciled=reconciled)

    def reconcile(self, queue: str) -> int:
        """Settle submissions of ``queue`` left pending by a crash; return the pilots recovered."""
        with self.store.transaction() as cur:
            pending = pending_submissions(cur, queue)
        recovered = 0
        for sub in pending:
            found = self.backend.find_pilots(queue, sub["cycle_id"])
            with self.store.transaction() as cur:
                if found is None:
                    finish_submission(
                        cur,
                        queue,
                        sub["cycle_id"],
                        FAILED,
                        "interrupted; the back end cannot list pilots by cycle, counted as missed",
                    )
                else:
                    recovered += len(insert_pilots(cur, queue, self.backend.name, sub["cycle_id"], found))
                    finish_submission(cur, queue, sub["cycle_id"], RECONCILED, f"{len(found)} found after a crash")
                record_event(
                    cur,
                    self.who,
                    "submission-reconciled",
                    queue=queue,
                    details={"cycle": sub["cycle_id"], "found": None if found is None else len(found)},
                )
        return recovered

    def sweep(self, now: dt.datetime | None = None) -> SweepReport:
        """Ask the back end about every live pilot (one call), record state changes, apply timeouts, and
        carry out kill requests from the control API (``store.controls``)."""
        now = now or utcnow()
        report = SweepReport()
        with self.store.transaction() as cur:
            live = live_pilots(cur, self.backend.name)
            kills = {k["pilot_id"]: k for k in pending_kill_requests(cur, self.backend.name)}
        if not live:
            return report
        try:
            statuses = self.backend.status([p["batch_id"] for p in live])
        except BackendError as exc:
            statuses, report.backend_error = None, str(exc)
            log.warning("back end %s: status failed: %s", self.backend.name, exc)
        seen, to_cancel = [], []
        for pilot in live:
            status = None if statuses is None else statuses.get(pilot["batch_id"])
            if status is not None:
                seen.append(pilot["id"])
            kill = kills.get(pilot["id"])
            if kill is not None and not (status and status.state.is_final):
                change = PilotState.CANCELLED, f"kill requested by {kill['who']}: {kill['reason'] or 'no reason given'}"
            else:
                change = next_state(pilot, status, statuses is not None, now)
            if change is None:
                continue
            new, reason = change
            if new == PilotState.CANCELLED:
                to_cancel.append(pilot)
            report.transitions.append(_transition(pilot, new, reason, status))
        cancel_error = None
        if to_cancel:
            try:
                self.backend.cancel([p["batch_id"] for p in to_cancel])
            except BackendError as exc:
                cancel_error = str(exc)
                report.backend_error = f"cancel failed: {exc}"
            report.cancelled = [p["id"] for p in to_cancel]
        with self.store.transaction() as cur:
            mark_seen(cur, seen, now)
            apply_transitions(cur, report.transitions, self.who, now)
            for pilot_id, kill in kills.items():
                record_event(
                    cur,
                    self.who,
                    KILL_FAILED if cancel_error else KILL_DONE,
                    queue=kill["queue"],
                    pilot_id=pilot_id,
                    details={"request": kill["event_id"], "error": cancel_error},
                )
        report.seen = len(seen)
        return report


def _transition(pilot: dict, new: PilotState, reason: str | None, status: PilotStatus | None) -> Transition:
    return Transition(
        pilot_id=pilot["id"],
        queue=pilot["queue"],
        old=pilot["state"],
        new=new.value,
        reason=reason,
        exit_code=status.exit_code if status else None,
        started_at=status.started_at if status else None,
        ended_at=status.ended_at if status else None,
    )


def _age(since: dt.datetime | None, now: dt.datetime) -> float:
    return (now - since).total_seconds() if since else 0.0


def next_state(
    pilot: dict, status: PilotStatus | None, backend_answered: bool, now: dt.datetime
) -> tuple[PilotState, str | None] | None:
    """The state ``pilot`` moves to, and why; ``None`` to leave it as it is."""
    if status is None:
        if backend_answered and _age(pilot["submitted_at"], now) > VANISH_GRACE_S:
            return PilotState.FAILED, "batch job vanished from the back end"
        unknown_for = _age(pilot["last_seen"] or pilot["submitted_at"], now)
        if unknown_for > pilot["unknown_timeout"]:
            return PilotState.CANCELLED, f"status unknown for {unknown_for:.0f}s > {pilot['unknown_timeout']}s"
        return None
    current = PilotState(pilot["state"])
    if status.state in (PilotState.QUEUED, PilotState.SUBMITTED):
        waited = _age(pilot["submitted_at"], now)
        if waited > pilot["queued_timeout"]:
            return PilotState.CANCELLED, f"queued for {waited:.0f}s > {pilot['queued_timeout']}s"
    if status.state == PilotState.HELD:
        held_for = _age(pilot["state_changed_at"], now) if current == PilotState.HELD else 0.0
        if held_for > pilot["held_timeout"]:
            return PilotState.CANCELLED, f"held for {held_for:.0f}s > {pilot['held_timeout']}s: {status.reason or ''}"
    if status.state != current:
        return status.state, status.reason
    return None
