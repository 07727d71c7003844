"""Time the log cleanup on a tree of 50,000 pilot logs across 200 queues and 5 days; print JSON.

Three runs on each fresh tree, in this order; medians over ``BENCH_REPEATS`` trees (building a tree takes
far longer than cleaning it, so keep the repeats low on a busy machine):
- ``scan``: a run that removes nothing (every file young enough, no watermark): the walk alone;
- ``watermark``: a budget that trims the 20 biggest queues (10x the bytes of the others) and no other queue;
- ``age``: the age pass removing what is left of the two oldest days, then their emptied directories.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from autopilot_ops.cleanup.logs import LogCleanupReport, LogPolicy, clean_logs

FILES = int(os.environ.get("BENCH_FILES", "50000"))
QUEUES = int(os.environ.get("BENCH_QUEUES", "200"))
DAYS = 5
BIG_QUEUES = QUEUES // 10
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
NOW = time.time()
DAY = 86400


def build_tree(root: Path) -> None:
    """Write the tree; big queues get 10x the bytes. Day ``d`` is ``d + 0.5`` days old."""
    per_dir = max(1, FILES // (QUEUES * DAYS))
    for day in range(DAYS):
        mtime = NOW - (day + 0.5) * DAY
        for q in range(QUEUES):
            size = 1000 if q < BIG_QUEUES else 100
            queue_dir = root / f"2020-01-{day + 1:02d}" / f"QUEUE_{q:03d}"
            queue_dir.mkdir(parents=True)
            for i in range(per_dir):
                path = queue_dir / f"{i}.out"
                path.write_bytes(b"x" * size)
                os.utime(path, (mtime - i, mtime - i))
            os.utime(queue_dir, (mtime, mtime))
        os.utime(queue_dir.parent, (mtime, mtime))


def timed(root: Path, policy: LogPolicy, times: list[float]) -> LogCleanupReport:
    start = time.perf_counter()
    report = clean_logs(root, policy, now=NOW)
    times.append(time.perf_counter() - start)
    return report


def main() -> None:
    # A budget whose 80% goal holds every small queue whole and twice a small queue's bytes per big queue.
    small_queue_bytes = max(1, FILES // (QUEUES * DAYS)) * DAYS * 100
    goal = small_queue_bytes * (QUEUES - BIG_QUEUES + 2 * BIG_QUEUES)
    watermark_policy = LogPolicy(max_age_days=None, watch_filesystem=False, budget_bytes=goal * 5 // 4)
    scan: list[float] = []
    watermark: list[float] = []
    age: list[float] = []
    for _ in range(REPEATS):
        root = Path(tempfile.mkdtemp(prefix="autopilot-bench-cleanup-"))
        try:
            build_tree(root)
            scanned = timed(root, LogPolicy(max_age_days=30, watch_filesystem=False), scan)
            trimmed = timed(root, watermark_policy, watermark)
            aged = timed(root, LogPolicy(max_age_days=3, live_minutes=0, watch_filesystem=False), age)
        finally:
            shutil.rmtree(root)
    result: dict[str, Any] = {
        "files": FILES,
        "queues": QUEUES,
        "days": DAYS,
        "repeats": REPEATS,
        "scan_median_s": round(statistics.median(scan), 3),
        "scan_files_kept": sum(q.kept_files for q in scanned.queues.values()),
        "watermark_median_s": round(statistics.median(watermark), 3),
        "watermark_files_removed": trimmed.removed_files,
        "watermark_queues_trimmed": sum(1 for q in trimmed.queues.values() if q.removed_files),
        "watermark_share_bytes": trimmed.watermark["share_bytes"] if trimmed.watermark else None,
        "age_median_s": round(statistics.median(age), 3),
        "age_files_removed": aged.removed_files,
        "age_dirs_removed": aged.dirs_removed,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
