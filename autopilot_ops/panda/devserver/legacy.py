"""The pre-1.0 dispatcher methods (``/server/panda/<method>``), served only when the dev server is started with
``legacy=True`` so that a client's legacy mode can be tested; PanDA 1.0.0 removed them (HTTP 403).

Replies follow ``pandaserver/jobdispatcher/JobDispatcher.py`` and ``Protocol.py`` as of panda-server 0.6
(commit 2e1a1449): url-encoded ``key=value&...`` (``Protocol.Response.encode``), JSON when the request's
``Accept`` header names ``application/json``; ``getJobStatisticsPerSite`` answers a pickled dict
(``userinterface/UserIF.py``). Parameters arrive as text and are converted as those functions did.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autopilot_ops.panda.devserver.auth import Identity
from autopilot_ops.panda.devserver.jobstore import DispatchFilter, JobStore
from autopilot_ops.panda.protocol import (
    COMMAND_NONE,
    PILOT_STATES,
    SC_NO_JOBS,
    SC_ROLE,
    SC_SUCCESS,
    encode_legacy_reply,
)

LEGACY_METHODS = ("getJob", "updateJob", "getStatus", "getJobStatisticsPerSite")
_NO_ROLE = "no production/pilot role in VOMS FQANs or non pilot owner"


@dataclass(frozen=True)
class LegacyReply:
    body: bytes
    content_type: str


def call(
    store: JobStore, method: str, identity: Identity | None, params: Mapping[str, str], accept_json: bool
) -> LegacyReply:
    """Run one legacy method; ``method`` must be one of ``LEGACY_METHODS``."""
    handlers: dict[str, Callable[..., LegacyReply]] = {
        "getJob": _get_job,
        "updateJob": _update_job,
        "getStatus": _get_status,
        "getJobStatisticsPerSite": _statistics,
    }
    return handlers[method](store, identity, params, accept_json)


def _encode(data: Mapping[str, Any], accept_json: bool) -> LegacyReply:
    if accept_json:
        return LegacyReply(json.dumps(data).encode(), "application/json")
    return LegacyReply(encode_legacy_reply(data).encode(), "text/plain")


def _role_refusal(accept_json: bool) -> LegacyReply:
    data: dict[str, Any] = {"StatusCode": SC_ROLE}
    if accept_json:
        data["errorDialog"] = _NO_ROLE
    return _encode(data, accept_json)


def _get_job(store: JobStore, identity: Identity | None, params: Mapping[str, str], accept_json: bool) -> LegacyReply:
    """``JobDispatcher.getJob``: one job's fields at top level, or ``jobs`` (JSON text) when ``nJobs`` is set."""
    label = params.get("prodSourceLabel")
    production = identity is not None and identity.production
    if not production and label not in ["user"]:
        return _role_refusal(accept_json)
    n_jobs_text = params.get("nJobs")
    try:
        n_jobs = int(n_jobs_text) if n_jobs_text is not None else 1
    except ValueError:
        n_jobs = 1
    wanted = DispatchFilter(
        site_name=params.get("siteName", ""),
        prod_source_label=label,
        memory=_to_int(params.get("mem")),
        disk_space=_to_int(params.get("diskSpace")),
        remaining_time=_to_int(params.get("remaining_time")),
        resource_type=params.get("resourceType"),
        prod_user_id=params.get("prodUserID") if production else (identity.dn if identity else ""),
        task_id=_to_int(params.get("taskID")) or None,
    )
    jobs = store.acquire(wanted, n_jobs, node=params.get("node"), computing_element=params.get("computingElement"))
    if not jobs:
        data: dict[str, Any] = {"StatusCode": SC_NO_JOBS}
        if accept_json:
            data["errorDialog"] = "no jobs in PanDA"
        return _encode(data, accept_json)
    if n_jobs_text is None:
        return _encode(jobs[-1], accept_json)
    return _encode({"StatusCode": SC_SUCCESS, "jobs": jobs if accept_json else json.dumps(jobs)}, accept_json)


def _update_job(
    store: JobStore, identity: Identity | None, params: Mapping[str, str], accept_json: bool
) -> LegacyReply:
    """``JobDispatcher.updateJob``: ``StatusCode=0&command=...``; a bad state or id is acknowledged and ignored."""
    if identity is None or not identity.production:
        return _role_refusal(accept_json)
    job_id, state = params.get("jobId", "NULL"), params.get("state")
    if job_id == "NULL" or state not in PILOT_STATES:
        return _encode({"StatusCode": SC_SUCCESS}, accept_json)
    try:
        panda_id = int(job_id)
    except ValueError:
        return _encode({"StatusCode": SC_SUCCESS}, accept_json)
    param: dict[str, Any] = {}
    for legacy_name, name, cast in (
        ("transExitCode", "transExitCode", int),
        ("pilotErrorCode", "pilotErrorCode", int),
        ("pilotErrorDiag", "pilotErrorDiag", lambda x: x[:500]),
        ("exeErrorCode", "exeErrorCode", int),
        ("exeErrorDiag", "exeErrorDiag", lambda x: x[:500]),
        ("node", "modificationHost", lambda x: x[:128]),
        ("cpuConsumptionTime", "cpuConsumptionTime", int),
        ("coreCount", "actualCoreCount", int),
        ("startTime", "startTime", str),
        ("endTime", "endTime", str),
        ("batchID", "batchID", str),
        ("schedulerID", "schedulerID", str),
        ("pilotID", "pilotID", str),
        ("jobMetrics", "jobMetrics", str),
        ("siteName", "siteName", str),
    ):
        value = params.get(legacy_name)
        if value not in (None, ""):
            try:
                param[name] = cast(value)
            except ValueError:
                continue
    attempt_text = params.get("attemptNr")
    attempt_nr = int(attempt_text) if attempt_text and attempt_text.isdigit() else None
    command = store.update(panda_id, state, param, attempt_nr, params.get("xml", ""))
    return _encode({"StatusCode": SC_SUCCESS, "command": command or COMMAND_NONE}, accept_json)


def _get_status(
    store: JobStore, identity: Identity | None, params: Mapping[str, str], accept_json: bool
) -> LegacyReply:
    """``JobDispatcher.getStatus``: ``ids`` separated by spaces; states and attempts joined by ``+``."""
    ids = []
    for text in params.get("ids", "").split():
        try:
            ids.append(int(text))
        except ValueError:
            ids.append(-1)
    statuses = store.statuses(ids)
    status_text = "+".join("notfound" if s["status"] == "not found" else s["status"] for s in statuses)
    attempts = "+".join(str(s["attempt_number"]) for s in statuses)
    return _encode({"StatusCode": SC_SUCCESS, "status": status_text, "attemptNr": attempts}, False)


def _statistics(
    store: JobStore, identity: Identity | None, params: Mapping[str, str], accept_json: bool
) -> LegacyReply:
    """``UserIF.getJobStatisticsPerSite``: the statistics dict, pickled."""
    return LegacyReply(pickle.dumps(store.stats_by_site()), "text/plain")


def _to_int(text: str | None) -> int:
    try:
        return max(0, int(float(text))) if text is not None else 0
    except ValueError:
        return 0
