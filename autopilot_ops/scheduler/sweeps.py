"""Sweep every back end that has live pilots: the pilot monitor's one step."""

from __future__ import annotations

import datetime as dt
from typing import Any

from autopilot_ops.backends.registry import BackendFactory, UnusableBackend, backend_from_row, usable_backend
from autopilot_ops.scheduler.pilot_sweep import SweepReport, sweep_backend
from autopilot_ops.store.backends import list_backends
from autopilot_ops.store.connection import Store
from autopilot_ops.store.pilots import LIVE_STATES


def backends_with_live_pilots(cur: Any) -> list[str]:
    cur.execute("SELECT DISTINCT backend FROM pilots WHERE state IN %s ORDER BY backend", (LIVE_STATES,))
    return [row["backend"] for row in cur.fetchall()]


def count_live(cur: Any) -> int:
    cur.execute("SELECT count(*) AS n FROM pilots WHERE state IN %s", (LIVE_STATES,))
    return int(cur.fetchone()["n"])


def sweep_all(
    store: Store, who: str, now: dt.datetime | None = None, factory: BackendFactory = backend_from_row
) -> dict[str, SweepReport | str]:
    """Sweep each back end with live pilots; a back end that cannot be used maps to why."""
    with store.transaction() as cur:
        names = backends_with_live_pilots(cur)
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
