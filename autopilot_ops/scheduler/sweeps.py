"""Sweep every back end that has live pilots: the pilot monitor's one step."""

from __future__ import annotations

import datetime as dt
from typing import Any

from autopilot_ops.backends.registry import BackendFactory, UnusableBackend, backend_from_row, usable_backend
from autopilot_ops.scheduler.pilot_sweep import SweepReport, sweep_backend
from autopilot_ops.store.backends import list_backends
from autopilot_ops.store.connection import Store
from autopilot_ops.store.pilots import LIVE_STATES
from autopilot_ops.store.queues import WORKER_QUEUE_SQL


def backends_with_live_pilots(cur: Any, worker_queue: str | None = None) -> list[str]:
    """The back ends with live pilots; with ``worker_queue``, those with live pilots of queues routed there (a
    pilot whose queue is gone goes by its back end's worker queue)."""
    cur.execute(
        "SELECT DISTINCT p.backend FROM pilots p LEFT JOIN schedconfig s ON s.panda_queue = p.queue "
        "LEFT JOIN backends b ON b.name = p.backend "
        f"WHERE p.state IN %(live)s AND (%(worker_queue)s::text IS NULL OR {WORKER_QUEUE_SQL} = %(worker_queue)s) "
        "ORDER BY p.backend",
        {"live": LIVE_STATES, "worker_queue": worker_queue},
    )
    return [row["backend"] for row in cur.fetchall()]


def count_live(cur: Any) -> int:
    cur.execute("SELECT count(*) AS n FROM pilots WHERE state IN %s", (LIVE_STATES,))
    return int(cur.fetchone()["n"])


def sweep_all(
    store: Store,
    who: str,
    now: dt.datetime | None = None,
    factory: BackendFactory = backend_from_row,
    worker_queue: str | None = None,
) -> dict[str, SweepReport | str]:
    """Sweep each back end with live pilots (of queues routed to ``worker_queue``, if given: a back end is
    asked from the host its queues' cycles run on); a back end that cannot be used maps to why."""
    with store.transaction() as cur:
        names = backends_with_live_pilots(cur, worker_queue)
        rows = {row["name"]: row for row in list_backends(cur)}
    reports: dict[str, SweepReport | str] = {}
    for name in names:
        try:
            backend = usable_backend(name, rows.get(name), factory)
        except UnusableBackend as exc:  # stops only this back end's sweep
            reports[name] = str(exc)
            continue
        reports[name] = sweep_backend(store, backend, who, now)
    return reports


def describe(reports: dict[str, SweepReport | str]) -> list[str]:
    """One line per back end, for task logs."""
    lines = []
    for name, report in reports.items():
        if isinstance(report, str):
            lines.append(f"back end {name}: not swept: {report}")
            continue
        changes = ", ".join(f"{t.old}->{t.new}" for t in report.transitions[:10])
        more = f" (+{len(report.transitions) - 10} more)" if len(report.transitions) > 10 else ""
        line = f"back end {name}: {report.seen} pilots seen, {len(report.transitions)} changes{': ' if changes else ''}"
        line += changes + more + (f"; error: {report.backend_error}" if report.backend_error else "")
        lines.append(line + (f"; {report.skipped}" if report.skipped else ""))
    return lines
