"""The pilot bundle on a bare worker node, against a local dev server; prints JSON (medians of ``--runs``).

Measures the bundle's size; the wrapper's start to the first ``acquire_jobs`` (fetching and checking the bundle
included); the pilot's start to its first ``acquire_jobs``; for a trivial payload, one job's acquire to the next
acquire; the peak RSS of the pilot process (the kernel's ``VmHWM``, sampled until it exits); and the CPU time per
job of the pilot with its payloads (``wait4``), which a loaded machine changes less than the times. Times come from
the dev server's access log (a request's arrival), so they cover the server's side as a worker node sees it.
Targets: start to first acquire <= 0.1 s, acquire to acquire <= 10 ms, peak RSS <= 16 MiB.

``--pilot installed`` measures what back ends ran before the bundle: ``python -m autopilot_ops.pilot`` of
this virtualenv (the wrapper without ``--pilot-url``).

    python bench/bench_pilot_bundle.py [--runs 5] [--jobs 30] [--pilot bundle|installed] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import autopilot_ops
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.pilot.bundle import build_bundle

QUEUE = "BENCH_QUEUE"
WRAPPER = Path(autopilot_ops.__file__).parent / "pilot" / "autopilot-wrapper.sh"
TARGETS = {"start_to_first_acquire_s": 0.1, "acquire_to_acquire_s": 0.010, "peak_rss_mib": 16}


class AcquireLog(io.TextIOBase):
    """The dev server's access log, keeping the arrival time (``time.time()``) of each ``acquire_jobs``."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    def write(self, line: str) -> int:
        if "acquire_jobs" in line:
            millis = float(line.rsplit("B ", 1)[1].split("ms", 1)[0])
            self.arrivals.append(time.time() - millis / 1000)
        return len(line)


def peak_rss_kib(pid: int, stop: threading.Event, peak: list[int]) -> None:
    """Keep the pilot's ``VmHWM`` (its own peak RSS, not its payloads') in ``peak[0]`` until it exits."""
    path = f"/proc/{pid}/status"
    while not stop.is_set():
        try:
            with open(path) as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
        except OSError:
            return
        stop.wait(0.005)


def pilot_pid(process: subprocess.Popen[bytes], wrapped: bool) -> int:
    """The pilot's pid: the process itself, or the wrapper's python child."""
    if not wrapped:
        return process.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        except OSError:
            children = []
        for child in children:
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(part.endswith((b".pyz", b"autopilot_ops.pilot")) for part in command) and b"run" in command:
                return int(child)
        time.sleep(0.002)
    raise RuntimeError(f"the wrapper started no pilot (exit {process.poll()}): {process.stderr.read().decode()}")


def one_run(root: Path, args: argparse.Namespace, bundle: Path | None, wrapped: bool) -> dict[str, float]:
    """One pilot (or wrapper) running ``args.jobs`` trivial jobs; its figures."""
    root.mkdir()
    trf = root / "payload.sh"
    trf.write_text("#!/bin/sh\necho done\n")
    trf.chmod(0o755)
    files = root / "files"
    files.mkdir()
    log = AcquireLog()
    with DevServer(root / "server", files_dir=files, access_log=log) as server:
        server.submit_jobs(QUEUE, args.jobs, str(trf), "")
        pilot_args = ["--queue", QUEUE, "--server", server.url, "--home", str(root / "home")]
        pilot_args += ["--max-jobs", str(args.jobs), "--time-floor", "3600"]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(root)}
        if wrapped:
            command = ["/bin/sh", str(WRAPPER), "--python", args.python, "--workdir", str(root), "--min-disk-mb", "1"]
            if bundle is not None:
                (files / bundle.name).write_bytes(bundle.read_bytes())
                sha256 = Path(f"{bundle}.sha256").read_text().split()[0]
                command += ["--pilot-url", f"{server.url}/{bundle.name}", "--pilot-sha256", sha256]
            command += ["--", *pilot_args]
        else:
            (root / "work").mkdir()
            head = [args.python, "-I", "-S", str(bundle)] if bundle else [args.python, "-m", "autopilot_ops.pilot"]
            command = [*head, "run", "--workdir", str(root / "work"), *pilot_args]
        if bundle is None:
            env = None  # the installed pilot needs this virtualenv's environment
        started = time.time()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=root)
        stop, peak = threading.Event(), [0]
        sampler = threading.Thread(target=peak_rss_kib, args=(pilot_pid(process, wrapped), stop, peak), daemon=True)
        sampler.start()
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
        finished = sum(job["status"] == "finished" for job in server.jobs(QUEUE))
    if process.returncode != 0 or finished != args.jobs or len(log.arrivals) < args.jobs:
        raise RuntimeError(f"exit {process.returncode}, {finished}/{args.jobs} finished:\n{stderr.decode()[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    gaps = [later - earlier for earlier, later in zip(log.arrivals, log.arrivals[1:])]
    return {
        "start_to_first_acquire_s": log.arrivals[0] - started,
        "acquire_to_acquire_s": statistics.median(gaps),
        "peak_rss_mib": peak[0] / 1024,
        "cpu_s_per_job": cpu / args.jobs,
    }


def median_of(runs: list[dict[str, float]], key: str, digits: int) -> float:
    return round(statistics.median(run[key] for run in runs), digits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=30)
    parser.add_argument("--pilot", choices=("bundle", "installed"), default="bundle")
    parser.add_argument("--python", default=None, help="default: /usr/bin/python3 (bundle), this python (installed)")
    args = parser.parse_args()
    args.python = args.python or ("/usr/bin/python3" if args.pilot == "bundle" else sys.executable)
    with tempfile.TemporaryDirectory() as scratch:
        built = build_bundle(Path(scratch) / "dist") if args.pilot == "bundle" else None
        bundle = built.path if built else None
        direct, wrapped = [], []
        for index in range(args.runs):
            direct.append(one_run(Path(scratch) / f"pilot-{index}", args, bundle, wrapped=False))
            wrapped.append(one_run(Path(scratch) / f"wrapper-{index}", args, bundle, wrapped=True))
    result = {
        "pilot": args.pilot,
        "python": args.python,
        "runs": args.runs,
        "jobs_per_run": args.jobs,
        "bundle_size_bytes": built.size if built else None,
        "wrapper_start_to_first_acquire_s": median_of(wrapped, "start_to_first_acquire_s", 4),
        "pilot_start_to_first_acquire_s": median_of(direct, "start_to_first_acquire_s", 4),
        "acquire_to_acquire_s": median_of(direct, "acquire_to_acquire_s", 4),
        "pilot_peak_rss_mib": median_of(direct, "peak_rss_mib", 1),
        "pilot_peak_rss_mib_under_wrapper": median_of(wrapped, "peak_rss_mib", 1),
        "pilot_cpu_s_per_job": median_of(direct, "cpu_s_per_job", 4),
        "targets": TARGETS,
    }
    result["targets_met"] = (
        result["pilot_start_to_first_acquire_s"] <= TARGETS["start_to_first_acquire_s"]
        and result["acquire_to_acquire_s"] <= TARGETS["acquire_to_acquire_s"]
        and result["pilot_peak_rss_mib"] <= TARGETS["peak_rss_mib"]
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
