"""The ``/api/v1`` methods the dev server offers, with the real server's names, parameters and messages.

Each handler's signature lists the real method's wire parameters (``pandaserver/api/v1/pilot_api.py``,
``job_api.py``, ``statistics_api.py``, ``system_api.py``); parameters the dev server has no use for are
accepted and ignored, so a call that works here is a call the real server accepts. The pilot-factory methods
are in ``harvester_api.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from autopilot_ops.panda.devserver.calls import Registry, Request, invoke
from autopilot_ops.panda.devserver.command_store import CommandStore
from autopilot_ops.panda.devserver.factory_store import FactoryStore
from autopilot_ops.panda.devserver.jobspec import JobSpecError, load_jobs_json
from autopilot_ops.panda.devserver.jobstore import DispatchFilter, JobStore
from autopilot_ops.panda.devserver.schedconfig import QueueConfigs
from autopilot_ops.panda.protocol import (
    DATE_FORMAT,
    MESSAGE_NO_DETAILED_STATS,
    MESSAGE_NO_JOBS,
    MESSAGE_NO_PILOT_ROLE,
    MESSAGE_NO_STATS,
    PILOT_STATES,
    SC_INVALID,
    SC_SUCCESS,
    make_envelope,
)

REGISTRY = Registry()
#: ``job_api.py: submit`` keeps at most this many jobs of one request.
MAX_SUBMITTED_JOBS = 5000
#: ``pilot_api.py: update_job``: wire parameter -> job attribute, and how the value is converted.
_UPDATE_FIELDS: tuple[tuple[str, str, Callable[[Any], Any]], ...] = (
    ("cpu_consumption_time", "cpuConsumptionTime", int),
    ("cpu_consumption_unit", "cpuConsumptionUnit", str),
    ("cpu_architecture_level", "cpu_architecture_level", lambda x: str(x)[:20]),
    ("node", "modificationHost", lambda x: str(x)[:128]),
    ("trans_exit_code", "transExitCode", int),
    ("pilot_error_code", "pilotErrorCode", int),
    ("pilot_error_diag", "pilotErrorDiag", lambda x: str(x)[:500]),
    ("job_metrics", "jobMetrics", lambda x: str(x)[:500]),
    ("scheduler_id", "schedulerID", str),
    ("pilot_id", "pilotID", lambda x: str(x)[:200]),
    ("batch_id", "batchID", lambda x: str(x)[:80]),
    ("exe_error_code", "exeErrorCode", int),
    ("exe_error_diag", "exeErrorDiag", lambda x: str(x)[:500]),
    ("cpu_conversion_factor", "cpuConversion", float),
    ("pilot_timing", "pilotTiming", str),
    ("n_events", "nEvents", int),
    ("n_input_files", "nInputFiles", int),
    ("job_sub_status", "jobSubStatus", str),
    ("core_count", "actualCoreCount", int),
    ("mean_core_count", "meanCoreCount", float),
    ("max_rss", "maxRSS", int),
    ("max_vmem", "maxVMEM", int),
    ("max_swap", "maxSWAP", int),
    ("max_pss", "maxPSS", int),
    ("avg_rss", "avgRSS", lambda x: int(float(x))),
    ("avg_vmem", "avgVMEM", lambda x: int(float(x))),
    ("avg_swap", "avgSWAP", lambda x: int(float(x))),
    ("avg_pss", "avgPSS", lambda x: int(float(x))),
    ("corrupted_files", "corruptedFiles", str),
    ("grid", "grid", str),
    ("source_site", "sourceSite", str),
    ("destination_site", "destinationSite", str),
    ("site_name", "siteName", str),
)
#: I/O counters, stored in kB (``pilot_api.py``).
_UPDATE_IO_FIELDS = (
    ("tot_rchar", "totRCHAR"),
    ("tot_wchar", "totWCHAR"),
    ("tot_rbytes", "totRBYTES"),
    ("tot_wbytes", "totWBYTES"),
    ("rate_rchar", "rateRCHAR"),
    ("rate_wchar", "rateWCHAR"),
    ("rate_rbytes", "rateRBYTES"),
    ("rate_wbytes", "rateWBYTES"),
)


class Context:
    """What handlers share: the job store, and the pilot factories' records, commands and queue configurations."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.queues = QueueConfigs(store.database, store.clock)
        self.factory = FactoryStore(store.database, store.clock)
        self.commands = CommandStore(store.database, self.queues, store.clock)


@REGISTRY.method("system", secure=False, http_method="GET")
def is_alive(context: Context, request: Request) -> dict[str, Any]:
    """``system_api.py: is_alive``."""
    return make_envelope(True)


