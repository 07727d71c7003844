"""AutoPilot as a pilot factory: every pilot is a PanDA worker, reported in bulk with its changes only.

A worker dict carries the fields of HSF/harvester ``pandaharvester/harvestercore/work_spec.py:
convert_to_propagate``, which ``pandaserver/taskbuffer/db_proxy_mods/worker_module.py: updateWorkers`` stores.
Our pilots pull their jobs, so every worker is sent with ``syncLevel`` 1, as Harvester does for pull-mode queues
(``harvestercore/queue_config_mapper.py: get_synchronization_level``): a final worker whose job PanDA still sees
running makes PanDA fail that job at once, instead of after its lost-heartbeat timeout.

Pilot state -> PanDA worker state (as Harvester's ``htcondor_monitor.py`` and ``slurm_monitor.py`` map batch
states): ``submitted``, ``queued`` -> ``submitted``; ``held`` -> ``idle`` once it had started, else
``submitted``; ``running`` -> ``running``; ``finished``, ``failed``, ``cancelled``, ``missed`` -> the same.

Reporting never holds a cycle up: one try per call with a short timeout, at most ``max_workers`` per run, and the
first failure ends the run. What PanDA did not accept stays unreported in PostgreSQL (``pilots.
worker_reported_state``) and goes with the next run, so an outage drops nothing and an accepted state is not
sent again; live workers are sent again every 30 min.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from autopilot_ops.errors import describe_error
from autopilot_ops.panda.errors import PandaError
from autopilot_ops.panda.factory import WORKERS_PER_CALL, FactoryClient, panda_time
from autopilot_ops.store.connection import Store
from autopilot_ops.store.workers import mark_reported, unreported_workers

log = logging.getLogger(__name__)

#: Pilot state -> PanDA worker state (``held`` also depends on whether the pilot had started).
WORKER_STATES = {
    "submitted": "submitted",
    "queued": "submitted",
    "held": "submitted",
    "running": "running",
    "finished": "finished",
    "failed": "failed",
    "cancelled": "cancelled",
    "missed": "missed",
}
#: Our pull-mode pilots: see the module's docstring.
SYNC_LEVEL = 1
#: Worker changes one run sends at most (100 calls of 100).
MAX_WORKERS_PER_RUN = 10_000


@dataclass
class WorkerReport:
    """What one reporting run did."""

    sent: int = 0
    accepted: int = 0
    calls: int = 0
    error: str | None = None


def worker_state(state: str, started: bool) -> str:
    """The PanDA worker state of a pilot in ``state``."""
    if state == "held" and started:
        return "idle"
    return WORKER_STATES[state]


def resource_type(corecount: int | None) -> str:
    """PanDA's basic resource type of a queue's pilots: ``SCORE`` for one core, ``MCORE`` for more."""
    return "MCORE" if (corecount or 1) > 1 else "SCORE"


def job_type(prod_source_labels: Sequence[str] | None) -> str:
    """The job type a queue's pilots ask for: its first served label (``managed`` by default)."""
    return (list(prod_source_labels or []) or ["managed"])[0]


def submission_host(parameters: Mapping[str, Any] | None) -> str:
    """Where the back end submits: its ``submit_host``, ``schedd`` or ``pool`` parameter, else this host."""
    parameters = parameters or {}
    for key in ("submit_host", "schedd", "pool"):
        if parameters.get(key):
            return str(parameters[key])
    return socket.gethostname()


def computing_element(row: Mapping[str, Any]) -> str:
    """The CE a pilot went to: the queue's or back end's ``ce`` parameter, the queue's first CRIC CE, or the
    submission host (a local batch system is its own CE)."""
    for parameters in (row.get("queue_parameters") or {}, row.get("backend_parameters") or {}):
        if parameters.get("ce"):
            return str(parameters["ce"])
    ces = (row.get("attributes") or {}).get("queues") or []
    if ces and isinstance(ces[0], dict) and ces[0].get("ce_endpoint"):
        return str(ces[0]["ce_endpoint"])
    return submission_host(row.get("backend_parameters"))


def log_url(monitor_url: str | None, log_root: Path | None, path: str | None) -> str | None:
    """The monitor's URL of a pilot's log file under ``log_root``; ``None`` without a monitor URL."""
    if not monitor_url or log_root is None or not path:
        return None
    try:
        relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(log_root))
    except ValueError:
        return None
    return f"{monitor_url.rstrip('/')}/logs/{quote(relative.as_posix())}"


def worker_dict(
    row: Mapping[str, Any], harvester_host: str, monitor_url: str | None = None, log_root: Path | None = None
) -> dict[str, Any]:
    """The worker dict of one pilot row (:func:`~autopilot_ops.store.workers.unreported_workers`)."""
    state = row["state"]
    worker: dict[str, Any] = {
        "workerID": row["id"],
        "batchID": row["batch_id"],
        "queueName": row["queue"],
        "computingSite": row["queue"],
        "status": worker_state(state, row["started_at"] is not None),
        "nativeStatus": state,
        "nCore": row["corecount"] or 1,
        "submitTime": panda_time(row["submitted_at"]),
        "jobType": job_type(row["prod_source_labels"]),
        "resourceType": resource_type(row["corecount"]),
        "computingElement": computing_element(row),
        "submissionHost": submission_host(row.get("backend_parameters")),
        "harvesterHost": harvester_host,
        "syncLevel": SYNC_LEVEL,
        "pandaid_list": [],
    }
    if row["maxrss"]:
        worker["minRamCount"] = row["maxrss"]
    if row["started_at"] is not None:
        worker["startTime"] = panda_time(row["started_at"])
    if row["ended_at"] is not None:
        worker["endTime"] = panda_time(row["ended_at"])
    if row["exit_code"] is not None:
        worker["nativeExitCode"] = row["exit_code"]
        if row["exit_code"] != 0:
            worker["errorCode"] = row["exit_code"]
    if row["state_reason"]:
        worker["diagMessage"] = str(row["state_reason"])[:500]
    for key, path in (("stdOut", row["stdout_path"]), ("stdErr", row["stderr_path"])):
        url = log_url(monitor_url, log_root, path)
        if url is not None:
            worker[key] = url
    if "stdErr" in worker:
        worker["batchLog"] = worker["stdErr"]
    return worker


def report_workers(
    store: Store,
    factory: FactoryClient,
    queues: Sequence[str],
    now: dt.datetime,
    *,
    monitor_url: str | None = None,
    log_root: Path | None = None,
    max_workers: int = MAX_WORKERS_PER_RUN,
) -> WorkerReport:
    """Send the unreported changes of ``queues``' pilots, 100 per call, and mark what PanDA accepted."""
    report = WorkerReport()
    if not queues:
        return report
    with store.transaction() as cur:
        rows = unreported_workers(cur, queues, now, max_workers)
    host = socket.gethostname()
    for start in range(0, len(rows), WORKERS_PER_CALL):
        chunk = rows[start : start + WORKERS_PER_CALL]
        try:
            results = factory.update_workers([worker_dict(row, host, monitor_url, log_root) for row in chunk])
        except PandaError as exc:  # the rest waits for the next run
            report.error = describe_error(exc)
            log.warning("worker report to PanDA stopped after %d workers: %s", report.sent, exc)
            break
        report.calls += 1
        report.sent += len(chunk)
        accepted = [(row["id"], row["state"]) for row, ok in zip(chunk, results) if ok]
        report.accepted += len(accepted)
        with store.transaction() as cur:
            mark_reported(cur, accepted, now)
    return report
