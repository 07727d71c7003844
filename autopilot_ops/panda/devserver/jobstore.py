"""Jobs, their states and their history: the part of PanDA's TaskBuffer that pilots touch.

Each method is one transaction and follows the named ``pandaserver/taskbuffer`` method; the deviations are
stated where they occur. Times are stored as epoch seconds and shown as ``DATE_FORMAT`` (UTC).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autopilot_ops.panda.devserver import adder
from autopilot_ops.panda.devserver.database import ACTIVE_STATES, ACTIVE_TERM, Cursor, Database
from autopilot_ops.panda.devserver.jobdict import attribute, build_job_dict
from autopilot_ops.panda.protocol import COMMAND_KILL, COMMAND_NONE, DATE_FORMAT

#: States the lost-heartbeat watcher looks at (``jobdispatcher/Watcher.py``).
WATCHED_STATES = ("sent", "starting", "running", "holding", "transferring")
#: ``jobdispatcher/ErrorCode.py``
EC_WATCHER, EC_RECOVERY, EC_SEND_ERROR, EC_HOLDING, EC_TRANSFERRING, EC_TIMEOUT = 100, 101, 102, 103, 104, 105
#: ``taskbuffer/ErrorCode.py: EC_Kill``
EC_KILL = 100
#: Kill codes that end a job even while it runs (``job_complex_module.py: killJob``).
FORCE_KILL_CODES = ("9", "52", "99")
#: Kill codes with which a production role may kill user jobs.
PROD_KILLS_USER_CODES = ("2", "4", "7", "8", "9", "50", "51", "52", "91", "10", "99")
#: ``update_job`` parameters (PanDA names, see ``pilot_api.py``) kept in their own columns.
_PARAM_COLUMNS = {
    "modificationHost": "modification_host",
    "transExitCode": "trans_exit_code",
    "pilotErrorCode": "pilot_error_code",
    "pilotErrorDiag": "pilot_error_diag",
    "exeErrorCode": "exe_error_code",
    "exeErrorDiag": "exe_error_diag",
    "startTime": "start_time",
    "endTime": "end_time",
    "jobDispatcherErrorDiag": "dispatcher_error_diag",
}
#: What ``update`` reads of a job (by its id alone: a constant ``IN`` list costs a temporary table per
#: statement); a final report reads the job's spec too, in the same statement.
_UPDATE_COLUMNS = (
    "job_status, attempt_nr, computing_site, command_to_pilot, dispatcher_error_diag, end_time, trans_exit_code,"
    " pilot_error_code, pilot_params"
)
_UPDATE_SELECT = f"SELECT panda_id, {_UPDATE_COLUMNS} FROM panda_jobs WHERE panda_id = ?"
_FINAL_UPDATE_SELECT = (
    f"SELECT j.panda_id, {_UPDATE_COLUMNS}, s.spec FROM panda_jobs j"
    " JOIN panda_job_specs s ON s.panda_id = j.panda_id WHERE j.panda_id = ?"
)
_ACTIVE_STATES = frozenset(ACTIVE_STATES)
_WATCHED_IN = ",".join(f"'{state}'" for state in WATCHED_STATES)


def format_time(epoch: float | None) -> str | None:
    """``DATE_FORMAT`` in UTC; the text of the last second formatted is kept, as most calls ask for now."""
    global _last_formatted
    if epoch is None:
        return None
    second, text = _last_formatted
    if epoch < 0:
        return time.strftime(DATE_FORMAT, time.gmtime(epoch))
    if int(epoch) != second:
        text = time.strftime(DATE_FORMAT, time.gmtime(epoch))
        _last_formatted = (int(epoch), text)
    return text


_last_formatted: tuple[int, str] = (-1, "")


@dataclass(frozen=True)
class DispatchFilter:
    """What a pilot asked for in ``acquire_jobs`` (``job_complex_module.py: construct_where_clause``)."""

    site_name: str
    prod_source_label: str | None = None
    memory: int = 0
    disk_space: int = 0
    remaining_time: int = 0
    resource_type: str | None = None
    prod_user_id: str | None = None
    task_id: int | None = None


class JobStore:
    """All reads and writes of jobs; safe to call from many threads at once."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self._clock = clock

    def clock(self) -> float:
        """The store's time (epoch seconds); tests give a store a fake clock."""
        return self._clock()

    # -- submission ---------------------------------------------------------------------------------------
    def submit(self, specs: Sequence[Mapping[str, Any]], owner: str) -> list[list[Any]]:
        """Store jobs as ``activated`` (``TaskBuffer.storeJobs``; the dev server has no Setupper to wait for)."""
        now = self._clock()
        replies: list[list[Any]] = []
        with self.database.transaction() as cursor:
            for spec in specs:
                label = spec["prodSourceLabel"]
                # job_complex_module.py: insertNewJob sets the owner of user jobs and of jobs without one.
                prod_user_id = owner if "prodUserID" not in spec or label in ("user", "panda") else spec["prodUserID"]
                priority = spec.get("assignedPriority", spec.get("currentPriority", 0))
                stored = {**spec, "prodUserID": prod_user_id, "currentPriority": priority}
                max_walltime = spec.get("maxWalltime")
                columns: dict[str, Any] = {
                    "job_definition_id": _int_or_none(spec.get("jobDefinitionID")),
                    "job_name": str(attribute(spec, "jobName")),
                    "computing_site": spec["computingSite"],
                    "prod_source_label": label,
                    "prod_user_id": prod_user_id,
                    "job_status": "activated",
                    "current_priority": priority,
                    "attempt_nr": spec.get("attemptNr", 0),
                    "min_ram_count": spec.get("minRamCount", 0),
                    "max_disk_count": spec.get("maxDiskCount", 0),
                    "max_walltime": _int_or_none(max_walltime),
                    "resource_type": spec.get("resource_type", "Undefined"),
                    "jedi_task_id": _int_or_none(spec.get("jediTaskID")),
                    "creation_time": now,
                    "modification_time": now,
                    "state_change_time": now,
                    "pilot_params": "{}",
                    "history": history_entry("activated", now, f"submitted by {owner}"),
                }
                row = cursor.execute(
                    f"INSERT INTO panda_jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
                    " RETURNING panda_id",
                    tuple(columns.values()),
                ).fetchone()
                panda_id = row["panda_id"]
                # The job dict is fixed at submission; acquire_jobs fills in nSent.
                job_dict = build_job_dict({**columns, "panda_id": panda_id}, stored, 0)
                cursor.execute(
                    "INSERT INTO panda_job_specs (panda_id, spec, job_dict) VALUES (?, ?, ?)",
                    (panda_id, json.dumps(stored), json.dumps(job_dict)),
                )
                # TaskBuffer.storeJobs answers analysis jobs with their jobsetID instead of the job name.
                third = (
                    {"jobsetID": attribute(spec, "jobsetID")}
                    if label in ("user", "panda")
                    else stored.get("jobName", "NULL")
                )
                replies.append([panda_id, attribute(spec, "jobDefinitionID"), third])
        return replies

    # -- dispatch -----------------------------------------------------------------------------------------
    def acquire(
        self,
        wanted: DispatchFilter,
        n_jobs: int,
        node: str | None = None,
        computing_element: str | None = None,
    ) -> list[dict[str, Any]]:
        """Hand out up to ``n_jobs`` activated jobs, highest ``currentPriority`` then lowest PandaID first.

        Follows ``job_complex_module.py: getJobs``: each job moves ``activated`` -> ``sent`` in the same
        transaction that selected it, so no job is handed out twice. ``nSent`` counts production jobs sent to
        the site in the last 60 s.
        """
        if n_jobs <= 0:
            return []
        now = self._clock()
        where, params = _dispatch_where(wanted)
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                "SELECT j.panda_id, s.job_dict FROM panda_jobs j JOIN panda_job_specs s ON s.panda_id = j.panda_id "
                + where + " ORDER BY j.current_priority DESC, j.panda_id LIMIT ?",
                (*params, n_jobs),
            ).fetchall()
            if not rows:
                return []
            ids = [row["panda_id"] for row in rows]
            marks = ",".join("?" * len(ids))
            cursor.execute(
                "UPDATE panda_jobs SET job_status = 'sent', modification_time = ?, state_change_time = ?,"
                " modification_host = ?, computing_element = COALESCE(?, computing_element),"
                f" history = history || ? WHERE panda_id IN ({marks}) AND job_status = 'activated'",
                (now, now, node, computing_element, history_entry("sent", now, f"acquired by node {node}"), *ids),
            )
            n_sent = 0
            if wanted.prod_source_label in (None, "managed"):
                n_sent = cursor.execute(
                    f"SELECT COUNT(*) AS n FROM panda_jobs WHERE {ACTIVE_TERM} AND computing_site = ?"
                    " AND job_status = 'sent'"
                    " AND prod_source_label IN ('managed', 'test') AND modification_time > ?",
                    (wanted.site_name, now - 60),
                ).fetchone()["n"]
        dispatched = []
        for row in rows:
            job_dict = json.loads(row["job_dict"])
            job_dict["nSent"] = n_sent
            dispatched.append(job_dict)
        return dispatched

    # -- pilot updates ------------------------------------------------------------------------------------
    def update(
        self,
        panda_id: int,
        reported_status: str,
        param: Mapping[str, Any],
        attempt_nr: int | None = None,
        job_output_report: str = "",
    ) -> str:
        """Apply a pilot's report and return the command for the pilot (``"NULL"``, ``"tobekilled"``, ...).

        Follows ``job_complex_module.py: updateJobStatus``; ``finished``/``failed`` go to ``holding`` first
        (``pilot_api.py: update_job``) and are then settled at once by the ``job_output_report`` rule, where
        the real server's Adder would do it a little later.
        """
        now = self._clock()
        final = reported_status in ("finished", "failed")
        new_status = "holding" if final else reported_status
        param = dict(param)
        if final:
            param["jobDispatcherErrorDiag"] = None
        elif reported_status in ("holding", "transferring"):
            param["jobDispatcherErrorDiag"] = f"set to {reported_status} by the pilot at {format_time(now)}"
        with self.database.transaction() as cursor:
            job = cursor.execute(_FINAL_UPDATE_SELECT if final else _UPDATE_SELECT, (panda_id,)).fetchone()
            if (
                job is None
                or job["job_status"] not in _ACTIVE_STATES
                or (attempt_nr is not None and job["attempt_nr"] != attempt_nr)
            ):
                # Unknown, already archived, or another attempt: the pilot must stop.
                return COMMAND_KILL
            command = job["command_to_pilot"] or COMMAND_NONE
            old_status = job["job_status"]
            row_diag = job["dispatcher_error_diag"]
            if old_status == "transferring" and new_status == "holding" and not row_diag:
                return "alreadydone"
            if old_status == "holding" and new_status == "holding":
                if param.get("jobDispatcherErrorDiag"):
                    return command  # a heartbeat during recovery changes nothing
                if not row_diag:
                    return "alreadydone"
            if old_status in ("holding", "transferring") and new_status in ("running", "starting"):
                return command
            if old_status == "holding" and new_status == "transferring":
                return command
            if old_status == "running" and new_status == "starting":
                new_status = "running"
            self._write_update(cursor, job, new_status, param, now, reported_status, job_output_report)
        return command

    def _write_update(
        self,
        cursor: Cursor,
        job: Mapping[str, Any],
        new_status: str,
        param: Mapping[str, Any],
        now: float,
        reported: str,
        report: str,
    ) -> None:
        """One UPDATE for the report; a final report is settled in it by the ``job_output_report`` rule."""
        final = reported in ("finished", "failed")
        assignments: dict[str, Any] = {"job_status": new_status, "modification_time": now}
        extras = {}
        for key, value in param.items():
            if value is None and key != "jobDispatcherErrorDiag":
                continue
            if key in _PARAM_COLUMNS:
                assignments[_PARAM_COLUMNS[key]] = value
            else:
                extras[key] = value
        if extras:
            assignments["pilot_params"] = json.dumps({**json.loads(job["pilot_params"]), **extras})
        if final or new_status != job["job_status"]:
            assignments["state_change_time"] = now
        if new_status == "holding" and job["end_time"] is None and "endTime" not in param:
            assignments["end_time"] = format_time(now)
        if job["job_status"] in ("sent", "starting") and new_status == "running" and "startTime" not in param:
            assignments["start_time"] = format_time(now)
        history = ""
        if new_status != job["job_status"]:
            history += history_entry(new_status, now, f"reported by the pilot at {job['computing_site']}")
        if final:
            spec = json.loads(job["spec"])
            outcome = adder.settle(
                reported,
                spec.get("Files", []),
                report,
                param.get("transExitCode", job["trans_exit_code"]),
                param.get("pilotErrorCode", job["pilot_error_code"]),
            )
            for item in spec.get("Files", []):
                item.update(outcome.files.get(item["lfn"], {}))
            assignments.update(
                job_status=outcome.status,
                job_output_report=report,
                ddm_error_code=outcome.ddm_error_code,
                ddm_error_diag=outcome.ddm_error_diag,
            )
            cursor.execute(
                "UPDATE panda_job_specs SET spec = ? WHERE panda_id = ?", (json.dumps(spec), job["panda_id"])
            )
            reason = outcome.ddm_error_diag or f"pilot reported {reported}"
            history += history_entry(outcome.status, now, reason)
        columns = ", ".join(f"{name} = ?" for name in assignments)
        cursor.execute(
            f"UPDATE panda_jobs SET {columns}, history = history || ? WHERE panda_id = ?",
            (*assignments.values(), history, job["panda_id"]),
        )

    # -- kill ---------------------------------------------------------------------------------------------
    def kill(self, panda_ids: Sequence[int], user: str, production: bool, code: int | None = None) -> list[bool]:
        """Kill jobs as ``job_complex_module.py: killJob`` does: set ``commandToPilot=tobekilled``, and cancel
        at once every job that is not running (or any job, for the force-kill codes)."""
        code_text = None if code is None else str(code)
        now = self._clock()
        results = []
        with self.database.transaction() as cursor:
            for panda_id in panda_ids:
                job = cursor.execute(
                    f"SELECT * FROM panda_jobs WHERE panda_id = ? AND {ACTIVE_TERM}",
                    (panda_id,),
                ).fetchone()
                if job is None or not _may_kill(job, user, production, code_text):
                    results.append(False)
                    continue
                force = code_text in FORCE_KILL_CODES
                if job["command_to_pilot"] == COMMAND_KILL and not force and job["job_status"] == "running":
                    results.append(False)
                    continue
                diag = f"killed by {user}"
                if job["job_status"] == "running" and not force:
                    cursor.execute(
                        "UPDATE panda_jobs SET command_to_pilot = ?, task_buffer_error_diag = ? WHERE panda_id = ?",
                        (COMMAND_KILL, diag, panda_id),
                    )
                else:
                    cursor.execute(
                        "UPDATE panda_jobs SET command_to_pilot = ?, job_status = 'cancelled',"
                        " task_buffer_error_code = ?, task_buffer_error_diag = ?, modification_time = ?,"
                        " state_change_time = ?, end_time = COALESCE(end_time, ?), history = history || ?"
                        " WHERE panda_id = ?",
                        (
                            COMMAND_KILL, EC_KILL, diag, now, now, format_time(now),
                            history_entry("cancelled", now, diag), panda_id,
                        ),
                    )
                results.append(True)
        return results

    # -- queries ------------------------------------------------------------------------------------------
    def statuses(self, panda_ids: Sequence[int]) -> list[dict[str, Any]]:
        """``pilot_api.py: get_job_status``: one entry per requested id, ``"not found"`` for unknown ones."""
        if not panda_ids:
            return []
        marks = ",".join("?" * len(panda_ids))
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                f"SELECT panda_id, job_status, attempt_nr FROM panda_jobs WHERE panda_id IN ({marks})",
                list(panda_ids),
            ).fetchall()
        found = {row["panda_id"]: row for row in rows}
        result = []
        for panda_id in panda_ids:
            row = found.get(panda_id)
            if row is None:
                result.append({"job_id": panda_id, "status": "not found", "attempt_number": 0})
            else:
                result.append({"job_id": panda_id, "status": row["job_status"], "attempt_number": row["attempt_nr"]})
        return result

    def stats_by_site(self) -> dict[str, dict[str, int]]:
        """Site -> state -> count of active jobs (``job_standalone_module.py: getJobStatistics``)."""
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                "SELECT computing_site, job_status, COUNT(*) AS n FROM panda_jobs"
                f" WHERE {ACTIVE_TERM} GROUP BY computing_site, job_status"
            ).fetchall()
        stats: dict[str, dict[str, int]] = {}
        for row in rows:
            stats.setdefault(row["computing_site"], {})[row["job_status"]] = row["n"]
        for states in stats.values():
            for state in ("assigned", "activated", "running"):
                states.setdefault(state, 0)
        return stats

    def detailed_stats_by_site(self) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
        """Site -> resource type -> prodSourceLabel -> state -> count (``getDetailedJobStatistics``)."""
        with self.database.transaction() as cursor:
            rows = cursor.execute(
                "SELECT computing_site, resource_type, prod_source_label, job_status, COUNT(*) AS n"
                f" FROM panda_jobs WHERE {ACTIVE_TERM}"
                " GROUP BY computing_site, resource_type, prod_source_label, job_status"
            ).fetchall()
        stats: dict[str, dict[str, dict[str, dict[str, int]]]] = {}
        for row in rows:
            by_label = stats.setdefault(row["computing_site"], {}).setdefault(row["resource_type"], {})
            by_label.setdefault(row["prod_source_label"], {})[row["job_status"]] = row["n"]
        for by_resource in stats.values():
            for by_label in by_resource.values():
                for states in by_label.values():
                    for state in ("assigned", "activated", "running"):
                        states.setdefault(state, 0)
        return stats

    def activated_resource_types(self, site: str, only: Sequence[str] | None = None) -> list[str]:
        """The resource type of each activated job of the site (of ``only`` those, when given), highest
        ``currentPriority`` first (``worker_module.py: ups_new_worker_distribution``)."""
        sql = "SELECT resource_type FROM panda_jobs WHERE job_status = 'activated' AND computing_site = ?"
        args: list[Any] = [site]
        if only is not None:
            sql += f" AND resource_type IN ({','.join('?' * len(only))})"
            args.extend(only)
        with self.database.transaction() as cursor:
            rows = cursor.execute(sql + " ORDER BY current_priority DESC, panda_id", args).fetchall()
        return [row["resource_type"] for row in rows]

    # -- lost heartbeats ----------------------------------------------------------------------------------
    def fail_lost_heartbeats(self, timeout: float) -> list[int]:
        """Fail jobs with no update for ``timeout`` seconds, with ``jobdispatcher/Watcher.py``'s codes."""
        now = self._clock()
        failed = []
        with self.database.transaction() as cursor:
            jobs = cursor.execute(
                f"SELECT * FROM panda_jobs WHERE {ACTIVE_TERM} AND job_status IN ({_WATCHED_IN})"
                " AND modification_time < ?",
                (now - timeout,),
            ).fetchall()
            for job in jobs:
                code, diag = _watcher_verdict(job, timeout)
                cursor.execute(
                    "UPDATE panda_jobs SET job_status = 'failed', dispatcher_error_code = ?,"
                    " dispatcher_error_diag = ?, end_time = COALESCE(end_time, ?), state_change_time = ?,"
                    " history = history || ? WHERE panda_id = ?",
                    (
                        code, diag, format_time(job["modification_time"]), now,
                        history_entry("failed", now, diag), job["panda_id"],
                    ),
                )
                failed.append(job["panda_id"])
        return failed

    # -- inspection (tests and the ``jobs`` command) ------------------------------------------------------
    def job(self, panda_id: int) -> dict[str, Any] | None:
        """Everything known about one job, with its state history; ``None`` if unknown."""
        with self.database.transaction() as cursor:
            row = cursor.execute(
                "SELECT j.*, s.spec FROM panda_jobs j JOIN panda_job_specs s ON s.panda_id = j.panda_id"
                " WHERE j.panda_id = ?",
                (panda_id,),
            ).fetchone()
        return None if row is None else _describe(row)

    def jobs(self, site: str | None = None) -> list[dict[str, Any]]:
        """One summary per job, oldest first."""
        sql = (
            "SELECT panda_id, job_name, computing_site, prod_source_label, job_status, current_priority,"
            " attempt_nr, command_to_pilot, modification_time, modification_host, trans_exit_code,"
            " pilot_error_code, ddm_error_code, dispatcher_error_code, task_buffer_error_code FROM panda_jobs"
        )
        args: tuple[Any, ...] = ()
        if site is not None:
            sql += " WHERE computing_site = ?"
            args = (site,)
        with self.database.transaction() as cursor:
            rows = cursor.execute(sql + " ORDER BY panda_id", args).fetchall()
        return [
            {
                "panda_id": row["panda_id"],
                "job_name": row["job_name"],
                "site": row["computing_site"],
                "prod_source_label": row["prod_source_label"],
                "status": row["job_status"],
                "priority": row["current_priority"],
                "attempt_nr": row["attempt_nr"],
                "command": row["command_to_pilot"],
                "modified": format_time(row["modification_time"]),
                "node": row["modification_host"],
                "trans_exit_code": row["trans_exit_code"],
                "pilot_error_code": row["pilot_error_code"],
                "ddm_error_code": row["ddm_error_code"],
                "dispatcher_error_code": row["dispatcher_error_code"],
                "task_buffer_error_code": row["task_buffer_error_code"],
            }
            for row in rows
        ]


