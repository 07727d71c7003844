"""Server-rendered monitor pages (overview, queue) and the log files they link to."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, StreamingResponse

from autopilot_ops.airflow.naming import scheduler_dag_id
from autopilot_ops.airflow.webapp.auth import READ, Identity, require
from autopilot_ops.airflow.webapp.chart import line_chart
from autopilot_ops.airflow.webapp.db import store_dependency
from autopilot_ops.airflow.webapp.logs import LogPathError, open_log, relative_log_path, resolve_log_file
from autopilot_ops.airflow.webapp.templates import render
from autopilot_ops.store import monitor
from autopilot_ops.store.connection import Store

router = APIRouter()

#: Columns of the overview's pilot counts, in lifecycle order.
PILOT_STATES = ("submitted", "queued", "running", "held", "finished", "failed", "cancelled", "missed")
Reader = Annotated[Identity, Depends(require(READ))]
StoreDep = Annotated[Store, Depends(store_dependency)]
_CHUNK = 65536


def _page(request: Request, template: str, identity: Identity, **context: Any) -> HTMLResponse:
    def url(name: str, **params: Any) -> str:
        return request.url_for(name, **params).path

    body = render(request.app.state.templates, template, url=url, dag_id=scheduler_dag_id, identity=identity,
                  **context)
    return HTMLResponse(body)


@router.get("/", name="overview", response_class=HTMLResponse)
def overview(
    identity: Reader,
    request: Request,
    store: StoreDep,
    tag: Annotated[str | None, Query(max_length=256, description="only this scheduler tag")] = None,
) -> HTMLResponse:
    with store.transaction() as cur:
        rows = monitor.queue_summaries(cur, tag=tag)
    tags: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        tags.setdefault(row["scheduler_tag"], []).append(row)
    return _page(request, "overview.html", identity, tags=tags, states=PILOT_STATES, only_tag=tag)


@router.get("/queues/{queue}", name="queue_page", response_class=HTMLResponse)
def queue_page(identity: Reader, queue: str, request: Request, store: StoreDep) -> HTMLResponse:
    with store.transaction() as cur:
        summary = monitor.queue_summaries(cur, queue)
        if not summary:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no queue {queue!r} in schedconfig")
        info = summary[0]
        cycles = monitor.recent_cycles(cur, queue)
        pilots = monitor.recent_pilots(cur, queue)
        series = monitor.cycle_series(cur, queue)
        events = monitor.recent_events(cur, queue)
        controls = monitor.queue_controls(cur, queue, list(info["tags"]))
    now = dt.datetime.now(dt.timezone.utc)
    for control in controls:
        control["expired"] = control["expires_at"] is not None and control["expires_at"] <= now
    log_root: Path | None = request.app.state.settings.log_root
    for pilot in pilots:
        pilot["log_links"] = [
            (name, rel)
            for name, path in (("stdout", pilot["stdout_path"]), ("stderr", pilot["stderr_path"]))
            if (rel := relative_log_path(log_root, path)) is not None
        ]
        url = pilot["log_url"] or ""
        pilot["external_log"] = url if url.startswith(("https://", "http://")) else None
    return _page(
        request, "queue.html", identity, queue=info, cycles=cycles, pilots=pilots, events=events,
        controls=controls, chart=line_chart(series, monitor.SERIES_KEYS),
    )


@router.get("/logs/{path:path}", name="log_file")
def log_file(
    _: Reader,
    path: str,
    request: Request,
    tail: Annotated[int | None, Query(ge=1, description="only the last N bytes")] = None,
) -> StreamingResponse:
    """A file under ``[autopilot] log_root``, as plain text; see ``logs.resolve_log_file`` for what is refused."""
    root: Path | None = request.app.state.settings.log_root
    if root is None or not root.is_dir():
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"the log root {root or '(unset)'} is not a directory ([autopilot] log_root)")
    try:
        real = resolve_log_file(root, path)
        fd = open_log(real)
    except LogPathError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    except OSError as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"log file {path} cannot be opened: {exc.strerror}") from None
    size = os.fstat(fd).st_size
    if tail is not None and size > tail:
        os.lseek(fd, size - tail, os.SEEK_SET)
    headers = {"X-Content-Type-Options": "nosniff", "Content-Disposition": "inline"}
    return StreamingResponse(_read(fd), media_type="text/plain; charset=utf-8", headers=headers)


def _read(fd: int) -> Iterator[bytes]:
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk
