"""The PanDA server as an Airflow hook, on ``apache-airflow-providers-http``'s ``HttpHook``.

Connection ``panda``: host = the server URL (``https://host:25443``; a port field adds to it), password = a
bearer token, extra fields ``protocol`` (``v1`` or ``legacy``), ``origin`` (the VO, sent as ``Origin`` with
a token), ``cert_file`` and ``key_file`` (an X.509 proxy, or a certificate and its key), ``ca_bundle``.

The hook's calls follow ``pandaserver/api/v1`` (``statistics_api.py: active_job_stats_by_site``,
``job_api.py: kill`` and ``submit``); replies are ``{"success", "message", "data"}`` envelopes read with
``autopilot_ops.panda.protocol``, and failures raise ``autopilot_ops.panda.errors`` naming the endpoint and
field. For the pilot API, or the legacy protocol, ``get_client()`` gives a ``PandaClient`` on the same
connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from airflow.providers.http.hooks.http import HttpHook

from autopilot_ops.airflow.hooks.connection_fields import connection_field
from autopilot_ops.netutil import is_loopback
from autopilot_ops.panda import protocol
from autopilot_ops.panda.client import PROTOCOLS, PandaAuth, PandaClient, job_stats_from
from autopilot_ops.panda.errors import (
    PandaCommunicationError,
    PandaError,
    PandaHTTPError,
    PandaRefused,
    PandaReplyError,
)

#: The largest reply read: PanDA's statistics of every site are a few MB; more is not a PanDA server talking.
MAX_REPLY_BYTES = 32 * 1024 * 1024
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class PandaConnection:
    """What the hook reads from its connection."""

    url: str
    protocol: str
    auth: PandaAuth


class PandaHook(HttpHook):
    conn_name_attr = "panda_conn_id"
    default_conn_name = "panda_default"
    conn_type = "panda"
    hook_name = "PanDA server"

    def __init__(
        self, panda_conn_id: str = default_conn_name, timeout: float = 60.0, max_reply_bytes: int = MAX_REPLY_BYTES
    ) -> None:
        super().__init__(method="GET", http_conn_id=panda_conn_id)
        self.panda_conn_id = panda_conn_id
        #: Seconds one call may take in all, connecting and reading included.
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self._panda: PandaConnection | None = None

    def panda_connection(self) -> PandaConnection:
        """The server URL, protocol and credentials (read once per hook); a bad field raises ``PandaError``
        naming it."""
        if self._panda is None:
            self._panda = self._read_connection()
        return self._panda

    def _read_connection(self) -> PandaConnection:
        conn = self.get_connection(self.panda_conn_id)
        self._set_base_url(conn)
        extra = conn.extra_dejson or {}
        name = connection_field(extra, self.conn_type, "protocol") or "v1"
        if name not in PROTOCOLS:
            raise PandaError(self.panda_conn_id, f"connection field 'protocol' is {name!r}, not one of {PROTOCOLS}")
        auth = PandaAuth(
            cert=connection_field(extra, self.conn_type, "cert_file"),
            key=connection_field(extra, self.conn_type, "key_file"),
            token=conn.password or None,
            origin=connection_field(extra, self.conn_type, "origin"),
            ca_bundle=connection_field(extra, self.conn_type, "ca_bundle"),
        )
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PandaError(self.panda_conn_id, f"connection field 'host' gives {self.base_url!r}, "
                             "not an http(s)://host[:port] URL")
        if auth.token and parts.scheme == "http" and not is_loopback(parts.hostname):
            raise PandaError(self.panda_conn_id, f"refusing to send the token over plain http to {parts.hostname}")
        return PandaConnection(self.base_url.rstrip("/"), name, auth)

    def get_client(self) -> PandaClient:
        """A ``PandaClient`` (pilot API, both protocols, retries) on this connection."""
        settings = self.panda_connection()
        return PandaClient(settings.url, protocol_name=settings.protocol, auth=settings.auth, timeout=self.timeout)

    # --- HttpHook session set-up: credentials from our fields; the extra is never sent as headers ---

    def _configure_session_from_auth(self, session: requests.Session, connection: Any) -> requests.Session:
        session.auth = None  # the password is a bearer token, not HTTP basic auth
        return session

    def _configure_session_from_extra(
        self, session: requests.Session, connection: Any, extra_options: dict[str, Any]
    ) -> requests.Session:
        self.merged_extra = dict(extra_options)
        return session

    def get_conn(
        self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None
    ) -> requests.Session:
        session = super().get_conn(headers, extra_options)
        auth = self.panda_connection().auth
        session.verify = auth.ca_bundle or True
        if auth.cert:
            session.cert = (auth.cert, auth.key or auth.cert)
        session.headers["Accept"] = "application/json"
        if auth.token:
            session.headers["Authorization"] = f"Bearer {auth.token}"
            if auth.origin:
                session.headers["Origin"] = auth.origin
        return session

    # --- calls ---

    def _call(self, method: str, path: str, *, body: dict[str, Any] | None = None) -> protocol.Envelope:
        """One call, in at most ``timeout`` seconds and ``max_reply_bytes`` of reply, whatever the server does
        (a socket that accepts and never answers, a reply dripped byte by byte, a huge body)."""
        if self.panda_connection().protocol != "v1":
            raise PandaError(path, "not available with the legacy protocol (the connection's 'protocol' field)")
        self.method = method
        deadline = time.monotonic() + self.timeout
        options = {"check_response": False, "stream": True, "timeout": (min(10.0, self.timeout), self.timeout)}
        try:
            reply = self.run(path, json=body, extra_options=options)
            with reply:
                content = self._read_body(path, reply, deadline)
        except requests.RequestException as exc:
            raise PandaCommunicationError(path, f"{type(exc).__name__}: {exc}") from exc
        text = content.decode("utf-8", "replace")
        if reply.status_code >= 500:
            raise PandaCommunicationError(path, f"HTTP {reply.status_code}: {text.strip()[:300]}")
        if reply.status_code >= 400:
            raise PandaHTTPError(path, reply.status_code, text)
        try:
            return protocol.parse_envelope(content)
        except protocol.ProtocolError as exc:
            raise PandaReplyError(path, "envelope", str(exc)) from exc

    def _read_body(self, path: str, reply: requests.Response, deadline: float) -> bytes:
        body = bytearray()
        for chunk in reply.iter_content(_CHUNK):
            body += chunk
            if len(body) > self.max_reply_bytes:
                raise PandaReplyError(path, "body", f"is over {self.max_reply_bytes} bytes; not read further")
            if time.monotonic() > deadline:
                detail = f"reply not complete after {self.timeout:g}s ({len(body)} bytes read)"
                raise PandaCommunicationError(path, detail)
        return bytes(body)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's connection test: ``/api/v1/system/is_alive`` (``system_api.py``)."""
        try:
            envelope = self._call("GET", protocol.api_path("system", "is_alive"))
        except PandaError as exc:
            return False, str(exc)
        if not envelope.success:
            return False, f"PanDA server at {self.base_url} is not alive: {envelope.message or 'no message'}"
        return True, f"PanDA server at {self.base_url} is alive"

    def active_job_stats_by_site(self) -> dict[str, dict[str, int]]:
        """``{site: {state: count}}`` for every site in one call; empty when no job is active anywhere."""
        path = protocol.api_path("statistics", "active_job_stats_by_site")
        return job_stats_from(path, self._call("GET", path))

    def kill_jobs(self, ids: Sequence[int], code: int | None = None) -> list[bool]:
        """Ask PanDA to kill jobs; one bool per id (``job_api.py: kill``)."""
        path = protocol.api_path("job", "kill")
        body: dict[str, Any] = {"job_ids": [int(i) for i in ids]}
        if code is not None:
            body["code"] = int(code)
        envelope = self._call("POST", path, body=body)
        if not envelope.success:
            raise PandaRefused(path, envelope.message)
        data = envelope.data
        if not isinstance(data, list) or len(data) != len(body["job_ids"]):
            raise PandaReplyError(path, "data", f"is {data!r}, not one result per job id")
        return [bool(result) for result in data]

    def submit_jobs(self, jobs: str) -> list[list[Any]]:
        """Submit a JSON string holding a list of job specs (``job_api.py: submit``, the ``pandaclient`` wire
        format); returns ``[[PandaID, jobDefinitionID, jobName], ...]``."""
        path = protocol.api_path("job", "submit")
        try:
            parsed = json.loads(jobs)
        except (TypeError, ValueError) as exc:
            raise PandaError(path, f"argument 'jobs' is not a JSON string: {exc}") from None
        if not isinstance(parsed, list) or not parsed:
            raise PandaError(path, "argument 'jobs' must be a JSON list with at least one job spec")
        envelope = self._call("POST", path, body={"jobs": jobs})
        if not envelope.success:
            raise PandaRefused(path, envelope.message)
        data = envelope.data
        if not isinstance(data, list) or len(data) != len(parsed) or not all(
            isinstance(entry, list) and len(entry) == 3 for entry in data
        ):
            raise PandaReplyError(path, "data", f"is {data!r}, not one [PandaID, jobDefinitionID, jobName] per job")
        return data
