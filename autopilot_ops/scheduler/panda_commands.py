"""PanDA steers AutoPilot: acquire the factory's commands, apply each once, then acknowledge it.

The commands and what becomes of them (HSF/harvester ``harvestercore/command_spec.py``; the server writes
them in ``pandaserver/daemons/scripts/pilotStreaming.py`` and ``taskbuffer/db_proxy_mods/worker_module.py:
sweepPQ``):

- ``SET_N_WORKERS_JOBTYPE:<queue>`` with ``{job type: {resource type: n}}``: PanDA's numbers of new workers,
  replacing the queue's earlier ones as Harvester's ``db_proxy.py: set_queue_limit`` does, until they expire
  (3 of the server's 5-minute pilot-streaming periods). The policy applies them as the queue's
  ``panda_workers`` setting says (target, cap or ignore), with a line of the reason trace.
- ``KILL_WORKERS`` with ``status``, ``computingSite``, ``computingElement``, ``submissionHost``: kill requests
  for the live pilots that match every list (as Harvester's ``db_proxy.py: mark_workers_to_kill_by_query``,
  with ``"ALL"`` matching anything). Unlike Harvester, an empty list also matches anything: the v1
  ``add_sweep_command`` takes lists only, so ``"ALL"`` cannot be sent, and there an empty CE list means "any".
- ``SYNC_WORKERS_KILL`` with a list of worker ids: kill requests for those live pilots
  (``mark_workers_to_kill_by_workerids``).
- Any other command is acknowledged and logged as ignored.

A command is stored when received and acknowledged only once applied; applying it is one transaction that
also marks it applied, so a command given twice, or seen by two schedulers, has its effect once. An
acknowledgement lost in an outage is sent again by the next cycle.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from autopilot_ops.errors import describe_error
from autopilot_ops.panda.errors import PandaError
from autopilot_ops.panda.factory import Command, FactoryClient
from autopilot_ops.scheduler.worker_reports import computing_element, submission_host, worker_state
from autopilot_ops.store.connection import Store
from autopilot_ops.store.controls import request_kill_of
from autopilot_ops.store.events import record_event
from autopilot_ops.store.panda_commands import (
    lock_unapplied,
    mark_acknowledged,
    mark_applied,
    record_received,
    replace_worker_targets,
    unacknowledged,
)
from autopilot_ops.store.workers import live_workers

log = logging.getLogger(__name__)

SET_N_WORKERS = "SET_N_WORKERS_JOBTYPE"
KILL_WORKERS = "KILL_WORKERS"
SYNC_WORKERS_KILL = "SYNC_WORKERS_KILL"
#: PanDA's numbers hold this long: the server's pilot-streaming step writes them every 5 min.
TARGET_LIFETIME_S = 900
#: Commands taken in one call (Harvester's ``commandmanager.commands_bulk_size`` is of this size).
COMMANDS_PER_CALL = 20


@dataclass
class CommandReport:
    """What one round of commands did: outcome per command id, acknowledgements sent, or why it stopped."""

    outcomes: dict[int, str] = field(default_factory=dict)
    acknowledged: list[int] = field(default_factory=list)
    error: str | None = None


def take_commands(store: Store, factory: FactoryClient, who: str, now: dt.datetime) -> CommandReport:
    """Acquire new commands, apply each once, and acknowledge what has been applied (earlier ones included)."""
    report = CommandReport()
    harvester_id = factory.harvester_id
    try:
        commands = factory.acquire_commands(COMMANDS_PER_CALL)
    except PandaError as exc:  # no command this cycle; what was applied is still acknowledged below
        report.error = describe_error(exc)
        log.warning("PanDA commands for %s not acquired: %s", harvester_id, exc)
        commands = []
    with store.transaction() as cur:
        to_apply = set(record_received(cur, harvester_id, commands))
    for command in commands:
        if command.command_id in to_apply:
            outcome = apply_command(store, harvester_id, command, who, now)
            if outcome is not None:
                report.outcomes[command.command_id] = outcome
    with store.transaction() as cur:
        pending = unacknowledged(cur, harvester_id)
    if not pending:
        return report
    try:
        factory.acknowledge_commands(pending)
    except PandaError as exc:  # acknowledged by the next cycle
        report.error = report.error or describe_error(exc)
        log.warning("PanDA commands %s not acknowledged: %s", pending, exc)
        return report
    with store.transaction() as cur:
        mark_acknowledged(cur, harvester_id, pending, now)
    report.acknowledged = pending
    return report


def apply_command(store: Store, harvester_id: str, command: Command, who: str, now: dt.datetime) -> str | None:
    """Carry out one command and mark it applied, in one transaction; its outcome, or ``None`` if it had been
    applied already."""
    with store.transaction() as cur:
        if not lock_unapplied(cur, harvester_id, command.command_id):
            return None
        try:
            outcome = _carry_out(cur, command, who, now)
        except (TypeError, ValueError, AttributeError) as exc:  # malformed params: acknowledged, not obeyed
            outcome = f"ignored: params {command.params!r} are malformed ({exc})"
        mark_applied(cur, harvester_id, command.command_id, outcome, now)
        record_event(
            cur,
            who,
            "panda-command",
            queue=command.target,
            details={"command_id": command.command_id, "command": command.command, "outcome": outcome},
        )
    log.info("PanDA command %d %s: %s", command.command_id, command.command, outcome)
    return outcome


def _carry_out(cur: Any, command: Command, who: str, now: dt.datetime) -> str:
    if command.name == SET_N_WORKERS and command.target:
        return _set_n_workers(cur, command, now)
    if command.name == KILL_WORKERS:
        return _kill_matching(cur, command, who)
    if command.name == SYNC_WORKERS_KILL:
        ids = [int(i) for i in _as_list(command.params)]
        pilots = live_workers(cur, ids=ids)
        request_kill_of(cur, pilots, who, f"PanDA command {command.command_id} {SYNC_WORKERS_KILL}")
        return f"kill requested for {len(pilots)} of {len(ids)} workers"
    return "ignored: unknown command"


def _set_n_workers(cur: Any, command: Command, now: dt.datetime) -> str:
    queue = command.target
    assert queue is not None
    cur.execute("SELECT 1 FROM schedconfig WHERE panda_queue = %s", (queue,))
    if cur.fetchone() is None:
        return f"ignored: queue {queue} is not served here"
    params = command.params
    if not isinstance(params, Mapping) or not all(isinstance(v, Mapping) for v in params.values()):
        raise ValueError("expected {job type: {resource type: n}}")
    expires = now + dt.timedelta(seconds=TARGET_LIFETIME_S)
    targets = replace_worker_targets(cur, queue, params, command.command_id, now, expires)
    shown = ", ".join(f"{t.job_type}/{t.resource_type}={t.n_workers}" for t in targets) or "none"
    return f"new workers for {queue}: {shown} until {expires.isoformat(timespec='seconds')}"


def _kill_matching(cur: Any, command: Command, who: str) -> str:
    params = command.params if isinstance(command.params, Mapping) else {}
    wanted = {key: _as_list(params.get(key, "ALL")) for key in ("status", "computingSite", "computingElement",
                                                                  "submissionHost")}
    sites = wanted["computingSite"]
    pilots = [
        row
        for row in live_workers(cur, queues=sites or None)
        if _matches(wanted["status"], worker_state(row["state"], row["started_at"] is not None))
        and _matches(wanted["computingElement"], computing_element(row))
        and _matches(wanted["submissionHost"], submission_host(row.get("backend_parameters")))
    ]
    request_kill_of(cur, pilots, who, f"PanDA command {command.command_id} {KILL_WORKERS}")
    return f"kill requested for {len(pilots)} workers"


def _as_list(value: Any) -> list[Any]:
    """A command's list parameter: ``"ALL"`` (or nothing) as the empty list, which matches anything."""
    if value is None or value == "ALL":
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{value!r} is not a list")
    return list(value)


def _matches(allowed: Sequence[Any], value: str) -> bool:
    return not allowed or value in allowed
