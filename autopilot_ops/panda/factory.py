"""The pilot-factory calls of PanDA 1.0 (``/api/v1/harvester/*``), made as Harvester makes them.

Follows PanDAWMS/panda-server ``pandaserver/api/v1/harvester_api.py`` (names, parameters and types: ``workers``
a list, ``statistics`` a JSON *string*, ``command_ids`` a list) and the factory side in HSF/harvester
``pandaharvester/harvestercommunicator/panda_communicator.py`` (``is_alive``, ``update_workers``,
``update_worker_stats``, ``get_commands``, ``ack_commands``). Times go as Harvester's ``convert_to_propagate``
sends them: ``"datetime/%Y-%m-%d %H:%M:%S.%f"`` (UTC, naive).

``acquire_commands`` is not idempotent: the server marks what it hands out ``retrieved``, so it is not sent
again once it may have arrived (a lost reply's commands stay retrieved; ``SET_N_WORKERS_JOBTYPE`` is written
anew by the server's pilot-streaming step every 5 min).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.errors import PandaRefused, PandaReplyError

#: ``harvester_api.py: heartbeat``'s failure while the server still creates the instance row (its first call).
MESSAGE_DATABASE = "database error in the PanDA server"
#: Workers in one ``update_workers`` call (Harvester's ``propagator.nWorkersInBulk`` is of this size).
WORKERS_PER_CALL = 100


def panda_time(value: dt.datetime) -> str:
    """A time as Harvester sends it (``work_spec.py: convert_to_propagate``): naive UTC, with a type prefix."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return "datetime/" + value.isoformat(" ", "microseconds")


@dataclass(frozen=True)
class Command:
    """One entry of ``acquire_commands``: ``worker_module.py: getCommands``."""

    command_id: int
    command: str
    params: Any
    ack_requested: bool
    creation_date: str

    @classmethod
    def from_reply(cls, path: str, entry: Any) -> Command:
        if not isinstance(entry, dict):
            raise PandaReplyError(path, "data[]", f"is {entry!r}, not a command dict")
        command_id, command = entry.get("command_id"), entry.get("command")
        if not isinstance(command_id, int) or isinstance(command_id, bool):
            raise PandaReplyError(path, "data[].command_id", f"is {command_id!r}, not an integer")
        if not isinstance(command, str) or not command:
            raise PandaReplyError(path, "data[].command", f"is {command!r}, not a command name")
        return cls(command_id, command, entry.get("params"), bool(entry.get("ack_requested")),
                   str(entry.get("creation_date") or ""))

    @property
    def name(self) -> str:
        """``SET_N_WORKERS_JOBTYPE`` of ``SET_N_WORKERS_JOBTYPE:<queue>``."""
        return self.command.split(":", 1)[0]

    @property
    def target(self) -> str | None:
        """The queue of ``SET_N_WORKERS_JOBTYPE:<queue>``; ``None`` for a command without one."""
        return self.command.split(":", 1)[1] if ":" in self.command else None


class FactoryClient:
    """The calls of one pilot factory (``harvester_id``) to one PanDA server, over a :class:`PandaClient`."""

    def __init__(self, client: PandaClient, harvester_id: str) -> None:
        if not harvester_id:
            raise ValueError("a pilot factory needs a harvester id")
        self.client = client
        self.harvester_id = harvester_id

    def heartbeat(self, start_time: dt.datetime, sw_version: str, commit_stamp: str) -> bool:
        """Create or refresh the instance row; ``False`` when the server answered its database error, which
        1.0.4 does for an instance's first call while it creates the row."""
        data = {"startTime": start_time.strftime("%Y-%m-%d %H:%M:%S"), "sw_version": sw_version,
                "commit_stamp": commit_stamp}
        path, envelope = self.client.call_v1(
            "POST", "harvester", "heartbeat", body={"harvester_id": self.harvester_id, "data": data}
        )
        if envelope.success:
            return True
        if envelope.message == MESSAGE_DATABASE:
            return False
        raise PandaRefused(path, envelope.message)

    def update_workers(self, workers: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Upsert ``workers`` (worker dicts); one bool per worker. Sending one again is harmless."""
        if len(workers) > WORKERS_PER_CALL:
            raise ValueError(f"update_workers takes at most {WORKERS_PER_CALL} workers, not {len(workers)}")
        path, envelope = self.client.call_v1(
            "POST", "harvester", "update_workers", body={"harvester_id": self.harvester_id, "workers": list(workers)}
        )
        if not envelope.success:
            raise PandaRefused(path, envelope.message)
        data = envelope.data
        if not isinstance(data, list) or len(data) != len(workers):
            raise PandaReplyError(path, "data", f"is {data!r}, not one result per worker")
        return [bool(result) for result in data]

    def report_worker_statistics(self, panda_queue: str, statistics: Mapping[str, Any]) -> None:
        """``{job type: {resource type: {worker state: count}}}`` of one queue, sent as a JSON string."""
        body = {"harvester_id": self.harvester_id, "panda_queue": panda_queue, "statistics": json.dumps(statistics)}
        path, envelope = self.client.call_v1("POST", "harvester", "report_worker_statistics", body=body)
        if not envelope.success:
            raise PandaRefused(path, envelope.message)

    def acquire_commands(self, n_commands: int) -> list[Command]:
        """Up to ``n_commands`` new commands for this factory, oldest first (production role)."""
        path, envelope = self.client.call_v1(
            "POST",
            "harvester",
            "acquire_commands",
            body={"harvester_id": self.harvester_id, "n_commands": int(n_commands)},
            idempotent=False,
        )
        if not envelope.success:
            raise PandaRefused(path, envelope.message)
        if not isinstance(envelope.data, list):
            raise PandaReplyError(path, "data", f"is {envelope.data!r}, not a list of commands")
        return [Command.from_reply(path, entry) for entry in envelope.data]

    def acknowledge_commands(self, command_ids: Sequence[int]) -> None:
        """Mark commands acknowledged (production role); acknowledging twice is harmless."""
        if not command_ids:
            return
        path, envelope = self.client.call_v1(
            "POST", "harvester", "acknowledge_commands", body={"command_ids": [int(i) for i in command_ids]}
        )
        if not envelope.success:
            raise PandaRefused(path, envelope.message)
