"""One scheduling cycle for a tag of 2,000 queues: one statistics call to the dev PanDA server, the policy
for every queue, no submissions (each queue's max_per_cycle is 0), the cycles rows; print JSON.

Target: < 2 s of task time. Runs in a fresh schema of $AUTOPILOT_BENCH_DSN (default: the local test server).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pgschema import fresh_store

from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle

QUEUES = int(os.environ.get("BENCH_QUEUES", "2000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def main() -> int:
    with fresh_store() as store, tempfile.TemporaryDirectory() as tmp, DevServer(Path(tmp) / "panda") as panda:
        for i in range(0, QUEUES, 10):
            panda.submit_jobs(f"BENCH_Q{i:04d}", 3, f"{panda.url}/noop.sh", "")
        queues = Path(tmp) / "queues.json"
        queues.write_text(
            json.dumps(
                {
                    "backends": [{"name": "local", "kind": "local"}],
                    "defaults": {"backend": "local", "tags": ["bench"], "max_per_cycle": 0, "queue_ratio": 0.5},
                    "queues": [{"name": f"BENCH_Q{i:04d}", "site": f"SITE{i // 4}"} for i in range(QUEUES)],
                }
            )
        )
        load_queues(store, str(queues))
        settings = CycleSettings(
            tag="bench", scheduler_id="bench", pilot_command=("true",), log_root=Path(tmp) / "logs", panda_url=panda.url
        )
        cycle = SchedulingCycle(store, settings, PandaClient(panda.url).active_job_stats_by_site)
        times, cpu = [], []
        for run in range(REPEATS):
            wall, proc = time.perf_counter(), time.process_time()
            report = cycle.run(f"bench-{run}")
            times.append(time.perf_counter() - wall)
            cpu.append(time.process_time() - proc)
            assert len(report.results) == QUEUES and report.submitted == 0 and report.stats_error is None
    result = {
        "bench": "scheduling_cycle",
        "queues": QUEUES,
        "repeats": REPEATS,
        "cycle_median_s": round(statistics.median(times), 3),
        "cycle_cpu_median_s": round(statistics.median(cpu), 3),
        "target_s": 2.0,
    }
    result["within_target"] = result["cycle_median_s"] < 2.0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
