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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from autopilot_ops.errors import describe_error
from autopilot_ops.panda.errors import PandaError
from autopilot_ops.panda.factory import WORKERS_PER_CALL, FactoryClient, panda_time
from autopilot_ops.store.connection import Store
from autopilot_ops.store.workers import mark_reported, unreported_workers, worker_contexts

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
    """The job type of a queue's pilots with no recorded label: its first served label (``managed`` by default)."""
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


class LogLinks:
    """The monitor's URLs of pilot log files under ``log_root``; none without a monitor URL."""

    def __init__(self, monitor_url: str | None, log_root: Path | None) -> None:
        self._base = f"{monitor_url.rstrip('/')}/logs/" if monitor_url and log_root is not None else None
        self._root = os.path.join(os.path.abspath(log_root), "") if log_root is not None else ""

    def url(self, path: str | None) -> str | None:
        """The URL of the log file at ``path``; ``None`` if there is no monitor or it lies outside the root."""
        if self._base is None or not path:
            return None
        absolute = os.path.abspath(path)
        if not absolute.startswith(self._root):
            return None
        return self._base + quote(absolute[len(self._root):])


def shared_worker_fields(context: Mapping[str, Any], queue: str, harvester_host: str) -> dict[str, Any]:
    """What every worker dict of one queue and back end holds (``context``: :func:`~autopilot_ops.store.
    workers.worker_contexts`)."""
    fields: dict[str, Any] = {
        "queueName": queue,
        "computingSite": queue,
        "nCore": context["corecount"] or 1,
        "jobType": job_type(context["prod_source_labels"]),
        "resourceType": resource_type(context["corecount"]),
        "computingElement": computing_element(context),
        "submissionHost": submission_host(context.get("backend_parameters")),
        "harvesterHost": harvester_host,
        "syncLevel": SYNC_LEVEL,
    }
    if context["maxrss"]:
        fields["minRamCount"] = context["maxrss"]
    return fields


def worker_dict(row: Mapping[str, Any], shared: Mapping[str, Any], links: LogLinks) -> dict[str, Any]:
    """The worker dict of one pilot row (:func:`~autopilot_ops.store.workers.unreported_workers`), with the
    ``shared`` fields of its queue and back end; its ``jobType`` is the label the pilot asks for, when known."""
    state = row["state"]
    worker: dict[str, Any] = {
        **shared,
        "workerID": row["id"],
        "batchID": row["batch_id"],
        "status": worker_state(state, row["started_at"] is not None),
        "nativeStatus": state,
        "submitTime": panda_time(row["submitted_at"]),
        "pandaid_list": [],
    }
    if row["prod_source_label"]:
        worker["jobType"] = row["prod_source_label"]
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
        url = links.url(path)
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
    """Send the unreported changes of ``queues``' pilots, 100 per call, and mark what PanDA accepted.

    While one call waits for PanDA, the accepted workers of the call before are marked and the next call's
    worker dicts are built: the calls go one after another, as Harvester's do, and the sweep's own work
    hides behind them.
    """
    report = WorkerReport()
    if not queues:
        return report
    with store.transaction() as cur:
        rows = unreported_workers(cur, queues, now, max_workers)
        contexts = worker_contexts(cur, ((row["queue"], row["backend"]) for row in rows))
    host, links = socket.gethostname(), LogLinks(monitor_url, log_root)
    shared = {pair: shared_worker_fields(context, pair[0], host) for pair, context in contexts.items()}
    chunks = [rows[start : start + WORKERS_PER_CALL] for start in range(0, len(rows), WORKERS_PER_CALL)]

    def workers_of(chunk: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [worker_dict(row, shared[row["queue"], row["backend"]], links) for row in chunk]

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="worker-report") as sender:
        pending = sender.submit(factory.update_workers, workers_of(chunks[0])) if chunks else None
        for index, chunk in enumerate(chunks):
            following = workers_of(chunks[index + 1]) if index + 1 < len(chunks) else None
            try:
                results = pending.result()
            except PandaError as exc:  # the rest waits for the next run
                report.error = describe_error(exc)
                log.warning("worker report to PanDA stopped after %d workers: %s", report.sent, exc)
                break
            if following is not None:
                pending = sender.submit(factory.update_workers, following)
            report.calls += 1
            report.sent += len(chunk)
            accepted = [(row["id"], row["state"]) for row, ok in zip(chunk, results) if ok]
            report.accepted += len(accepted)
            with store.transaction() as cur:
                mark_reported(cur, accepted, now)
    return report
