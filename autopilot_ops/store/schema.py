"""Apply ``sql/tables.sql`` and report the schema's state."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from autopilot_ops.store.connection import Store

SCHEMA_FILE = "tables.sql"
TABLES = ("backends", "schedconfig", "schedulers", "cycles", "submissions", "pilots", "pilot_events", "controls")


def schema_path() -> Path:
    """``sql/tables.sql`` from a source checkout, or from the installed ``share/autopilot/sql``."""
    candidates = (
        Path(__file__).resolve().parents[2] / "sql" / SCHEMA_FILE,
        Path(sys.prefix) / "share" / "autopilot" / "sql" / SCHEMA_FILE,
    )
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"schema file {SCHEMA_FILE} not found in: {', '.join(map(str, candidates))}")


def apply_schema(store: Store) -> int:
    """Apply the schema in one transaction (idempotent); return the newest version recorded."""
    sql = schema_path().read_text(encoding="utf-8")
    with store.transaction() as cur:
        # One loader at a time: concurrent CREATE ... IF NOT EXISTS can still collide in the catalog.
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('autopilot.schema'))")
        cur.execute(sql)
        cur.execute("SELECT max(version) AS version FROM schema_version")
        return cur.fetchone()["version"]


@dataclass(frozen=True)
class SchemaStatus:
    version: int | None
    row_counts: dict[str, int]


def schema_status(store: Store) -> SchemaStatus:
    """The recorded schema version (``None`` before ``db init``) and the row count of each table."""
    with store.transaction() as cur:
        cur.execute("SELECT to_regclass('schema_version') IS NOT NULL AS present")
        if not cur.fetchone()["present"]:
            return SchemaStatus(None, {})
        cur.execute("SELECT max(version) AS version FROM schema_version")
        version = cur.fetchone()["version"]
        counts = {}
        for table in TABLES:
            cur.execute(f"SELECT count(*) AS n FROM {table}")
            counts[table] = cur.fetchone()["n"]
        return SchemaStatus(version, counts)
