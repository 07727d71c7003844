"""The JSON API: queue summaries, controls, kill requests and pilot events (see ``auth`` for who may call)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from autopilot_ops.airflow.webapp.auth import ACT, READ, REPORT, Identity, require
from autopilot_ops.airflow.webapp.db import store_dependency
from autopilot_ops.store import controls as control_store
from autopilot_ops.store import monitor_queries
from autopilot_ops.store.connection import Store
from autopilot_ops.store.events import record_pilot_event
from autopilot_ops.store.pilots import LIVE_STATES

router = APIRouter(prefix="/api", tags=["AutoPilot"])

Scope = Literal["queue", "tag"]
Target = Annotated[str, Path(min_length=1, max_length=256)]
StoreDep = Annotated[Store, Depends(store_dependency)]
#: Largest accepted ``details`` of a pilot event, serialised.
MAX_EVENT_DETAILS = 16384


class ControlChange(BaseModel):
    """Fields to change; fields left out keep their value, ``null`` unsets a number, reason or expiry."""

    model_config = ConfigDict(extra="forbid")

    paused: StrictBool | None = None
    drain: StrictBool | None = None
    fixed_number: StrictInt | None = Field(default=None, ge=0)
    max_per_cycle: StrictInt | None = Field(default=None, ge=0)
    expires_at: AwareDatetime | None = None
    reason: str | None = Field(default=None, max_length=500)


class KillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500)
    states: list[Literal[LIVE_STATES]] | None = None  # type: ignore[valid-type]


class PilotEvent(BaseModel):
    """What a pilot posts; other top-level fields (as ``autopilot_ops.pilot.events`` sends) join ``details``.

    ``pilot_id`` as a JSON integer is the ``pilots.id`` the scheduler gave; as a string it is the pilot's own
    id, the batch id its back end set in ``AUTOPILOT_PILOT_ID``, looked up like ``batch_id``.
    """

    model_config = ConfigDict(extra="allow")

    queue: str = Field(min_length=1, max_length=256)
    event: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    pilot_id: StrictInt | str | None = None
    batch_id: str | None = Field(default=None, min_length=1, max_length=256)
    details: dict[str, Any] = Field(default_factory=dict)


@router.get("/queues", name="api_queues")
def list_queues(
    _: Annotated[Identity, Depends(require(READ))],
    store: StoreDep,
    tag: Annotated[str | None, Query(max_length=256, description="only this scheduler tag")] = None,
) -> list[dict[str, Any]]:
    """Every queue (or a scheduler tag's) with its pilots by state and last cycle (decision, reason trace)."""
    with store.transaction() as cur:
        return monitor_queries.queue_summaries(cur, tag=tag)


@router.get("/controls", name="api_controls")
def list_controls(_: Annotated[Identity, Depends(require(READ))], store: StoreDep) -> list[dict[str, Any]]:
    with store.transaction() as cur:
        return control_store.list_controls(cur)


@router.get("/controls/{scope}/{target}", name="api_control")
def get_control(
    _: Annotated[Identity, Depends(require(READ))], scope: Scope, target: Target, store: StoreDep
) -> dict[str, Any]:
    with store.transaction() as cur:
        row = control_store.get_control(cur, scope, target)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no control is set on {scope} {target!r}")
    return row


@router.post("/controls/{scope}/{target}", name="api_set_control")
def set_control(
    identity: Annotated[Identity, Depends(require(ACT))],
    scope: Scope,
    target: Target,
    change: ControlChange,
    store: StoreDep,
) -> dict[str, Any]:
    changes = change.model_dump(include=change.model_fields_set)
    if not changes:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"no field to change; give any of: "
                            f"{', '.join(control_store.DEFAULTS)}")
    for flag in ("paused", "drain"):
        if flag in changes and changes[flag] is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"field '{flag}' must be true or false")
    expires_at = changes.get("expires_at")
    if expires_at is not None and expires_at <= dt.datetime.now(dt.timezone.utc):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"field 'expires_at' {expires_at} is in the past")
    try:
        with store.transaction() as cur:
            return control_store.set_control(cur, scope, target, changes, identity.name)
    except control_store.UnknownTarget as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.delete("/controls/{scope}/{target}", name="api_clear_control")
def clear_control(
    identity: Annotated[Identity, Depends(require(ACT))], scope: Scope, target: Target, store: StoreDep
) -> dict[str, Any]:
    with store.transaction() as cur:
        cleared = control_store.clear_control(cur, scope, target, identity.name)
    if not cleared:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no control is set on {scope} {target!r}")
    return {"scope": scope, "target": target, "cleared": True}


@router.post("/queues/{queue}/kill-pilots", name="api_kill_pilots", status_code=status.HTTP_202_ACCEPTED)
def kill_pilots(
    identity: Annotated[Identity, Depends(require(ACT))],
    queue: Target,
    store: StoreDep,
    kill: Annotated[KillRequest | None, Body()] = None,
) -> dict[str, Any]:
    """Mark the queue's live pilots for cancellation; the scheduler core cancels them on its next sweep."""
    kill = kill or KillRequest()
    with store.transaction() as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM schedconfig WHERE panda_queue = %s) "
            "OR EXISTS (SELECT 1 FROM pilots WHERE queue = %s) AS known",
            (queue, queue),
        )
        if not cur.fetchone()["known"]:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no queue {queue!r} in schedconfig or pilots")
        ids = control_store.request_kill(cur, queue, identity.name, kill.reason, kill.states or LIVE_STATES)
    return {"queue": queue, "requested": len(ids), "pilot_ids": ids}


@router.post("/pilot-events", name="api_pilot_events", status_code=status.HTTP_202_ACCEPTED)
def pilot_event(
    identity: Annotated[Identity, Depends(require(REPORT))], event: PilotEvent, store: StoreDep
) -> dict[str, Any]:
    """Store a pilot's event as ``pilot.<event>``; a known pilot's heartbeat is refreshed."""
    db_id = event.pilot_id if isinstance(event.pilot_id, int) else None
    batch_id = event.batch_id or (event.pilot_id if isinstance(event.pilot_id, str) else None)
    if db_id is None and not batch_id:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "give 'pilot_id' or 'batch_id'")
    details = {**(event.model_extra or {}), **event.details}
    if batch_id:
        details.setdefault("batch_id", batch_id)
    if len(json.dumps(details, default=str)) > MAX_EVENT_DETAILS:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                            f"event details exceed {MAX_EVENT_DETAILS} bytes")
    with store.transaction() as cur:
        pilot = monitor_queries.find_pilot(cur, event.queue, db_id, batch_id)
        if pilot is not None and pilot["queue"] != event.queue:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"pilot {pilot['id']} belongs to queue {pilot['queue']!r}, not {event.queue!r}")
        if pilot is None and db_id is not None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pilot with id {db_id}")
        record_pilot_event(cur, identity.name, event.queue, event.event, pilot, details)
    return {"recorded": True, "pilot_id": pilot["id"] if pilot else None}
