"""Benchmark of ``autopilot panda-devserver``: prints JSON.

- ``startup_s``: from launching the CLI process until ``/api/v1/system/is_alive`` answers (median of runs);
- ``jobs_per_s``: jobs dispatched and finished per second by one client over one keep-alive connection,
  each job being ``acquire_jobs`` + ``update_job`` running + ``update_job`` finished with its
  ``job_output_report`` (median of runs; target >= 500);
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(workdir: Path) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(AUTOPILOT), "panda-devserver", "--port", str(port), "--db", str(workdir / "bench.db")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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


def call(connection: http.client.HTTPConnection, path: str, payload: dict) -> dict:
    connection.request("POST", path, body=json.dumps(payload), headers=HEADERS)
    response = connection.getresponse()
    reply = json.loads(response.read())
    if response.status != 200 or not reply["success"]:
        raise SystemExit(f"{path} failed: HTTP {response.status} {reply}")
    return reply["data"]


@dataclass
class Run:
    jobs_per_s: float
    server_cpu_ms_per_job: float
    client_cpu_ms_per_job: float


def run_jobs(port: int, n_jobs: int, server: psutil.Process) -> Run:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    specs = [build_job_spec("BENCH", "http://127.0.0.1/x.sh", "--n 1") for _ in range(n_jobs)]
    call(connection, "/api/v1/job/submit", {"jobs": dump_jobs_json(specs)})
    server_cpu = sum(server.cpu_times()[:2])
    client_cpu = time.process_time()
    started = time.perf_counter()
    for _ in range(n_jobs):
        job = call(connection, "/api/v1/pilot/acquire_jobs", {"site_name": "BENCH", "node": "bench"})["jobs"][0]
        panda_id = job["PandaID"]
        call(connection, "/api/v1/pilot/update_job", {"job_id": panda_id, "job_status": "running"})
        report = {job["logFile"]: {"guid": job["logGUID"], "fsize": 1, "adler32": "00000001"}}
        finished = {"job_id": panda_id, "job_status": "finished", "job_output_report": json.dumps(report)}
        call(connection, "/api/v1/pilot/update_job", finished)
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_cpu = sum(server.cpu_times()[:2]) - server_cpu
    connection.close()
    return Run(n_jobs / elapsed, server_cpu * 1000 / n_jobs, client_cpu * 1000 / n_jobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    startups, runs = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as workdir:
            process, port, startup = start_server(Path(workdir))
            try:
                startups.append(startup)
                runs.append(run_jobs(port, args.jobs, psutil.Process(process.pid)))
            finally:
                process.terminate()
                process.wait(timeout=30)
    rates = [run.jobs_per_s for run in runs]
    print(
        json.dumps(
            {
                "runs": args.runs,
                "jobs_per_run": args.jobs,
                "startup_s": {"median": round(statistics.median(startups), 3), "all": [round(s, 3) for s in startups]},
                "jobs_per_s": {"median": round(statistics.median(rates), 1), "all": [round(r, 1) for r in rates]},
                "requests_per_job": 3,
                "target_jobs_per_s": 500,
                "server_cpu_ms_per_job": round(statistics.median(r.server_cpu_ms_per_job for r in runs), 3),
                "client_cpu_ms_per_job": round(statistics.median(r.client_cpu_ms_per_job for r in runs), 3),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "cpu_count": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
