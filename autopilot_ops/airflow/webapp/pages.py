"""Server-rendered monitor pages (overview, queue, pilot) and the log files they link to.

Every page refreshes its data in place (``templates/live.js``: it fetches the page again every
:data:`REFRESH_SECONDS` and swaps its ``data-live`` parts), and says how old its data and its pilot states are.

Ops and admins also get the buttons of a control panel per tag (overview) and per queue (queue page); each
button's request is rendered into the page (``ControlPanel.actions``) and sent by a few lines of script in
``templates/base.html`` to the control API, after which the page reloads and shows the control now in force.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, StreamingResponse

from autopilot_ops.airflow.naming import scheduler_dag_id
from autopilot_ops.airflow.webapp import history
from autopilot_ops.airflow.webapp.auth import ACT, READ, Identity, require
from autopilot_ops.airflow.webapp.chart import line_chart
from autopilot_ops.airflow.webapp.db import store_dependency
from autopilot_ops.airflow.webapp.idle import idle_groups
from autopilot_ops.airflow.webapp.logs import LogPathError, open_log, relative_log_path, resolve_log_file
from autopilot_ops.airflow.webapp.rendering import render
from autopilot_ops.store import controls as control_store
from autopilot_ops.store import monitor_queries
from autopilot_ops.store.connection import Store
from autopilot_ops.store.panda_commands import commands_of_queue, worker_targets
from autopilot_ops.store.pilots import FINAL_STATES

router = APIRouter()

#: Columns of the overview's pilot counts, in lifecycle order.
PILOT_STATES = ("submitted", "queued", "running", "held", "finished", "failed", "cancelled", "missed")
#: How often a page fetches its data again.
REFRESH_SECONDS = 15
#: The ``autopilot-monitor`` DAG's schedule (``dag_factory.monitor_dag``): pilot states lag by up to this.
SWEEP_PERIOD = dt.timedelta(minutes=2)
#: Queues named in each of the overview's groups of queues that submit nothing (the tables list every one).
IDLE_LISTED = 50
#: Cycles on the queue page's chart and in its table (each mark on the chart links to its row).
QUEUE_CYCLES = 100
PilotSort = Annotated[str, Query(pattern=f"^-?({'|'.join(monitor_queries.PILOT_SORTS)})$",
                                 description="a column to sort the pilots by; a leading '-' for descending")]
PilotState = Annotated[str | None, Query(pattern=f"^({'|'.join(PILOT_STATES)})$", description="only this state")]
_require_reader = require(READ)
StoreDep = Annotated[Store, Depends(store_dependency)]
_CHUNK = 65536


def airflow_login_url(request: Request) -> str:
    """Airflow's login, which returns to this request's URL: ``/api/v2/auth/login`` redirects to the auth
    manager's login page with ``next`` (``airflow/api_fastapi/core_api/routes/public/auth.py: login``).
    Airflow mounts this app one level below its own root (``plugins/autopilot_plugin.py``)."""
    airflow_root = request.scope.get("root_path", "").rstrip("/").rpartition("/")[0]
    # rebuilt from the route, as the app's own links are: whether ``scope["path"]`` holds the mount point
    # differs between servers
    here = request.url_for(request.scope["route"].name, **request.path_params).path
    if request.url.query:
        here += f"?{request.url.query}"
    return f"{airflow_root}/api/v2/auth/login?{urlencode({'next': here})}"


async def page_reader(request: Request) -> Identity:
    """The reader of a page; a browser without a session (asking for HTML, with no ``Authorization`` header)
    is sent to Airflow's login instead of getting a 401."""
    try:
        return await _require_reader(request)
    except HTTPException as exc:
        browser = "text/html" in request.headers.get("accept", "") and "authorization" not in request.headers
        if exc.status_code != status.HTTP_401_UNAUTHORIZED or not browser:
            raise
        raise HTTPException(status.HTTP_303_SEE_OTHER, "log in to Airflow first",
                            headers={"Location": airflow_login_url(request)}) from None


Reader = Annotated[Identity, Depends(page_reader)]


@dataclass(frozen=True)
class ControlAction:
    """One button: ``body`` is the JSON sent with ``POST`` (the script adds the typed reason), ``None`` a ``DELETE``."""

    label: str
    body: dict[str, Any] | None

    @property
    def method(self) -> str:
        return "DELETE" if self.body is None else "POST"


