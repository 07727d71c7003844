"""Versioned schema: ``sql/tables.sql`` is version 1, ``sql/migrations/NNNN_*.sql`` the versions after it.

``upgrade`` applies every version a database lacks, each in its own transaction that also records the version in
``schema_version``, so a failed migration leaves the database at the version before it. ``db init`` is an upgrade
from nothing.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from autopilot_ops.store.connection import Store

BASELINE_FILE = "tables.sql"
MIGRATIONS_DIR = "migrations"
TABLES = ("backends", "schedconfig", "schedulers", "cycles", "submissions", "pilots", "pilot_events", "controls")
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext('autopilot.schema'))"


class SchemaError(RuntimeError):
    """The schema files are inconsistent, or a migration failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    path: Path


def sql_dir() -> Path:
    """``sql/`` from a source checkout, or the installed ``share/autopilot/sql``."""
    candidates = (Path(__file__).resolve().parents[2] / "sql", Path(sys.prefix) / "share" / "autopilot" / "sql")
    for path in candidates:
        if (path / BASELINE_FILE).is_file():
            return path
    raise FileNotFoundError(f"schema file {BASELINE_FILE} not found in: {', '.join(map(str, candidates))}")


def migrations(directory: Path | None = None) -> list[Migration]:
    """Version 1 (``tables.sql``) and every numbered migration, in order; gaps and bad names are errors."""
    root = directory or sql_dir()
    found = [Migration(1, "baseline: " + ", ".join(TABLES), root / BASELINE_FILE)]
    for path in sorted((root / MIGRATIONS_DIR).glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise SchemaError(f"{path}: migration file names are NNNN_lower_case_words.sql")
        found.append(Migration(int(match[1]), match[2].replace("_", " "), path))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise SchemaError(f"{migration.path}: version {migration.version} where {expected} was expected")
    return found


def latest_version(directory: Path | None = None) -> int:
    return migrations(directory)[-1].version


def _applied(cur) -> set[int]:
    cur.execute("SELECT to_regclass('schema_version') IS NOT NULL AS present")
    if not cur.fetchone()["present"]:
        return set()
    cur.execute("SELECT version FROM schema_version")
    return {row["version"] for row in cur.fetchall()}


def upgrade(store: Store, target: int | None = None, directory: Path | None = None) -> list[int]:
    """Apply the versions the database lacks, up to ``target`` (default: all); return the ones applied."""
    applied_now = []
    for migration in migrations(directory):
        if target is not None and migration.version > target:
            break
        sql = migration.path.read_text(encoding="utf-8")
        with store.transaction() as cur:
            # One upgrader at a time; the check is repeated under the lock, so a concurrent upgrade is a no-op.
            cur.execute(_LOCK_SQL)
            if migration.version in _applied(cur):
                continue
            try:
                cur.execute(sql)
            except Exception as exc:
                raise SchemaError(f"migration {migration.path.name} failed, nothing of it applied: {exc}") from exc
            cur.execute(
                "INSERT INTO schema_version (version, description) VALUES (%s, %s) ON CONFLICT (version) DO NOTHING",
                (migration.version, migration.description),
            )
        applied_now.append(migration.version)
    return applied_now


def apply_schema(store: Store) -> int:
    """Bring the database to the newest schema (idempotent); return the version it is at."""
    upgrade(store)
    return latest_version()


@dataclass(frozen=True)
class SchemaStatus:
    version: int | None
    latest: int
    row_counts: dict[str, int]

    @property
    def pending(self) -> int:
        return self.latest - (self.version or 0)


def schema_status(store: Store) -> SchemaStatus:
    """The database's schema version (``None`` before ``db init``), the newest known, and each table's rows."""
    latest = latest_version()
    with store.transaction() as cur:
        applied = _applied(cur)
        if not applied:
            return SchemaStatus(None, latest, {})
        counts = {}
        for table in TABLES:
            cur.execute(f"SELECT count(*) AS n FROM {table}")
            counts[table] = cur.fetchone()["n"]
        return SchemaStatus(max(applied), latest, counts)
