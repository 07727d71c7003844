"""Fault 3, the pilot's calls (issue 10 s5): a hostile server answers ``acquire_jobs`` and ``update_job`` with
something that is not a PanDA reply. Each gets a clear error naming the call, retries stay bounded, and no
job is lost: a final update that met a hostile reply is kept and delivered later."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from autopilot_ops.panda.client import MAX_REPLY_BYTES, PandaClient, RetryPolicy
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.panda.errors import PandaError
from autopilot_ops.pilot import errorcodes

QUEUE = "LOCAL_QUEUE"
FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)


def envelope(data: object) -> bytes:
    return json.dumps({"success": True, "message": "", "data": data}).encode()


#: kind -> (status, body); "huge" streams without end
HOSTILE = {
    "not-json": (200, b"<html>hello</html>"),
    "wrong-shape": (200, b'["success", true]'),
    "wrong-types": (200, envelope({"StatusCode": "zero", "jobs": "PandaID=1", "command": 7})),
    "html-500": (500, b"<html><body><h1>500 Internal Server Error</h1></body></html>"),
    "huge": (200, b""),
}


class HostileServer:
    """Answers every request with one hostile ``kind`` of reply; counts the requests."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append(self.path)
                status, body = HOSTILE[server.kind]
                self.send_response(status)
                if server.kind == "huge":
                    self.send_header("Content-Length", str(1 << 40))
                    self.end_headers()
                    chunk = b"x" * (1 << 20)
                    try:
                        for _ in range(2 * MAX_REPLY_BYTES // len(chunk)):
                            self.wfile.write(chunk)
                    except OSError:
                        pass  # the client stopped reading, as it should
                    self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request: pytest.FixtureRequest) -> Iterator[HostileServer]:
    server = HostileServer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("call", ["acquire_jobs", "update_job"])
def test_each_hostile_reply_is_a_clear_bounded_error(hostile: HostileServer, call: str) -> None:
    with PandaClient(hostile.url, retry=FAST, timeout=10) as client, pytest.raises(PandaError) as caught:
        if call == "acquire_jobs":
            client.acquire_jobs(QUEUE, node="wn1")
        else:
            client.update_job(1, "running")
    assert f"/api/v1/pilot/{call}" in str(caught.value)
    assert 1 <= len(hostile.requests) <= FAST.attempts  # bounded: no crash loop
    if hostile.kind == "huge":
        assert f"over {MAX_REPLY_BYTES} bytes" in str(caught.value)


def pilot(home: Path, server: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "autopilot_ops.pilot", *args[:1], "--home", str(home), "--server", server]
    return subprocess.run([*argv, *args[1:]], capture_output=True, text=True, timeout=120)


def test_pilot_meeting_a_hostile_acquire_exits_once(hostile: HostileServer, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    result = pilot(tmp_path / "home", hostile.url, "run", "--queue", QUEUE, "--workdir", str(work), "--backoff", "0.01")
    assert result.returncode == errorcodes.EXIT_COMMUNICATIONFAILURE, result.stderr
    assert "cannot get a job: PanDA /api/v1/pilot/acquire_jobs" in result.stderr
    assert len(hostile.requests) == 1  # acquire_jobs is never sent twice once it may have arrived


def test_final_update_meeting_hostile_replies_is_kept_then_delivered(tmp_path: Path) -> None:
    """The job runs against a real dev server; its final update meets a hostile server (through the kept
    file's server URL) and is kept; ``pilot resend`` later delivers it to the real server."""
    files = tmp_path / "files"
    files.mkdir()
    with DevServer(tmp_path / "devserver", files_dir=files) as panda:
        job_id = panda.submit_jobs(QUEUE, 1, "/bin/true", "")[0]
        with PandaClient(panda.url) as client:
            client.acquire_jobs(QUEUE)
        for kind in sorted(HOSTILE):
            server = HostileServer(kind)
            try:
                code = subprocess.run(
                    [sys.executable, "-c", KEEP_FINAL, server.url, str(tmp_path / "home"), str(job_id)],
                    capture_output=True, text=True, timeout=120,
                )  # fmt: skip
            finally:
                server.close()
            assert code.returncode == 0, code.stderr
            assert f"final update of job {job_id}" in code.stderr and "update_job" in code.stderr
            assert (tmp_path / "home" / "outbox" / f"{job_id}.json").exists()
        assert panda.job(job_id)["status"] == "sent"  # nothing reached the real server yet
        result = pilot(tmp_path / "home", panda.url, "resend")
        assert result.returncode == 0 and "delivered 1" in result.stdout, result.stderr
        job = panda.job(job_id)
        assert (job["status"], job["pilot_error_code"]) == ("failed", 1305)


#: A final update sent through the pilot's own Reporter to a server URL, with a short patience.
KEEP_FINAL = """
import logging, sys
from pathlib import Path
from autopilot_ops.panda.client import PandaClient, RetryPolicy
from autopilot_ops.pilot.outbox import Outbox
from autopilot_ops.pilot.reporting import Reporter
logging.basicConfig(level=logging.INFO)
url, home, job_id = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
client = PandaClient(url, retry=RetryPolicy(attempts=2, backoff=0.01), timeout=10)
reporter = Reporter(client, Outbox(home / "outbox"), patience=0.5)
delivered = reporter.final(job_id, "failed", pilot_error_code=1305, pilot_error_diag="hostile test")
sys.exit(1 if delivered else 0)
"""
