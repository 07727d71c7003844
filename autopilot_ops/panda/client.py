"""PanDA HTTP client for pilots and pilot schedulers: the ``/api/v1`` wire format, or the legacy dispatcher.

v1 follows PanDAWMS/panda-server ``pandaserver/api/v1/pilot_api.py`` (``acquire_jobs``, ``update_job``,
``get_job_status``) and ``statistics_api.py`` (``active_job_stats_by_site``,
``active_job_detailed_stats_by_site``): typed JSON POST bodies, GET query strings, and
``{"success", "message", "data"}`` envelopes. Legacy follows the pre-1.0
``pandaserver/server/panda.py`` dispatcher (``getJob``, ``updateJob``): form-encoded requests and
url-encoded ``StatusCode=...&...`` replies.

Server errors (5xx, time-outs, refused connections) are retried with jittered exponential backoff; a 4xx
reply is not retried. ``acquire_jobs`` is not idempotent: the server hands out a job as it answers, so a reply
lost after the request arrived orphans that job. It is retried only when the request cannot have reached the
server (connection refused, name resolution, connect time-out), never after a read time-out, a reset after
sending, or a 5xx; a read time-out is logged with the node, the time and the request so the orphan can be
traced (PanDA's watcher reassigns a job left in ``sent``). pilot3 does the same: ``pilot/control/job.py:
get_job_definition_from_server`` sends one ``https.request2`` per try of its job loop, with no transport retry.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import urlencode, urlsplit

from autopilot_ops import __version__
from autopilot_ops.netutil import ConnectError, HttpClient, Response, TLSSettings, is_loopback
from autopilot_ops.panda import protocol
from autopilot_ops.panda.errors import (
    PandaCommunicationError,
    PandaError,
    PandaHTTPError,
    PandaRefused,
    PandaReplyError,
)
from autopilot_ops.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

PROTOCOLS = ("v1", "legacy")

#: The most of a reply body the client reads (a job dict is a few kB, statistics of 2,000 sites some 100 kB);
#: a longer body is a broken reply, not read further. The same cap as the Airflow hook's.
MAX_REPLY_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024

#: ``update_job`` parameter names (v1) -> legacy ``updateJob`` names (``server/panda.py: updateJob``).
LEGACY_UPDATE_NAMES = {
    "job_id": "jobId",
    "job_status": "state",
    "trans_exit_code": "transExitCode",
    "pilot_error_code": "pilotErrorCode",
    "pilot_error_diag": "pilotErrorDiag",
    "exe_error_code": "exeErrorCode",
    "exe_error_diag": "exeErrorDiag",
    "cpu_consumption_time": "cpuConsumptionTime",
    "cpu_consumption_unit": "cpuConsumptionUnit",
    "start_time": "startTime",
    "end_time": "endTime",
    "core_count": "coreCount",
    "node": "node",
    "site_name": "siteName",
    "attempt_nr": "attemptNr",
    "batch_id": "batchID",
    "pilot_id": "pilotID",
    "scheduler_id": "schedulerID",
    "max_rss": "maxRSS",
    "pilot_log": "pilotLog",
    "meta_data": "metaData",
    "stdout": "stdout",
    # the file report travelled in the ``xml`` parameter (a JSON string since pilot2)
    "job_output_report": "xml",
}


class PandaAuth(Record):
    """How the client proves who it is.

    ``cert`` is an X.509 proxy (certificate and key in one file) or a certificate with ``key`` beside it;
    ``token`` is a bearer token, sent with ``Origin`` as PanDA's token auth requires; ``ca_bundle`` is a
    CA file or directory to verify the server with (the system store when unset).
    """

    cert: str | None = None
    key: str | None = None
    token: str | None = None
    origin: str | None = None
    ca_bundle: str | None = None


class RetryPolicy(Record):
    """``attempts`` tries in all; before try n+1 sleep uniformly in [0, min(max_backoff, backoff*2**n)]."""

    attempts: int = 4
    backoff: float = 1.0
    max_backoff: float = 60.0

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential delay after failed try number ``attempt`` (0-based)."""
        return random.uniform(0, min(self.max_backoff, self.backoff * (2**attempt)))


