"""Decide the pilot count for 2,000 queues, several times over; print JSON with the medians.

Target: the 2,000 decisions in < 50 ms. The snapshots are built once per repeat (timed apart, since the
caller builds them every cycle too) from a fixed seed, with the mix of paths a real cycle sees: mostly
online queues on the core formula, some test, offline, stale, paused and fixed-number ones.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import statistics
import sys
import time

from autopilot_ops.policy import Control, JobCount, PilotCounts, QueueConfig, RecentActivity, Snapshot, decide

QUEUES = int(os.environ.get("BENCH_QUEUES", "2000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "15"))
TARGET_MS = 50.0
NOW = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.timezone.utc)


def queue_inputs(rng: random.Random, i: int) -> dict:
    """Plain values for one queue, as the caller would read them from the database and PanDA."""
    attempts, ended = rng.randint(0, 60), rng.randint(0, 60)
    controls = []
    if i % 50 == 0:
        controls.append(
            {
                "scope": "tag",
                "target": f"tag{i % 7}",
                "set_by": "ops",
                "paused": True,
                "expires_at": NOW + dt.timedelta(hours=rng.choice((-1, 1))),
            }
        )
    if i % 40 == 1:
        controls.append({"scope": "queue", "target": f"Q{i}", "set_by": "ops", "fixed_number": rng.randint(0, 20)})
    if i % 10 == 2:
        controls.append({"scope": "tag", "target": "all", "set_by": "ops", "max_per_cycle": rng.randint(1, 30)})
    return {
        "queue": {
            "panda_queue": f"Q{i}",
            "status": rng.choices(("online", "test", "offline", "brokeroff"), (90, 4, 4, 2))[0],
            "prod_source_labels": ("managed",) if i % 3 else ("user", "rc_test2"),
            "queue_ratio": rng.choice((None, 0.2, 0.5, 1.0)),
            "queue_limit": rng.choice((None, 10, 50, 200)),
            "min_queued": rng.choice((0, 0, 5)),
            "max_queued": rng.choice((None, 100, 500)),
            "max_pilots": rng.choice((None, 500, 2000)),
            "max_per_cycle": rng.choice((None, 20, 100)),
            "jobs_per_pilot": rng.choice((1, 1, 2, 8)),
            "keep_one_pilot": i % 5 == 0,
        },
        "activated": [
            (label, rt, rng.randint(0, 3000)) for label in ("managed", "user", "ptest") for rt in ("SCORE", "MCORE")
        ],
        "pilots": (rng.randint(0, 300), rng.randint(0, 3000), rng.randint(0, 20)),
        "recent": (attempts, rng.randint(0, attempts), ended, rng.randint(0, ended)),
        "controls": controls,
        "instances": rng.choice((1, 1, 2, 3)),
        "panda_data_age": rng.choices((30.0, 120.0, 400.0, 1000.0, None), (45, 40, 10, 3, 2))[0],
    }


def build(raw: dict) -> Snapshot:
    return Snapshot(
        queue=QueueConfig(**raw["queue"]),
        activated=tuple(JobCount(*row) for row in raw["activated"]),
        pilots=PilotCounts(*raw["pilots"]),
        recent=RecentActivity(*raw["recent"]),
        controls=tuple(Control(**row) for row in raw["controls"]),
        instances=raw["instances"],
        panda_data_age=raw["panda_data_age"],
        poll_period=300.0,
        global_cap=200,
        now=NOW,
    )


def main() -> int:
    rng = random.Random(5)
    raws = [queue_inputs(rng, i) for i in range(QUEUES)]
    build_ms: list[float] = []
    decide_ms: list[float] = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        snapshots = [build(raw) for raw in raws]
        build_ms.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        decisions = [decide(snapshot) for snapshot in snapshots]
        decide_ms.append((time.perf_counter() - start) * 1000)
    median_ms = statistics.median(decide_ms)
    result = {
        "bench": "policy",
        "queues": QUEUES,
        "repeats": REPEATS,
        "decide_median_ms": round(median_ms, 2),
        "decide_min_ms": round(min(decide_ms), 2),
        "decide_max_ms": round(max(decide_ms), 2),
        "decide_per_queue_us": round(median_ms * 1000 / QUEUES, 2),
        "build_snapshots_median_ms": round(statistics.median(build_ms), 2),
        "pilots_decided": sum(d.n for d in decisions),
        "queues_submitting": sum(1 for d in decisions if d.n),
        "target_ms": TARGET_MS,
        "within_target": median_ms < TARGET_MS,
    }
    print(json.dumps(result))
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
