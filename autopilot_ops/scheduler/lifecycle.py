"""Pilot lifecycle: idempotent submission, state tracking from the back end, and timeouts.

Submission writes a key ``(queue, cycle_id)`` before the back end is called and completes it after, so a
retried cycle never submits twice; a key left ``pending`` by a crash is reconciled against the back end
(:meth:`PilotLifecycle.reconcile`, called by the cycle's observe step before it decides). A session-level
advisory lock per queue, on a connection of its own (:mod:`autopilot_ops.scheduler.locks`), keeps two
schedulers from submitting for the same queue at once, and a lost lock stops the submission before the back
end is called. Sweeps of one back end exclude each other, every state change is compare-and-set on the old
state, and a cancel is recorded only once the back end has carried it out.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from autopilot_ops.backends.base import Backend, PilotSpec, PilotState, PilotStatus
from autopilot_ops.scheduler.locks import QUEUE_LOCK_KEY, SWEEP_LOCK_KEY, LockLost, locks_of
from autopilot_ops.store.connection import Store
from autopilot_ops.store.controls import KILL_DONE, pending_kill_requests
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
    #: Why the sweep did nothing (another sweep of the back end holds its lock).
    skipped: str | None = None


def describe_error(exc: BaseException) -> str:
    """``Type: message``, for reasons and submission details."""
    return f"{type(exc).__name__}: {exc}"


class PilotLifecycle:
    """Submits pilots for queues of one back end, and keeps their rows in step with the back end."""

    def __init__(self, store: Store, backend: Backend, who: str):
        self.store = store
        self.backend = backend
        self.who = who
        self.locks = locks_of(store)

    def submit(self, n: int, spec: PilotSpec) -> SubmitOutcome:
        """Submit ``n`` pilots for ``spec.queue`` in cycle ``spec.cycle_id``, at most once per key.

        Whatever the back end raises (``BackendError``, or ``ValueError`` for a bad configuration) settles the
        key as ``failed`` with the exception named, and counts the pilots as missed."""
        with self.locks.holding(QUEUE_LOCK_KEY, [spec.queue]) as got:
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
                self.locks.check()
            except LockLost as exc:
                self._failed(spec, n, f"not submitted: {exc}")
                return SubmitOutcome(missed=n, skipped=f"queue lock lost: {exc}", reconciled=reconciled)
            try:
                pilots = self.backend.submit(n, spec)
            except Exception as exc:  # any back-end failure settles the key; the cycle goes on
                self._failed(spec, n, describe_error(exc))
                return SubmitOutcome(missed=n, reconciled=reconciled, skipped=f"submit failed: {describe_error(exc)}")
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

    def _failed(self, spec: PilotSpec, n: int, error: str) -> None:
        with self.store.transaction() as cur:
            finish_submission(cur, spec.queue, spec.cycle_id, FAILED, error)
            record_event(
                cur,
                self.who,
                "submit-failed",
                queue=spec.queue,
                details={"cycle": spec.cycle_id, "requested": n, "error": error},
            )

    def reconcile(self, queue: str) -> int:
        """Settle submissions of ``queue`` left pending by a crash; return the pilots recovered. The caller
        holds the queue's lock, so a pending key is never one another scheduler is still submitting. A key
        the back end cannot tell about (``find_pilots`` gives ``None``) stays pending and is tried again."""
        with self.store.transaction() as cur:
            pending = pending_submissions(cur, queue)
        recovered = 0
        for sub in pending:
            found = self.backend.find_pilots(queue, sub["cycle_id"])
            if found is None:
                continue
            with self.store.transaction() as cur:
                recovered += len(insert_pilots(cur, queue, self.backend.name, sub["cycle_id"], found))
                finish_submission(cur, queue, sub["cycle_id"], RECONCILED, f"{len(found)} found after a crash")
                record_event(
                    cur,
                    self.who,
                    "submission-reconciled",
                    queue=queue,
                    details={"cycle": sub["cycle_id"], "found": len(found)},
                )
        return recovered

    def sweep(self, now: dt.datetime | None = None) -> SweepReport:
        """Ask the back end about every live pilot (one call), record state changes, apply timeouts, and
        carry out kill requests from the control API (``store.controls``). One sweep per back end at a time."""
        with self.locks.holding(SWEEP_LOCK_KEY, [self.backend.name]) as got:
            if not got:
                return SweepReport(skipped=f"another sweep of back end {self.backend.name} is running")
            return self._sweep(now or utcnow())

    def _sweep(self, now: dt.datetime) -> SweepReport:
        report = SweepReport()
        with self.store.transaction() as cur:
            live = live_pilots(cur, self.backend.name)
            kills = {k["pilot_id"]: k for k in pending_kill_requests(cur, self.backend.name)}
        if not live:
            return report
        try:
            statuses = self.backend.status([p["batch_id"] for p in live])
        except Exception as exc:  # an unreachable back end leaves states as they are
            statuses, report.backend_error = None, describe_error(exc)
            log.warning("back end %s: status failed: %s", self.backend.name, exc)
        seen, changes, to_cancel = [], [], []
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
            transition = _transition(pilot, new, reason, status)
            (to_cancel if new == PilotState.CANCELLED else changes).append(transition)
        batch_ids = {p["id"]: p["batch_id"] for p in live}
        cancel_error = self._cancel([batch_ids[t.pilot_id] for t in to_cancel], report) if to_cancel else None
        if cancel_error is None:
            changes += to_cancel
        with self.store.transaction() as cur:
            mark_seen(cur, seen, now)
            report.transitions = apply_transitions(cur, changes, self.who, now)
            report.cancelled = [t.pilot_id for t in report.transitions if t.new == PilotState.CANCELLED.value]
            if cancel_error is not None:
                record_event(
                    cur,
                    self.who,
                    "cancel-failed",
                    details={"pilots": [t.pilot_id for t in to_cancel][:50], "error": cancel_error},
                )
            cancelled = {t.pilot_id for t in to_cancel} if cancel_error is not None else set()
            for pilot_id, kill in kills.items():
                if pilot_id in cancelled:
                    continue  # still live: the request stays pending and the cancel is tried again next sweep
                record_event(
                    cur,
                    self.who,
                    KILL_DONE,
                    queue=kill["queue"],
                    pilot_id=pilot_id,
                    details={"request": kill["event_id"]},
                )
        report.seen = len(seen)
        return report

    def _cancel(self, batch_ids: list[str], report: SweepReport) -> str | None:
        """Cancel ``batch_ids`` at the back end; the error if it did not confirm."""
        try:
            self.backend.cancel(batch_ids)
        except Exception as exc:  # a failed cancel is retried next sweep
            report.backend_error = f"cancel failed: {describe_error(exc)}"
            log.warning("back end %s: cancel failed: %s", self.backend.name, exc)
            return describe_error(exc)
        return None


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
