"""Fixtures for the dev server's contract tests: a server on loopback and a raw HTTP client for it."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from autopilot_ops.panda.devserver.testing import DevServer

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "panda-server-1.0.4"


@dataclass
class Answer:
    status: int
    text: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.text)


class RawClient:
    """Sends exactly the bytes a test asks for, over one keep-alive connection."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)

    def send(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        self.connection.request(method, path, body=body, headers=headers or {})
        response = self.connection.getresponse()
        text = response.read().decode("utf-8", errors="replace")
        return Answer(response.status, text, {k.lower(): v for k, v in response.getheaders()})

    def post(self, path: str, payload: dict[str, Any], gzipped: bool = False, **headers: str) -> Answer:
        body = json.dumps(payload).encode()
        sent = {"Content-Type": "application/json", "Accept": "application/json"}
        if gzipped:
            body = gzip.compress(body)
            sent["Content-Encoding"] = "gzip"
        sent.update({key.replace("_", "-"): value for key, value in headers.items()})
        return self.send("POST", path, body, sent)

    def get(self, path: str, **headers: str) -> Answer:
        sent = {"Accept": "application/json"}
        sent.update({key.replace("_", "-"): value for key, value in headers.items()})
        return self.send("GET", path, None, sent)

    def acquire(self, site: str = "LOCAL_QUEUE", **extra: Any) -> Answer:
        return self.post("/api/v1/pilot/acquire_jobs", {"site_name": site, **extra})

    def update(self, job_id: int, status: str, **extra: Any) -> Answer:
        return self.post("/api/v1/pilot/update_job", {"job_id": job_id, "job_status": status, **extra})

    @staticmethod
    def output_report(job: dict[str, Any]) -> str:
        """A ``job_output_report`` covering every output and log file of a job dict."""
        report = {}
        for index, lfn in enumerate(job["outFiles"].split(",")):
            guid = job["logGUID"] if lfn == job["logFile"] else f"5e0a1b2c-0000-4000-8000-{index:012d}"
            report[lfn] = {"guid": guid, "fsize": 123, "adler32": "0a1b2c3d"}
        return json.dumps(report)

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[DevServer]:
    files = tmp_path / "files"
    files.mkdir()
    (files / "hello.sh").write_text("#!/bin/sh\necho hello\n")
    with DevServer(tmp_path / "server", files_dir=files) as server:
        yield server


@pytest.fixture
def connect() -> Iterator[Any]:
    """A factory of clients (one connection each), all closed after the test."""
    opened: list[RawClient] = []

    def make(url: str) -> RawClient:
        opened.append(RawClient(url))
        return opened[-1]

    yield make
    for raw in opened:
        raw.close()


@pytest.fixture
def client(srv: DevServer, connect: Any) -> RawClient:
    return connect(srv.url)


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    return json.loads((REFERENCE / "replies.json").read_text())


@pytest.fixture(scope="session")
def harvester_reference() -> dict[str, Any]:
    """The pilot-factory calls to a real PanDA server 1.0.4, in the order they were sent."""
    return json.loads((REFERENCE / "harvester-replies.json").read_text())
