"""The dev server's CPU work counted in instructions (valgrind's callgrind), which the machine's load does not
change: prints JSON.

- ``startup_minstr``: millions of instructions from launch until the server is stopped right after answering
  ``/api/v1/system/is_alive``;
- ``per_job_kinstr``: thousands of instructions per job (its share of one ``job/submit`` of all jobs, then
  ``acquire_jobs`` + ``update_job`` running + ``update_job`` finished, as ``bench_devserver.py`` runs them):
  a run of ``--jobs`` jobs minus a run of none, divided by ``--jobs``.

``--tree DIR ...`` measures other checkouts too (each put first on ``PYTHONPATH``), e.g. a ``git worktree`` of
an older commit, for a side-by-side comparison on the same machine. Usage: ``python bench/bench_devserver_
instructions.py [--jobs 200] [--tree /tmp/old]``; needs ``valgrind``; takes a few minutes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from bench_devserver import free_port, run_jobs

ROOT = Path(__file__).resolve().parents[1]
AUTOPILOT = Path(sys.executable).with_name("autopilot")


def instructions(tree: Path, n_jobs: int) -> int:
    """Instructions of one server process that serves ``n_jobs`` jobs, then stops."""
    with tempfile.TemporaryDirectory() as workdir:
        port, out = free_port(), Path(workdir) / "callgrind.out"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(AUTOPILOT),
             "panda-devserver", "--port", str(port), "--db", f"{workdir}/bench.db", "--quiet"],
            env=dict(os.environ, PYTHONPATH=str(tree)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                connection.request("GET", "/api/v1/system/is_alive")
                connection.getresponse().read()
                connection.close()
                break
            except OSError:
                if server.poll() is not None:
                    raise SystemExit(f"the dev server under valgrind exited with code {server.returncode}") from None
                time.sleep(0.2)
        if n_jobs:
            run_jobs(port, n_jobs, psutil.Process(server.pid))
        server.send_signal(signal.SIGTERM)
        server.wait(300)
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit("callgrind wrote no total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout to measure too")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    results = {}
    for tree in [ROOT, *args.tree]:
        idle, busy = instructions(tree, 0), instructions(tree, args.jobs)
        results[str(tree)] = {
            "startup_minstr": round(idle / 1e6, 1),
            "per_job_kinstr": round((busy - idle) / args.jobs / 1e3, 1),
        }
    print(json.dumps({"bench": "devserver_instructions", "jobs": args.jobs, "trees": results}))


if __name__ == "__main__":
    main()
