"""A client of an ARC CE's REST interface, version 1.0 (A-REX 6.x), authenticated with an X.509 proxy.

The calls (NorduGrid's "ARC CE REST interface specification", as A-REX 6.17 answers them here):
``POST /jobs?action=new`` (one or more job descriptions; one answer per job), ``PUT /jobs/<id>/session/<file>``
(a client-staged input), ``POST /jobs?action=status|info|kill|clean`` (bulk, JSON ``{"job": [{"id": ...}]}``),
``GET /jobs/<id>/diagnose/<file>`` (``status``: the control directory's state, read at once; ``diag``: exit
code and times; ``failed``: why it failed) and ``GET /jobs/<id>/session/<file>`` (an output). A-REX answers a
bulk call with a dict for one job and a list for several; ``jobs()`` always gives a list.

The proxy file is both the client certificate and its key, as ``arcproxy`` writes it. The environment's CA
settings (``REQUESTS_CA_BUNDLE``, ...) are ignored: the CE's CA is the back end's own ``ca_file``/``ca_dir``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
import requests.adapters

from autopilot_ops.backends.base import BackendError

#: The REST API version this client speaks.
API_VERSION = "1.0"
#: Jobs per bulk call (A-REX takes more; this bounds one request's size and time).
BULK = 100
#: Requests in flight at once for per-job calls, over as many keep-alive connections.
PARALLEL = 8


class ArcRestError(BackendError):
    """The CE could not be reached, refused the proxy, or answered what the interface does not promise."""


def rest_url(ce: str) -> str:
    """The REST base of a CE given as ``https://host:port/arex`` (or already as ``.../arex/rest/1.0``)."""
    base = ce.rstrip("/")
    if not base.startswith("https://"):
        raise ValueError(f"ce {ce!r} must be an https:// URL (e.g. https://ce.example.org:443/arex)")
    if base.endswith(f"/rest/{API_VERSION}"):
        return base
    return f"{base}/rest/{API_VERSION}"


class ArcRestClient:
    """One keep-alive session to one CE, with the proxy as client certificate."""

    def __init__(self, ce: str, proxy: str, verify: str | bool = True, timeout_s: float = 30.0,
                 describe: str = "the ARC CE") -> None:
        self.base = rest_url(ce)
        self.describe = describe
        self._timeout = timeout_s
        self._session = requests.Session()
        self._session.trust_env = False  # neither proxies nor REQUESTS_CA_BUNDLE from the environment
        self._session.cert = (proxy, proxy)
        self._session.verify = verify
        self._session.headers["Accept"] = "application/json"
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=PARALLEL)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def new_jobs(self, description: str, content_type: str) -> list[dict[str, Any]]:
        """Submit one or more job descriptions in one request; the CE's answer per job, in order."""
        reply = self._call("POST", "/jobs", params={"action": "new"}, data=description.encode(),
                           headers={"Content-Type": content_type})
        return _job_list(reply, "new")

    def put_file(self, job_id: str, name: str, content: bytes) -> None:
        """Upload a client-staged input file into the job's session directory."""
        self._call("PUT", f"/jobs/{job_id}/session/{name}", data=content,
                   headers={"Content-Type": "application/octet-stream"}, expect_json=False)

    def jobs(self, action: str, job_ids: Sequence[str]) -> list[dict[str, Any]]:
        """A bulk ``action`` (``status``, ``info``, ``kill``, ``clean``) over ``job_ids``, ``BULK`` per request."""
        answers: list[dict[str, Any]] = []
        for chunk in _chunks(job_ids, BULK):
            reply = self._call("POST", "/jobs", params={"action": action},
                               json={"job": [{"id": job_id} for job_id in chunk]})
            answers += _job_list(reply, action)
        return answers

    def diagnose(self, job_id: str, name: str) -> str | None:
        """A job's diagnostic file (``status``, ``diag``, ``failed``, ...); ``None`` when the job is gone."""
        return self.text(f"/jobs/{job_id}/diagnose/{name}")

    def diagnose_many(self, job_ids: Sequence[str], name: str) -> dict[str, str | None]:
        """One diagnostic file of each job, ``PARALLEL`` requests at a time (A-REX answers each in tens of ms)."""
        if len(job_ids) <= 1:
            return {job_id: self.diagnose(job_id, name) for job_id in job_ids}
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(job_ids)), thread_name_prefix="arc-rest") as pool:
            return dict(zip(job_ids, pool.map(lambda job_id: self.diagnose(job_id, name), job_ids)))

    def session_file(self, job_id: str, name: str) -> bytes | None:
        """A file of the job's session directory; ``None`` when it (or the job) is gone."""
        response = self._request("GET", f"/jobs/{job_id}/session/{name}")
        if response.status_code == 404:
            return None
        self._check(response, f"GET session/{name}")
        return response.content

    def text(self, path: str) -> str | None:
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        self._check(response, f"GET {path}")
        return response.text

    def _call(self, method: str, path: str, *, expect_json: bool = True, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        self._check(response, f"{method} {path}")
        if not expect_json:
            return None
        try:
            return response.json()
        except ValueError:
            raise ArcRestError(f"{self.describe}: {method} {path} answered {response.status_code} with no JSON: "
                               f"{response.text[:200]!r}") from None

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.request(method, self.base + path, timeout=self._timeout, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise ArcRestError(f"{self.describe}: TLS with {self.base} failed (an expired or wrong proxy, or a CA "
                               f"that does not sign the CE's certificate): {_root_cause(exc)}") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ArcRestError(f"{self.describe}: cannot reach {self.base}: {_root_cause(exc)}") from None
        except OSError as exc:  # the proxy file is missing or unreadable
            raise ArcRestError(f"{self.describe}: cannot use the proxy: {exc}") from None

    def _check(self, response: requests.Response, what: str) -> None:
        if response.status_code in (401, 403):
            raise ArcRestError(f"{self.describe}: {what} refused ({response.status_code}): the CE does not "
                               "authorise this proxy's identity")
        if response.status_code >= 400:
            raise ArcRestError(f"{self.describe}: {what} answered {response.status_code}: {response.text[:200]!r}")


def _job_list(reply: Any, action: str) -> list[dict[str, Any]]:
    job = reply.get("job") if isinstance(reply, dict) else None
    if isinstance(job, dict):
        return [job]
    if isinstance(job, list) and all(isinstance(item, dict) for item in job):
        return job
    raise ArcRestError(f"action={action}: the CE's answer has no job list: {str(reply)[:200]!r}")


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc)
