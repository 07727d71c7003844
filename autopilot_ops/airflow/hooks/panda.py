"""The PanDA server as an Airflow hook: an Airflow connection turned into the one PanDA client.

Connection ``panda``: host = the server URL (``https://host:25443``; a port field adds to it), password = a
bearer token, extra fields ``protocol`` (``v1`` or ``legacy``), ``origin`` (the VO, sent as ``Origin`` with
a token), ``cert_file`` and ``key_file`` (an X.509 proxy, or a certificate and its key), ``ca_bundle``,
``harvester_id`` (this deployment as a pilot factory; default ``autopilot-<host>``) and ``factory`` (``on``,
the default, or ``off``).

The URL is read as ``apache-airflow-providers-http``'s ``HttpHook`` reads its connections (schema, host,
port); every call then goes through :class:`~autopilot_ops.panda.client.PandaClient` (``get_client()``), so
PanDA's wire rules (auth headers, no token over plain http, envelopes, status codes, retries, reply limits)
live in one place.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow.providers.http.hooks.http import HttpHook

from autopilot_ops.airflow.hooks.connection_fields import connection_field
from autopilot_ops.panda.client import MAX_REPLY_BYTES, PROTOCOLS, PandaAuth, PandaClient, RetryPolicy
from autopilot_ops.panda.errors import PandaError
from autopilot_ops.panda.factory import FactoryClient

#: The scheduler's calls are tried this often: a cycle waits at most about ``attempts * timeout`` on PanDA.
SCHEDULER_RETRY = RetryPolicy(attempts=3, backoff=1.0)
#: The pilot factory's calls get one short try: what fails waits in PostgreSQL for the next cycle.
FACTORY_RETRY = RetryPolicy(attempts=1)
FACTORY_TIMEOUT_S = 10.0


def default_harvester_id() -> str:
    """A deployment's pilot-factory id when its connection names none: ``autopilot-<host>``."""
    return f"autopilot-{socket.gethostname()}"


@dataclass(frozen=True)
class PandaConnection:
    """What the hook reads from its connection."""

    url: str
    protocol: str
    auth: PandaAuth
    harvester_id: str
    factory: bool


class PandaHook(HttpHook):
    """``get_client()`` is a :class:`PandaClient` on the connection ``panda_conn_id``; ``timeout`` bounds one
    try (connecting and reading), ``retry`` the tries."""

    conn_name_attr = "panda_conn_id"
    default_conn_name = "panda_default"
    conn_type = "panda"
    hook_name = "PanDA server"

    def __init__(
        self,
        panda_conn_id: str = default_conn_name,
        timeout: float = 60.0,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        retry: RetryPolicy = SCHEDULER_RETRY,
    ) -> None:
        super().__init__(method="GET", http_conn_id=panda_conn_id)
        self.panda_conn_id = panda_conn_id
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self.retry = retry
        self._panda: PandaConnection | None = None
        self._client: PandaClient | None = None

    def panda_connection(self) -> PandaConnection:
        """The server URL, protocol and credentials (read once per hook); a bad field raises ``PandaError``
        naming it."""
        if self._panda is None:
            self._panda = self._read_connection()
        return self._panda

    def _read_connection(self) -> PandaConnection:
        conn = self.get_connection(self.panda_conn_id)
        extra = conn.extra_dejson or {}
        name = connection_field(extra, self.conn_type, "protocol") or "v1"
        if name not in PROTOCOLS:
            raise PandaError(self.panda_conn_id, f"connection field 'protocol' is {name!r}, not one of {PROTOCOLS}")
        self._set_base_url(conn)
        url = self.base_url.rstrip("/")
        auth = PandaAuth(
            cert=connection_field(extra, self.conn_type, "cert_file"),
            key=connection_field(extra, self.conn_type, "key_file"),
            token=conn.password or None,
            origin=connection_field(extra, self.conn_type, "origin"),
            ca_bundle=connection_field(extra, self.conn_type, "ca_bundle"),
        )
        factory = (connection_field(extra, self.conn_type, "factory") or "on").strip().lower()
        if factory not in ("on", "off"):
            raise PandaError(self.panda_conn_id, f"connection field 'factory' is {factory!r}, not 'on' or 'off'")
        harvester_id = connection_field(extra, self.conn_type, "harvester_id") or default_harvester_id()
        return PandaConnection(url, name, auth, harvester_id, factory == "on" and name == "v1")

    def get_client(self) -> PandaClient:
        """The client on this connection (made once per hook); a field it refuses raises ``PandaError``
        naming the connection and the field."""
        if self._client is None:
            settings = self.panda_connection()
            try:
                self._client = PandaClient(
                    settings.url,
                    protocol_name=settings.protocol,
                    auth=settings.auth,
                    retry=self.retry,
                    timeout=self.timeout,
                    max_reply_bytes=self.max_reply_bytes,
                )
            except PandaError as exc:
                field = "password (token)" if "token" in exc.detail else "host"
                raise PandaError(self.panda_conn_id, f"connection field '{field}': {exc.detail}") from None
        return self._client

    def get_factory(self) -> FactoryClient | None:
        """This deployment as a pilot factory of the server (one short try per call), or ``None`` when the
        connection turns the factory off or speaks the legacy protocol."""
        settings = self.panda_connection()
        if not settings.factory:
            return None
        client = PandaClient(
            settings.url,
            auth=settings.auth,
            retry=FACTORY_RETRY,
            timeout=min(self.timeout, FACTORY_TIMEOUT_S),
            max_reply_bytes=self.max_reply_bytes,
        )
        return FactoryClient(client, settings.harvester_id)

    def test_connection(self) -> tuple[bool, str]:
        """The UI's connection test: ``/api/v1/system/is_alive`` (``system_api.py``)."""
        try:
            client = self.get_client()
            envelope = client.alive()
        except PandaError as exc:
            return False, str(exc)
        if not envelope.success:
            return False, f"PanDA server at {client.url} is not alive: {envelope.message or 'no message'}"
        return True, f"PanDA server at {client.url} is alive"

    def active_job_stats_by_site(self) -> dict[str, dict[str, int]]:
        """``{site: {state: count}}`` for every site in one call; empty when no job is active anywhere."""
        return self.get_client().active_job_stats_by_site()

    def kill_jobs(self, ids: Sequence[int], code: int | None = None) -> list[bool]:
        """Ask PanDA to kill jobs; one bool per id (``job_api.py: kill``)."""
        return self.get_client().kill_jobs(ids, code)

    def submit_jobs(self, jobs: str) -> list[list[Any]]:
        """Submit a JSON string holding a list of job specs; ``[[PandaID, jobDefinitionID, jobName], ...]``."""
        return self.get_client().submit_jobs(jobs)
