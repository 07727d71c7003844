"""The append-only ``pilot_events`` log, and the events pilots post to it."""

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


def record_pilot_event(
    cur: Any, who: str, queue: str, event: str, pilot: dict[str, Any] | None, details: dict[str, Any]
) -> None:
    """Store a pilot's event as ``pilot.<event>``; a known pilot's ``last_heartbeat`` becomes now."""
    record_event(cur, who, f"pilot.{event}", queue=queue, pilot_id=pilot["id"] if pilot else None, details=details)
    if pilot is not None:
        cur.execute("UPDATE pilots SET last_heartbeat = now() WHERE id = %s", (pilot["id"],))
