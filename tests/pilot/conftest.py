"""Fixtures for the pilot tests: a scripted HTTP server on loopback, and payload scripts in tmp dirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autopilot_ops.panda.devserver.testing import DevServer


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedServer:
    """Answers each request with the next ``(status, body)`` of ``replies`` (the last one repeats);
    ``files`` maps paths to contents for GET, and PUT stores into ``files``."""

    url: str
    replies: list[tuple[int, str]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    def reply(self, status: int, envelope_or_text: object) -> None:
        text = envelope_or_text if isinstance(envelope_or_text, str) else json.dumps(envelope_or_text)
        self.replies.append((status, text))


def _handler(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.requests.append(Recorded(self.command, self.path, dict(self.headers), body))
            path = self.path.split("?")[0]
            if self.command == "PUT":
                server.files[path] = body
                return self._answer(201, b"")
            if self.command == "GET" and path in server.files:
                return self._answer(200, server.files[path])
            if not server.replies:
                return self._answer(404, b"not found")
            status, text = server.replies.pop(0) if len(server.replies) > 1 else server.replies[0]
            self._answer(status, text.encode())

        do_GET = do_POST = do_PUT = _handle

    return Handler


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), None)  # type: ignore[arg-type]
    scripted = ScriptedServer(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.RequestHandlerClass = _handler(scripted)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield scripted
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def make_script(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write an executable ``#!/bin/sh`` script named ``name`` with ``body``; returns its path."""

    def make(name: str, body: str) -> Path:
        path = tmp_path / "scripts" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        return path

    return make


@dataclass
class PilotRunner:
    """Runs ``python -m autopilot_ops.pilot`` as a real subprocess with its home and work dir in ``root``."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def storage(self) -> Path:
        return self.home / "storage"

    def command(self, subcommand: str, server: str | None, *args: str) -> list[str]:
        command = [sys.executable, "-m", "autopilot_ops.pilot", subcommand, "--home", str(self.home)]
        if subcommand == "run":
            command += ["--queue", QUEUE, "--workdir", str(self.root / "work"), "--retries", "2", "--backoff", "0.05"]
        if server is not None:
            command += ["--server", server]
        return command + list(args)

    def run(
        self, server: str | None, *args: str, subcommand: str = "run", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        (self.root / "work").mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            self.command(subcommand, server, *args), capture_output=True, text=True, timeout=timeout, env=pilot_env()
        )

    def start(self, server: str | None, *args: str) -> subprocess.Popen[str]:
        (self.root / "work").mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            self.command("run", server, *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=pilot_env(),
        )


QUEUE = "LOCAL_QUEUE"


def pilot_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("X509_USER_PROXY", None)
    env.pop("PANDA_URL", None)
    return env


@pytest.fixture
def pilot(tmp_path: Path) -> PilotRunner:
    return PilotRunner(tmp_path / "pilot")


@pytest.fixture
def panda(tmp_path: Path) -> Iterator[DevServer]:
    """A dev server (open auth) serving ``tmp_path/files``."""
    (tmp_path / "files").mkdir()
    with DevServer(tmp_path / "devserver", files_dir=tmp_path / "files") as server:
        yield server


def _wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """``wait_for(predicate, timeout=30, what=...)``: poll until true, fail after ``timeout`` seconds."""
    return _wait_for
