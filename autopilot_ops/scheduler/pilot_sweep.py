"""A status sweep of one back end, shaped as a controller: observe the live pilots and what the back end says of
them, decide each pilot's next state (pure), act (cancel at the back end), and record the changes and why.

Sweeps of one back end exclude each other, every state change is compare-and-set on the old state, and a cancel
is recorded only once the back end has carried it out.

The final updates a back end brought back with a pilot that ended (HTCondor's file transfer) are moved into the
scheduler's kept dir before the pilot's end is recorded, so a crash in between only has the next sweep look again.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autopilot_ops.backends.base import Backend, PilotState, PilotStatus
from autopilot_ops.errors import describe_error
from autopilot_ops.scheduler.kept_updates import collect_returned
from autopilot_ops.scheduler.locks import SWEEP_LOCK_KEY, locks_of
from autopilot_ops.store.connection import Store
from autopilot_ops.store.controls import KILL_DONE, pending_kill_requests
from autopilot_ops.store.events import record_event
from autopilot_ops.store.pilots import Transition, apply_transitions, live_pilots, mark_seen

log = logging.getLogger(__name__)

#: A pilot the back end does not list yet, this soon after submission, is not taken for vanished.
VANISH_GRACE_S = 60


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class SweepReport:
    """What one status sweep changed."""

    seen: int = 0
    transitions: list[Transition] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    backend_error: str | None = None
    #: Why the sweep did nothing (another sweep of the back end holds its lock).
    skipped: str | None = None
    #: Final updates brought back with ended pilots and moved to the kept dir.
    returned: int = 0


@dataclass(frozen=True)
class PilotsObserved:
    """The live pilots of a back end, the kill requests for them, and the back end's statuses (``None``: it
    did not answer, for ``error``)."""

    live: list[dict[str, Any]]
    kills: Mapping[int, Mapping[str, Any]]
    statuses: Mapping[str, PilotStatus] | None
    error: str | None = None


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep decided: the pilots the back end listed, state changes, and the pilots to cancel."""

    seen: list[int]
    changes: list[Transition]
    cancels: list[Transition]


def observe_pilots(store: Store, backend: Backend) -> PilotsObserved:
    """Observe: the store's live pilots and kill requests, then one status call for all of them."""
    with store.transaction() as cur:
        live = live_pilots(cur, backend.name)
        kills = {k["pilot_id"]: k for k in pending_kill_requests(cur, backend.name)}
    if not live:
        return PilotsObserved(live, kills, {})
    try:
        return PilotsObserved(live, kills, backend.status([p["batch_id"] for p in live]))
    except Exception as exc:  # an unreachable back end leaves states as they are
        log.warning("back end %s: status failed: %s", backend.name, exc)
        return PilotsObserved(live, kills, None, describe_error(exc))


def plan_sweep(observed: PilotsObserved, now: dt.datetime) -> SweepPlan:
    """Decide: each live pilot's next state and why; a kill request cancels a pilot not yet ended."""
    seen, changes, cancels = [], [], []
    for pilot in observed.live:
        status = None if observed.statuses is None else observed.statuses.get(pilot["batch_id"])
        if status is not None:
            seen.append(pilot["id"])
        kill = observed.kills.get(pilot["id"])
        if kill is not None and not (status and status.state.is_final):
            change = PilotState.CANCELLED, f"kill requested by {kill['who']}: {kill['reason'] or 'no reason given'}"
        else:
            change = next_state(pilot, status, observed.statuses is not None, now)
        if change is None:
            continue
        transition = _transition(pilot, *change, status)
        (cancels if transition.new == PilotState.CANCELLED.value else changes).append(transition)
    return SweepPlan(seen, changes, cancels)


def cancel_at_backend(backend: Backend, batch_ids: list[str]) -> str | None:
    """Act: cancel ``batch_ids`` at the back end; the error if it did not confirm (tried again next sweep)."""
    if not batch_ids:
        return None
    try:
        backend.cancel(batch_ids)
    except Exception as exc:  # a failed cancel is retried next sweep
        log.warning("back end %s: cancel failed: %s", backend.name, exc)
        return describe_error(exc)
    return None


def record_sweep(
    store: Store, who: str, observed: PilotsObserved, plan: SweepPlan, cancel_error: str | None, now: dt.datetime
) -> SweepReport:
    """Record: pilots seen, state changes (cancels only if the back end confirmed them), and kill requests
    carried out, in one transaction."""
    report = SweepReport(seen=len(plan.seen), backend_error=observed.error)
    if cancel_error is not None:
        report.backend_error = f"cancel failed: {cancel_error}"
    changes = plan.changes + (plan.cancels if cancel_error is None else [])
    not_cancelled = {t.pilot_id for t in plan.cancels} if cancel_error is not None else set()
    with store.transaction() as cur:
        mark_seen(cur, plan.seen, now)
        report.transitions = apply_transitions(cur, changes, who, now)
        report.cancelled = [t.pilot_id for t in report.transitions if t.new == PilotState.CANCELLED.value]
        if cancel_error is not None:
            record_event(
                cur,
                who,
                "cancel-failed",
                details={"pilots": [t.pilot_id for t in plan.cancels][:50], "error": cancel_error},
            )
        for pilot_id, kill in observed.kills.items():
            if pilot_id in not_cancelled:
                continue  # still live: the request stays pending and the cancel is tried again next sweep
            record_event(
                cur, who, KILL_DONE, queue=kill["queue"], pilot_id=pilot_id, details={"request": kill["event_id"]}
            )
    return report


def sweep_backend(store: Store, backend: Backend, who: str, now: dt.datetime | None = None) -> SweepReport:
    """Observe, decide, act and record for every live pilot of ``backend``; one sweep per back end at a time."""
    with locks_of(store).holding(SWEEP_LOCK_KEY, [backend.name]) as got:
        if not got:
            return SweepReport(skipped=f"another sweep of back end {backend.name} is running")
        now = now or utcnow()
        observed = observe_pilots(store, backend)
        if not observed.live:
            return SweepReport()
        plan = plan_sweep(observed, now)
        batch_ids = {p["id"]: p["batch_id"] for p in observed.live}
        cancel_error = cancel_at_backend(backend, [batch_ids[t.pilot_id] for t in plan.cancels])
        ended = {t.pilot_id for t in plan.changes if PilotState(t.new).is_final}
        returned = collect_returned(backend, [p for p in observed.live if p["id"] in ended])
        report = record_sweep(store, who, observed, plan, cancel_error, now)
        report.returned = returned
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
