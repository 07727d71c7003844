"""Slurm back end: one ``sbatch --array`` per submission; status from ``squeue``, then the job-completion log.

Batch ids are ``<array job id>_<task id>``. ``sacct`` is never used: it needs slurmdbd. While the controller
knows a job (``MinJobAge`` seconds after it ends) ``squeue -t all`` reports it; after that the
``jobcomp/filetxt`` log (``JobCompLoc``) does.

A credential reaches the pilots by its path, on the file system the nodes share with the scheduler: the batch
script exports ``PANDA_AUTH_TOKEN_FILE`` (and ``PANDA_AUTH_ORIGIN``) or ``X509_USER_PROXY``, never the file's
content. Written into the script, the secret would be kept by slurmctld with the job (``scontrol write
batch_script`` shows it) and would be the one of submission time: a pilot queued for a day would start with an
expired token. By path, a pilot reads the file when it starts, so replacing the file rotates it for queued pilots
too. The file must be readable by the pilots' user on the nodes, and by no one else.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
import shlex
import subprocess
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autopilot_ops.backends.base import (
    PILOT_ID_VARIABLE,
    PILOT_INDEX_VARIABLE,
    Backend,
    BackendError,
    PilotSpec,
    PilotState,
    PilotStatus,
    SubmittedPilot,
    safe_name,
)
from autopilot_ops.backends.credentials import pilot_environment

log = logging.getLogger(__name__)

_BATCH_ID = re.compile(r"^(\d+)_(\d+)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SQUEUE_FIELDS = ("ArrayJobID", "ArrayTaskID", "State", "Reason", "exit_code", "StartTime", "EndTime")
_HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin"})
# squeue and scancel report these for ids the controller no longer knows; they are not failures.
_GONE_MESSAGES = ("Invalid job id specified", "already completing or completed")

# Job states from Slurm's src/common/slurm_protocol_defs.c (job_state_string); PENDING is split later by reason.
_STATE_MAP = {
    "PENDING": PilotState.QUEUED,
    "REQUEUED": PilotState.QUEUED,
    "REQUEUE_FED": PilotState.QUEUED,
    "RESIZING": PilotState.QUEUED,
    "REQUEUE_HOLD": PilotState.HELD,
    "SPECIAL_EXIT": PilotState.HELD,
    "RESV_DEL_HOLD": PilotState.HELD,
    "SUSPENDED": PilotState.HELD,
    "STOPPED": PilotState.HELD,
    "CONFIGURING": PilotState.RUNNING,
    "RUNNING": PilotState.RUNNING,
    "COMPLETING": PilotState.RUNNING,
    "SIGNALING": PilotState.RUNNING,
    "STAGE_OUT": PilotState.RUNNING,
    "COMPLETED": PilotState.FINISHED,
    "FAILED": PilotState.FAILED,
    "OUT_OF_MEMORY": PilotState.FAILED,
    "TIMEOUT": PilotState.FAILED,
    "NODE_FAIL": PilotState.FAILED,
    "BOOT_FAIL": PilotState.FAILED,
    "DEADLINE": PilotState.FAILED,
    "PREEMPTED": PilotState.FAILED,
    "CANCELLED": PilotState.CANCELLED,
    "REVOKED": PilotState.CANCELLED,
}


class SlurmBackend(Backend):
    """Pilots as Slurm array jobs.

    Parameters (a pilot spec's ``parameters`` override them): ``partition``, ``account``, ``qos``,
    ``sbatch_args`` (extra arguments, a list or a shell-quoted string), ``workdir`` (default: the pilots' log
    directory), ``slurm_conf`` (a ``SLURM_CONF`` for this cluster), ``jobcomp_log`` (default: ``JobCompLoc``
    from ``scontrol show config``), ``log_root`` (where ``log_paths`` looks for logs),
    ``command_timeout_s`` (default 60) and ``transfer_executable`` (default true: a pilot command whose first
    word is a script here, such as the wrapper, carries that script in the batch script, which slurmctld keeps,
    so the node needs no copy of it).

    With ``submit_host``, every command runs through ``ssh <host>``; the log root must then be a shared
    directory with the same path on both hosts, and the completion log must be readable on the submit host.
    """

    kind = "slurm"

    def __init__(self, name: str, parameters: Mapping[str, Any] | None = None, submit_host: str | None = None):
        super().__init__(name, parameters, submit_host)
        self.command_timeout_s = float(self.parameters.get("command_timeout_s", 60))
        self._jobcomp_log: str | None = self.parameters.get("jobcomp_log")
        # Slurm drops a pending array task cancelled on its own without a trace, so remember such cancels.
        self._cancelled: set[str] = set()

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        """Submit ``n`` pilots as one array job (``sbatch --array=0-<n-1>``)."""
        if n <= 0:
            return []
        log_dir = spec.log_dir().absolute()  # relative paths would be taken from the job's working directory
        if "%" in str(log_dir):
            raise ValueError(f"pilot spec for queue {spec.queue!r}: field 'log_root' holds '%', a Slurm pattern")
        log_dir.mkdir(parents=True, exist_ok=True)
        options = {**self.parameters, **spec.parameters}
        argv = [
            "sbatch",
            "--parsable",
            f"--array=0-{n - 1}",
            f"--job-name={_job_name(spec.queue, spec.cycle_id)}",
            f"--output={log_dir}/%A_%a.out",
            f"--error={log_dir}/%A_%a.err",
            f"--chdir={options.get('workdir') or log_dir}",
            f"--cpus-per-task={spec.corecount}",
            *_resource_options(spec, options),
        ]
        # A token of this sbatch call alone: after a lost reply, its array is told from others of the same name.
        token = f"autopilot:{uuid.uuid4().hex}"
        argv.append(f"--comment={token}")
        try:
            done = self._run(argv, stdin=_batch_script(spec, options))
        except BackendError as exc:  # sbatch timed out: the controller may have made the array all the same
            return self._made_anyway(spec, n, token, exc)
        if done.returncode != 0:
            return self._made_anyway(spec, n, token, self._command_error(argv, done))
        job_id = done.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise BackendError(f"{shlex.join(argv[:3])} printed {done.stdout.strip()!r}, not a job id")
        return [
            SubmittedPilot(f"{job_id}_{i}", log_dir / f"{job_id}_{i}.out", log_dir / f"{job_id}_{i}.err", i)
            for i in range(n)
        ]

    def _made_anyway(self, spec: PilotSpec, n: int, token: str, error: BackendError) -> list[SubmittedPilot]:
        """After a failed ``sbatch``, the pilots the controller made all the same (a reply lost on the way,
        a timeout, a dropped ssh connection): tasks of this submission's job name carrying its call's
        comment token; else the failure is raised."""
        found = self._named(_job_name(spec.queue, spec.cycle_id), comment=token)
        if found:
            log.warning("slurm back end %r: sbatch failed, but it made %s", self.name, found[0].batch_id.split("_")[0])
            return found[:n]
        raise error

    def status(self, batch_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """One ``squeue`` call for all ids; ids it no longer knows are looked up in the completion log."""
        wanted = {batch_id: match.groups() for batch_id in batch_ids if (match := _BATCH_ID.match(batch_id))}
        if not wanted:
            return {}
        job_ids = sorted({job for job, _ in wanted.values()}, key=int)
        known = self._squeue(job_ids)
        result = {batch_id: known[batch_id] for batch_id in wanted if batch_id in known}
        missing = {batch_id: wanted[batch_id] for batch_id in wanted if batch_id not in result}
        if missing:
            result.update(self._from_completion_log(missing))
        for batch_id in self._cancelled.intersection(wanted):
            if batch_id not in result:
                result[batch_id] = PilotStatus(PilotState.CANCELLED, reason="cancelled before it started")
            self._cancelled.discard(batch_id)
        return result

    def cancel(self, batch_ids: Sequence[str]) -> None:
        """One ``scancel`` call; each array is named once (``<job>_[<tasks>]``)."""
        tasks: dict[str, list[int]] = defaultdict(list)
        for batch_id in batch_ids:
            if match := _BATCH_ID.match(batch_id):
                tasks[match[1]].append(int(match[2]))
        if not tasks:
            return
        argv = ["scancel", *(_array_tasks(job, ids) for job, ids in sorted(tasks.items()))]
        done = self._run(argv)
        errors = [line for line in done.stderr.splitlines() if line.strip() and not _is_gone(line)]
        if done.returncode != 0 and errors:
            raise self._command_error(argv, done)
        self._cancelled.update(f"{job}_{task}" for job, ids in tasks.items() for task in ids)

    def find_pilots(self, queue: str, cycle_id: str) -> list[SubmittedPilot] | None:
        """The pilots of one submission, by job name, while the controller knows them.

        ``None`` when only the completion log still lists them (it does not record the log files), or when
        ``squeue`` fails (slurmctld stopped or unreachable: an empty answer would settle the key as missed);
        ``[]`` when neither knows the name.
        """
        name = _job_name(queue, cycle_id)
        pilots = self._named(name)
        if pilots is None:
            return None
        if pilots:
            return pilots
        path = self._completion_log_path()
        if path is None:
            return None
        argv = ["grep", "-q", "-F", f" Name={name} ", path]
        done = self._run(argv)
        if done.returncode not in (0, 1) and "No such file" not in done.stderr:
            raise self._command_error(argv, done)
        return None if done.returncode == 0 else []

    def _named(self, name: str, comment: str | None = None) -> list[SubmittedPilot] | None:
        """The array tasks the controller knows by job name (and with this ``comment``, when given);
        ``None`` when ``squeue`` fails (slurmctld stopped or unreachable)."""
        argv = ["squeue", "--array", "--noheader", "--states=all", f"--name={name}"]
        try:
            done = self._run([*argv, "--Format=ArrayJobID:|,ArrayTaskID:|,StdOut:|,StdErr:|,Comment:|"])
        except BackendError as exc:
            log.warning("%s", exc)
            return None
        if done.returncode != 0:
            log.warning("%s", self._command_error(argv, done))
            return None
        pilots = []
        for line in done.stdout.splitlines():
            job, task, stdout, stderr, their_comment = [*line.split("|"), "", "", "", ""][:5]
            if task.isdigit() and (comment is None or their_comment.strip() == comment):
                pilots.append(
                    SubmittedPilot(f"{job}_{task}", _resolve(stdout, job, task), _resolve(stderr, job, task), int(task))
                )
        return sorted(pilots, key=lambda p: tuple(map(int, p.batch_id.split("_"))))

    def log_paths(self, batch_id: str) -> tuple[Path, Path] | None:
        """The pilot's ``.out`` and ``.err``, found under the ``log_root`` parameter (newest day first)."""
        log_root = self.parameters.get("log_root")
        if not log_root or not _BATCH_ID.match(batch_id):
            return None
        for stdout in sorted(Path(log_root).glob(f"*/*/{batch_id}.out"), reverse=True):
            return stdout, stdout.with_suffix(".err")
        return None

    def _squeue(self, job_ids: Sequence[str]) -> dict[str, PilotStatus]:
        argv = [
            "squeue",
            "--array",
            "--noheader",
            "--states=all",
            f"--jobs={','.join(job_ids)}",
            "--Format=" + ",".join(f"{field}:|" for field in _SQUEUE_FIELDS),
        ]
        done = self._run(argv)
        if done.returncode != 0:
            if _is_gone(done.stderr):  # squeue fails so when the only id asked for is unknown
                return {}
            raise self._command_error(argv, done)
        result = {}
        for line in done.stdout.splitlines():
            fields = line.split("|")
            if len(fields) < len(_SQUEUE_FIELDS):
                raise BackendError(f"{argv[0]} printed a line with too few fields: {line!r}")
            job, task, state, reason, raw_exit, start, end = fields[: len(_SQUEUE_FIELDS)]
            if task.isdigit():
                result[f"{job}_{task}"] = _squeue_status(state, reason, raw_exit, start, end)
        return result

    def _from_completion_log(self, missing: Mapping[str, tuple[str, str]]) -> dict[str, PilotStatus]:
        """Statuses of jobs the controller forgot, from the ``jobcomp/filetxt`` log (one ``grep`` call)."""
        path = self._completion_log_path()
        if path is None:
            return {}
        jobs = "|".join(sorted({job for job, _ in missing.values()}, key=int))
        argv = ["grep", "-h", "-E", f"^JobId=({jobs}) | ArrayJobId=({jobs}) ", path]
        done = self._run(argv)
        if done.returncode == 2 and "No such file" in done.stderr:
            return {}
        if done.returncode not in (0, 1):
            raise self._command_error(argv, done)
        by_task: dict[tuple[str, str], PilotStatus] = {}
        by_array: dict[str, PilotStatus] = {}
        for line in done.stdout.splitlines():
            record = parse_jobcomp_line(line)
            status = _jobcomp_status(record)
            if "ArrayTaskId" in record:
                by_task[(record.get("ArrayJobId", ""), record["ArrayTaskId"])] = status
            else:
                # An array's own record without a task id: its still-pending tasks ended with it.
                by_array[record.get("JobId", "")] = status
        result = {}
        for batch_id, (job, task) in missing.items():
            status = by_task.get((job, task)) or by_array.get(job)
            if status is not None:
                result[batch_id] = status
        return result

    def _completion_log_path(self) -> str | None:
        """``JobCompLoc`` when ``JobCompType`` is ``jobcomp/filetxt``; asked of ``scontrol`` once."""
        if self._jobcomp_log is None:
            argv = ["scontrol", "show", "config"]
            done = self._run(argv)
            if done.returncode != 0:
                raise self._command_error(argv, done)
            settings = dict(
                (key.strip(), value.strip())
                for key, sep, value in (line.partition("=") for line in done.stdout.splitlines())
                if sep
            )
            if settings.get("JobCompType") != "jobcomp/filetxt" or not settings.get("JobCompLoc"):
                return None
            self._jobcomp_log = settings["JobCompLoc"]
        return self._jobcomp_log

    def _run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command here, or on ``submit_host`` through ssh."""
        command = ["env", "SLURM_TIME_FORMAT=standard"]
        if self.parameters.get("slurm_conf"):
            command.append(f"SLURM_CONF={self.parameters['slurm_conf']}")
        command += argv
        if self.submit_host:
            command = ["ssh", "-o", "BatchMode=yes", self.submit_host, "--", shlex.join(command)]
        try:
            return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=self.command_timeout_s)
        except subprocess.TimeoutExpired as exc:
            raise BackendError(
                f"slurm back end {self.name!r}: {argv[0]} did not answer within {self.command_timeout_s:g} s"
            ) from exc
        except OSError as exc:
            raise BackendError(f"slurm back end {self.name!r}: cannot run {command[0]}: {exc}") from exc

    def _command_error(self, argv: Sequence[str], done: subprocess.CompletedProcess[str]) -> BackendError:
        shown = shlex.join(argv) if len(argv) < 12 else shlex.join([*argv[:11], "..."])
        where = f" on {self.submit_host}" if self.submit_host else ""
        detail = done.stderr.strip() or done.stdout.strip() or "no output"
        return BackendError(
            f"slurm back end {self.name!r}: `{shown}`{where} exited {done.returncode}: {detail[-2000:]}"
        )


def _job_name(queue: str, cycle_id: str) -> str:
    """``autopilot.<queue>.<cycle>``: how ``find_pilots`` finds a submission again."""
    return f"autopilot.{safe_name(queue)}.{safe_name(cycle_id)}"


def _resolve(pattern: str, job: str, task: str) -> Path:
    """An ``--output`` pattern of ours (``%A_%a``) with the job and task ids filled in."""
    return Path(pattern.replace("%A", job).replace("%a", task))


def parse_jobcomp_line(line: str) -> dict[str, str]:
    """The ``Key=Value`` fields of one ``jobcomp/filetxt`` line (values may hold ``=`` and spaces).

    Format: Slurm's src/plugins/jobcomp/filetxt/jobcomp_filetxt.c (``JOB_FORMAT``). ``ArrayJobId`` and
    ``ArrayTaskId`` appear only when the record has a task id, so an array's record of its still-pending tasks
    (cancelled before they started) has neither. ``ExitCode`` is ``<code>:<signal>``.
    """
    return dict(re.findall(r"(?:^| )([A-Za-z]+)=(.*?)(?= [A-Za-z]+=|\s*$)", line))


def _batch_script(spec: PilotSpec, options: Mapping[str, Any]) -> str:
    """The batch script given to ``sbatch`` on stdin: the spec's environment, then the pilot command (a script of
    ours, such as the wrapper, carried in the batch script itself: slurmctld keeps it, so the node needs no copy)."""
    lines = ["#!/bin/sh", f"# AutoPilot pilot: queue {safe_name(spec.queue)}, cycle {safe_name(spec.cycle_id)}"]
    for key, value in {**spec.environment, **pilot_environment(spec.credential)}.items():
        if not _ENV_NAME.match(key):
            raise ValueError(f"pilot spec for queue {spec.queue!r}: field 'environment' has a bad name {key!r}")
        lines.append(f"export {key}={shlex.quote(str(value))}")
    if not spec.command:
        raise ValueError(f"pilot spec for queue {spec.queue!r}: field 'command' is empty")
    lines.append(f'export {PILOT_ID_VARIABLE}="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"')
    lines.append(f'export {PILOT_INDEX_VARIABLE}="${{SLURM_ARRAY_TASK_ID}}"')
    carried = _carried_script(spec, options)
    if carried is None:
        lines.append(f"exec {shlex.join(spec.command)}")
    else:
        lines += _carry(carried, spec.command[1:])
    return "\n".join(lines) + "\n"


def _carried_script(spec: PilotSpec, options: Mapping[str, Any]) -> str | None:
    """The text of the command's first word when it is a script here (``#!``) that goes with the job: the
    wrapper, on nodes that share nothing with this host (``transfer_executable``, default true)."""
    if not options.get("transfer_executable", True):
        return None
    first = Path(spec.command[0])
    if not first.is_absolute() or not first.is_file():
        return None
    try:
        with first.open("rb") as stream:
            if stream.read(2) != b"#!":
                return None  # a binary is run from its path
        return first.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _carry(script: str, arguments: Sequence[str]) -> list[str]:
    """Batch-script lines that write ``script`` on the node (a here-document), run it, and remove it."""
    delimiter = f"AUTOPILOT_SCRIPT_{secrets.token_hex(8)}"
    return [
        'carried=$(mktemp "${TMPDIR:-/tmp}/autopilot-script.XXXXXX") || exit 3',
        f"cat > \"$carried\" <<'{delimiter}'",
        script.rstrip("\n"),
        delimiter,
        'chmod 700 "$carried"',
        f'"$carried" {shlex.join(arguments)}'.rstrip(),
        'status=$?; rm -f "$carried"; exit $status',
    ]


def _resource_options(spec: PilotSpec, options: Mapping[str, Any]) -> list[str]:
    argv = [f"--{key}={options[key]}" for key in ("partition", "account", "qos") if options.get(key)]
    if spec.walltime_s:
        minutes, seconds = divmod(int(spec.walltime_s), 60)
        argv.append(f"--time={minutes}:{seconds:02d}")
    if spec.memory_mb:
        argv.append(f"--mem={int(spec.memory_mb)}")
    extra = options.get("sbatch_args") or []
    argv += shlex.split(extra) if isinstance(extra, str) else [str(arg) for arg in extra]
    return argv


def _squeue_status(state: str, reason: str, raw_exit: str, start: str, end: str) -> PilotStatus:
    pilot_state = _pilot_state(state, reason)
    reason_text = reason if reason and reason != "None" else None
    exit_code = None
    if pilot_state.is_final and raw_exit.isdigit():
        # squeue prints the wait(2) status: the exit code in the high byte, a signal in the low bits.
        wait_status = int(raw_exit)
        exit_code, signal_number = wait_status >> 8, wait_status & 0x7F
        if signal_number:
            exit_code, reason_text = None, _join(reason_text, f"signal {signal_number}")
    return PilotStatus(
        pilot_state,
        exit_code,
        reason_text,
        _time(start) if pilot_state is not PilotState.QUEUED and pilot_state is not PilotState.HELD else None,
        _time(end) if pilot_state.is_final else None,
    )


def _jobcomp_status(record: Mapping[str, str]) -> PilotStatus:
    state = _pilot_state(record.get("JobState", ""), "")
    code, _, signal_text = record.get("ExitCode", "").partition(":")
    exit_code = int(code) if code.isdigit() else None
    reason = "from the job-completion log"
    if signal_text.isdigit() and int(signal_text):
        exit_code, reason = None, _join(reason, f"signal {signal_text}")
    return PilotStatus(state, exit_code, reason, _time(record.get("StartTime", "")), _time(record.get("EndTime", "")))


def _pilot_state(state: str, reason: str) -> PilotState:
    base = state.split()[0] if state.strip() else ""
    if base == "PENDING" and reason in _HELD_REASONS:
        return PilotState.HELD
    try:
        return _STATE_MAP[base]
    except KeyError:
        raise BackendError(f"slurm back end: unknown job state {state!r}") from None


def _time(text: str) -> dt.datetime | None:
    """A Slurm timestamp (local time, ``SLURM_TIME_FORMAT=standard``) as an aware UTC datetime."""
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.timezone.utc)
    except ValueError:
        return None  # "N/A", "Unknown", "None"


def _join(first: str | None, second: str) -> str:
    return f"{first}; {second}" if first else second


def _is_gone(stderr: str) -> bool:
    return any(message in stderr for message in _GONE_MESSAGES)


def _array_tasks(job: str, tasks: Iterable[int]) -> str:
    """Tasks of one array job as ``scancel`` takes them: ``7_3``, or ``7_[0-2,5]``."""
    ordered = sorted(set(tasks))
    if len(ordered) == 1:
        return f"{job}_{ordered[0]}"
    parts, start = [], ordered[0]
    for previous, current in zip(ordered, [*ordered[1:], None]):
        if current != previous + 1:
            parts.append(str(start) if start == previous else f"{start}-{previous}")
            start = current
    return f"{job}_[{','.join(parts)}]"