@REGISTRY.method("pilot", secure=True, http_method="POST")
def acquire_jobs(
    context: Context,
    request: Request,
    site_name: str,
    timeout: int = 60,
    memory: int | None = None,
    disk_space: int | None = None,
    prod_source_label: str | None = None,
    node: str | None = None,
    computing_element: str | None = None,
    prod_user_id: str | None = None,
    get_proxy_key: str | None = None,
    task_id: int | None = None,
    n_jobs: int = 1,
    background: bool | None = None,
    resource_type: str | None = None,
    harvester_id: str | None = None,
    worker_id: int | None = None,
    scheduler_id: str | None = None,
    job_type: str | None = None,
    via_topic: bool | None = None,
    remaining_time=None,
) -> dict[str, Any]:
    """``pilot_api.py: acquire_jobs``: reserve activated jobs of the site and hand them out; with
    ``harvester_id`` (or ``scheduler_id``) and ``worker_id``, relate them to the worker (``getJobs``)."""
    assert request.identity is not None
    production = request.identity.production
    # Production jobs need the production role; without it a caller gets only its own user jobs.
    if not production and prod_source_label not in ["user"]:
        return make_envelope(False, MESSAGE_NO_PILOT_ROLE)
    if not production:
        prod_user_id = request.identity.dn
    wanted = DispatchFilter(
        site_name=site_name,
        prod_source_label=prod_source_label,
        memory=_non_negative(memory),
        disk_space=_non_negative(disk_space),
        remaining_time=_non_negative(remaining_time),
        resource_type=resource_type,
        prod_user_id=prod_user_id,
        task_id=task_id,
    )
    jobs = context.store.acquire(wanted, n_jobs, node=node, computing_element=computing_element)
    if not jobs:
        return make_envelope(False, MESSAGE_NO_JOBS)
    if not harvester_id and scheduler_id:
        harvester_id = scheduler_id  # pilot_api.py: the scheduler id stands in for a missing harvester id
    if harvester_id is not None and worker_id is not None:
        context.factory.link_jobs(harvester_id, worker_id, [job["PandaID"] for job in jobs])
    return make_envelope(True, data={"StatusCode": SC_SUCCESS, "jobs": jobs})


@REGISTRY.method("pilot", secure=True, http_method="GET")
def get_job_status(context: Context, request: Request, job_ids: list[int], timeout: int = 60) -> dict[str, Any]:
    """``pilot_api.py: get_job_status``."""
    return make_envelope(True, data=context.store.statuses(job_ids))


@REGISTRY.method("pilot", secure=True, production=True, http_method="POST")
def update_job(
    context: Context,
    request: Request,
    job_id: int,
    job_status: str,
    job_output_report: str = "",
    node: str | None = None,
    cpu_consumption_time: int | None = None,
    cpu_consumption_unit: str | None = None,
    scheduler_id: str | None = None,
    pilot_id: str | None = None,
    site_name: str | None = None,
    pilot_log: str = "",
    meta_data: str = "",
    cpu_conversion_factor: float | int | None = None,
    trans_exit_code: int | None = None,
    pilot_error_code: int | None = None,
    pilot_error_diag: str | None = None,
    exe_error_code: int | None = None,
    exe_error_diag: str | None = None,
    pilot_timing: str | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
    n_events: int | None = None,
    n_input_files: int | None = None,
    batch_id: str | None = None,
    attempt_nr: int | None = None,
    job_metrics: str | None = None,
    stdout: str = "",
    job_sub_status: str | None = None,
    core_count: int | None = None,
    max_rss: int | float | None = None,
    max_vmem: int | float | None = None,
    max_swap: int | float | None = None,
    max_pss: int | float | None = None,
    avg_rss: int | float | None = None,
    avg_vmem: int | float | None = None,
    avg_swap: int | float | None = None,
    avg_pss: int | float | None = None,
    tot_rchar: int | float | None = None,
    tot_wchar: int | float | None = None,
    tot_rbytes: int | float | None = None,
    tot_wbytes: int | float | None = None,
    rate_rchar: int | float | None = None,
    rate_wchar: int | float | None = None,
    rate_rbytes: int | float | None = None,
    rate_wbytes: int | float | None = None,
    corrupted_files: str | None = None,
    mean_core_count: int | None = None,
    cpu_architecture_level: str | None = None,
    grid: str | None = None,
    source_site: str | None = None,
    destination_site: str | None = None,
    timeout: int = 60,
) -> dict[str, Any]:
    """``pilot_api.py: update_job``: record the pilot's report; the reply carries the command for the pilot."""
    supplied = dict(locals())  # the wire parameters, by name; must stay the first statement
    if job_status not in PILOT_STATES:
        return make_envelope(False, f"Invalid job status: {job_status}", {"StatusCode": SC_INVALID})
    param: dict[str, Any] = {}
    for wire_name, key, cast in _UPDATE_FIELDS:
        value = supplied[wire_name]
        if value is None or value == "":
            continue
        try:
            param[key] = cast(value)
        except (TypeError, ValueError):
            continue  # pilot_api.py logs and drops a value it cannot convert
    for wire_name, key in _UPDATE_IO_FIELDS:
        if supplied[wire_name] is not None:
            param[key] = min(10**10 - 1, int(supplied[wire_name]) / 1024)  # kB, at most 10 digits
    for key, value in (("startTime", start_time), ("endTime", end_time)):
        if value is not None:
            try:
                time.strptime(value, DATE_FORMAT)
            except ValueError:
                continue  # pilot_api.py ignores a malformed time
            param[key] = value
    for key, value in (("pilotLog", pilot_log), ("metaData", meta_data), ("stdout", stdout)):
        if value:
            param[key] = value
    command = context.store.update(job_id, job_status, param, attempt_nr, job_output_report)
    return make_envelope(True, data={"StatusCode": SC_SUCCESS, "command": command})


