"""The dev server's database: one SQLite file (no setup), or ``:memory:``.

The dev server is a fixture and a demo, so it keeps one storage engine: SQLite, in Python's standard library.
Writers are serialised: one connection behind a lock, each transaction ``BEGIN IMMEDIATE`` (which also guards
against another process on the same file). A ``postgresql://`` target is refused with that reason.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autopilot_ops.panda.protocol import FINAL_STATES, JOB_STATES

#: States held in ``jobsDefined4``/``jobsActive4``: everything not archived.
ACTIVE_STATES = tuple(state for state in JOB_STATES if state not in FINAL_STATES)
#: The condition of the partial index on active jobs; a query must contain it verbatim to use the index.
ACTIVE_TERM = f"job_status IN ({', '.join(repr(state) for state in ACTIVE_STATES)})"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS panda_jobs (
    panda_id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job_definition_id      BIGINT,
    job_name               TEXT NOT NULL,
    computing_site         TEXT NOT NULL,
    prod_source_label      TEXT NOT NULL,
    prod_user_id           TEXT NOT NULL,
    job_status             TEXT NOT NULL,
    current_priority       BIGINT NOT NULL,
    attempt_nr             BIGINT NOT NULL,
    min_ram_count          BIGINT NOT NULL,
    max_disk_count         BIGINT NOT NULL,
    max_walltime           BIGINT,
    resource_type          TEXT NOT NULL,
    jedi_task_id           BIGINT,
    command_to_pilot       TEXT,
    creation_time          DOUBLE PRECISION NOT NULL,
    modification_time      DOUBLE PRECISION NOT NULL,
    state_change_time      DOUBLE PRECISION NOT NULL,
    start_time             TEXT,
    end_time               TEXT,
    modification_host      TEXT,
    computing_element      TEXT,
    trans_exit_code        BIGINT,
    pilot_error_code       BIGINT,
    pilot_error_diag       TEXT,
    exe_error_code         BIGINT,
    exe_error_diag         TEXT,
    ddm_error_code         BIGINT,
    ddm_error_diag         TEXT,
    dispatcher_error_code  BIGINT,
    dispatcher_error_diag  TEXT,
    task_buffer_error_code BIGINT,
    task_buffer_error_diag TEXT,
    job_output_report      TEXT,
    pilot_params           TEXT NOT NULL,
    history                TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS panda_job_specs (
    panda_id               BIGINT PRIMARY KEY,
    spec                   TEXT NOT NULL,
    job_dict               TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS panda_jobs_dispatch ON panda_jobs (computing_site, current_priority DESC, panda_id)
    WHERE job_status = 'activated';
CREATE INDEX IF NOT EXISTS panda_jobs_active ON panda_jobs (job_status, computing_site) WHERE {active_term};
"""


#: Columns of ``panda_jobs``, in the order of ``_SCHEMA``.
_JOB_COLUMNS = tuple(
    line.split()[0] for line in _SCHEMA.split("CREATE TABLE IF NOT EXISTS panda_jobs (")[1].split(");")[0].splitlines()
    if line.strip()
)


class DatabaseError(RuntimeError):
    """The database could not be opened or prepared; the message names it."""


class Cursor:
    """Runs ``?``-style SQL and returns rows as dicts."""

    def __init__(self, raw: sqlite3.Cursor) -> None:
        self._raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self._raw.execute(sql, tuple(params))
        return self

    @property
    def description(self) -> Any:
        return self._raw.description

    def fetchall(self) -> list[dict[str, Any]]:
        names = [column[0] for column in self._raw.description]
        return [dict(zip(names, row)) for row in self._raw.fetchall()]

    def fetchone(self) -> dict[str, Any] | None:
        row = self._raw.fetchone()
        if row is None:
            return None
        return dict(zip([column[0] for column in self._raw.description], row))


class Database:
    """The dev server's SQLite database; ``describe()`` names it."""

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        if self.target.startswith(("postgresql://", "postgres://")):
            raise DatabaseError(
                f"--db {self.target.split('@')[-1]}: the dev server keeps its jobs in SQLite only; give a file path"
            )
        self._lock = threading.Lock()
        self._sqlite = _open_sqlite(self.target)
        schema = _SCHEMA.format(active_term=ACTIVE_TERM)
        jobs_table, *others = [part for part in schema.split(";") if part.strip()]
        with self.transaction() as cursor:
            cursor.execute(jobs_table)
            present = {column[0] for column in cursor.execute("SELECT * FROM panda_jobs LIMIT 0").description}
            missing, unexpected = sorted(set(_JOB_COLUMNS) - present), sorted(present - set(_JOB_COLUMNS))
            if not missing and not unexpected:
                for statement in others:
                    cursor.execute(statement)
        if missing or unexpected:
            self.close()
            differences = [f"lacks column(s) {', '.join(missing)}"] if missing else []
            differences += [f"has unknown column(s) {', '.join(unexpected)}"] if unexpected else []
            raise DatabaseError(
                f"{self.describe()}: table panda_jobs {' and '.join(differences)}; it was made by another version "
                "of the dev server - remove it or give another --db"
            )

    def describe(self) -> str:
        return f"SQLite {self.target}"

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One atomic unit of work: committed on success, rolled back on any exception."""
        with self._lock:
            raw = self._sqlite.cursor()
            raw.execute("BEGIN IMMEDIATE")
            try:
                yield Cursor(raw)
            except BaseException:
                raw.execute("ROLLBACK")
                raise
            raw.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._sqlite.close()


def _open_sqlite(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open SQLite database {path}: {exc}") from exc
    return connection