class UpdateReply(Record):
    """What ``update_job`` answered: the ``command`` back channel (None when ``NULL``) and the raw data."""

    command: str | None
    data: Mapping[str, Any]


class Reply(Record):
    """A reply's status and its body, read up to ``MAX_REPLY_BYTES``."""

    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _Retryable(Exception):
    """One try failed in a way worth another try."""


def never_sent(exc: BaseException) -> bool:
    """Whether a failed try cannot have reached the server: the connection was never made (refused, name not
    resolved, connect time-out, TLS handshake or proxy tunnel failed)."""
    return isinstance(exc, ConnectError)


class PandaClient:
    """A keep-alive session to one PanDA server, on the standard library alone (``netutil.HttpClient``):
    the pilot runs it on bare worker nodes. Proxies come from ``https_proxy``/``http_proxy`` and ``no_proxy``."""

    def __init__(
        self,
        url: str,
        *,
        protocol_name: str = "v1",
        auth: PandaAuth | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 60.0,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PandaError("client", f"server URL {url!r} is not an http(s)://host[:port] URL")
        if protocol_name not in PROTOCOLS:
            raise PandaError("client", f"protocol {protocol_name!r} is not one of {', '.join(PROTOCOLS)}")
        self.auth = auth or PandaAuth()
        if parts.scheme == "http" and not is_loopback(parts.hostname) and self.auth.token:
            raise PandaError("client", f"refusing to send a bearer token over plain http to {parts.hostname}")
        self.url = url.rstrip("/")
        self.protocol = protocol_name
        self.retry = retry or RetryPolicy()
        #: seconds one try may take in all, connecting and reading included
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        #: how the client waits between tries; a pilot swaps in a wait that a signal cuts short
        self.sleep: Callable[[float], object] = time.sleep
        headers = {"User-Agent": f"autopilot/{__version__}"}
        if self.auth.token:
            headers["Authorization"] = f"Bearer {self.auth.token}"
            if self.auth.origin:
                headers["Origin"] = self.auth.origin
        tls = TLSSettings(ca=self.auth.ca_bundle, cert=self.auth.cert, key=self.auth.key)
        self.http = HttpClient(tls=tls, headers=headers)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> PandaClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- transport ---

    def _send(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        form: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        idempotent: bool = True,
    ) -> Reply:
        """One call with retries; returns a 2xx/3xx response, raises on 4xx or when retries run out. A call
        that is not ``idempotent`` is tried again only when the failed try never reached the server."""
        policy = retry or self.retry
        url = self.url + path + (f"?{urlencode(params, doseq=True)}" if params else "")
        if form is not None:
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            body: bytes | None = urlencode(form).encode()
        else:
            headers = {"Accept": "application/json"}
            body = None
            if json_body is not None:
                headers["Content-Type"] = "application/json"
                body = json.dumps(json_body, allow_nan=False).encode()
        last = ""
        for attempt in range(policy.attempts):
            deadline = time.monotonic() + self.timeout
            try:
                with self.http.request(method, url, body=body, headers=headers, timeout=self.timeout) as response:
                    reply = Reply(response.status, self._read_body(path, response, deadline))
                if reply.status_code >= 500:
                    raise _Retryable(f"HTTP {reply.status_code}: {reply.text.strip()[:200]}")
            except (OSError, _Retryable) as exc:
                last = str(exc) if isinstance(exc, _Retryable) else f"{_describe(exc)}: {exc}"
                if not idempotent and not never_sent(exc):
                    self._log_maybe_orphaned(path, exc, json_body or form or params or {})
                    detail = f"not sent again (the server may have acted on it): {last}"
                    raise PandaCommunicationError(path, detail) from exc
                if attempt + 1 < policy.attempts:
                    pause = policy.delay(attempt)
                    log.warning(
                        "PanDA %s failed (%s); try %d/%d in %.1f s", path, last, attempt + 2, policy.attempts, pause
                    )
                    self.sleep(pause)
                continue
            except ValueError as exc:  # a proxy variable it cannot use, named by the transport
                raise PandaCommunicationError(path, str(exc)) from None
            if reply.status_code >= 400:
                raise PandaHTTPError(path, reply.status_code, reply.text)
            return reply
        raise PandaCommunicationError(path, f"no answer after {policy.attempts} tries; last: {last}")

    def _read_body(self, path: str, response: Response, deadline: float) -> bytes:
        """The whole body, in at most ``max_reply_bytes`` and by ``deadline`` (a reply dripped byte by byte
        must not hold a caller for ever: that try fails, and an idempotent call is tried again)."""
        body = bytearray()
        while chunk := response.read(_CHUNK):
            body += chunk
            if len(body) > self.max_reply_bytes:
                raise PandaReplyError(path, "body", f"is over {self.max_reply_bytes} bytes; not read further")
            if time.monotonic() > deadline:
                raise _Retryable(f"reply not complete after {self.timeout:g}s ({len(body)} bytes read)")
        return bytes(body)

    @staticmethod
    def _log_maybe_orphaned(path: str, exc: BaseException, request: Mapping[str, Any]) -> None:
        """Leave a trace of a request whose reply was lost: the server may have handed out a job for it."""
        if isinstance(exc, socket.timeout):
            what = "read timeout"
        elif isinstance(exc, _Retryable):
            what = "server error"
        else:
            what = "connection lost after sending"
        log.error(
            "PanDA %s: %s at %s on node %s; request %s: a job handed out for it may be orphaned",
            path,
            what,
            time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
            request.get("node", request.get("node_name", "-")),
            dict(request),
        )

    def _envelope(self, path: str, reply: Reply) -> protocol.Envelope:
        try:
            return protocol.parse_envelope(reply.content)
        except protocol.ProtocolError as exc:
            raise PandaReplyError(path, "envelope", str(exc)) from exc

    def _legacy_fields(self, path: str, reply: Reply) -> dict[str, str]:
        try:
            return protocol.parse_legacy_reply(reply.content)
        except protocol.ProtocolError as exc:
            raise PandaReplyError(path, "StatusCode", str(exc)) from exc

    @staticmethod
    def _status_code(path: str, value: Any) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise PandaReplyError(path, "StatusCode", f"is not an integer: {value!r}") from None

    # --- pilot API ---

    def acquire_jobs(
        self,
        site_name: str,
        *,
        prod_source_label: str | None = None,
        node: str | None = None,
        computing_element: str | None = None,
        memory: int | None = None,
        disk_space: int | None = None,
        n_jobs: int = 1,
        resource_type: str | None = None,
        harvester_id: str | None = None,
        worker_id: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> list[dict[str, Any]]:
        """Jobs for ``site_name``; an empty list when PanDA has none (a normal outcome). With ``harvester_id``
        and ``worker_id`` (v1), PanDA ties the jobs to that worker of that pilot factory."""
        if self.protocol == "legacy":
            return self._legacy_get_job(
                site_name, prod_source_label, node, computing_element, memory, disk_space, resource_type, retry
            )
        body: dict[str, Any] = {"site_name": site_name, "n_jobs": int(n_jobs)}
        optional = {
            "prod_source_label": prod_source_label,
            "node": node,
            "computing_element": computing_element,
            "memory": memory,
            "disk_space": disk_space,
            "resource_type": resource_type,
            "harvester_id": harvester_id,
            "worker_id": int(worker_id) if worker_id is not None else None,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        path = protocol.api_path("pilot", "acquire_jobs")
        reply = self._send("POST", path, json_body=body, retry=retry, idempotent=False)
        envelope = self._envelope(path, reply)
        if not envelope.success:
            if envelope.message == protocol.MESSAGE_NO_JOBS:
                return []
            raise PandaRefused(path, envelope.message)
        data = envelope.data
        if not isinstance(data, dict):
            raise PandaReplyError(path, "data", f"is a {type(data).__name__}, not a dict")
        code = self._status_code(path, data.get("StatusCode"))
        if code == protocol.SC_NO_JOBS:
            return []
        if code != protocol.SC_SUCCESS:
            raise PandaRefused(path, envelope.message, code)
        jobs = data.get("jobs")
        if not isinstance(jobs, list) or not all(isinstance(job, dict) for job in jobs):
            raise PandaReplyError(path, "data.jobs", "is not a list of job dicts")
        return jobs

    def _legacy_get_job(
        self,
        site_name: str,
        prod_source_label: str | None,
        node: str | None,
        computing_element: str | None,
        memory: int | None,
        disk_space: int | None,
        resource_type: str | None,
        retry: RetryPolicy | None,
    ) -> list[dict[str, Any]]:
        form = {
            "siteName": site_name,
            "prodSourceLabel": prod_source_label,
            "node": node,
            "computingElement": computing_element,
            "mem": memory,
            "diskSpace": disk_space,
            "resourceType": resource_type,
        }
        path = protocol.legacy_path("getJob")
        sent = {k: v for k, v in form.items() if v is not None}
        reply = self._send("POST", path, form=sent, retry=retry, idempotent=False)
        fields = self._legacy_fields(path, reply)
        code = self._status_code(path, fields["StatusCode"])
        if code == protocol.SC_NO_JOBS:
            return []
        if code != protocol.SC_SUCCESS:
            raise PandaRefused(path, fields.get("errorDialog", ""), code)
        if "PandaID" not in fields:
            raise PandaReplyError(path, "PandaID", "is missing from a successful getJob reply")
        return [dict(fields)]

    def update_job(
        self, job_id: int, job_status: str, *, retry: RetryPolicy | None = None, **fields: Any
    ) -> UpdateReply:
        """Report ``job_status`` and ``fields`` (``update_job`` parameter names) for ``job_id``."""
        if job_status not in protocol.PILOT_STATES:
            raise PandaError("update_job", f"job_status {job_status!r} is not one of {protocol.PILOT_STATES}")
        params = {key: value for key, value in fields.items() if value is not None}
        if self.protocol == "legacy":
            return self._legacy_update_job(job_id, job_status, params, retry)
        body = {"job_id": int(job_id), "job_status": job_status, **params}
        path = protocol.api_path("pilot", "update_job")
        envelope = self._envelope(path, self._send("POST", path, json_body=body, retry=retry))
        if not envelope.success:
            raise PandaRefused(path, envelope.message)
        data = envelope.data
        if not isinstance(data, dict):
            raise PandaReplyError(path, "data", f"is a {type(data).__name__}, not a dict")
        code = self._status_code(path, data.get("StatusCode"))
        self._check_update_code(path, code, envelope.message or str(data.get("ErrorDiag", "")))
        command = data.get("command")
        if command is not None and not isinstance(command, str):
            raise PandaReplyError(path, "data.command", f"is a {type(command).__name__}, not a string")
        return UpdateReply(None if command in (None, "", protocol.COMMAND_NONE) else command, data)

    def _legacy_update_job(
        self, job_id: int, job_status: str, params: Mapping[str, Any], retry: RetryPolicy | None
    ) -> UpdateReply:
        form: dict[str, Any] = {"jobId": int(job_id), "state": job_status}
        for key, value in params.items():
            if key not in LEGACY_UPDATE_NAMES:
                raise PandaError("updateJob", f"parameter {key!r} has no legacy updateJob equivalent")
            form[LEGACY_UPDATE_NAMES[key]] = value
        path = protocol.legacy_path("updateJob")
        fields = self._legacy_fields(path, self._send("POST", path, form=form, retry=retry))
        code = self._status_code(path, fields["StatusCode"])
        self._check_update_code(path, code, fields.get("errorDialog", ""))
        command = fields.get("command")
        return UpdateReply(None if command in (None, "", protocol.COMMAND_NONE) else command, fields)

    @staticmethod
    def _check_update_code(path: str, code: int, message: str) -> None:
        """A server-side time-out or database error (``pilot_api.py: update_job``) is worth sending again
        later, so it counts as a communication failure; any other non-zero code is a refusal."""
        if code in (protocol.SC_TIMEOUT, protocol.SC_FAILED):
            raise PandaCommunicationError(path, f"server could not apply the update (StatusCode {code}): {message}")
        if code != protocol.SC_SUCCESS:
            raise PandaRefused(path, message, code)

    def get_job_status(self, job_ids: Iterable[int]) -> list[dict[str, Any]]:
        """``[{"job_id", "status", "attempt_number"}, ...]``; ``status`` is ``"not found"`` for unknown ids."""
        path = protocol.api_path("pilot", "get_job_status")
        self._require_v1(path)
        reply = self._send("GET", path, params={"job_ids": [int(job_id) for job_id in job_ids]})
        envelope = self._envelope(path, reply)
        if not envelope.success:
            raise PandaRefused(path, envelope.message)
        if not isinstance(envelope.data, list):
            raise PandaReplyError(path, "data", f"is a {type(envelope.data).__name__}, not a list")
        for entry in envelope.data:
            if not isinstance(entry, dict) or "job_id" not in entry or "status" not in entry:
                raise PandaReplyError(path, "data[].status", f"missing in entry {entry!r}")
        return envelope.data

    def active_job_stats_by_site(self) -> dict[str, dict[str, int]]:
        """``{site: {state: count}}`` of active jobs; empty when the server has none anywhere."""
        path = protocol.api_path("statistics", "active_job_stats_by_site")
        self._require_v1(path)
        return job_stats_from(path, self._envelope(path, self._send("GET", path)))

    def active_job_detailed_stats_by_site(self) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
        """``{site: {resource type: {prodSourceLabel: {state: count}}}}`` of active jobs (``statistics_api.py:
        active_job_detailed_stats_by_site``, PanDA 0.7 and later); empty when the server has none anywhere."""
        path = protocol.api_path("statistics", "active_job_detailed_stats_by_site")
        self._require_v1(path)
        return detailed_job_stats_from(path, self._envelope(path, self._send("GET", path)))

    def alive(self) -> protocol.Envelope:
        """The envelope of ``/api/v1/system/is_alive`` (``system_api.py``), in one try."""
        path = protocol.api_path("system", "is_alive")
        return self._envelope(path, self._send("GET", path, retry=RetryPolicy(attempts=1)))

    def is_alive(self) -> bool:
        """Whether ``/api/v1/system/is_alive`` answers ``success`` (one try, no retries)."""
        try:
            return self.alive().success
        except PandaError:
            return False

    # --- job API (``job_api.py``), with a production identity ---

    def kill_jobs(self, ids: Sequence[int], code: int | None = None) -> list[bool]:
        """Ask PanDA to kill jobs; one bool per id (``job_api.py: kill``; killing twice is harmless, so the
        call is retried)."""
        path = protocol.api_path("job", "kill")
        self._require_v1(path)
        body: dict[str, Any] = {"job_ids": [int(i) for i in ids]}
        if code is not None:
            body["code"] = int(code)
        envelope = self._envelope(path, self._send("POST", path, json_body=body))
        if not envelope.success:
            raise PandaRefused(path, envelope.message)
        data = envelope.data
        if not isinstance(data, list) or len(data) != len(body["job_ids"]):
            raise PandaReplyError(path, "data", f"is {data!r}, not one result per job id")
        return [bool(result) for result in data]

    def submit_jobs(self, jobs: str) -> list[list[Any]]:
        """Submit a JSON string holding a list of job specs (``job_api.py: submit``, the ``pandaclient`` wire
        format); returns ``[[PandaID, jobDefinitionID, jobName], ...]``. Not sent again once it may have
        arrived: a second try could submit the jobs twice."""
        path = protocol.api_path("job", "submit")
        self._require_v1(path)
        try:
            parsed = json.loads(jobs)
        except (TypeError, ValueError) as exc:
            raise PandaError(path, f"argument 'jobs' is not a JSON string: {exc}") from None
        if not isinstance(parsed, list) or not parsed:
            raise PandaError(path, "argument 'jobs' must be a JSON list with at least one job spec")
        envelope = self._envelope(path, self._send("POST", path, json_body={"jobs": jobs}, idempotent=False))
        if not envelope.success:
            raise PandaRefused(path, envelope.message)
        data = envelope.data
        if not isinstance(data, list) or len(data) != len(parsed) or not all(
            isinstance(entry, list) and len(entry) == 3 for entry in data
        ):
            raise PandaReplyError(path, "data", f"is {data!r}, not one [PandaID, jobDefinitionID, jobName] per job")
        return data

    def call_v1(
        self,
        http_method: str,
        module: str,
        method: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> tuple[str, protocol.Envelope]:
        """One ``/api/v1/<module>/<method>`` call, with this client's retries; its path and envelope."""
        path = protocol.api_path(module, method)
        self._require_v1(path)
        reply = self._send(http_method, path, json_body=body, params=params, idempotent=idempotent)
        return path, self._envelope(path, reply)

    def _require_v1(self, path: str) -> None:
        if self.protocol != "v1":
            raise PandaError(path, f"not available with the {self.protocol} protocol")


def _describe(exc: BaseException) -> str:
    """The kind of a transport failure, as the log and the error name it."""
    return "ReadTimeout" if isinstance(exc, socket.timeout) else type(exc).__name__


def job_stats_from(path: str, envelope: protocol.Envelope) -> dict[str, dict[str, int]]:
    """The ``{site: {state: count}}`` of an ``active_job_stats_by_site`` reply, checked field by field."""
    if not envelope.success:
        # statistics_api.py answers success=false when there is no active job at all
        if envelope.message == protocol.MESSAGE_NO_STATS:
            return {}
        raise PandaRefused(path, envelope.message)
    if not isinstance(envelope.data, dict):
        raise PandaReplyError(path, "data", f"is a {type(envelope.data).__name__}, not a dict")
    for site, states in envelope.data.items():
        if not isinstance(states, dict) or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in states.values()
        ):
            raise PandaReplyError(path, f"data.{site}", "is not a {state: count} dict")
    return envelope.data


def detailed_job_stats_from(path: str, envelope: protocol.Envelope) -> dict[str, dict[str, dict[str, dict[str, int]]]]:
    """The ``{site: {resource type: {label: {state: count}}}}`` of an ``active_job_detailed_stats_by_site``
    reply, checked field by field (``job_standalone_module.py: getDetailedJobStatistics`` builds it)."""
    if not envelope.success:
        if envelope.message == protocol.MESSAGE_NO_DETAILED_STATS:
            return {}
        raise PandaRefused(path, envelope.message)
    if not isinstance(envelope.data, dict):
        raise PandaReplyError(path, "data", f"is a {type(envelope.data).__name__}, not a dict")
    for site, by_resource in envelope.data.items():
        if not isinstance(by_resource, dict):
            raise PandaReplyError(path, f"data.{site}", "is not a {resource type: {label: {state: count}}} dict")
        for resource, by_label in by_resource.items():
            if not isinstance(by_label, dict):
                raise PandaReplyError(path, f"data.{site}.{resource}", "is not a {label: {state: count}} dict")
            for label, states in by_label.items():
                if not isinstance(states, dict) or not all(
                    isinstance(n, int) and not isinstance(n, bool) for n in states.values()
                ):
                    raise PandaReplyError(path, f"data.{site}.{resource}.{label}", "is not a {state: count} dict")
    return envelope.data
