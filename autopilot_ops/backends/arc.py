"""ARC-CE back end: pilots submitted to a NorduGrid ARC CE over its REST interface 1.0, with the queue's proxy.

Parameters:

- ``ce`` (required): the CE, ``https://host:port/arex``;
- ``proxy``: the X.509 proxy file (client certificate and key in one, as ``arcproxy`` writes it); a queue's
  proxy credential (``credentials``, with its lifetime check) takes its place for that queue's pilots, and each
  submission's jobs are followed, killed and cleaned with the proxy that submitted them;
- ``ca_file`` or ``ca_dir``: the CAs that sign the CE's certificate (a directory of hashed names, as
  ``/etc/grid-security/certificates``); default: the system's;
- ``ce_queue``: the CE's queue (xRSL ``queue``); ``runtime_environments``: a list (xRSL ``runtimeenvironment``);
- ``transfer_executable`` (default true): upload the pilot command's first word, a file here, into the job's
  session directory (as ``arcsub`` uploads inputs), so the node needs nothing of ours (the wrapper);
- ``state_dir``: where submissions are recorded (default ``<AUTOPILOT_HOME>/arc-backend/<name>``);
- ``timeout_s``: per request (default 30).

One request submits all ``n`` pilots of a submission (an xRSL multi-request). Each job's executable is a launch
script of ours (``autopilot-launch.sh``: the pilot's environment, then its command, quoted for ``sh``), uploaded
with the job: A-REX 6.17 mangles special characters in xRSL arguments and environment values. A pilot's batch id is
ours, ``arc-<submission>-<i>``, known before the CE answers, so it can be in the pilot's environment and its job
name; the submission's record maps it to the CE's job id. A crash between the request and the record is recovered
from the CE's job names (``find_pilots``). No delegation is made: the pilot stages nothing through the CE (it
fetches its bundle over HTTP and talks to PanDA itself).

State map (REST ``state`` -> ours): ACCEPTING, ACCEPTED, PREPARING, PREPARED, SUBMITTING -> submitted;
QUEUING -> queued; RUNNING, EXITINGLRMS, EXECUTED, FINISHING, KILLING -> running; HELD -> held; FINISHED ->
finished (failed if its exit code is not 0 or A-REX recorded a failure); FAILED -> failed; KILLED -> cancelled;
WIPED -> missed. REST states lag by up to a minute (A-REX's info provider rewrites them every ~60 s), so a job
REST does not yet show as final is read from ``diagnose/status``, the control directory's state, which is
current: ACCEPTED, PREPARING, SUBMIT -> submitted; INLRMS -> running (queued while REST still says QUEUING);
FINISHING, CANCELING -> running; FINISHED -> as above; DELETED -> missed.

A job found final has its stdout and stderr fetched into our log root, then is cleaned from the CE
(``action=clean``); its final status is kept in the record, so asking again gives the same answer.

Known quirk of A-REX 6.17's fork LRMS: ``action=kill`` signals only the job script, and the job's children
keep running on the CE's host; batch LRMSes (Slurm, HTCondor behind the CE) end the whole job.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import shlex
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autopilot_ops import config
from autopilot_ops.backends.arc_rest import ArcRestClient, rest_url
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
from autopilot_ops.backends.xrsl import STDERR, STDOUT, PilotJob, bulk
from autopilot_ops.credentials.model import PROXY

REST_STATES = {
    "ACCEPTING": PilotState.SUBMITTED, "ACCEPTED": PilotState.SUBMITTED, "PREPARING": PilotState.SUBMITTED,
    "PREPARED": PilotState.SUBMITTED, "SUBMITTING": PilotState.SUBMITTED, "QUEUING": PilotState.QUEUED,
    "RUNNING": PilotState.RUNNING, "EXITINGLRMS": PilotState.RUNNING, "EXECUTED": PilotState.RUNNING,
    "FINISHING": PilotState.RUNNING, "KILLING": PilotState.RUNNING, "HELD": PilotState.HELD,
    "FINISHED": PilotState.FINISHED, "FAILED": PilotState.FAILED, "KILLED": PilotState.CANCELLED,
    "WIPED": PilotState.MISSED,
}
CONTROL_STATES = {
    "ACCEPTED": PilotState.SUBMITTED, "PREPARING": PilotState.SUBMITTED, "SUBMIT": PilotState.SUBMITTED,
    "INLRMS": PilotState.RUNNING, "FINISHING": PilotState.RUNNING, "CANCELING": PilotState.RUNNING,
    "FINISHED": PilotState.FINISHED, "DELETED": PilotState.MISSED,
}
_RECORD_SUFFIX = ".json"
#: The script each job runs: the pilot's environment and command, quoted for ``sh``.
LAUNCHER = "autopilot-launch.sh"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ArcBackend(Backend):
    """Pilots as jobs of an ARC CE, over REST."""

    kind = "arc"

    def __init__(self, name: str, parameters: Mapping[str, Any] | None = None, submit_host: str | None = None):
        super().__init__(name, parameters, submit_host)
        if submit_host:
            raise BackendError(f"arc back end {name!r}: submit_host is not used (the CE is reached over https)")
        if not self.parameters.get("ce"):
            raise BackendError(f"arc back end {name!r}: parameter 'ce' is required")
        self.ce = str(self.parameters["ce"])
        rest_url(self.ce)  # an https URL, or a clear error now
        self.proxy = Path(str(self.parameters["proxy"])) if self.parameters.get("proxy") else None
        self._verify: str | bool = str(self.parameters.get("ca_file") or self.parameters.get("ca_dir") or "") or True
        self._timeout_s = float(self.parameters.get("timeout_s", 30))
        self._clients: dict[str, ArcRestClient] = {}
        self.state_dir = Path(self.parameters.get("state_dir") or config.state_dir() / "arc-backend" / safe_name(name))
        self.transfer_executable = bool(self.parameters.get("transfer_executable", True))
        self._lock = threading.Lock()

    def client(self, proxy: str | Path | None = None) -> ArcRestClient:
        """The CE's client acting with ``proxy`` (default: the back end's own), one keep-alive session each."""
        chosen = str(proxy or self.proxy or "")
        if not chosen:
            raise BackendError(f"arc back end {self.name!r} (CE {self.ce}): no proxy: set the back end's 'proxy' or "
                               "a proxy credential for the queue")
        if chosen not in self._clients:
            self._clients[chosen] = ArcRestClient(self.ce, chosen, self._verify, self._timeout_s,
                                                  describe=f"arc back end {self.name!r} (CE {self.ce})")
        return self._clients[chosen]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def _identity(self, spec: PilotSpec) -> Path | None:
        """The proxy a submission acts with: the queue's proxy credential, else the back end's ``proxy``."""
        if spec.credential is not None and spec.credential.kind == PROXY:
            return Path(spec.credential.path)
        return self.proxy

    # -- submit -------------------------------------------------------------------------------------------
    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        """All ``n`` pilots in one request, then each one's launch script (and our executable) uploaded."""
        if n <= 0:
            return []
        if not spec.command:
            raise ValueError(f"pilot spec for queue {spec.queue!r}: field 'command' is empty")
        for key in spec.environment:
            if not _ENV_NAME.fullmatch(key):
                raise ValueError(f"pilot spec for queue {spec.queue!r}: field 'environment' has a bad name {key!r}")
        proxy = self._identity(spec)
        if proxy is None or not proxy.is_file():
            raise BackendError(f"arc back end {self.name!r} (queue {spec.queue}, CE {self.ce}): proxy {proxy} "
                               "does not exist")
        client = self.client(proxy)
        submission = f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"
        log_dir = spec.log_dir()
        log_dir.mkdir(parents=True, exist_ok=True)
        shipped = self._shipped(spec.command)
        record = {"queue": spec.queue, "cycle_id": spec.cycle_id, "log_dir": str(log_dir), "n": n, "jobs": None,
                  "cancelled": [], "final": {}, "proxy": str(proxy)}
        self._write(submission, record)  # before the request: a crash after it is recovered by job name
        inputs = [LAUNCHER] + ([shipped.name] if shipped else [])
        jobs = [self._job(spec, batch_id(submission, i), inputs) for i in range(n)]
        answers = client.new_jobs(bulk(jobs), "application/rsl")
        if len(answers) != n:
            raise BackendError(f"arc back end {self.name!r}: the CE answered {len(answers)} jobs for {n} descriptions")
        ids = [answer.get("id") if str(answer.get("status-code")) == "201" else None for answer in answers]
        record["jobs"] = ids
        self._write(submission, record)
        content = shipped.read_bytes() if shipped else None
        for index, job_id in enumerate(ids):
            if job_id is None:
                continue
            client.put_file(job_id, LAUNCHER, launcher(spec, batch_id(submission, index), index, shipped))
            if shipped is not None and content is not None:
                client.put_file(job_id, shipped.name, content)
        refused = [answer for answer, job_id in zip(answers, ids) if job_id is None]
        if refused:
            raise BackendError(f"arc back end {self.name!r}: the CE refused {len(refused)} of {n} pilots: "
                               f"{refused[0].get('status-code')} {refused[0].get('reason')}")
        return [pilot_of(submission, i, log_dir) for i in range(n)]

    def _shipped(self, command: Sequence[str]) -> Path | None:
        """The command's first word when it is a file here that goes with the job."""
        first = Path(command[0])
        if self.transfer_executable and first.is_absolute() and first.is_file():
            return first
        return None

    def _job(self, spec: PilotSpec, name: str, inputs: list[str]) -> PilotJob:
        return PilotJob(
            name=name, executable=LAUNCHER, input_files=inputs, queue=self.parameters.get("ce_queue"),
            cores=spec.corecount, walltime_s=spec.walltime_s, memory_mb=spec.memory_mb,
            runtime_environments=list(self.parameters.get("runtime_environments") or []),
        )

    # -- status -------------------------------------------------------------------------------------------
    def status(self, batch_ids: Sequence[str]) -> dict[str, PilotStatus]:
        """Bulk REST status, the control directory's state where REST may lag; final ones collected and cleaned."""
        known: dict[str, PilotStatus] = {}
        by_job: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for submission, record, batch, job_id in self._located(batch_ids):
            if batch in record["final"]:
                known[batch] = _status_from(record["final"][batch])
            elif job_id is not None:
                by_job[job_id] = (submission, batch, record)
        for proxy, jobs in _by_proxy(by_job).items():
            known.update(self._status_as(self.client(proxy), jobs))
        return known

    def _status_as(self, client: ArcRestClient, by_job: Mapping[str, tuple[str, str, dict[str, Any]]]
                   ) -> dict[str, PilotStatus]:
        known: dict[str, PilotStatus] = {}
        finals: dict[str, tuple[str, PilotStatus]] = {}
        rest = {answer.get("id"): str(answer.get("state") or "") for answer in client.jobs("status", list(by_job))
                if answer.get("id") in by_job and str(answer.get("status-code")) != "404"}  # 404: gone, left out
        lagging = [job_id for job_id, state in rest.items() if not _final_in_rest(state)]
        control = client.diagnose_many(lagging, "status")
        for job_id, rest_state in rest.items():
            _, batch, record = by_job[job_id]
            state = current_state(rest_state, control.get(job_id), batch in record["cancelled"])
            if state is None:
                continue
            if state.is_final:
                finals[job_id] = (batch, self._collect(client, job_id, batch, record, state))
                known[batch] = finals[job_id][1]
            else:
                known[batch] = PilotStatus(state)
        if finals:
            self._record_finals(by_job, finals)
            client.jobs("clean", list(finals))
        return known

    def _collect(self, client: ArcRestClient, job_id: str, batch: str, record: dict[str, Any], state: PilotState
                 ) -> PilotStatus:
        """A final job's exit code, times and failure, and its stdout and stderr copied into our log root."""
        diag = _key_values(client.diagnose(job_id, "diag") or "")
        failure = (client.diagnose(job_id, "failed") or "").strip()
        exit_code = int(diag["exitcode"]) if diag.get("exitcode", "").lstrip("-").isdigit() else None
        if state is PilotState.FINISHED and (failure or (exit_code or 0) != 0):
            state = PilotState.FAILED
        log_dir = Path(record["log_dir"])
        for name, suffix in ((STDOUT, ".out"), (STDERR, ".err")):
            content = client.session_file(job_id, name)
            if content is not None:
                (log_dir / f"{batch}{suffix}").write_bytes(content)
        return PilotStatus(state, exit_code, failure.splitlines()[0] if failure else None,
                           _arc_time(diag.get("LRMSStartTime")), _arc_time(diag.get("LRMSEndTime")))

    def _record_finals(self, by_job: Mapping[str, tuple[str, str, dict[str, Any]]],
                       finals: Mapping[str, tuple[str, PilotStatus]]) -> None:
        with self._lock:
            touched: dict[str, dict[str, Any]] = {}
            for job_id, (batch, status) in finals.items():
                submission = by_job[job_id][0]
                record = touched.get(submission) or self._read(submission) or by_job[job_id][2]
                record["final"][batch] = _status_json(status)
                touched[submission] = record
            for submission, record in touched.items():
                self._write(submission, record)

    # -- cancel, reconcile, logs ----------------------------------------------------------------------------
    def cancel(self, batch_ids: Sequence[str]) -> None:
        """``action=kill`` for every pilot still on the CE; the kill is recorded so its end reads cancelled."""
        jobs: dict[str, tuple[str, str, dict[str, Any]]] = {}
        with self._lock:
            for submission, record, batch, job_id in self._located(batch_ids):
                if job_id is not None and batch not in record["final"]:
                    jobs[job_id] = (submission, batch, record)
                    fresh = self._read(submission) or record
                    if batch not in fresh["cancelled"]:
                        fresh["cancelled"].append(batch)
                        self._write(submission, fresh)
        for proxy, owned in _by_proxy(jobs).items():
            self.client(proxy).jobs("kill", list(owned))

    def find_pilots(self, queue: str, cycle_id: str) -> list[SubmittedPilot] | None:
        """The pilots of ``(queue, cycle_id)`` from the records; a record without job ids (a crash right after the
        request) is completed from the CE's job names."""
        pilots = []
        for submission, record in self._records():
            if record["queue"] != queue or record["cycle_id"] != cycle_id:
                continue
            if record["jobs"] is None:
                record["jobs"] = self._jobs_named(self.client(record.get("proxy")), submission, int(record["n"]))
                self._write(submission, record)
            log_dir = Path(record["log_dir"])
            pilots += [pilot_of(submission, i, log_dir) for i, job_id in enumerate(record["jobs"]) if job_id]
        return pilots

    def _jobs_named(self, client: ArcRestClient, submission: str, n: int) -> list[str | None]:
        listed = client.text("/jobs")
        ids = [item["id"] for item in (json.loads(listed or "{}").get("job") or []) if isinstance(item, dict)]
        names: dict[str, str] = {}
        for answer in client.jobs("info", ids) if ids else []:
            activity = (answer.get("info_document") or {}).get("ComputingActivity") or {}
            if isinstance(activity, dict) and activity.get("Name"):
                names[str(activity["Name"])] = str(answer.get("id"))
        return [names.get(batch_id(submission, i)) for i in range(n)]

    def log_paths(self, batch_id_: str) -> tuple[Path, Path] | None:
        for _, record, batch, _job_id in self._located([batch_id_]):
            log_dir = Path(record["log_dir"])
            return log_dir / f"{batch}.out", log_dir / f"{batch}.err"
        return None

    # -- records ------------------------------------------------------------------------------------------
    def _located(self, batch_ids: Sequence[str]) -> list[tuple[str, dict[str, Any], str, str | None]]:
        """``(submission, record, batch id, CE job id or None)`` of each batch id this back end recorded."""
        found, records = [], {}
        for batch in batch_ids:
            parsed = parse_batch_id(batch)
            if parsed is None:
                continue
            submission, index = parsed
            if submission not in records:
                records[submission] = self._read(submission)
            record = records[submission]
            if record is None or index >= int(record["n"]):
                continue
            jobs = record["jobs"] or []
            found.append((submission, record, batch, jobs[index] if index < len(jobs) else None))
        return found

    def _records(self) -> list[tuple[str, dict[str, Any]]]:
        if not self.state_dir.is_dir():
            return []
        records = []
        for path in sorted(self.state_dir.glob(f"*{_RECORD_SUFFIX}")):
            record = self._read(path.name[: -len(_RECORD_SUFFIX)])
            if record is not None:
                records.append((path.name[: -len(_RECORD_SUFFIX)], record))
        return records

    def _read(self, submission: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.state_dir / f"{submission}{_RECORD_SUFFIX}").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _write(self, submission: str, record: Mapping[str, Any]) -> None:
        """Whole or not at all: a temporary file, then a rename."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / f"{submission}{_RECORD_SUFFIX}"
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_text(json.dumps(record))
        os.replace(temporary, path)


def _by_proxy(jobs: Mapping[str, tuple[str, str, dict[str, Any]]]) -> dict[str | None, dict[str, Any]]:
    """Jobs grouped by the proxy their submission acted with (``None``: the back end's own)."""
    grouped: dict[str | None, dict[str, Any]] = {}
    for job_id, entry in jobs.items():
        grouped.setdefault(entry[2].get("proxy"), {})[job_id] = entry
    return grouped


def _final_in_rest(state: str) -> bool:
    found = REST_STATES.get(state)
    return found is not None and found.is_final


def current_state(rest_state: str, control: str | None, cancelled: bool) -> PilotState | None:
    """A job's state from its REST state and, where REST may lag, its control directory's (``None``: it went
    between the two calls)."""
    state = REST_STATES.get(rest_state)
    if state is None or not state.is_final:
        word = (control or "").strip().split(":")[-1]
        if not word:
            return None
        now = CONTROL_STATES.get(word, state or PilotState.SUBMITTED)
        state = PilotState.QUEUED if now is PilotState.RUNNING and state is PilotState.QUEUED else now
    if state.is_final and cancelled:
        return PilotState.CANCELLED
    return state


def launcher(spec: PilotSpec, name: str, index: int, shipped: Path | None) -> bytes:
    """The job's executable: exports, then the pilot command (a shipped first word runs from the session dir)."""
    environment = {**spec.environment, PILOT_ID_VARIABLE: name, PILOT_INDEX_VARIABLE: str(index)}
    command = list(spec.command)
    lines = ["#!/bin/sh", "# written by AutoPilot's arc back end: the pilot's environment and command"]
    lines += [f"export {key}={shlex.quote(str(value))}" for key, value in environment.items()]
    if shipped is not None:
        command[0] = f"./{shipped.name}"
        lines.append(f"chmod u+x {shlex.quote(command[0])}")
    lines.append(f"exec {shlex.join(command)}")
    return ("\n".join(lines) + "\n").encode()


def batch_id(submission: str, index: int) -> str:
    return f"arc-{submission}-{index}"


def parse_batch_id(batch: str) -> tuple[str, int] | None:
    """``(submission, index)`` of one of our batch ids, else ``None``."""
    if not batch.startswith("arc-"):
        return None
    submission, _, index = batch[4:].rpartition("-")
    if not submission or not index.isdigit() or "/" in submission:
        return None
    return submission, int(index)


def pilot_of(submission: str, index: int, log_dir: Path) -> SubmittedPilot:
    batch = batch_id(submission, index)
    return SubmittedPilot(batch, log_dir / f"{batch}.out", log_dir / f"{batch}.err", index)


def _key_values(text: str) -> dict[str, str]:
    """``key=value`` lines (A-REX's ``diag``); the last value of a key wins."""
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            pairs[key.strip()] = value.strip()
    return pairs


def _arc_time(value: str | None) -> dt.datetime | None:
    """A-REX's ``20261202204757Z``."""
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y%m%d%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def _status_json(status: PilotStatus) -> dict[str, Any]:
    return {"state": status.state.value, "exit_code": status.exit_code, "reason": status.reason,
            "started_at": status.started_at.isoformat() if status.started_at else None,
            "ended_at": status.ended_at.isoformat() if status.ended_at else None}


def _status_from(data: Mapping[str, Any]) -> PilotStatus:
    def when(value: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value) if value else None

    return PilotStatus(PilotState(data["state"]), data["exit_code"], data["reason"], when(data["started_at"]),
                       when(data["ended_at"]))
