"""Charts as the numbers an inline SVG needs (no JavaScript): lines over time and stacked bands.

Colours are not chosen here: each series is drawn with the CSS class ``series-<name>`` (``templates/base.html``),
so the page's light or dark theme colours it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 640
HEIGHT = 200
MARGIN = 30


@dataclass(frozen=True)
class Line:
    name: str
    points: str  # "x,y x,y ..." for <polyline points=...>
    last: int | None


@dataclass(frozen=True)
class Mark:
    """A row's place on the time axis, for a link to it."""

    x: float
    row: Mapping[str, Any]


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    margin: int
    y_max: int
    start: dt.datetime | None
    end: dt.datetime | None
    lines: tuple[Line, ...]
    marks: tuple[Mark, ...]


def line_chart(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], time_key: str = "started_at",
               width: int = WIDTH, height: int = HEIGHT) -> Chart:
    """Scale ``rows`` (oldest first; ``None`` values are gaps left out) into the chart's pixel space."""
    times = [row[time_key] for row in rows]
    values = [row[key] for row in rows for key in keys if row.get(key) is not None]
    y_max = max([1, *values])
    start, end = (times[0], times[-1]) if times else (None, None)
    span = (end - start).total_seconds() if start and end and end > start else 1.0
    inner_w, inner_h = width - 2 * MARGIN, height - 2 * MARGIN
    xs = [MARGIN + inner_w * ((when - start).total_seconds() / span if len(times) > 1 else 0.5) for when in times]
    lines = []
    for key in keys:
        points = [f"{x:.1f},{height - MARGIN - inner_h * row[key] / y_max:.1f}"
                  for x, row in zip(xs, rows) if row.get(key) is not None]
        last = next((row[key] for row in reversed(rows) if row.get(key) is not None), None)
        lines.append(Line(key, " ".join(points), last))
    marks = tuple(Mark(round(x, 1), row) for x, row in zip(xs, rows))
    return Chart(width, height, MARGIN, y_max, start, end, tuple(lines), marks)

@dataclass(frozen=True)
class Band:
    """One series of a stacked chart: its area (``<polygon points=...>``) and its latest count."""

    name: str
    points: str
    last: int


@dataclass(frozen=True)
class StackedChart:
    width: int
    height: int
    margin: int
    y_max: int
    start: dt.datetime
    end: dt.datetime
    bands: tuple[Band, ...]


def stacked_chart(ends: Sequence[dt.datetime], series: Mapping[str, Sequence[int]],
                  width: int = WIDTH, height: int = HEIGHT) -> StackedChart:
    """``series`` (name -> one count per time in ``ends``, oldest first, at least two) stacked in order, the
    first at the bottom; each band's polygon runs along its top and back along the band below it."""
    inner_w, inner_h = width - 2 * MARGIN, height - 2 * MARGIN
    totals = [sum(values) for values in zip(*series.values())] or [0]
    y_max = max([1, *totals])
    xs = [MARGIN + inner_w * i / (len(ends) - 1) for i in range(len(ends))]
    below = [0] * len(ends)
    bands = []
    for name, values in series.items():
        top = [b + v for b, v in zip(below, values)]
        edge = [f"{x:.1f},{height - MARGIN - inner_h * y / y_max:.1f}" for x, y in zip(xs, top)]
        back = [f"{x:.1f},{height - MARGIN - inner_h * y / y_max:.1f}" for x, y in zip(reversed(xs), reversed(below))]
        bands.append(Band(name, " ".join(edge + back), values[-1]))
        below = top
    return StackedChart(width, height, MARGIN, y_max, ends[0], ends[-1], tuple(bands))
