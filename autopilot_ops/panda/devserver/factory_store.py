"""The pilot factory's records: instances, workers and their jobs, worker statistics, service metrics, dialogs.

Each method follows the named method of ``pandaserver/taskbuffer/db_proxy_mods/worker_module.py``
(``harvesterIsAlive``, ``updateWorkers``, ``updateWorkerPilotStatus``, ``reportWorkerStats_jobtype``,
``getWorkerStats``, ``ups_load_worker_stats``, ``get_max_worker_id``, ``updateServiceMetrics``,
``addHarvesterDialogs``) or ``job_complex_module.py: getJobs`` (the job<->worker relation of a pilot that
names its worker), with the columns of ``taskbuffer/WorkerSpec.py``. Where the real server's SQL would fail
(a key that is no column, a malformed time, a value PostgreSQL would not store: ``columns.py``) the method
fails as the real one does, returning ``None``/``False``, and nothing of that unit of work is kept.
"""

from __future__ import annotations

import datetime
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from autopilot_ops.panda.devserver.columns import ColumnError, integer, text, timestamp
from autopilot_ops.panda.devserver.database import ACTIVE_TERM, Cursor, Database
from autopilot_ops.panda.devserver.jobstore import format_time, history_entry

#: ``worker_module.py``: a worker in one of these states is over.
FINAL_WORKER_STATES = ("finished", "failed", "cancelled", "missed")
#: ``updateWorkers`` keeps a final status this long against later reports.
KEEP_FINAL_STATUS_S = 3 * 3600
#: ``taskbuffer/ErrorCode.py: EC_WorkerDone``: the worker ended while its job still ran.
EC_WORKER_DONE = 300
#: ``getWorkerStats`` counts statistics younger than this; ``ups_load_worker_stats`` uses an hour.
WORKER_STATS_WINDOW_S = 4 * 3600
UPS_STATS_WINDOW_S = 3600
#: ``DEFAULT_PRODSOURCELABEL``: the job type pilot streaming files every worker under.
DEFAULT_JOB_TYPE = "managed"
#: ``WorkerSpec._attributes`` a factory may send: wire name -> (column, conversion).
WORKER_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "batchID": ("batch_id", partial(text, length=80)),
    "queueName": ("queue_name", partial(text, length=80)),
    "status": ("status", partial(text, length=80)),
    "computingSite": ("computing_site", partial(text, length=128)),
    "nCore": ("n_core", integer),
    "nodeID": ("node_id", partial(text, length=80)),
    "submitTime": ("submit_time", timestamp),
    "startTime": ("start_time", timestamp),
    "endTime": ("end_time", timestamp),
    "stdOut": ("std_out", partial(text, length=250)),
    "stdErr": ("std_err", partial(text, length=250)),
    "batchLog": ("batch_log", partial(text, length=250)),
    "jdl": ("jdl", partial(text, length=250)),
    "resourceType": ("resource_type", partial(text, length=56)),
    "nativeExitCode": ("native_exit_code", integer),
    "nativeStatus": ("native_status", partial(text, length=80)),
    "diagMessage": ("diag_message", partial(text, length=500)),
    "nJobs": ("n_jobs", integer),
    "computingElement": ("computing_element", partial(text, length=128)),
    "submissionHost": ("submission_host", partial(text, length=128)),
    "harvesterHost": ("harvester_host", partial(text, length=128)),
    "errorCode": ("error_code", integer),
    "jobType": ("job_type", partial(text, length=52)),
    "minRamCount": ("min_ram_count", integer),
}
#: ``harvesterIsAlive`` sets each key of ``data`` as a column of ``harvester_instances``; PostgreSQL folds the
#: names' case. The columns the statement sets itself (owner, host, last update) cannot be given twice.
_INSTANCE_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "starttime": ("start_time", timestamp),
    "sw_version": ("sw_version", partial(text, length=50)),
    "commit_stamp": ("commit_stamp", partial(text, length=100)),
    "description": ("description", partial(text, length=200)),
}
_METRICS_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@dataclass
class KnownWorkers:
    """The stored rows of the workers one call names, and which of them have related jobs: read in two
    statements for the whole call, and kept current as the call writes."""

    rows: dict[int, dict[str, Any]]
    with_jobs: set[int]

    @classmethod
    def load(cls, cursor: Cursor, harvester_id: str, workers: Sequence[Any]) -> KnownWorkers:
        ids = []
        for worker in workers:
            try:
                ids.append(integer(worker["workerID"]))
            except (ColumnError, KeyError, TypeError):
                continue  # the call fails at this worker, in its turn
        ids = sorted({worker_id for worker_id in ids if worker_id is not None})
        if not ids:
            return cls({}, set())
        marks = ",".join("?" * len(ids))
        rows = cursor.execute(
            f"SELECT * FROM harvester_workers WHERE harvester_id = ? AND worker_id IN ({marks})", (harvester_id, *ids)
        ).fetchall()
        related = cursor.execute(
            "SELECT DISTINCT worker_id FROM harvester_rel_jobs_workers"
            f" WHERE harvester_id = ? AND worker_id IN ({marks})",
            (harvester_id, *ids),
        ).fetchall()
        return cls({row["worker_id"]: row for row in rows}, {row["worker_id"] for row in related})