@dataclass(frozen=True)
class ControlPanel:
    """The state of one queue's or tag's own control, and the buttons that change it.

    An expired control counts as none: a pause or drain set on it starts a fresh control (every field
    back to its default), so nothing of the old one comes back to life with it.
    """

    scope: str
    target: str
    control: Mapping[str, Any] | None

    @property
    def in_force(self) -> bool:
        return self.control is not None and not self.control["expired"]

    @property
    def paused(self) -> bool:
        return self.in_force and bool(self.control and self.control["paused"])

    @property
    def draining(self) -> bool:
        return self.in_force and bool(self.control and self.control["drain"])

    @property
    def state(self) -> str:
        flags = [name for name, on in (("paused", self.paused), ("draining", self.draining)) if on]
        return ", ".join(flags) or "not paused"

    @property
    def actions(self) -> list[ControlAction]:
        fresh = dict(control_store.DEFAULTS) if self.control is not None and not self.in_force else {}
        actions = [
            ControlAction("Resume", {"paused": False}) if self.paused
            else ControlAction("Pause", {**fresh, "paused": True}),
            ControlAction("Stop draining", {"drain": False}) if self.draining
            else ControlAction("Drain", {**fresh, "drain": True}),
        ]
        if self.control is not None:
            actions.append(ControlAction("Clear", None))
        return actions


