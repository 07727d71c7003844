"""The overview's plots: pilots by state and activated jobs over the last 24 h, per scheduler tag or site."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from autopilot_ops.airflow.webapp.chart import Chart, StackedChart, line_chart, stacked_chart
from autopilot_ops.store.monitor_queries import HISTORY_BUCKETS, HISTORY_WINDOW

#: Stacked bottom to top: the states pilots are in at each time, then those pilots reached in each step.
LEVELS = ("submitted", "queued", "running")
ENDS = ("finished", "failed", "cancelled", "missed")
SERIES = LEVELS + ENDS
STEP = HISTORY_WINDOW / HISTORY_BUCKETS


@dataclass(frozen=True)
class Plots:
    """One tag's or site's pilots (stacked) and activated jobs (a line) on the same time axis, and the numbers
    drawn: ``counts[series][i]`` at ``ends[i]``."""

    pilots: StackedChart
    activated: Chart
    counts: dict[str, list[int]]


def window(now: dt.datetime) -> list[dt.datetime]:
    """The plots' times: every :data:`STEP` (whole hours) back over the window, ending at the step after ``now``."""
    step = int(STEP.total_seconds())
    end = dt.datetime.fromtimestamp((int(now.timestamp()) // step + 1) * step, dt.timezone.utc)
    return [end - HISTORY_WINDOW + i * STEP for i in range(HISTORY_BUCKETS + 1)]


def plots_by(ends: list[dt.datetime], pilot_rows: Iterable[Mapping[str, Any]],
             activated_rows: Iterable[Mapping[str, Any]]) -> dict[str, Plots]:
    """``{key: Plots}`` from ``monitor_queries.pilot_history`` and ``activated_history`` rows over ``ends``."""
    size = len(ends)
    changes: dict[str, dict[str, list[int]]] = {}
    for row in pilot_rows:
        series = changes.setdefault(row["key"], {name: [0] * size for name in SERIES})
        series[row["series"]][min(row["bucket"], size - 1)] += row["n"]
    activated: dict[str, list[int | None]] = {}
    for row in activated_rows:
        values = activated.setdefault(row["key"], [None] * size)
        bucket = min(row["bucket"], size - 1)
        values[bucket] = (values[bucket] or 0) + row["activated"]
    plots = {}
    for name in sorted(changes.keys() | activated.keys()):
        series = changes.get(name) or {s: [0] * size for s in SERIES}
        for level in LEVELS:
            total = 0
            for i, change in enumerate(series[level]):
                total += change
                series[level][i] = total
        points = [{"at": at, "activated": n} for at, n in zip(ends, activated.get(name, [None] * size))]
        plots[name] = Plots(stacked_chart(ends, series), line_chart(points, ("activated",), "at", width=320), series)
    return plots