class FactoryStore:
    """All reads and writes of the factory tables; safe to call from many threads at once."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self._clock = clock

    # -- instances --------------------------------------------------------------------------------------
    def harvester_is_alive(self, user: str, host: str, harvester_id: str, data: Mapping[str, Any] | None) -> str | None:
        """``harvesterIsAlive``: ``"succeeded"``, ``"no instance record"`` (the row was created now, without
        ``data``), or ``None`` on a database error (no ``data``, an unknown key)."""
        if data is None:
            return None  # the real method iterates data: a TypeError before any SQL
        now = self._clock()
        owner = clean_user_id(user)
        try:
            with self.database.transaction() as cursor:
                assignments: dict[str, Any] = {"owner": owner, "host_name": host, "last_update": now}
                for key, value in data.items():
                    if key == "commands":
                        continue
                    if key.lower() not in _INSTANCE_FIELDS:
                        raise ColumnError(f'column "{key.lower()}" of relation "harvester_instances" does not exist')
                    column, convert = _INSTANCE_FIELDS[key.lower()]
                    assignments[column] = convert(value)
                updated = cursor.execute(
                    f"UPDATE harvester_instances SET {', '.join(f'{name} = ?' for name in assignments)}"
                    " WHERE harvester_id = ? RETURNING harvester_id",
                    (*assignments.values(), harvester_id),
                ).fetchall()
                if not updated:
                    cursor.execute(
                        "INSERT INTO harvester_instances (harvester_id, owner, host_name, last_update, description)"
                        " VALUES (?, ?, ?, ?, 'automatic')",
                        (harvester_id, owner, host, now),
                    )
                for item in data.get("commands", []):
                    _add_command_lock(
                        cursor, harvester_id, item["command"], item["computingSite"], item["resourceType"], now
                    )
        except (ColumnError, KeyError, TypeError):
            return None
        return "succeeded" if updated else "no instance record"

    # -- workers ----------------------------------------------------------------------------------------
    def update_workers(self, harvester_id: str, workers: Sequence[Any]) -> list[bool] | None:
        """``updateWorkers``: each worker is its own unit of work (a savepoint here, a commit there); ``None``
        at the first that fails (those before it are kept)."""
        done: list[bool] = []
        with self.database.transaction() as cursor:
            known = KnownWorkers.load(cursor, harvester_id, workers)
            for worker in workers:
                cursor.execute("SAVEPOINT worker")
                try:
                    self._update_worker(cursor, harvester_id, worker, self._clock(), known)
                except (ColumnError, KeyError, TypeError, AttributeError):
                    cursor.execute("ROLLBACK TO worker")
                    return None
                cursor.execute("RELEASE worker")
                done.append(True)
        return done

    def _update_worker(
        self, cursor: Cursor, harvester_id: str, worker: Mapping[str, Any], now: float, known: KnownWorkers
    ) -> None:
        worker_id = integer(worker["workerID"])
        row = known.rows.get(worker_id)
        values: dict[str, Any] = dict(row) if row else {"harvester_id": harvester_id, "worker_id": worker_id}
        old_status, old_update = values.get("status"), values.get("last_update")
        for key, value in worker.items():
            if key in WORKER_FIELDS:
                column, convert = WORKER_FIELDS[key]
                values[column] = convert(value)
        values["last_update"] = now
        if old_status in FINAL_WORKER_STATES and old_update is not None and old_update > now - KEEP_FINAL_STATUS_S:
            values["status"] = old_status
        if values.get("status") is None:
            raise ColumnError('null value in column "status" of relation "harvester_workers"')
        panda_ids = worker.get("pandaid_list")
        related = [integer(panda_id) for panda_id in panda_ids] if panda_ids is not None else []
        cursor.execute(
            f"INSERT OR REPLACE INTO harvester_workers ({', '.join(values)}) VALUES ({', '.join('?' * len(values))})",
            tuple(values.values()),
        )
        known.rows[worker_id] = values
        if related:
            _relate_jobs(cursor, harvester_id, worker_id, related, now)
            known.with_jobs.add(worker_id)
        if worker_id in known.with_jobs:
            self._sync_jobs(cursor, harvester_id, worker_id, values, worker.get("syncLevel"), now)

    def _sync_jobs(
        self, cursor: Cursor, harvester_id: str, worker_id: int, worker: Mapping[str, Any], sync_level: Any,
        now: float,
    ) -> None:
        """``updateWorkers``' "comprehensive heartbeat" over the worker's active jobs (not holding)."""
        rows = cursor.execute(
            "SELECT j.panda_id, j.job_status FROM harvester_rel_jobs_workers r"
            " JOIN panda_jobs j ON j.panda_id = r.panda_id"
            f" WHERE r.harvester_id = ? AND r.worker_id = ? AND j.{ACTIVE_TERM} AND j.job_status != 'holding'",
            (harvester_id, worker_id),
        ).fetchall()
        status, diag, code = worker["status"], worker.get("diag_message"), worker.get("error_code")
        for job in rows:
            if status in FINAL_WORKER_STATES and sync_level == 1 and job["job_status"] in ("running", "starting"):
                # The real server sets taskBufferErrorCode and leaves an empty failed report for its Adder; the
                # dev server settles it at once, as it does a pilot's final report.
                reason = f"The worker was {status} while the job was {job['job_status']} : {diag}"[:300]
                cursor.execute(
                    "UPDATE panda_jobs SET job_status = 'failed', task_buffer_error_code = ?,"
                    " task_buffer_error_diag = ?, start_time = CASE WHEN job_status = 'starting' THEN NULL"
                    " ELSE start_time END, end_time = COALESCE(end_time, ?), modification_time = ?,"
                    " state_change_time = ?, history = history || ? WHERE panda_id = ?",
                    (EC_WORKER_DONE, reason, format_time(now), now, now, history_entry("failed", now, reason),
                     job["panda_id"]),
                )
            if code not in (None, 0):
                cursor.execute(
                    "UPDATE panda_jobs SET sup_error_code = ?, sup_error_diag = ?, state_change_time = ?"
                    " WHERE panda_id = ? AND job_status != 'finished' AND modification_time > ?",
                    (code, f"Diag from worker : {diag}"[:250], now, job["panda_id"], now - 30 * 86400),
                )

    def link_jobs(self, harvester_id: str, worker_id: int, panda_ids: Sequence[int]) -> None:
        """``getJobs``: a pilot that names its worker marks it running (with ``nJobs`` 1) and, when the instance
        is known, relates each job it got to it."""
        now = self._clock()
        with self.database.transaction() as cursor:
            worker = {"workerID": worker_id, "nJobs": 1, "status": "running"}
            known = KnownWorkers.load(cursor, harvester_id, [worker])
            for panda_id in panda_ids:
                self._update_worker(cursor, harvester_id, worker, now, known)
                known = cursor.execute(
                    "SELECT 1 FROM harvester_instances WHERE harvester_id = ?", (harvester_id,)
                ).fetchone()
                if known:
                    _upsert_relation(cursor, harvester_id, worker_id, panda_id, now)

    def update_worker_pilot_status(self, worker_id: Any, harvester_id: Any, status: str, node_id: Any) -> bool:
        """``updateWorkerPilotStatus``: ``pilotStatus``, ``nodeID`` and the pilot's start or end time; an
        unknown worker is no error."""
        now = self._clock()
        try:
            assignments: dict[str, Any] = {"pilot_status": text(status, 80), "node_id": text(node_id, 80)}
        except ColumnError:
            return False
        if status == "started":
            assignments["pilot_start_time"] = now
        elif status == "finished":
            assignments["pilot_end_time"] = now
        with self.database.transaction() as cursor:
            cursor.execute(
                f"UPDATE harvester_workers SET {', '.join(f'{name} = ?' for name in assignments)}"
                " WHERE worker_id = ? AND harvester_id = ?",
                (*assignments.values(), worker_id, harvester_id),
            )
        return True

    def max_worker_id(self, harvester_id: str) -> int | None:
        """``get_max_worker_id``: ``None`` when the instance has no worker."""
        with self.database.transaction() as cursor:
            row = cursor.execute(
                "SELECT MAX(worker_id) AS n FROM harvester_workers WHERE harvester_id = ?", (harvester_id,)
            ).fetchone()
        return None if row is None else row["n"]

    # -- worker statistics ------------------------------------------------------------------------------
    def report_worker_stats(self, harvester_id: str, site: str, statistics: str) -> tuple[bool, str]:
        """``reportWorkerStats_jobtype``: replace the instance's statistics of the queue with
        ``{job_type: {resource_type: {status: n}}}`` (a JSON string); ``Undefined`` resource types are dropped."""
        now = self._clock()
        try:
            parsed = json.loads(statistics)
            with self.database.transaction() as cursor:
                cursor.execute(
                    "DELETE FROM harvester_worker_stats WHERE harvester_id = ? AND computing_site = ?",
                    (harvester_id, site),
                )
                for job_type, by_resource in parsed.items():
                    for resource_type, by_status in by_resource.items():
                        if resource_type == "Undefined":
                            continue
                        for status, n_workers in by_status.items():
                            cursor.execute(
                                "INSERT INTO harvester_worker_stats (harvester_id, computing_site, job_type,"
                                " resource_type, status, n_workers, last_update) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (harvester_id, site, text(job_type, 52), text(resource_type, 56), text(status, 80),
                                 integer(n_workers), now),
                            )
        except (ValueError, TypeError, AttributeError):
            return False, "database error"
        return True, "OK"

    def worker_stats(self) -> dict[str, dict[str, dict[str, dict[str, dict[str, int]]]]]:
        """``getWorkerStats``: queue -> instance -> job type -> resource type -> status -> n, last 4 hours."""
        since = self._clock() - WORKER_STATS_WINDOW_S
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                "SELECT SUM(n_workers) AS n, computing_site, harvester_id, job_type, resource_type, status"
                " FROM harvester_worker_stats WHERE last_update >= ?"
                " GROUP BY computing_site, harvester_id, job_type, resource_type, status",
                (since,),
            ).fetchall()
        stats: dict[str, Any] = {}
        for row in rows:
            by_type = stats.setdefault(row["computing_site"], {}).setdefault(row["harvester_id"], {})
            by_type.setdefault(row["job_type"], {}).setdefault(row["resource_type"], {})[row["status"]] = row["n"]
        return stats

    def ups_worker_stats(self) -> dict[str, dict[str, dict[str, dict[str, dict[str, int]]]]]:
        """``ups_load_worker_stats``: as ``worker_stats`` for the last hour, every job type counted as
        ``managed``."""
        since = self._clock() - UPS_STATS_WINDOW_S
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                "SELECT computing_site, harvester_id, resource_type, status, SUM(n_workers) AS n"
                " FROM harvester_worker_stats WHERE last_update > ?"
                " GROUP BY computing_site, harvester_id, resource_type, status",
                (since,),
            ).fetchall()
        stats: dict[str, Any] = {}
        for row in rows:
            by_type = stats.setdefault(row["computing_site"], {}).setdefault(row["harvester_id"], {})
            by_type.setdefault(DEFAULT_JOB_TYPE, {}).setdefault(row["resource_type"], {})[row["status"]] = row["n"]
        return stats

    def stats_rows(self, site: str, harvester_id: str, since: float) -> list[dict[str, Any]]:
        """Statistics rows of one queue and instance newer than ``since`` (``get_average_memory_workers``)."""
        with self.database.transaction() as cursor:
            return cursor.execute(
                "SELECT resource_type, status, n_workers FROM harvester_worker_stats"
                " WHERE computing_site = ? AND harvester_id = ? AND last_update > ?",
                (site, harvester_id, since),
            ).fetchall()

    # -- metrics and dialogs ----------------------------------------------------------------------------
    def update_service_metrics(self, harvester_id: str, metrics: Sequence[Any]) -> list[bool] | None:
        """``updateServiceMetrics``: ``[creation_time "%Y-%m-%d %H:%M:%S.%f", host, metrics JSON text]``."""
        try:
            rows = [
                (
                    harvester_id,
                    timestamp(datetime.datetime.strptime(entry[0], _METRICS_TIME_FORMAT)),
                    text(entry[1], 100),
                    text(entry[2], 4000),
                )
                for entry in metrics
            ]
        except (ColumnError, ValueError, TypeError, IndexError, KeyError):
            return None
        with self.database.transaction() as cursor:
            for row in rows:
                cursor.execute(
                    "INSERT INTO harvester_metrics (harvester_id, creation_time, harvester_host, metrics)"
                    " VALUES (?, ?, ?, ?)",
                    row,
                )
        return [True]

    def add_dialogs(self, harvester_id: str, dialogs: Sequence[Any]) -> bool:
        """``addHarvesterDialogs``: each message replaces the instance's one with the same ``diagID``."""
        for dialog in dialogs:
            try:
                with self.database.transaction() as cursor:
                    diag_id = integer(dialog["diagID"])
                    cursor.execute(
                        "DELETE FROM harvester_dialogs WHERE harvester_id = ? AND diag_id = ?", (harvester_id, diag_id)
                    )
                    created = datetime.datetime.strptime(dialog["creationTime"], _METRICS_TIME_FORMAT)
                    cursor.execute(
                        "INSERT INTO harvester_dialogs (harvester_id, diag_id, module_name, identifier,"
                        " creation_time, message_level, diag_message) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            harvester_id, diag_id, text(dialog["moduleName"], 100), text(dialog["identifier"], 100),
                            timestamp(created), text(dialog["messageLevel"], 10), text(dialog["diagMessage"], 500),
                        ),
                    )
            except (ColumnError, ValueError, TypeError, KeyError):
                return False
        return True

    # -- inspection (tests) -----------------------------------------------------------------------------
    def instances(self) -> list[dict[str, Any]]:
        with self.database.transaction() as cursor:
            rows = cursor.execute("SELECT * FROM harvester_instances ORDER BY harvester_id").fetchall()
        return [
            {
                "harvester_id": row["harvester_id"],
                "description": row["description"],
                "starttime": row["start_time"],
                "owner": row["owner"],
                "hostname": row["host_name"],
                "lastupdate": format_time(row["last_update"]),
                "sw_version": row["sw_version"],
                "commit_stamp": row["commit_stamp"],
            }
            for row in rows
        ]

    def workers(self, harvester_id: str | None = None) -> list[dict[str, Any]]:
        where, args = ("WHERE harvester_id = ?", (harvester_id,)) if harvester_id is not None else ("", ())
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                f"SELECT * FROM harvester_workers {where} ORDER BY harvester_id, worker_id", args
            ).fetchall()
            relations = cursor.execute(
                f"SELECT harvester_id, worker_id, panda_id FROM harvester_rel_jobs_workers {where} ORDER BY panda_id",
                args,
            ).fetchall()
        jobs: dict[tuple[str, int], list[int]] = {}
        for relation in relations:
            jobs.setdefault((relation["harvester_id"], relation["worker_id"]), []).append(relation["panda_id"])
        return [_describe_worker(row, jobs.get((row["harvester_id"], row["worker_id"]), [])) for row in rows]


