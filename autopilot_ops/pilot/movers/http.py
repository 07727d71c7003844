"""HTTP(S) mover: streamed download to a partial file, upload by PUT."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from autopilot_ops.pilot.movers.base import DataMover, MissingFileError, TransferError

_CHUNK = 1 << 20


class HttpMover(DataMover):
    """Options: ``timeout`` (s), ``ca_bundle`` (path), ``token`` (bearer), ``cert``/``key`` (client cert)."""

    def _session(self) -> requests.Session:
        session = requests.Session()
        if self.options.get("ca_bundle"):
            session.verify = self.options["ca_bundle"]
        if self.options.get("cert"):
            session.cert = (self.options["cert"], self.options.get("key") or self.options["cert"])
        if self.options.get("token"):
            session.headers["Authorization"] = f"Bearer {self.options['token']}"
        return session

    @property
    def _timeout(self) -> float:
        return float(self.options.get("timeout", 60))

    def get(self, url: str, destination: Path) -> None:
        partial = destination.with_name(f".{destination.name}.part")
        try:
            with self._session() as session, session.get(url, stream=True, timeout=self._timeout) as reply:
                if reply.status_code == 404:
                    raise MissingFileError(f"input {url} does not exist (HTTP 404)")
                if reply.status_code != 200:
                    raise TransferError(f"GET {url} failed: HTTP {reply.status_code}")
                with open(partial, "wb") as handle:
                    for chunk in reply.iter_content(_CHUNK):
                        handle.write(chunk)
            os.replace(partial, destination)
        except requests.RequestException as exc:
            raise TransferError(f"GET {url} failed: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)

    def put(self, source: Path, url: str) -> None:
        try:
            with self._session() as session, open(source, "rb") as handle:
                reply = session.put(url, data=handle, timeout=self._timeout)
        except (OSError, requests.RequestException) as exc:
            raise TransferError(f"PUT {source} -> {url} failed: {exc}") from exc
        if reply.status_code not in (200, 201, 204):
            raise TransferError(f"PUT {source} -> {url} failed: HTTP {reply.status_code}")