def _dispatch_where(wanted: DispatchFilter) -> tuple[str, list[Any]]:
    """``job_complex_module.py: construct_where_clause``, for the criteria a pilot can send."""
    where = "WHERE job_status = 'activated' AND computing_site = ?"
    params: list[Any] = [wanted.site_name]
    if wanted.memory:
        where += " AND (min_ram_count <= ? OR min_ram_count = 0)"
        params.append(wanted.memory)
    if wanted.disk_space:
        where += " AND (max_disk_count <= ? OR max_disk_count = 0)"
        params.append(wanted.disk_space)
    if wanted.remaining_time > 0:
        where += " AND (max_walltime IS NULL OR max_walltime <= ?)"
        params.append(wanted.remaining_time)
    if wanted.resource_type is not None:
        where += " AND resource_type = ?"
        params.append(wanted.resource_type)
    label = wanted.prod_source_label
    if label == "user":
        labels: tuple[str, ...] = ("user", "panda", "install")
    elif label in (None, "managed"):
        labels = ("managed", "test", "prod_test", "install")
    elif label == "unified":
        labels = ("managed", "test", "prod_test", "install", "user", "panda")
    else:
        labels = (label,)
    where += f" AND prod_source_label IN ({','.join('?' * len(labels))})"
    params.extend(labels)
    if wanted.prod_user_id is not None:
        where += " AND prod_user_id = ?"
        params.append(wanted.prod_user_id)
    if wanted.task_id is not None:
        where += " AND jedi_task_id = ?"
        params.append(wanted.task_id)
    return where, params


