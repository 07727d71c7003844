"""Pilot overhead over 200 short jobs against a local dev server; prints JSON.

Measures, per job, the time from ``acquire_jobs`` returning to the payload starting, and from the payload
exiting to the final update being acknowledged (both logged by the pilot), plus the pilot process's own
RSS. Targets: both medians < 0.2 s, RSS < 60 MB.

    python bench/bench_pilot.py [--jobs 200]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from autopilot_ops.panda.devserver.testing import DevServer

QUEUE = "BENCH_QUEUE"
OVERHEAD = re.compile(r"acquire_to_payload_start=([0-9.]+) payload_exit_to_final_ack=([0-9.]+)")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": round(statistics.median(ordered), 4),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 4),
        "max": round(ordered[-1], 4),
    }


def sample_rss(pid: int, peak: list[int], stop: threading.Event) -> None:
    """Keep the largest RSS of the pilot process itself (not its payloads) in ``peak[0]``."""
    try:
        process = psutil.Process(pid)
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            stop.wait(0.05)
    except psutil.Error:
        return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        trf = root / "payload.sh"
        trf.write_text("#!/bin/sh\necho done\n")
        trf.chmod(0o755)
        (root / "work").mkdir()
        with DevServer(root / "server") as server:
            ids = server.submit_jobs(QUEUE, args.jobs, str(trf), "--n 1")
            command = [
                sys.executable,
                "-m",
                "autopilot_ops.pilot",
                "run",
                "--queue",
                QUEUE,
                "--server",
                server.url,
                "--max-jobs",
                str(args.jobs),
                "--time-floor",
                "3600",
                "--workdir",
                str(root / "work"),
                "--home",
                str(root / "home"),
            ]
            started = time.monotonic()
            pilot = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=root)
            peak, stop = [0], threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(pilot.pid, peak, stop), daemon=True)
            sampler.start()
            stderr = pilot.stderr.read()
            _, status, usage = os.wait4(pilot.pid, 0)
            pilot.returncode = os.waitstatus_to_exitcode(status)
            wall = time.monotonic() - started
            stop.set()
            sampler.join()
            states = [server.job(panda_id)["status"] for panda_id in ids]
    overheads = [tuple(map(float, match.groups())) for match in OVERHEAD.finditer(stderr)]
    if pilot.returncode != 0 or len(overheads) != args.jobs:
        print(stderr[-3000:], file=sys.stderr)
        print(json.dumps({"error": f"pilot exited {pilot.returncode} after {len(overheads)} jobs"}))
        return 1
    result = {
        "jobs": args.jobs,
        "all_finished_on_server": states.count("finished") == args.jobs,
        "acquire_to_payload_start_s": summary([o[0] for o in overheads]),
        "payload_exit_to_final_ack_s": summary([o[1] for o in overheads]),
        "pilot_rss_mb": {
            "peak_sampled": round(peak[0] / 2**20, 1),
            "wait4_maxrss_incl_forks": round(usage.ru_maxrss / 1024, 1),
        },
        "wall_time_s": round(wall, 2),
        "targets": {"median_overhead_s": 0.2, "rss_mb": 60},
    }
    result["targets_met"] = (
        result["acquire_to_payload_start_s"]["median"] < 0.2
        and result["payload_exit_to_final_ack_s"]["median"] < 0.2
        and result["pilot_rss_mb"]["peak_sampled"] < 60
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