def _add_command_lock(
    cursor: Cursor, harvester_id: str, command: str, site: str, resource_type: str, now: float
) -> None:
    """``addCommandLockHarvester``: a lock row, dated a day back so that it is free at once."""
    cursor.execute(
        "INSERT OR IGNORE INTO harvester_command_lock (harvester_id, computing_site, resource_type, command,"
        " locked_time) VALUES (?, ?, ?, ?, ?)",
        (harvester_id, site, resource_type, command, now - 86400),
    )


def _relate_jobs(cursor: Cursor, harvester_id: str, worker_id: int, panda_ids: Sequence[int], now: float) -> None:
    """``updateWorkers``: the worker's jobs become exactly ``pandaid_list``."""
    for panda_id in panda_ids:
        _upsert_relation(cursor, harvester_id, worker_id, panda_id, now)
    marks = ",".join("?" * len(panda_ids))
    cursor.execute(
        "DELETE FROM harvester_rel_jobs_workers WHERE harvester_id = ? AND worker_id = ?"
        f" AND panda_id NOT IN ({marks})",
        (harvester_id, worker_id, *panda_ids),
    )


def _upsert_relation(cursor: Cursor, harvester_id: str, worker_id: int, panda_id: int, now: float) -> None:
    cursor.execute(
        "INSERT INTO harvester_rel_jobs_workers (harvester_id, worker_id, panda_id, last_update) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (harvester_id, worker_id, panda_id) DO UPDATE SET last_update = excluded.last_update",
        (harvester_id, worker_id, panda_id, now),
    )


