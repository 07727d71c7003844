"""Heartbeats while the pilot transfers files: a slow stage-in, a slow stage-out and a slow log upload must
not let the server's lost-heartbeat watcher fail a healthy job."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from autopilot_ops.panda.devserver.testing import DevServer

QUEUE = "LOCAL_QUEUE"
TRANSFER_SECONDS = 3.0
WATCHER_TIMEOUT = 1.5


@dataclass
class SlowStorage:
    """HTTP storage on loopback that takes ``TRANSFER_SECONDS`` for every GET and PUT."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)


@pytest.fixture
def slow_storage() -> Iterator[SlowStorage]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), None)  # type: ignore[arg-type]
    storage = SlowStorage(f"http://127.0.0.1:{httpd.server_address[1]}")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            data = storage.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            half = len(data) // 2
            self.wfile.write(data[:half])  # trickled: the transfer itself is slow, not only its start
            self.wfile.flush()
            time.sleep(TRANSFER_SECONDS)
            self.wfile.write(data[half:])

        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(TRANSFER_SECONDS)
            storage.files[self.path] = body
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd.RequestHandlerClass = Handler
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield storage
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def watched_panda(tmp_path) -> Iterator[DevServer]:
    """A dev server whose watcher fails a job after ``WATCHER_TIMEOUT`` s without an update."""
    with DevServer(tmp_path / "devserver", heartbeat_timeout=WATCHER_TIMEOUT) as server:
        yield server


def run_slow_job(panda, pilot, make_script, storage, *extra: str):
    data = b"input\n" * 100
    storage.files["/mc/in.dat"] = data
    trf = make_script("copy.sh", "cat in.dat > out.dat\n")
    job_id = panda.submit_jobs(
        QUEUE,
        1,
        str(trf),
        "",
        in_files=[{"lfn": "in.dat", "scope": "mc", "fsize": len(data), "checksum": f"ad:{zlib.adler32(data):08x}"}],
        out_files=["out.dat"],
    )[0]
    started = time.monotonic()
    result = pilot.run(panda.url, "--heartbeat", "0.3", *storage_options(storage), *extra)
    return job_id, result, time.monotonic() - started


def storage_options(storage: SlowStorage) -> list[str]:
    template = f"{storage.url}/{{scope}}/{{lfn}}"
    return ["--input-url", template, "--output-url", template]


def test_slow_transfers_keep_the_job_alive(watched_panda, pilot, make_script, slow_storage):
    job_id, result, seconds = run_slow_job(watched_panda, pilot, make_script, slow_storage)
    assert result.returncode == 0, result.stderr
    job = watched_panda.job(job_id)
    assert job["status"] == "finished", (job["dispatcher_error_diag"], result.stderr)
    assert job["dispatcher_error_code"] in (None, 0)
    assert seconds > 3 * TRANSFER_SECONDS > 2 * WATCHER_TIMEOUT  # stage-in, stage-out and the log took that long
    assert "/autopilot/out.dat" in slow_storage.files
    statuses = [entry["status"] for entry in job["history"]]
    assert statuses == ["activated", "sent", "starting", "running", "holding", "finished"]


def test_kill_during_stage_in_stops_the_job_before_its_payload(tmp_path, pilot, make_script, slow_storage):
    slow_storage.files["/mc/in.dat"] = b"x" * 10
    with DevServer(tmp_path / "devserver") as panda:
        job_id = panda.submit_jobs(
            QUEUE, 1, str(make_script("never.sh", "touch ran\n")), "", in_files=[{"lfn": "in.dat", "scope": "mc"}]
        )[0]
        killer = threading.Timer(TRANSFER_SECONDS / 2, lambda: panda.kill([job_id]))
        killer.start()
        result = pilot.run(panda.url, "--heartbeat", "0.3", "--keep-workdir", *storage_options(slow_storage))
        killer.join()
        assert result.returncode == 0, result.stderr
        assert panda.job(job_id)["status"] == "cancelled"
    assert "killed by the server during stage-in (tobekilled)" in result.stderr
    assert not (pilot.root / "work" / f"PanDA_Pilot-{job_id}" / "ran").exists()
