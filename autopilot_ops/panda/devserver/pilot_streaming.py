"""Pilot streaming: how many workers a factory should submit to a unified pilot-streaming queue.

``PilotStreaming.run`` is one step of PanDA's daemon (``pandaserver/daemons/scripts/pilotStreaming.py``): for
each queue with ``capability`` ucore and ``workflow`` pull_ups that has worker statistics of the last hour, it
computes the new workers per job type and resource type and writes them as the command
``SET_N_WORKERS_JOBTYPE:<queue>`` (params ``{"managed": {"SCORE": 3}}``) to the instance named in the queue's
``harvester`` field. ``new_worker_distribution`` is ``worker_module.py: ups_new_worker_distribution``:

- running cores = the instance's running workers x cores of their resource type (the queue's ``corecount`` for
  a multi-core type, else 1), at least ``params.ups_core_target`` for an online/brokeroff queue; queued
  workers = submitted + ready, per resource type, and their cores;
- cores to submit = max(max(int(0.4 x running cores), 75 x corecount) - queued cores, 5 x corecount);
- the queue's activated jobs, highest ``currentPriority`` first, each take one queued worker of their resource
  type; once none is left, each takes the cores to submit down, until they are used up; jobs of a type at its
  ``uconfig.resource_type_limits`` (workers, or cores for ``HIMEM``) are skipped, and when the workers' mean
  memory is over the queue's ``meanrss`` only the types under it count (``get_average_memory_workers``);
- a type whose queued count went below zero gets that many workers plus one, any other 0; when no type gets
  any, the command asks for one ``SCORE`` worker (``{"managed": {"SCORE": 1}}``) so the queue stays alive.

The dev server has no global shares: all activated jobs form one share. It has no ``IGNORE_MEANRSS`` setting.
The real daemon runs every 300 s (``panda_server.cfg``: ``pilotStreaming``); ``PilotStreamingThread`` does so
on the configured period.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from autopilot_ops.panda.devserver.command_store import COMMAND_SET_N_WORKERS, CommandStore
from autopilot_ops.panda.devserver.factory_store import DEFAULT_JOB_TYPE, UPS_STATS_WINDOW_S, FactoryStore
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.panda.devserver.schedconfig import (
    BASIC_RESOURCE_TYPE,
    QueueConfigs,
    cores_of,
    is_high_memory,
    resource_type,
    under_memory,
)

log = logging.getLogger("autopilot.panda.devserver")

#: ``pandaserver/templates/panda_server.cfg.rpmnew.template``: the daemon's period.
DEFAULT_PERIOD_S = 300.0
HIMEM = "HIMEM"
_RUNNING_OR_QUEUED = ("running", "submitted", "to_submit")

NewWorkers = dict[str, dict[str, dict[str, int]]]


def new_worker_distribution(
    config: Mapping[str, Any],
    worker_stats: Mapping[str, Any],
    activated: Callable[[Sequence[str] | None], list[str]],
    average_memory: Callable[[str], tuple[float, float]],
) -> NewWorkers:
    """``ups_new_worker_distribution``: ``{harvester_id: {job_type: {resource_type: n}}}``, or ``{}`` when the
    queue names no instance or the named one reported nothing. ``worker_stats`` is
    ``{harvester_id: {job_type: {resource_type: {status: n}}}}``; ``activated(types)`` lists the resource type
    of each activated job (only ``types`` when given), by priority; ``average_memory(harvester_id)`` is the mean
    memory per core of running-or-queued and of running workers."""
    limits = dict(_get(config, "uconfig", "resource_type_limits") or {})
    memory_target = config.get("meanrss") or None
    cores_queue = config.get("corecount") or 1
    harvester_id = config.get("harvester")
    if not harvester_id or harvester_id not in worker_stats:
        return {}
    allowed: list[str] = []
    if memory_target and memory_target < max(average_memory(harvester_id)):
        allowed = under_memory(memory_target)
    queued: dict[str, dict[str, int]] = {}
    cores_running = cores_queued = 0
    for job_type, by_resource in worker_stats[harvester_id].items():
        queued.setdefault(job_type, {})
        for name, by_status in by_resource.items():
            factor = cores_of(name, cores_queue)
            if "running" in by_status:
                cores_running += by_status["running"] * factor
                if name in limits:
                    limits[name] -= by_status["running"]
                if is_high_memory(name) and HIMEM in limits:
                    limits[HIMEM] -= by_status["running"] * factor
            for state in ("submitted", "ready"):
                queued[job_type].setdefault(name, 0)
                if state in by_status:
                    queued[job_type][name] += by_status[state]
                    cores_queued += by_status[state] * factor
    if config.get("status") in ("online", "brokeroff"):
        cores_running = max(cores_running, _get(config, "params", "ups_core_target") or 0)
    cores_target = max(int(cores_running * 0.4), 75 * cores_queue)
    cores_to_submit = max(cores_target - cores_queued, 5 * cores_queue)
    for name in activated(allowed or None):
        if name in limits and limits[name] <= 0:
            continue
        if is_high_memory(name) and HIMEM in limits and limits[HIMEM] <= 0:
            continue
        by_type = queued.setdefault(DEFAULT_JOB_TYPE, {})
        by_type[name] = by_type.get(name, 0) - 1
        if by_type[name] <= 0:
            cores_to_submit -= cores_of(name, cores_queue)
        if cores_to_submit <= 0:
            break
    new_workers = {
        job_type: {name: 0 if count >= 0 else 1 - count for name, count in by_type.items()}
        for job_type, by_type in queued.items()
    }
    if not any(n > 0 for by_type in new_workers.values() for n in by_type.values()):
        new_workers[DEFAULT_JOB_TYPE] = {BASIC_RESOURCE_TYPE: 1}
    return {harvester_id: new_workers}


def average_memory(rows: Sequence[Mapping[str, Any]], config: Mapping[str, Any], statuses: Sequence[str]) -> float:
    """``get_average_memory_workers``' SQL: memory of the workers in ``statuses`` over their cores, per row
    ``n x cores x MB per core`` from the resource type, else from the queue's ``maxrss`` (per core when its
    ``catchall`` says ``per_core_attr``); rows of unknown types drop out (a JOIN); integers divide as in SQL."""
    corecount = config.get("corecount")
    maxrss = config.get("maxrss")
    per_core = "per_core_attr" in (config.get("catchall") or "")
    total: float | None = None
    cores = 0
    try:
        for row in rows:
            found, n_workers = resource_type(row["resource_type"]), row["n_workers"]
            if found is None or row["status"] not in statuses or n_workers is None:
                continue
            n_cores = found.maxcore if found.maxcore is not None else (1 if corecount is None else corecount)
            cores += n_workers * n_cores
            if found.maxrampercore is not None:
                per_core_ram = found.maxrampercore
            elif maxrss is None:
                continue  # a NULL memory, which SUM skips
            else:
                per_core_ram = maxrss if per_core else _divide(maxrss, 1 if corecount is None else corecount)
            total = (total or 0) + n_workers * n_cores * per_core_ram
    except ZeroDivisionError:
        return 0
    return 0 if total is None or cores == 0 else _divide(total, cores)


class PilotStreaming:
    """One run of the pilot-streaming step over all unified pilot-streaming queues."""

    def __init__(self, store: JobStore, factory: FactoryStore, commands: CommandStore, queues: QueueConfigs) -> None:
        self.store = store
        self.factory = factory
        self.commands = commands
        self.queues = queues

    def run(self) -> dict[str, NewWorkers]:
        """Write the commands; returns ``{queue: {harvester_id: params}}`` for the queues it wrote for."""
        stats = self.factory.ups_worker_stats()
        written: dict[str, NewWorkers] = {}
        for queue, config in self.queues.ups_queues().items():
            if queue not in stats:
                continue
            try:
                result = new_worker_distribution(
                    config,
                    stats[queue],
                    partial(self.store.activated_resource_types, queue),
                    partial(self._average_memory, queue, config),
                )
            except Exception:  # the daemon logs a queue's failure and goes on with the next
                log.exception("pilot streaming for %s failed", queue)
                continue
            for harvester_id, params in result.items():
                self.commands.command_to_harvester(harvester_id, COMMAND_SET_N_WORKERS.format(queue=queue), params)
            if result:
                written[queue] = result
        return written

    def _average_memory(self, queue: str, config: Mapping[str, Any], harvester_id: str) -> tuple[float, float]:
        since = self.store.clock() - UPS_STATS_WINDOW_S
        since -= since % 60  # the real query truncates its limit to the minute
        rows = self.factory.stats_rows(queue, harvester_id, since)
        return average_memory(rows, config, _RUNNING_OR_QUEUED), average_memory(rows, config, ("running",))


class PilotStreamingThread(threading.Thread):
    """Runs ``PilotStreaming`` every ``period`` seconds, the first time one period after ``start``."""

    def __init__(self, step: PilotStreaming, period: float) -> None:
        super().__init__(name="panda-devserver-pilot-streaming", daemon=True)
        if period <= 0:
            raise ValueError(f"pilot streaming period must be positive, got {period}")
        self.step = step
        self.period = period
        self._stop_requested = threading.Event()

    def run(self) -> None:
        while not self._stop_requested.wait(self.period):
            try:
                written = self.step.run()
            except Exception:
                log.exception("pilot streaming failed")
                continue
            for queue, result in written.items():
                log.info("pilot streaming for %s: %s", queue, result)

    def stop(self) -> None:
        self._stop_requested.set()
        if self.is_alive():
            self.join()


def _get(config: Mapping[str, Any], outer: str, inner: str) -> Any:
    """``config[outer][inner]``, ``None`` when either is missing (the real code's ``except KeyError``)."""
    section = config.get(outer)
    return section.get(inner) if isinstance(section, Mapping) else None


def _divide(numerator: float, denominator: float) -> float:
    """SQL division: integer by integer truncates."""
    if isinstance(numerator, int) and isinstance(denominator, int):
        return numerator // denominator
    return numerator / denominator