def _describe_worker(row: Mapping[str, Any], panda_ids: list[int]) -> dict[str, Any]:
    """A worker under ``WorkerSpec``'s names, with the pilot's view and the related PandaIDs."""
    described: dict[str, Any] = {"harvesterID": row["harvester_id"], "workerID": row["worker_id"]}
    described.update({name: row[column] for name, (column, _) in WORKER_FIELDS.items()})
    described.update(
        lastUpdate=format_time(row["last_update"]),
        pilotStatus=row["pilot_status"],
        pilotStartTime=format_time(row["pilot_start_time"]),
        pilotEndTime=format_time(row["pilot_end_time"]),
        pandaIDs=panda_ids,
    )
    return described


def clean_user_id(dn: str) -> str:
    """``srvcore/CoreUtils.py: clean_user_id``: the owner name PanDA records for a DN."""
    name = re.sub(r"/(DC|O|OU|C|L)=[^/]+", "", dn)
    name = re.sub(r"/CN=[0-9]+", "", name)
    name = re.sub(r" [0-9]+", "", name)
    name = re.sub(r"_[0-9]+", "", name)
    for proxy in ("/CN=proxy", "/CN=limited proxy", "limited proxy"):
        name = name.replace(proxy, "")
    name = re.sub(r"/CN=Robot:[^/]+", "", name)
    name = re.sub(r"/CN=nickname:[^/]+", "", name)
    matched = re.match(r".*/CN=([^/]+)/CN=([^/]+)", name)
    name = matched.group(2) if matched else name.replace("/CN=", "")
    if name.lower().find("/email") > 0:
        name = name[: name.lower().find("/email")]
    matched = re.match(r".*(limited.*proxy).*", name)
    if matched:
        name = matched.group(1)
    name = name.replace("(", "").replace(")", "").replace("'", "")
    without_email = re.sub(r" [a-z][\w\.-]+@[\w\.-]+(?:\.\w+)+", "", name).strip()
    return without_email if " " in without_email else name
