"""The append-only ``pilot_events`` log."""

from __future__ import annotations

from typing import Any

import psycopg2.extras


def record_event(
    cur: Any,
    who: str,
    what: str,
    queue: str | None = None,
    pilot_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    cur.execute(
        "INSERT INTO pilot_events (who, what, queue, pilot_id, details) VALUES (%s, %s, %s, %s, %s)",
        (who, what, queue, pilot_id, psycopg2.extras.Json(details or {})),
    )
