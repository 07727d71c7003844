"""Benchmark of ``autopilot panda-devserver``: prints JSON.

- ``startup_s``: from launching the CLI process until ``/api/v1/system/is_alive`` answers (median of runs),
  with Python's bytecode cache warm as for an installed package (kept in a temporary ``PYTHONPYCACHEPREFIX``);
  ``startup_without_bytecode_cache_s``: the same when every module is compiled from source
  (``PYTHONDONTWRITEBYTECODE=1``, as in some sandboxes);
- ``jobs_per_s``: jobs dispatched and finished per second by one client over one keep-alive connection,
  each job being ``acquire_jobs`` + ``update_job`` running + ``update_job`` finished with its
  ``job_output_report`` (median of runs; target >= 500). The client is a lean HTTP/1.1 loop (as a load
  generator is): with ``http.client`` its own CPU per job is about 0.9 ms, 2.5 times the lean one's;
- ``client_ceiling_jobs_per_s``: the same client loop against a server that answers instantly with recorded
  replies, i.e. what this machine allows at best right now;
- the server and this client are pinned to separate CPUs when there are two or more;
- ``server_cpu_ms_per_job``/``client_cpu_ms_per_job``: CPU each side spent per job, which with the load
  average tells how much of the wall time was waiting for a busy machine.

Usage: ``python bench/bench_devserver.py [--runs 5] [--jobs 1000]``. The server logs one line per request
(to /dev/null here), as it does by default.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from autopilot_ops.panda.devserver.jobspec import build_job_spec, dump_jobs_json

AUTOPILOT = Path(sys.executable).with_name("autopilot")
HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
#: A full ``acquire_jobs`` reply recorded from the real PanDA server 1.0.4, kept in the repository.
RECORDED_ACQUIRE = (
    Path(__file__).resolve().parents[1] / "tests" / "data" / "panda-server-1.0.4" / "acquire_jobs-reply.json"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(workdir: Path, pycache: Path | None) -> tuple[subprocess.Popen, int, float]:
    """Start the CLI; with ``pycache`` it may cache bytecode there (as an installed package has), else not."""
    env = dict(os.environ)
    if pycache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(AUTOPILOT), "panda-devserver", "--port", str(port), "--db", str(workdir / "bench.db")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/v1/system/is_alive", headers={"Accept": "application/json"})
            if connection.getresponse().status == 200:
                connection.close()
                return process, port, time.perf_counter() - started
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"the dev server exited with code {process.returncode}") from None
            time.sleep(0.005)


def pin(server_pid: int, cpus: set[int]) -> bool:
    """Server on one CPU and this client on another, so neither preempts the other on one core."""
    if len(cpus) < 2:
        return False
    first, second = sorted(cpus)[:2]
    os.sched_setaffinity(server_pid, {first})
    os.sched_setaffinity(0, {second})
    return True


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)


class KeepAliveClient:
    """A lean HTTP/1.1 client on one keep-alive connection (as load generators such as wrk are), so that the
    bench measures the server rather than ``http.client``'s own overhead."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")
        self.head = f"Host: 127.0.0.1:{port}\r\n" + "".join(f"{name}: {value}\r\n" for name, value in HEADERS.items())

    def call(self, path: str, payload: dict) -> dict:
        body = json.dumps(payload).encode()
        head = f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)
        status = int(self.reader.readline().split()[1])
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        reply = json.loads(self.reader.read(length))
        if status != 200 or not reply["success"]:
            raise SystemExit(f"{path} failed: HTTP {status} {reply}")
        return reply["data"]

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@dataclass
class Run:
    jobs_per_s: float
    server_cpu_ms_per_job: float
    client_cpu_ms_per_job: float