def _may_kill(job: Mapping[str, Any], user: str, production: bool, code: str | None) -> bool:
    """``killJob``'s permission check: production may kill production jobs, anyone may kill their own."""
    if production:
        return job["prod_source_label"] not in ("user", "panda") or code in PROD_KILLS_USER_CODES
    return job["prod_user_id"] == user


def _watcher_verdict(job: Mapping[str, Any], timeout: float) -> tuple[int, str]:
    """Error code and diagnostic of ``jobdispatcher/Watcher.py`` for a job that went silent."""
    if job["job_status"] == "sent":
        return EC_SEND_ERROR, f"Sent job didn't receive reply from pilot within {timeout / 60:g} min"
    if job["exe_error_diag"] is not None or job["pilot_error_diag"] is not None:
        return EC_RECOVERY, f"job recovery failed for {timeout / 3600:g} hours"
    if job["end_time"] is None:
        return EC_WATCHER, f"lost heartbeat : {format_time(job['modification_time'])}"
    code = {"holding": EC_HOLDING, "transferring": EC_TRANSFERRING}.get(job["job_status"], EC_TIMEOUT)
    return code, f"timeout in {job['job_status']} : last heartbeat at {job['end_time']}"


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def history_entry(status: str, now: float, reason: str) -> str:
    """One line of a job's state history: ``status<TAB>epoch<TAB>reason``."""
    clean = " ".join(reason.split())
    return f"{status}\t{now:.6f}\t{clean}\n"


