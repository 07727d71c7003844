"""Act: idempotent submission of pilots, and the reconciliation of submissions a crash left pending.

Submission writes a key ``(queue, cycle_id)`` before the back end is called and completes it after, so a
retried cycle never submits twice; a key left ``pending`` by a crash is reconciled against the back end
(:meth:`PilotSubmitter.reconcile`, called by the cycle before it decides). A session-level advisory lock per
queue, on a connection of its own (:mod:`autopilot_ops.scheduler.locks`), keeps two schedulers from submitting
for the same queue at once, and a lost lock stops the submission before the back end is called.

Each submission is of one prodSourceLabel's pilots: a unified queue's cycle has one per label it submits for,
each with its own key (:func:`submission_key`), and its pilot rows record the label.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from autopilot_ops.backends.base import FIRST_PILOT_ID_VARIABLE, Backend, PilotSpec
from autopilot_ops.errors import describe_error
from autopilot_ops.policy.labels import DEFAULT_LABEL
from autopilot_ops.scheduler.locks import QUEUE_LOCK_KEY, LockLost, locks_of
from autopilot_ops.store.connection import Store
from autopilot_ops.store.events import record_event
from autopilot_ops.store.pilots import insert_pilots, reserve_pilot_ids
from autopilot_ops.store.submissions import (
    DONE,
    FAILED,
    RECONCILED,
    begin_submission,
    finish_submission,
    pending_submissions,
)


@dataclass(frozen=True)
class SubmitOutcome:
    """What one submission did: pilots submitted and missed, or why it did nothing."""

    submitted: int = 0
    missed: int = 0
    skipped: str | None = None
    reconciled: int = 0

    @classmethod
    def combined(cls, outcomes: Iterable[SubmitOutcome]) -> SubmitOutcome:
        """The outcome of a cycle's submissions for one queue (one per label), as one."""
        outcomes = list(outcomes)
        skipped = "; ".join(o.skipped for o in outcomes if o.skipped)
        return cls(
            submitted=sum(o.submitted for o in outcomes),
            missed=sum(o.missed for o in outcomes),
            skipped=skipped or None,
            reconciled=sum(o.reconciled for o in outcomes),
        )


def submission_key(cycle_id: str, label: str, labels: Sequence[str]) -> str:
    """The key (and the back end's cycle id) of the submission of ``label``'s pilots in cycle ``cycle_id``, for a
    queue serving ``labels``: the cycle's id for the first label (and for ``test``, a test queue's one label),
    ``<cycle>.<label>`` for the others. The same cycle gives the same keys, so none is submitted twice."""
    return f"{cycle_id}.{label}" if label in labels[1:] else cycle_id


class PilotSubmitter:
    """Submits pilots for queues of one back end, each ``(queue, cycle)`` at most once."""

    def __init__(self, store: Store, backend: Backend, who: str):
        self.store = store
        self.backend = backend
        self.who = who
        self.locks = locks_of(store)

    def submit(self, n: int, spec: PilotSpec, label: str = DEFAULT_LABEL) -> SubmitOutcome:
        """Submit ``n`` pilots asking for prodSourceLabel ``label`` (the pilot's default: ``managed``) for
        ``spec.queue`` under the key ``spec.cycle_id`` (:func:`submission_key`), at most once per key.

        Whatever the back end raises (``BackendError``, or ``ValueError`` for a bad configuration) settles the
        key as ``failed`` with the exception named, and counts the pilots as missed."""
        with self.locks.holding(QUEUE_LOCK_KEY, [spec.queue]) as got:
            if not got:
                return SubmitOutcome(skipped="another scheduler is submitting for this queue")
            reconciled = self.reconcile(spec.queue)
            if n <= 0:
                return SubmitOutcome(reconciled=reconciled)
            with self.store.transaction() as cur:
                first_id = reserve_pilot_ids(cur, n)
                earlier = begin_submission(cur, spec.queue, spec.cycle_id, self.backend.name, n, first_id, label,
                                           spec.pilot_version, spec.scheduler)
            if earlier is not None:
                return SubmitOutcome(
                    skipped=f"cycle {spec.cycle_id} was already submitted ({earlier})", reconciled=reconciled
                )
            try:
                self.locks.check()
            except LockLost as exc:
                self._failed(spec, n, f"not submitted: {exc}")
                return SubmitOutcome(missed=n, skipped=f"queue lock lost: {exc}", reconciled=reconciled)
            spec = replace(spec, environment={**spec.environment, FIRST_PILOT_ID_VARIABLE: str(first_id)})
            try:
                pilots = self.backend.submit(n, spec)
            except Exception as exc:  # any back-end failure settles the key; the cycle goes on
                self._failed(spec, n, describe_error(exc))
                return SubmitOutcome(missed=n, reconciled=reconciled, skipped=f"submit failed: {describe_error(exc)}")
            with self.store.transaction() as cur:
                insert_pilots(cur, spec.queue, self.backend.name, spec.cycle_id, pilots, first_id, label,
                              spec.pilot_version, spec.scheduler)
                finish_submission(cur, spec.queue, spec.cycle_id, DONE, f"{len(pilots)} of {n}")
                record_event(
                    cur,
                    self.who,
                    "submitted",
                    queue=spec.queue,
                    details={
                        "cycle": spec.cycle_id,
                        "requested": n,
                        "prod_source_label": label,
                        "pilot_version": spec.pilot_version,
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
                found_ids = insert_pilots(cur, queue, self.backend.name, sub["cycle_id"], found, sub["first_pilot_id"],
                                          sub["prod_source_label"], sub["pilot_version"], sub["scheduler"])
                recovered += len(found_ids)
                finish_submission(cur, queue, sub["cycle_id"], RECONCILED, f"{len(found)} found after a crash")
                record_event(
                    cur,
                    self.who,
                    "submission-reconciled",
                    queue=queue,
                    details={"cycle": sub["cycle_id"], "found": len(found)},
                )
        return recovered
