"""Sweep old rows out of the store: ended pilots, their events, old cycles and settled submissions.

A pilot's age is taken from ``state_changed_at``, the time its final state was recorded. Live pilots and
``pending`` submissions are never swept: the scheduler still needs them. Each table is emptied in batches of
``batch_size`` rows (``DELETE ... WHERE id IN (SELECT id ... LIMIT n)``), one transaction per batch, so a big
sweep never holds its locks for long and never leaves a half-done batch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from autopilot_ops.store.connection import Store


@dataclass(frozen=True)
class RowRetention:
    """How long rows are kept. ``cancelled_hours`` and ``missed_hours`` default to ``failed_hours``;
    ``events_hours`` defaults to the longest pilot window, so a kept pilot keeps its events."""

    finished_hours: float = 24.0
    failed_hours: float = 72.0
    cancelled_hours: float | None = None
    missed_hours: float | None = None
    events_hours: float | None = None
    cycles_days: float = 7.0
    submissions_days: float = 7.0
    batch_size: int = 5000

    def __post_init__(self) -> None:
        for name in ("finished_hours", "failed_hours", "cancelled_hours", "missed_hours", "events_hours"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"row retention: field {name!r} must be >= 0, not {value}")
        for name in ("cycles_days", "submissions_days"):
            if getattr(self, name) < 0:
                raise ValueError(f"row retention: field {name!r} must be >= 0, not {getattr(self, name)}")
        if self.batch_size < 1:
            raise ValueError(f"row retention: field 'batch_size' must be >= 1, not {self.batch_size}")

    def pilot_windows(self) -> dict[str, dt.timedelta]:
        """How long an ended pilot is kept, by final state."""
        hours = {
            "finished": self.finished_hours,
            "failed": self.failed_hours,
            "cancelled": self.failed_hours if self.cancelled_hours is None else self.cancelled_hours,
            "missed": self.failed_hours if self.missed_hours is None else self.missed_hours,
        }
        return {state: dt.timedelta(hours=h) for state, h in hours.items()}

    def events_window(self) -> dt.timedelta:
        if self.events_hours is not None:
            return dt.timedelta(hours=self.events_hours)
        return max(self.pilot_windows().values())


@dataclass
class RowSweepReport:
    """Rows deleted, per table (pilots also per final state)."""

    pilots_by_state: dict[str, int] = field(default_factory=dict)
    pilot_events: int = 0
    cycles: int = 0
    submissions: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pilots": sum(self.pilots_by_state.values()),
            "pilots_by_state": dict(self.pilots_by_state),
            "pilot_events": self.pilot_events,
            "cycles": self.cycles,
            "submissions": self.submissions,
        }

    def summary_lines(self) -> list[str]:
        by_state = ", ".join(f"{state} {n}" for state, n in self.pilots_by_state.items() if n)
        return [
            f"rows deleted: pilots {sum(self.pilots_by_state.values())}" + (f" ({by_state})" if by_state else ""),
            f"rows deleted: pilot_events {self.pilot_events}, cycles {self.cycles}, submissions {self.submissions}",
        ]


_DELETE_PILOTS = (
    "DELETE FROM pilots WHERE id IN (SELECT id FROM pilots WHERE state = %s AND state_changed_at < %s LIMIT %s)"
)
_DELETE_EVENTS = "DELETE FROM pilot_events WHERE id IN (SELECT id FROM pilot_events WHERE at < %s LIMIT %s)"
_DELETE_CYCLES = "DELETE FROM cycles WHERE id IN (SELECT id FROM cycles WHERE started_at < %s LIMIT %s)"
_DELETE_SUBMISSIONS = (
    "DELETE FROM submissions WHERE (queue, cycle_id) IN "
    "(SELECT queue, cycle_id FROM submissions WHERE state <> 'pending' "
    "AND coalesce(completed_at, created_at) < %s LIMIT %s)"
)


def sweep_rows(
    store: Store, retention: RowRetention | None = None, *, now: dt.datetime | None = None
) -> RowSweepReport:
    """Delete the rows older than ``retention`` allows, measured back from ``now`` (default: the clock)."""
    retention = retention or RowRetention()
    now = now or dt.datetime.now(dt.timezone.utc)
    size = retention.batch_size
    report = RowSweepReport()
    for state, window in retention.pilot_windows().items():
        report.pilots_by_state[state] = delete_in_batches(store, _DELETE_PILOTS, (state, now - window), size)
    report.pilot_events = delete_in_batches(store, _DELETE_EVENTS, (now - retention.events_window(),), size)
    report.cycles = delete_in_batches(store, _DELETE_CYCLES, (now - dt.timedelta(days=retention.cycles_days),), size)
    report.submissions = delete_in_batches(
        store, _DELETE_SUBMISSIONS, (now - dt.timedelta(days=retention.submissions_days),), size
    )
    return report


def delete_in_batches(store: Store, sql: str, params: tuple[Any, ...], batch_size: int) -> int:
    """Run ``sql`` (its last parameter is the batch size) in one transaction per batch until a batch comes
    back short; the number of rows deleted."""
    total = 0
    while True:
        with store.transaction() as cur:
            cur.execute(sql, (*params, batch_size))
            deleted = cur.rowcount
        total += deleted
        if deleted < batch_size:
            return total
