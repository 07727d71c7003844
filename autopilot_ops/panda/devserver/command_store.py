"""Commands to pilot factories and workload-provisioning slots.

Follows ``pandaserver/taskbuffer/db_proxy_mods/worker_module.py``: ``commandToHarvester`` (a new command
replaces the instance's earlier one of the same name), ``getCommands`` (the oldest ``new`` commands, which
become ``retrieved``), ``ackCommands`` (``acknowledged``), ``sweepPQ`` (``KILL_WORKERS`` for the instance
named in the queue's ``harvester`` field) and ``setNumSlotsForWP`` (``harvester_slots``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from autopilot_ops.panda.devserver.columns import ColumnError, integer, utc_iso
from autopilot_ops.panda.devserver.database import Database
from autopilot_ops.panda.devserver.schedconfig import QueueConfigs

COMMAND_KILL_WORKERS = "KILL_WORKERS"
#: ``pilotStreaming.py``: the command carrying a queue's new worker numbers.
COMMAND_SET_N_WORKERS = "SET_N_WORKERS_JOBTYPE:{queue}"
#: ``sweepPQ``'s replies other than ``"OK"``.
MESSAGE_NO_QUEUE_CONFIG = "Error retrieving queue configuration from DB"
MESSAGE_NO_HARVESTER = "Queue not served by any harvester ID"
MESSAGE_SWEEP_PROBLEM = "Problem generating command. Check PanDA server logs"
#: ``setNumSlotsForWP``'s failure (lower-case "panda", unlike ``MESSAGE_DATABASE``).
MESSAGE_SLOTS_DATABASE = "database error in the panda server"


class CommandStore:
    """``harvester_commands`` and ``harvester_slots``; safe to call from many threads at once."""

    def __init__(self, database: Database, queues: QueueConfigs, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.queues = queues
        self._clock = clock

    def command_to_harvester(
        self,
        harvester_id: str,
        command: str,
        params: Any = None,
        *,
        ack_requested: bool = False,
        status: str = "new",
        lock_interval: float | None = None,
        command_interval: float | None = None,
    ) -> int | None:
        """``commandToHarvester``: the new command's id, or ``None`` when an earlier one of the same name is
        kept (still new/locked/retrieved within ``lock_interval`` minutes, or retrieved/acknowledged within
        ``command_interval`` minutes)."""
        now = self._clock()
        with self.database.transaction() as cursor:
            existing = cursor.execute(
                "SELECT status, status_date FROM harvester_commands WHERE harvester_id = ? AND command = ?",
                (harvester_id, command),
            ).fetchone()
            if existing is not None:
                state, since = existing["status"], existing["status_date"]
                if lock_interval is not None and state in ("new", "lock", "retrieved") and (
                    since > now - lock_interval * 60
                ):
                    return None
                if command_interval is not None and state in ("retrieved", "acknowledged") and (
                    since > now - command_interval * 60
                ):
                    return None
                cursor.execute(
                    "DELETE FROM harvester_commands WHERE harvester_id = ? AND command = ?", (harvester_id, command)
                )
            row = cursor.execute(
                "INSERT INTO harvester_commands (command, harvester_id, ack_requested, creation_date, status,"
                " status_date, params) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING command_id",
                (command, harvester_id, 1 if ack_requested else 0, now, status, now,
                 None if params is None else json.dumps(params)),
            ).fetchone()
        assert row is not None
        return row["command_id"]

    def sweep(
        self, panda_queue: str, statuses: Sequence[str], computing_elements: Sequence[str], hosts: Sequence[str]
    ) -> str:
        """``sweepPQ``: ``"OK"`` once ``KILL_WORKERS`` is written, else the reason. CEs the queue does not list
        (``queues[].ce_endpoint``) are dropped from the filter."""
        config = self.queues.get(panda_queue)
        if not config:
            return MESSAGE_NO_QUEUE_CONFIG
        try:
            harvester_id = config["harvester"]
            if not harvester_id:
                return MESSAGE_NO_HARVESTER
            known = [str(ce["ce_endpoint"]) for ce in config["queues"]]
        except (KeyError, TypeError):
            return MESSAGE_SWEEP_PROBLEM
        params = {
            "status": list(statuses),
            "computingSite": [panda_queue],
            "computingElement": [ce for ce in computing_elements if ce in known],
            "submissionHost": list(hosts),
        }
        self.command_to_harvester(harvester_id, COMMAND_KILL_WORKERS, params)
        return "OK"

    def get_commands(self, harvester_id: str, n_commands: int) -> list[dict[str, Any]]:
        """``getCommands``: up to ``n_commands`` new commands, oldest first; they become ``retrieved``."""
        now = self._clock()
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                "SELECT command_id, command, params, ack_requested, creation_date FROM harvester_commands"
                " WHERE harvester_id = ? AND status = 'new' ORDER BY creation_date, command_id LIMIT ?",
                (harvester_id, max(0, n_commands)),
            ).fetchall()
            if rows:
                marks = ",".join("?" * len(rows))
                cursor.execute(
                    "UPDATE harvester_commands SET status = 'retrieved', status_date = ?"
                    f" WHERE command_id IN ({marks})",
                    (now, *(row["command_id"] for row in rows)),
                )
        return [
            {
                "command_id": row["command_id"],
                "command": row["command"],
                "params": None if row["params"] is None else json.loads(row["params"]),
                "ack_requested": row["ack_requested"],
                "creation_date": utc_iso(row["creation_date"]),
            }
            for row in rows
        ]

    def ack_commands(self, command_ids: Sequence[Any]) -> bool:
        """``ackCommands``: the commands become ``acknowledged``; an empty list is an SQL error there
        (``IN ()``), so it fails here too."""
        try:
            ids = [integer(command_id) for command_id in command_ids]
        except ColumnError:
            return False
        if not ids:
            return False
        marks = ",".join("?" * len(ids))
        with self.database.transaction() as cursor:
            cursor.execute(
                f"UPDATE harvester_commands SET status = 'acknowledged', status_date = ? WHERE command_id IN ({marks})",
                (self._clock(), *ids),
            )
        return True

    def set_num_slots(
        self, panda_queue: str, slots: int, gshare: str | None, resource_type: str | None, valid_days: Any
    ) -> tuple[int, str]:
        """``setNumSlotsForWP``: set (or with ``-1`` remove) the slots of a queue, share and resource type."""
        now = self._clock()
        try:
            expiration = None if valid_days is None or slots == -1 else now + int(valid_days) * 86400
        except (TypeError, ValueError):
            return 1, MESSAGE_SLOTS_DATABASE
        where = "panda_queue = ? AND gshare IS ? AND resource_type IS ?"
        key = (panda_queue, gshare, resource_type)
        with self.database.transaction() as cursor:
            existing = cursor.execute(f"SELECT 1 FROM harvester_slots WHERE {where}", key).fetchone()
            if slots == -1:
                cursor.execute(f"DELETE FROM harvester_slots WHERE {where}", key)
            elif existing is None:
                cursor.execute(
                    "INSERT INTO harvester_slots (panda_queue, gshare, resource_type, num_slots, modification_time,"
                    " expiration_time) VALUES (?, ?, ?, ?, ?, ?)",
                    (*key, slots, now, expiration),
                )
            else:
                cursor.execute(
                    "UPDATE harvester_slots SET num_slots = ?, modification_time = ?, expiration_time = ?"
                    f" WHERE {where}",
                    (slots, now, expiration, *key),
                )
        return 0, f"set numSlots={slots} for PQ={panda_queue} gshare={gshare} resource={resource_type}"

    # -- inspection (tests) -----------------------------------------------------------------------------
    def commands(self, harvester_id: str | None = None) -> list[dict[str, Any]]:
        """Every command, oldest first, with its status and dates."""
        where, args = ("WHERE harvester_id = ?", (harvester_id,)) if harvester_id is not None else ("", ())
        with self.database.transaction() as cursor:
            rows = cursor.execute(f"SELECT * FROM harvester_commands {where} ORDER BY command_id", args).fetchall()
        return [
            {
                "command_id": row["command_id"],
                "harvester_id": row["harvester_id"],
                "command": row["command"],
                "params": None if row["params"] is None else json.loads(row["params"]),
                "ack_requested": row["ack_requested"],
                "status": row["status"],
                "creation_date": utc_iso(row["creation_date"]),
                "status_date": utc_iso(row["status_date"]),
            }
            for row in rows
        ]

    def slots(self) -> list[dict[str, Any]]:
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                "SELECT * FROM harvester_slots ORDER BY panda_queue, gshare, resource_type"
            ).fetchall()
        return [
            {
                "panda_queue": row["panda_queue"],
                "gshare": row["gshare"],
                "resource_type": row["resource_type"],
                "num_slots": row["num_slots"],
                "expiration_time": None if row["expiration_time"] is None else utc_iso(row["expiration_time"]),
            }
            for row in rows
        ]