def _describe(row: Mapping[str, Any]) -> dict[str, Any]:
    spec = json.loads(row["spec"])
    return {
        "panda_id": row["panda_id"],
        "job_name": row["job_name"],
        "site": row["computing_site"],
        "prod_source_label": row["prod_source_label"],
        "prod_user_id": row["prod_user_id"],
        "status": row["job_status"],
        "priority": row["current_priority"],
        "attempt_nr": row["attempt_nr"],
        "command": row["command_to_pilot"],
        "node": row["modification_host"],
        "computing_element": row["computing_element"],
        "created": format_time(row["creation_time"]),
        "modified": format_time(row["modification_time"]),
        "start_time": row["start_time"],
        "end_time": row["end_time"],
        "trans_exit_code": row["trans_exit_code"],
        "pilot_error_code": row["pilot_error_code"],
        "pilot_error_diag": row["pilot_error_diag"],
        "exe_error_code": row["exe_error_code"],
        "exe_error_diag": row["exe_error_diag"],
        "ddm_error_code": row["ddm_error_code"],
        "ddm_error_diag": row["ddm_error_diag"],
        "dispatcher_error_code": row["dispatcher_error_code"],
        "dispatcher_error_diag": row["dispatcher_error_diag"],
        "task_buffer_error_code": row["task_buffer_error_code"],
        "task_buffer_error_diag": row["task_buffer_error_diag"],
        "sup_error_code": row["sup_error_code"],
        "sup_error_diag": row["sup_error_diag"],
        "job_output_report": row["job_output_report"],
        "pilot_params": json.loads(row["pilot_params"]),
        "files": spec.get("Files", []),
        "spec": spec,
        "history": [
            {"status": status, "time": format_time(float(epoch)), "reason": reason}
            for status, epoch, reason in (line.split("\t", 2) for line in row["history"].splitlines())
        ],
    }
