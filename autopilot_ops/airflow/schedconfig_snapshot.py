"""The schedconfig snapshot file the DAG factory reads, so that parsing DAGs never queries the database.

Format (JSON)::

    {"version": 1, "generated_at": "...", "tags": {"<tag>": {"cycle_period": 60, "queues": 12,
                                                            "backend_kinds": ["local", "slurm"]}}}
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autopilot_ops.store.connection import Store
from autopilot_ops.store.queues import SCHEDULER_TAG_SQL

SNAPSHOT_VERSION = 1


class SnapshotError(ValueError):
    """The snapshot file is missing a field or is not a snapshot; the message names the file and field."""


@dataclass(frozen=True)
class TagInfo:
    tag: str
    cycle_period: int
    queues: int
    backend_kinds: tuple[str, ...]


def collect(store: Store) -> dict[str, Any]:
    """The snapshot document for the current ``schedconfig`` and ``backends``."""
    with store.transaction() as cur:
        cur.execute(
            f"SELECT {SCHEDULER_TAG_SQL} AS tag, min(s.cycle_period) AS cycle_period, count(*) AS queues, "
            "array_remove(array_agg(DISTINCT b.kind ORDER BY b.kind), NULL) AS kinds "
            "FROM schedconfig s LEFT JOIN backends b ON b.name = s.backend GROUP BY 1 ORDER BY 1"
        )
        rows = cur.fetchall()
    return {
        "version": SNAPSHOT_VERSION,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "tags": {
            row["tag"]: {"cycle_period": row["cycle_period"], "queues": row["queues"], "backend_kinds": row["kinds"]}
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
        try:
            infos.append(TagInfo(tag, int(entry["cycle_period"]), int(entry["queues"]), tuple(entry["backend_kinds"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotError(f"{path}: tag {tag!r}: bad or missing field: {exc}") from None
    return infos
