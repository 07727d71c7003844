"""Split 1 MB jobPars of several shapes with the pilot's splitter (and a 125 kB one with ``shlex.split``, whose
time grows with the square of the length); print JSON with the medians.

Target: at most 0.1 s for 1 MB of realistic parameters (long ``--option=value`` lists, a huge comma list).
Densely quoted input (a quoted part every 3 to 4 characters) is reported too; it costs more per byte.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable

from autopilot_ops.pilot.jobpars import split

SIZE = int(os.environ.get("BENCH_JOBPARS_BYTES", str(1_000_000)))
REPEATS = int(os.environ.get("BENCH_REPEATS", "7"))
TARGET_S = 0.1


def _sized(unit: str, size: int) -> str:
    return unit * (size // len(unit))


SHAPES = {
    "options": lambda size: _sized("--inputEVNTFile=EVNT.01234567._000001.pool.root.1 --maxEvents=100 ", size),
    "one_comma_list": lambda size: ("--inputFiles=" + ",".join(f"EVNT.{i:08d}.pool.root.1" for i in range(size)))[
        :size
    ],
    "quoted_options": lambda size: _sized("--preExec 'from AthenaCommon import x; x.y=1' --name \"run two\" ", size),
    "dense_quoting": lambda size: _sized('--arg \'a b\' "c\\"d" e\\ f ', size),
}


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    results = {}
    for name, make in SHAPES.items():
        text = make(SIZE)
        head = make(20_000)
        if split(head) != shlex.split(head):
            raise SystemExit(f"{name}: the splitter and shlex.split disagree")
        results[name] = {"bytes": len(text), "median_s": round(median_seconds(lambda t=text: split(t), REPEATS), 4)}
    sample = SHAPES["options"](SIZE // 8)
    shlex_s = median_seconds(lambda: shlex.split(sample), 1)
    realistic = max(results[name]["median_s"] for name in ("options", "one_comma_list", "quoted_options"))
    report = {
        "bench": "jobpars_split",
        "repeats": REPEATS,
        "shapes": results,
        "shlex_split_1_8_size": {"bytes": len(sample), "seconds": round(shlex_s, 3)},
        "target_s": TARGET_S,
        "realistic_median_s": realistic,
        "ok": realistic <= TARGET_S,
    }
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
