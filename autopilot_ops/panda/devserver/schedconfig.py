"""Queue configuration (PanDA's ``schedconfig_json``) and the resource types.

A queue's configuration is a JSON object, as CRIC gives it to PanDA; the dev server reads the fields the
pilot-factory calls use: ``harvester`` (the factory serving the queue), ``queues`` (its CEs, each
``{"ce_endpoint": ...}``), ``capability`` and ``workflow`` (``"ucore"`` and ``"pull_ups"`` make a unified
pilot-streaming queue), ``corecount``, ``meanrss``, ``maxrss``, ``catchall``, ``status``, ``params``
(``ups_core_target``) and ``uconfig`` (``resource_type_limits``). Followed:
``pandaserver/taskbuffer/db_proxy_mods/entity_module.py`` (``get_config_for_pq``, ``ups_get_queues``,
``load_resource_types``) and ``pandaserver/taskbuffer/ResourceSpec.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autopilot_ops.panda.devserver.database import Database

#: ``ResourceSpec.py``: a resource type above this many MB per core is high-memory.
HIMEM_THRESHOLD = 2000
#: ``ResourceSpec.py``: the resource type of a worker sent when nothing else is needed.
BASIC_RESOURCE_TYPE = "SCORE"


@dataclass(frozen=True)
class ResourceType:
    """A row of ``resource_types`` (``ResourceSpec.py``)."""

    name: str
    mincore: int | None
    maxcore: int | None
    minrampercore: int | None
    maxrampercore: int | None

    @property
    def multi_core(self) -> bool:
        return self.mincore is not None and self.mincore > 1


#: ATLAS's four resource types, and ``Undefined``, the one row the official schema inserts
#: (``panda-database: post_step_panda.sql``).
RESOURCE_TYPES: tuple[ResourceType, ...] = (
    ResourceType("SCORE", 1, 1, None, HIMEM_THRESHOLD),
    ResourceType("MCORE", 2, None, None, HIMEM_THRESHOLD),
    ResourceType("SCORE_HIMEM", 1, 1, HIMEM_THRESHOLD + 1, None),
    ResourceType("MCORE_HIMEM", 2, None, HIMEM_THRESHOLD + 1, None),
    ResourceType("Undefined", 1, None, None, None),
)
_BY_NAME = {resource_type.name: resource_type for resource_type in RESOURCE_TYPES}


def resource_type(name: str) -> ResourceType | None:
    return _BY_NAME.get(name)


def is_high_memory(name: str, threshold: float = HIMEM_THRESHOLD) -> bool:
    """``ResourceSpecMapper.is_high_memory``: an unknown name is not high-memory."""
    found = _BY_NAME.get(name)
    return found is not None and (found.maxrampercore is None or found.maxrampercore > threshold)


def cores_of(name: str, cores_queue: int) -> int:
    """``ResourceSpecMapper.translate_resourcetype_to_cores``: a multi-core type counts the queue's cores."""
    found = _BY_NAME.get(name)
    return cores_queue if found is not None and found.multi_core else 1


def under_memory(threshold: float) -> list[str]:
    """``ResourceSpecMapper.filter_out_high_memory_resourcetypes``."""
    return [item.name for item in RESOURCE_TYPES if not is_high_memory(item.name, threshold)]


class QueueConfigs:
    """Reads and writes ``schedconfig_json``: one JSON object per queue."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self._clock = clock

    def set(self, panda_queue: str, data: Mapping[str, Any]) -> None:
        """Store (or replace) a queue's configuration."""
        with self.database.transaction() as cursor:
            cursor.execute(
                "INSERT INTO schedconfig_json (panda_queue, data, last_update) VALUES (?, ?, ?)"
                " ON CONFLICT (panda_queue) DO UPDATE SET data = excluded.data, last_update = excluded.last_update",
                (panda_queue, json.dumps(dict(data)), self._clock()),
            )

    def delete(self, panda_queue: str) -> bool:
        """Remove a queue's configuration; whether there was one."""
        with self.database.transaction() as cursor:
            gone = cursor.execute(
                "DELETE FROM schedconfig_json WHERE panda_queue = ? RETURNING panda_queue", (panda_queue,)
            ).fetchall()
        return bool(gone)

    def get(self, panda_queue: str) -> dict[str, Any] | None:
        """``entity_module.py: get_config_for_pq``: ``None`` for a queue without configuration."""
        with self.database.transaction() as cursor:
            row = cursor.execute("SELECT data FROM schedconfig_json WHERE panda_queue = ?", (panda_queue,)).fetchone()
        return None if row is None else json.loads(row["data"])

    def all(self) -> dict[str, dict[str, Any]]:
        with self.database.transaction() as cursor:
            rows = cursor.execute("SELECT panda_queue, data FROM schedconfig_json ORDER BY panda_queue").fetchall()
        return {row["panda_queue"]: json.loads(row["data"]) for row in rows}

    def ups_queues(self) -> dict[str, dict[str, Any]]:
        """``entity_module.py: ups_get_queues``: the queues with ``capability`` ucore and ``workflow`` pull_ups,
        with their configuration."""
        return {
            name: data
            for name, data in self.all().items()
            if data.get("capability") == "ucore" and data.get("workflow") == "pull_ups"
        }
