"""Submit 1,000 pilots on the local and Slurm back ends, and sweep the status of 1,000 Slurm pilots; print JSON.

Targets: 1,000 local pilots submitted in < 3 s; 1,000 Slurm pilots (one array) submitted in < 3 s; a status
sweep of 1,000 Slurm pilots in < 1 s. Medians over a few repeats. The local back end's submit returns once its
supervisor runs the first pilot, so the time until all 1,000 run is reported too. The pilots sleep, so most
Slurm ones stay pending; everything submitted is cancelled afterwards. Slurm is skipped (null figures, with the
reason) when ``sinfo`` is absent; start it with ``scripts/slurm-local.sh start``."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autopilot_ops.backends.base import Backend, PilotSpec, PilotState
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.backends.slurm import SlurmBackend

PILOTS = int(os.environ.get("BENCH_PILOTS", "1000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
SWEEPS = int(os.environ.get("BENCH_SWEEPS", "5"))
SUBMIT_TARGET_S = 3.0
SWEEP_TARGET_S = 1.0


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def spec(log_root: Path) -> PilotSpec:
    return PilotSpec(queue="BENCH", cycle_id="bench", scheduler="bench", command=["sleep", "600"], log_root=log_root)


def bench_submissions(backend: Backend, log_root: Path, sweep: bool) -> dict[str, Any]:
    """Submit ``PILOTS`` pilots ``REPEATS`` times; sweep their status; cancel them. Median seconds."""
    submit_s, sweep_s, cancel_s, all_running_s = [], [], [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        pilots = backend.submit(PILOTS, spec(log_root))
        submit_s.append(time.perf_counter() - start)
        ids = [p.batch_id for p in pilots]
        try:
            if isinstance(backend, LocalBackend):  # its supervisor starts the pilots after submit returns
                queued = ids
                while queued:
                    time.sleep(0.1)
                    queued = [i for i, s in backend.status(queued).items() if s.state is PilotState.QUEUED]
                all_running_s.append(time.perf_counter() - start)
            for _ in range(SWEEPS if sweep else 0):
                seconds, statuses = timed(lambda ids=ids: backend.status(ids))
                if len(statuses) != len(ids):
                    raise RuntimeError(f"status() knew {len(statuses)} of {len(ids)} pilots")
                sweep_s.append(seconds)
        finally:
            seconds, _ = timed(lambda ids=ids: backend.cancel(ids))
            cancel_s.append(seconds)
    figures: dict[str, Any] = {
        "submit_median_s": round(statistics.median(submit_s), 3),
        "submit_max_s": round(max(submit_s), 3),
        "cancel_median_s": round(statistics.median(cancel_s), 3),
        "submit_within_target": statistics.median(submit_s) < SUBMIT_TARGET_S,
    }
    if all_running_s:
        figures["all_running_median_s"] = round(statistics.median(all_running_s), 3)
    if sweep:
        figures["status_sweep_median_s"] = round(statistics.median(sweep_s), 3)
        figures["status_sweep_max_s"] = round(max(sweep_s), 3)
        figures["status_sweep_within_target"] = statistics.median(sweep_s) < SWEEP_TARGET_S
    return figures


def main() -> int:
    load_before = os.getloadavg()[0]
    log_root = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    try:
        local = bench_submissions(LocalBackend("bench-local", {"log_root": str(log_root)}), log_root, sweep=True)
        if shutil.which("sinfo"):
            slurm = bench_submissions(SlurmBackend("bench-slurm"), log_root, sweep=True)
        else:
            slurm = {"skipped": "sinfo not found; run scripts/slurm-local.sh start"}
    finally:
        shutil.rmtree(log_root, ignore_errors=True)
    result = {
        "bench": "backends",
        "pilots": PILOTS,
        "repeats": REPEATS,
        "sweeps_per_repeat": SWEEPS,
        "submit_target_s": SUBMIT_TARGET_S,
        "status_sweep_target_s": SWEEP_TARGET_S,
        "cpus": os.cpu_count(),
        "load_avg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "local": local,
        "slurm": slurm,
    }
    print(json.dumps(result))
    within = [local["submit_within_target"], slurm.get("submit_within_target", True)]
    within.append(slurm.get("status_sweep_within_target", True))
    return 0 if all(within) else 1


if __name__ == "__main__":
    sys.exit(main())
