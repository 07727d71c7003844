"""A line chart of a few series over time, as the numbers an inline SVG needs (no JavaScript)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 640
HEIGHT = 200
MARGIN = 30
COLOURS = {"queued": "#d9822b", "running": "#2b8a3e", "activated": "#1864ab"}


@dataclass(frozen=True)
class Line:
    name: str
    colour: str
    points: str  # "x,y x,y ..." for <polyline points=...>
    last: int | None


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    margin: int
    y_max: int
    start: dt.datetime | None
    end: dt.datetime | None
    lines: tuple[Line, ...]


def line_chart(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], time_key: str = "started_at") -> Chart:
    """Scale ``rows`` (oldest first; ``None`` values are gaps left out) into the chart's pixel space."""
    times = [row[time_key] for row in rows]
    values = [row[key] for row in rows for key in keys if row.get(key) is not None]
    y_max = max([1, *values])
    start, end = (times[0], times[-1]) if times else (None, None)
    span = (end - start).total_seconds() if start and end and end > start else 1.0
    inner_w, inner_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    lines = []
    for key in keys:
        points = []
        for when, row in zip(times, rows):
            if row.get(key) is None:
                continue
            x = MARGIN + inner_w * ((when - start).total_seconds() / span if len(times) > 1 else 0.5)
            y = HEIGHT - MARGIN - inner_h * row[key] / y_max
            points.append(f"{x:.1f},{y:.1f}")
        last = next((row[key] for row in reversed(rows) if row.get(key) is not None), None)
        lines.append(Line(key, COLOURS.get(key, "#555"), " ".join(points), last))
    return Chart(WIDTH, HEIGHT, MARGIN, y_max, start, end, tuple(lines))
