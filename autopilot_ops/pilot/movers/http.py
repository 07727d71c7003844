"""HTTP(S) mover: streamed download to a partial file, upload by PUT; redirects followed (storage front ends
send clients to their pools), on the standard library alone (``netutil.HttpClient``)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urljoin

from autopilot_ops.netutil import HttpClient, Response, TLSSettings
from autopilot_ops.pilot.movers.base import DataMover, MissingFileError, TransferError

_CHUNK = 1 << 20
#: Redirect statuses; a PUT follows only those that keep the method and body (307, 308).
_REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10


class HttpMover(DataMover):
    """Options: ``timeout`` (s), ``ca_bundle`` (path), ``token`` (bearer), ``cert``/``key`` (client cert)."""

    def _client(self) -> HttpClient:
        tls = TLSSettings(ca=self.options.get("ca_bundle"), cert=self.options.get("cert"), key=self.options.get("key"))
        headers = {"Authorization": f"Bearer {self.options['token']}"} if self.options.get("token") else {}
        return HttpClient(tls=tls, headers=headers)

    @property
    def _timeout(self) -> float:
        return float(self.options.get("timeout", 60))

    def _follow(self, http: HttpClient, method: str, url: str, source: Path | None = None) -> Response:
        """The reply to ``method url`` after redirects; for a PUT, ``source`` is sent again at each hop."""
        for _ in range(MAX_REDIRECTS + 1):
            if source is None:
                reply = http.request(method, url, timeout=self._timeout)
            else:
                with open(source, "rb") as handle:
                    reply = http.request(method, url, body=handle, timeout=self._timeout)
            location = reply.headers.get("location")
            if reply.status not in _REDIRECTS or not location or (source is not None and reply.status < 307):
                return reply
            reply.close()
            url = urljoin(url, location)
        raise TransferError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")

    def get(self, url: str, destination: Path) -> None:
        partial = destination.with_name(f".{destination.name}.part")
        http = self._client()
        try:
            with self._follow(http, "GET", url) as reply:
                if reply.status == 404:
                    raise MissingFileError(f"input {url} does not exist (HTTP 404)")
                if reply.status != 200:
                    raise TransferError(f"GET {url} failed: HTTP {reply.status}")
                with open(partial, "wb") as handle:
                    while chunk := reply.read(_CHUNK):
                        handle.write(chunk)
            os.replace(partial, destination)
        except (OSError, ValueError) as exc:
            raise TransferError(f"GET {url} failed: {exc}") from exc
        finally:
            http.close()
            partial.unlink(missing_ok=True)

    def put(self, source: Path, url: str) -> None:
        http = self._client()
        try:
            with self._follow(http, "PUT", url, source) as reply:
                reply.read()
        except (OSError, ValueError) as exc:
            raise TransferError(f"PUT {source} -> {url} failed: {exc}") from exc
        finally:
            http.close()
        if reply.status not in (200, 201, 204):
            raise TransferError(f"PUT {source} -> {url} failed: HTTP {reply.status}")
