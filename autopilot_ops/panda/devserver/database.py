"""The dev server's database: one SQLite file (no setup), or ``:memory:``.

The dev server is a fixture and a demo, so it keeps one storage engine: SQLite, in Python's standard library.
Writers are serialised: one connection behind a lock, each transaction ``BEGIN IMMEDIATE`` (which also guards
against another process on the same file). A ``postgresql://`` target is refused with that reason.

Tables: ``panda_jobs`` and ``panda_job_specs`` (jobs, ``jobstore.py``); the pilot-factory tables named after
PanDA's (``harvester_instances``, ``harvester_workers``, ``harvester_rel_jobs_workers``,
``harvester_worker_stats``, ``harvester_commands``, ``harvester_command_lock``, ``harvester_slots``,
``harvester_metrics``, ``harvester_dialogs``; ``factory_store.py``) and ``schedconfig_json`` (a queue's
configuration, ``schedconfig.py``), with the columns of the ``panda-database`` schema in snake case. A table
that exists with other columns was made by another version of the dev server: the database is refused, naming
the table and the columns; a missing table is created.
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
    history                TEXT NOT NULL,
    sup_error_code         BIGINT,
    sup_error_diag         TEXT
);
CREATE TABLE IF NOT EXISTS panda_job_specs (
    panda_id               BIGINT PRIMARY KEY,
    spec                   TEXT NOT NULL,
    job_dict               TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS harvester_instances (
    harvester_id           TEXT PRIMARY KEY,
    description            TEXT,
    start_time             TEXT,
    owner                  TEXT,
    host_name              TEXT,
    last_update            DOUBLE PRECISION NOT NULL,
    sw_version             TEXT,
    commit_stamp           TEXT
);
CREATE TABLE IF NOT EXISTS harvester_workers (
    harvester_id           TEXT NOT NULL,
    worker_id              BIGINT NOT NULL,
    last_update            DOUBLE PRECISION NOT NULL,
    status                 TEXT NOT NULL,
    batch_id               TEXT,
    node_id                TEXT,
    queue_name             TEXT,
    computing_site         TEXT,
    submit_time            TEXT,
    start_time             TEXT,
    end_time               TEXT,
    n_core                 BIGINT,
    error_code             BIGINT,
    std_out                TEXT,
    std_err                TEXT,
    batch_log              TEXT,
    resource_type          TEXT,
    native_exit_code       BIGINT,
    native_status          TEXT,
    diag_message           TEXT,
    computing_element      TEXT,
    n_jobs                 BIGINT,
    submission_host        TEXT,
    harvester_host         TEXT,
    jdl                    TEXT,
    job_type               TEXT,
    min_ram_count          BIGINT,
    pilot_status           TEXT,
    pilot_start_time       DOUBLE PRECISION,
    pilot_end_time         DOUBLE PRECISION,
    PRIMARY KEY (harvester_id, worker_id)
);
CREATE TABLE IF NOT EXISTS harvester_rel_jobs_workers (
    harvester_id           TEXT NOT NULL,
    worker_id              BIGINT NOT NULL,
    panda_id               BIGINT NOT NULL,
    last_update            DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (harvester_id, worker_id, panda_id)
);
CREATE TABLE IF NOT EXISTS harvester_worker_stats (
    harvester_id           TEXT NOT NULL,
    computing_site         TEXT NOT NULL,
    resource_type          TEXT NOT NULL,
    status                 TEXT NOT NULL,
    job_type               TEXT NOT NULL,
    n_workers              BIGINT,
    last_update            DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (harvester_id, computing_site, resource_type, status, job_type)
);
CREATE TABLE IF NOT EXISTS harvester_commands (
    command_id             INTEGER PRIMARY KEY AUTOINCREMENT,
    command                TEXT NOT NULL,
    harvester_id           TEXT NOT NULL,
    ack_requested          BIGINT NOT NULL,
    creation_date          DOUBLE PRECISION NOT NULL,
    status                 TEXT NOT NULL,
    status_date            DOUBLE PRECISION NOT NULL,
    params                 TEXT
);
CREATE TABLE IF NOT EXISTS harvester_command_lock (
    harvester_id           TEXT NOT NULL,
    computing_site         TEXT NOT NULL,
    resource_type          TEXT NOT NULL,
    command                TEXT NOT NULL,
    locked_time            DOUBLE PRECISION,
    locked_by              TEXT,
    PRIMARY KEY (harvester_id, computing_site, resource_type, command)
);
CREATE TABLE IF NOT EXISTS harvester_slots (
    panda_queue            TEXT NOT NULL,
    gshare                 TEXT,
    resource_type          TEXT,
    num_slots              BIGINT NOT NULL,
    modification_time      DOUBLE PRECISION NOT NULL,
    expiration_time        DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS harvester_metrics (
    harvester_id           TEXT NOT NULL,
    creation_time          TEXT NOT NULL,
    harvester_host         TEXT,
    metrics                TEXT
);
CREATE TABLE IF NOT EXISTS harvester_dialogs (
    harvester_id           TEXT NOT NULL,
    diag_id                BIGINT NOT NULL,
    module_name            TEXT,
    identifier             TEXT,
    creation_time          TEXT,
    message_level          TEXT,
    diag_message           TEXT
);
CREATE TABLE IF NOT EXISTS schedconfig_json (
    panda_queue            TEXT PRIMARY KEY,
    data                   TEXT NOT NULL,
    last_update            DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS harvester_rel_jobs_workers_panda_id ON harvester_rel_jobs_workers (panda_id);
CREATE INDEX IF NOT EXISTS harvester_commands_new ON harvester_commands (harvester_id, creation_date)
    WHERE status = 'new';
CREATE INDEX IF NOT EXISTS panda_jobs_dispatch ON panda_jobs (computing_site, current_priority DESC, panda_id)
    WHERE job_status = 'activated';
CREATE INDEX IF NOT EXISTS panda_jobs_active ON panda_jobs (job_status, computing_site) WHERE {active_term};
"""


#: Each table's columns, in the order of ``_SCHEMA`` (constraint lines such as ``PRIMARY KEY (...)`` skipped).
_TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    block.split("(", 1)[0].strip(): tuple(
        line.split()[0]
        for line in block.split("(", 1)[1].split("\n);")[0].splitlines()
        if line.strip() and line.split()[0] not in ("PRIMARY", "UNIQUE")
    )
    for block in _SCHEMA.split("CREATE TABLE IF NOT EXISTS ")[1:]
}


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
        statements = [part for part in _SCHEMA.format(active_term=ACTIVE_TERM).split(";") if part.strip()]
        with self.transaction() as cursor:
            differences = [problem for table in _TABLE_COLUMNS if (problem := _column_problem(cursor, table))]
            if not differences:
                for statement in statements:
                    cursor.execute(statement)
        if differences:
            self.close()
            raise DatabaseError(
                f"{self.describe()}: {'; '.join(differences)}; it was made by another version of the dev server"
                " - remove it or give another --db"
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


def _column_problem(cursor: Cursor, table: str) -> str | None:
    """What is wrong with an existing table's columns (``None``: it matches, or it does not exist yet)."""
    present = {row["name"] for row in cursor.execute(f"PRAGMA table_info({table})").fetchall()}
    if not present:
        return None
    expected = set(_TABLE_COLUMNS[table])
    missing, unexpected = sorted(expected - present), sorted(present - expected)
    differences = [f"lacks column(s) {', '.join(missing)}"] if missing else []
    differences += [f"has unknown column(s) {', '.join(unexpected)}"] if unexpected else []
    return f"table {table} {' and '.join(differences)}" if differences else None


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
