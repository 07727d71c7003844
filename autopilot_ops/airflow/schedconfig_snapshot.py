"""The schedconfig snapshot file the DAG factory reads, so that parsing DAGs never queries the database.

Format (JSON)::

    {"version": 1, "generated_at": "...", "tags": {"<tag>": {"cycle_period": 60, "queues": 12,
                                                            "backend_kinds": ["local", "slurm"],
                                                            "worker_queues": {"default": ["local"],
                                                                              "slurm-host": ["slurm"]}}}}

``worker_queues`` maps each Airflow worker queue the tag's queues are routed to onto the back-end kinds of those
queues; a file without it (written before routing existed) routes every kind to ``default``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autopilot_ops.store.connection import Store
from autopilot_ops.store.queues import DEFAULT_WORKER_QUEUE, SCHEDULER_TAG_SQL, WORKER_QUEUE_SQL

SNAPSHOT_VERSION = 1


class SnapshotError(ValueError):
    """The snapshot file is missing a field or is not a snapshot; the message names the file and field."""


@dataclass(frozen=True)
class TagInfo:
    tag: str
    cycle_period: int
    queues: int
    backend_kinds: tuple[str, ...]
    #: back-end kinds by the Airflow worker queue their queues' cycle task runs on
    worker_queues: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def routes(self) -> dict[str, tuple[str, ...]]:
        """The kinds of each worker queue; every kind on ``default`` when the snapshot has no routing."""
        return self.worker_queues or {DEFAULT_WORKER_QUEUE: self.backend_kinds}


def collect(store: Store) -> dict[str, Any]:
    """The snapshot document for the current ``schedconfig`` and ``backends``."""
    with store.transaction() as cur:
        cur.execute(
            f"SELECT {SCHEDULER_TAG_SQL} AS tag, min(s.cycle_period) AS cycle_period, count(*) AS queues, "
            "array_remove(array_agg(DISTINCT b.kind ORDER BY b.kind), NULL) AS kinds "
            "FROM schedconfig s LEFT JOIN backends b ON b.name = s.backend GROUP BY 1 ORDER BY 1"
        )
        rows = cur.fetchall()
        cur.execute(
            f"SELECT {SCHEDULER_TAG_SQL} AS tag, {WORKER_QUEUE_SQL} AS worker_queue, "
            "array_remove(array_agg(DISTINCT b.kind ORDER BY b.kind), NULL) AS kinds "
            "FROM schedconfig s LEFT JOIN backends b ON b.name = s.backend GROUP BY 1, 2 ORDER BY 1, 2"
        )
        routes: dict[str, dict[str, list[str]]] = {}
        for route in cur.fetchall():
            routes.setdefault(route["tag"], {})[route["worker_queue"]] = route["kinds"]
    return {
        "version": SNAPSHOT_VERSION,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "tags": {
            row["tag"]: {
                "cycle_period": row["cycle_period"],
                "queues": row["queues"],
                "backend_kinds": row["kinds"],
                "worker_queues": routes.get(row["tag"], {}),
            }
            for row in rows
        },
    }


def write_snapshot(store: Store, path: Path) -> dict[str, Any]:
    """Write the snapshot atomically: a temporary file in the same directory, then a rename."""
    document = collect(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return document


def read_snapshot(path: Path) -> list[TagInfo]:
    """The tags in the snapshot at ``path``; an absent file means no tags yet."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"{path}: not valid JSON: line {exc.lineno}: {exc.msg}") from None
    if not isinstance(document, dict) or document.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(f"{path}: field 'version': expected {SNAPSHOT_VERSION}")
    tags = document.get("tags")
    if not isinstance(tags, dict):
        raise SnapshotError(f"{path}: field 'tags': expected an object")
    infos = []
    for tag, entry in sorted(tags.items()):
        if not isinstance(entry, dict) or not isinstance(entry.get("worker_queues", {}), dict):
            raise SnapshotError(f"{path}: tag {tag!r}: field 'worker_queues': expected an object")
        try:
            infos.append(
                TagInfo(
                    tag,
                    int(entry["cycle_period"]),
                    int(entry["queues"]),
                    tuple(entry["backend_kinds"]),
                    {str(queue): tuple(kinds) for queue, kinds in entry.get("worker_queues", {}).items()},
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"{path}: tag {tag!r}: bad or missing field: {exc}") from None
    return infos
