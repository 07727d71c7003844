"""When a pilot factory last sent its heartbeat and each queue's worker statistics to PanDA."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

HEARTBEAT = "heartbeat"


def statistics_report(queue: str) -> str:
    return f"statistics:{queue}"


def due_reports(cur: Any, harvester_id: str, reports: Sequence[str], before: dt.datetime) -> list[str]:
    """Those of ``reports`` not sent since ``before``."""
    cur.execute(
        "SELECT report FROM factory_reports WHERE harvester_id = %s AND report = ANY(%s) AND sent_at >= %s",
        (harvester_id, list(reports), before),
    )
    fresh = {row["report"] for row in cur.fetchall()}
    return [report for report in reports if report not in fresh]


def mark_sent(cur: Any, harvester_id: str, reports: Sequence[str], now: dt.datetime) -> None:
    for report in reports:
        cur.execute(
            "INSERT INTO factory_reports (harvester_id, report, sent_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (harvester_id, report) DO UPDATE SET sent_at = EXCLUDED.sent_at",
            (harvester_id, report, now),
        )
