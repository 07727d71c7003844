"""Load a generated 2,000-queue CRIC-style file into schedconfig, then reload it unchanged; print JSON.

Targets: load < 2 s, unchanged reload < 1 s. Each repeat uses a fresh schema of
$AUTOPILOT_BENCH_DSN (default: the local test server), dropped afterwards.
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

from autopilot_ops.queues.loader import load_queues
from autopilot_ops.store.backends import upsert_backend

QUEUES = int(os.environ.get("BENCH_QUEUES", "2000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def cric_file(path: Path, n: int) -> None:
    queues = {
        f"SITE{i // 4:04d}_Q{i % 4}": {
            "name": f"SITE{i // 4:04d}_Q{i % 4}",
            "status": ("online", "test", "brokeroff", "offline")[i % 4],
            "site": f"SITE{i // 4:04d}",
            "panda_resource": f"SITE{i // 4:04d}",
            "cloud": ("DE", "US", "FR", "UK")[i % 4],
            "corecount": 8 if i % 2 else 1,
            "maxrss": 2000 * (8 if i % 2 else 1),
            "maxtime": 172800,
            "maxwdir": 30000,
            "type": "unified",
            "pilot_manager": "AutoPilot",
            "resource_type_limits": {"SCORE": 100, "MCORE": 50},
            "queues": [{"ce_endpoint": f"ce{i}.example.org:9619", "ce_flavour": "HTCONDOR-CE", "ce_state": "ACTIVE"}],
            "autopilot": {"backend": "pool", "tags": [f"tag{i % 200:03d}"], "max_per_cycle": 20, "queue_ratio": 0.5},
        }
        for i in range(n)
    }
    path.write_text(json.dumps(queues))


def one_repeat(path: Path) -> tuple[float, float]:
    with fresh_store() as store:
        with store.transaction() as cur:
            upsert_backend(cur, "pool", "slurm")
        start = time.perf_counter()
        first = load_queues(store, str(path))
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        again = load_queues(store, str(path))
        reload_s = time.perf_counter() - start
        assert len(first.plan.added) == QUEUES and again.plan.unchanged == QUEUES
    return load_s, reload_s


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cric.json"
        cric_file(path, QUEUES)
        file_bytes = path.stat().st_size
        runs = [one_repeat(path) for _ in range(REPEATS)]
    loads, reloads = [r[0] for r in runs], [r[1] for r in runs]
    result = {
        "bench": "queue_load",
        "queues": QUEUES,
        "file_bytes": file_bytes,
        "repeats": REPEATS,
        "load_median_s": round(statistics.median(loads), 4),
        "reload_unchanged_median_s": round(statistics.median(reloads), 4),
        "load_target_s": 2.0,
        "reload_target_s": 1.0,
    }
    result["within_target"] = result["load_median_s"] < 2.0 and result["reload_unchanged_median_s"] < 1.0
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