def run_jobs(port: int, n_jobs: int, server: psutil.Process) -> Run:
    connection = KeepAliveClient(port)
    specs = [build_job_spec("BENCH", "http://127.0.0.1/x.sh", "--n 1") for _ in range(n_jobs)]
    connection.call("/api/v1/job/submit", {"jobs": dump_jobs_json(specs)})
    server_cpu = sum(server.cpu_times()[:2])
    client_cpu = time.process_time()
    started = time.perf_counter()
    for _ in range(n_jobs):
        job = connection.call("/api/v1/pilot/acquire_jobs", {"site_name": "BENCH", "node": "bench"})["jobs"][0]
        panda_id = job["PandaID"]
        connection.call("/api/v1/pilot/update_job", {"job_id": panda_id, "job_status": "running"})
        report = {job["logFile"]: {"guid": job["logGUID"], "fsize": 1, "adler32": "00000001"}}
        finished = {"job_id": panda_id, "job_status": "finished", "job_output_report": json.dumps(report)}
        connection.call("/api/v1/pilot/update_job", finished)
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_cpu = sum(server.cpu_times()[:2]) - server_cpu
    connection.close()
    return Run(n_jobs / elapsed, server_cpu * 1000 / n_jobs, client_cpu * 1000 / n_jobs)


def serve_canned(port: int) -> None:
    """A server that answers every request at once with a recorded reply: the client's own ceiling."""
    acquired = RECORDED_ACQUIRE.read_bytes()
    updated = b'{"success": true, "message": "", "data": {"StatusCode": 0, "command": "NULL"}}'

    class Canned(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    return
                length = 0
                while (header := self.rfile.readline(65537)) not in (b"\r\n", b""):
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                self.rfile.read(length)
                body = acquired if b"acquire_jobs" in line else updated
                head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
                self.wfile.write(head.encode() + body)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", port), Canned) as server:
        server.serve_forever()


def client_ceiling(n_jobs: int, cpus: set[int]) -> float:
    """Jobs/s of the same client loop, pinned the same way, against ``serve_canned`` in another process."""
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--canned-server", str(port)])
    pin(process.pid, cpus)
    try:
        for _ in range(1000):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.01)
        connection = KeepAliveClient(port)
        started = time.perf_counter()
        for _ in range(n_jobs):
            job = connection.call("/api/v1/pilot/acquire_jobs", {"site_name": "BENCH"})["jobs"][0]
            connection.call("/api/v1/pilot/update_job", {"job_id": job["PandaID"], "job_status": "running"})
            report = {job["logFile"]: {"guid": job["logGUID"], "fsize": 1, "adler32": "00000001"}}
            finished = {"job_id": job["PandaID"], "job_status": "finished", "job_output_report": json.dumps(report)}
            connection.call("/api/v1/pilot/update_job", finished)
        connection.close()
        return n_jobs / (time.perf_counter() - started)
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--canned-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.canned_server:
        serve_canned(args.canned_server)
        return
    all_cpus = os.sched_getaffinity(0)
    pinned = False
    startups, cold_startups, runs, ceilings = [], [], [], []
    with tempfile.TemporaryDirectory() as pycache:
        stop(start_server(Path(pycache), Path(pycache))[0])  # fills the bytecode cache
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as workdir:
                process, _, startup = start_server(Path(workdir), None)
                stop(process)
                cold_startups.append(startup)
            with tempfile.TemporaryDirectory() as workdir:
                process, port, startup = start_server(Path(workdir), Path(pycache))
                try:
                    startups.append(startup)
                    pinned = pin(process.pid, all_cpus)
                    runs.append(run_jobs(port, args.jobs, psutil.Process(process.pid)))
                finally:
                    stop(process)
            ceilings.append(client_ceiling(args.jobs, all_cpus))
            os.sched_setaffinity(0, all_cpus)
    rates = [run.jobs_per_s for run in runs]
    print(
        json.dumps(
            {
                "runs": args.runs,
                "jobs_per_run": args.jobs,
                "startup_s": {"median": round(statistics.median(startups), 3), "all": [round(s, 3) for s in startups]},
                "startup_without_bytecode_cache_s": {
                    "median": round(statistics.median(cold_startups), 3),
                    "all": [round(s, 3) for s in cold_startups],
                },
                "jobs_per_s": {"median": round(statistics.median(rates), 1), "all": [round(r, 1) for r in rates]},
                "client_ceiling_jobs_per_s": {
                    "median": round(statistics.median(ceilings), 1),
                    "all": [round(c, 1) for c in ceilings],
                },
                "requests_per_job": 3,
                "target_jobs_per_s": 500,
                "server_cpu_ms_per_job": round(statistics.median(r.server_cpu_ms_per_job for r in runs), 3),
                "client_cpu_ms_per_job": round(statistics.median(r.client_cpu_ms_per_job for r in runs), 3),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "server_and_client_pinned_to_separate_cpus": pinned,
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