def _mark_expired(controls: Sequence[dict[str, Any]]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    for control in controls:
        control["expired"] = control["expires_at"] is not None and control["expires_at"] <= now


def url_maker(request: Request) -> Callable[..., str]:
    """``url(name, **params)``: the path of route ``name``, each parameter percent-encoded (``path`` keeps its
    slashes). Starlette builds each route's path once (building one per link costs most of a big page's time)."""
    shapes: dict[tuple[str, ...], str] = {}

    def url(name: str, **params: Any) -> str:
        key = (name, *sorted(params))
        if key not in shapes:
            shapes[key] = request.url_for(name, **{param: f"{{{param}}}" for param in params}).path
        path = shapes[key]
        for param, value in params.items():
            path = path.replace(f"{{{param}}}", quote(str(value), safe="/" if param == "path" else ""))
        return path

    return url


def _page(request: Request, template: str, identity: Identity, **context: Any) -> HTMLResponse:
    url = url_maker(request)
    body = render(template, url=url, dag_id=scheduler_dag_id, identity=identity, can_act=identity.role >= ACT,
                  generated_at=dt.datetime.now(dt.timezone.utc), refresh_seconds=REFRESH_SECONDS,
                  sweep_minutes=int(SWEEP_PERIOD.total_seconds() // 60), **context)
    return HTMLResponse(body)


def _stopped_queues(rows: Sequence[Mapping[str, Any]], controls: Sequence[Mapping[str, Any]]) -> set[str]:
    """The queues that a pause or drain in force (on the queue or one of its tags) keeps from submitting."""
    held = {(c["scope"], c["target"]) for c in controls if not c["expired"] and (c["paused"] or c["drain"])}
    return {q["queue"] for q in rows
            if ("queue", q["queue"]) in held or any(("tag", tag) in held for tag in q["tags"])}


def _with_links(request: Request, pilots: Sequence[dict[str, Any]]) -> None:
    """Give each pilot its ``log_links`` (under the log root) and ``jobs``: ``(PanDA id, its page or None)``."""
    settings = request.app.state.settings
    for pilot in pilots:
        pilot["log_links"] = [
            (name, rel)
            for name, path in (("stdout", pilot["stdout_path"]), ("stderr", pilot["stderr_path"]))
            if (rel := relative_log_path(settings.log_root, path)) is not None
        ]
        pilot["jobs"] = [(panda_id, settings.panda_job_url(panda_id)) for panda_id in pilot["panda_ids"]]


@router.get("/", name="overview", response_class=HTMLResponse)
def overview(
    identity: Reader,
    request: Request,
    store: StoreDep,
    tag: Annotated[str | None, Query(max_length=256, description="only this scheduler tag")] = None,
    site: Annotated[str | None, Query(max_length=256, description="only this site's queues")] = None,
) -> HTMLResponse:
    ends = history.window(dt.datetime.now(dt.timezone.utc))
    per = "tag" if tag else "site" if site else "all"
    with store.transaction() as cur:
        rows = monitor_queries.queue_summaries(cur, tag=tag, site=site)
        controls = control_store.list_controls(cur)
        names = [r["queue"] for r in rows] if tag or site else None
        plots = history.plots_by(ends, monitor_queries.pilot_history(cur, ends[0], history.STEP, per, names),
                                 monitor_queries.activated_history(cur, ends[0], history.STEP, per, names))
        site_plots = history.plots_by(
            ends, monitor_queries.pilot_history(cur, ends[0], history.STEP, "site", names),
            monitor_queries.activated_history(cur, ends[0], history.STEP, "site", names)) if tag else {}
        targets = monitor_queries.targets_in_force(cur, names)
        seen_at = monitor_queries.states_seen_at(cur)
    _mark_expired(controls)
    tags: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        row["counts"] = [row["pilots"].get(state, 0) for state in PILOT_STATES]
        tags.setdefault(row["scheduler_tag"], []).append(row)
    tag_controls = {c["target"]: c for c in controls if c["scope"] == "tag"}
    # a queue without tags is scheduled under its site's name, which no tag control can name
    panels = {
        name: ControlPanel("tag", name, tag_controls.get(name))
        for name, queues in tags.items()
        if any(name in q["tags"] for q in queues)
    }
    return _page(
        request, "overview.html", identity, tags=tags, panels=panels, states=PILOT_STATES, only_tag=tag,
        only_site=site, idle=idle_groups(rows, _stopped_queues(rows, controls)), idle_listed=IDLE_LISTED,
        targets=targets,
        scope_plots=plots, site_plots=site_plots, states_seen_at=seen_at,
    )


@router.get("/queues/{queue}", name="queue_page", response_class=HTMLResponse)
def queue_page(
    identity: Reader,
    queue: str,
    request: Request,
    store: StoreDep,
    state: PilotState = None,
    sort: PilotSort = "-id",
) -> HTMLResponse:
    with store.transaction() as cur:
        summary = monitor_queries.queue_summaries(cur, queue)
        if not summary:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no queue {queue!r} in schedconfig")
        info = summary[0]
        cycles = monitor_queries.recent_cycles(cur, queue, QUEUE_CYCLES)
        pilots = monitor_queries.recent_pilots(cur, queue, state=state, sort=sort)
        series = monitor_queries.cycle_series(cur, queue, QUEUE_CYCLES)
        events = monitor_queries.recent_events(cur, queue)
        controls = monitor_queries.queue_controls(cur, queue, list(info["tags"]))
        panda_commands = commands_of_queue(cur, queue)
        panda_targets = worker_targets(cur, [queue]).get(queue, [])
        seen_at = monitor_queries.states_seen_at(cur, queue)
    _mark_expired(controls)
    own = next((c for c in controls if c["scope"] == "queue" and c["target"] == queue), None)
    stopping = [c for c in controls if not c["expired"] and (c["paused"] or c["drain"])]
    _with_links(request, pilots)
    return _page(
        request, "queue.html", identity, queue=info, cycles=cycles, pilots=pilots, events=events,
        controls=controls, panel=ControlPanel("queue", queue, own), stopping=stopping,
        panda_commands=panda_commands, panda_targets=panda_targets, now=dt.datetime.now(dt.timezone.utc),
        chart=line_chart(series, monitor_queries.SERIES_KEYS), states=PILOT_STATES, state=state, sort=sort,
        states_seen_at=seen_at,
    )


@router.get("/pilots/{pilot_id}", name="pilot_page", response_class=HTMLResponse)
def pilot_page(identity: Reader, pilot_id: int, request: Request, store: StoreDep) -> HTMLResponse:
    """One pilot's whole story: its row, every event about it, the jobs it ran, its exit and its logs."""
    with store.transaction() as cur:
        pilot = monitor_queries.pilot(cur, pilot_id)
        if pilot is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no pilot with id {pilot_id}")
        story = monitor_queries.pilot_story(cur, pilot)
        jobs = monitor_queries.pilot_jobs(cur, pilot["queue"], [pilot_id]).get(pilot_id, [])
    pilot["panda_ids"] = [job["panda_id"] for job in jobs]
    _with_links(request, [pilot])
    for job in jobs:
        job["url"] = request.app.state.settings.panda_job_url(job["panda_id"])
    return _page(request, "pilot.html", identity, pilot=pilot, story=_story(pilot, story), jobs=jobs,
                 live=pilot["state"] not in FINAL_STATES, states_seen_at=pilot["last_seen"])


def _story(pilot: Mapping[str, Any], events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``events`` and the times of the pilot's own row (``what``: ``row.submitted``, ``row.started``,
    ``row.ended``), oldest first; a row's time comes before the events of the same time, and its times keep
    their order even when a back end's clock put a start a moment before the submission was recorded."""
    entries: list[tuple[tuple[Any, bool], dict[str, Any]]] = []
    since = None
    for name, column in (("submitted", "submitted_at"), ("started", "started_at"), ("ended", "ended_at")):
        if pilot[column] is not None:
            since = pilot[column] if since is None else max(since, pilot[column])
            entries.append(((since, False), {"at": pilot[column], "what": f"row.{name}", "who": None,
                                             "details": {}}))
    entries += [((event["at"], True), event) for event in events]
    return [entry for _, entry in sorted(entries, key=lambda pair: pair[0])]


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