@REGISTRY.method("pilot", secure=True, production=True, http_method="POST")
def update_jobs_bulk(context: Context, request: Request, job_list: list, harvester_id: str | None = None) -> dict:
    """``pilot_api.py: update_jobs_bulk``: ``update_job`` for each entry; ``data`` lists their envelopes."""
    endpoint = REGISTRY.find("pilot", "update_job")
    assert endpoint is not None
    replies = []
    try:
        for entry in job_list:
            params = dict(entry)
            job_id = params.pop("job_id")
            job_status = params.pop("job_status")
            if "meta_data" in params:
                params["meta_data"] = str(params["meta_data"])
            replies.append(invoke(endpoint, context, request, {"job_id": job_id, "job_status": job_status, **params}))
    except (KeyError, TypeError, ValueError) as exc:
        return make_envelope(False, f"failed with {type(exc).__name__} {exc}", [])
    return make_envelope(True, "", replies)


@REGISTRY.method("job", secure=True, http_method="POST")
def submit(context: Context, request: Request, jobs: str) -> dict[str, Any]:
    """``job_api.py: submit``: store a JSON list of job specs; ``data`` is ``[[PandaID, jobDefinitionID,
    jobName], ...]``."""
    assert request.identity is not None
    user = request.identity.dn
    try:
        specs = load_jobs_json(jobs)[:MAX_SUBMITTED_JOBS]
    except JobSpecError as exc:
        return make_envelope(False, f"Failed to deserialize jobs: {exc}")
    if not specs:
        return make_envelope(False, "No jobs were submitted")
    for spec in specs:
        label = spec["prodSourceLabel"]
        if label in ["managed"] and not request.identity.production:
            return make_envelope(False, f"{user} is missing production for prodSourceLabel={label} submission")
    return make_envelope(True, data=context.store.submit(specs, user))


@REGISTRY.method("job", secure=True, http_method="POST")
def kill(
    context: Context,
    request: Request,
    job_ids: list[int],
    code: int | None = None,
    use_email_as_id: bool = False,
    kill_options: list[str] | None = None,
) -> dict[str, Any]:
    """``job_api.py: kill``: ``data`` holds one bool per id, true when the job was killed or told to stop."""
    assert request.identity is not None
    results = context.store.kill(job_ids, request.identity.dn, request.identity.production, code)
    return make_envelope(True, data=results)


@REGISTRY.method("statistics", secure=False, http_method="GET")
def active_job_stats_by_site(context: Context, request: Request) -> dict[str, Any]:
    """``statistics_api.py``: site -> state -> count; an empty result is reported as a failure, as there."""
    data = context.store.stats_by_site()
    success = data != {}
    return make_envelope(success, "" if success else MESSAGE_NO_STATS, data)


@REGISTRY.method("statistics", secure=False, http_method="GET")
def active_job_detailed_stats_by_site(context: Context, request: Request) -> dict[str, Any]:
    """``statistics_api.py``: site -> resource type -> prodSourceLabel -> state -> count."""
    data = context.store.detailed_stats_by_site()
    success = data != {}
    return make_envelope(success, "" if success else MESSAGE_NO_DETAILED_STATS, data)


def _non_negative(value: Any) -> int:
    """``pilot_api.py`` turns ``memory``, ``disk_space`` and ``remaining_time`` into ints >= 0."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0
