"""Parse the DAG file with 2,000 queues in 200 tags; print JSON (medians).

- ``dagbag_parse_median_s``: what Airflow's DAG processor spends on the file, measured as Airflow does it
  (``DagBag`` on the file, in a process that has already imported Airflow). Target: < 1 s.
  ``dagbag_first_parse_s``: the first such parse, which also imports AutoPilot's modules.
- ``parse_all_median_s``: a fresh plain ``python`` running the file, which includes importing Airflow
  (``airflow_import_median_s`` alone); ``parse_for_one_task_median_s``: the same for a task process, which
  builds only its own DAG.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TAGS, QUEUES, REPEATS = 200, 2000, int(os.environ.get("BENCH_REPEATS", "5"))


def timed(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp) / "snapshot.json"
        snapshot.write_text(
            json.dumps(
                {
                    "version": 1,
                    "generated_at": "2026-11-26T00:00:00+00:00",
                    "tags": {
                        f"tag{i:03d}": {
                            "cycle_period": 60 + i,
                            "queues": QUEUES // TAGS,
                            "backend_kinds": ["local", "slurm"] if i % 2 else ["condor"],
                        }
                        for i in range(TAGS)
                    },
                }
            )
        )
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(Path(tmp) / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__AUTOPILOT__SNAPSHOT_PATH": str(snapshot),
            "AIRFLOW__AUTOPILOT__DSN": "postgresql://postgres@127.0.0.1:5432/test",
        }
        parse = (
            f"import runpy; g = runpy.run_path({str(REPO / 'dags' / 'autopilot_dags.py')!r}); "
            f"assert sum(1 for k in g if k.startswith('autopilot_tag')) == {TAGS}"
        )
        imports = "from airflow.sdk import DAG, BaseOperator, get_parsing_context"
        dagbag = (
            "import time, json\nfrom airflow.dag_processing.dagbag import DagBag\n"
            f"times = []\nfor _ in range({REPEATS}):\n"
            f"    t = time.perf_counter(); bag = DagBag(dag_folder={str(REPO / 'dags' / 'autopilot_dags.py')!r})\n"
            f"    times.append(time.perf_counter() - t); assert len(bag.dag_ids) == {TAGS + 3}, bag.import_errors\n"
            "print(json.dumps([times[0], sorted(times)[len(times) // 2]]))"
        )
        reply = subprocess.run([sys.executable, "-c", dagbag], env=env, check=True, capture_output=True, text=True)
        dagbag_first_s, dagbag_s = json.loads(reply.stdout.strip().splitlines()[-1])
        timed(parse, env)  # warm the file cache
        parse_s = [timed(parse, env) for _ in range(REPEATS)]
        import_s = [timed(imports, env) for _ in range(REPEATS)]
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = "autopilot_tag007"
        task_s = [timed(parse.replace(f"== {TAGS}", "== 1"), env) for _ in range(REPEATS)]
    result = {
        "bench": "dag_parse",
        "tags": TAGS,
        "queues": QUEUES,
        "repeats": REPEATS,
        "dagbag_parse_median_s": round(dagbag_s, 3),
        "dagbag_first_parse_s": round(dagbag_first_s, 3),
        "parse_all_median_s": round(statistics.median(parse_s), 3),
        "airflow_import_median_s": round(statistics.median(import_s), 3),
        "factory_median_s": round(statistics.median(parse_s) - statistics.median(import_s), 3),
        "parse_for_one_task_median_s": round(statistics.median(task_s), 3),
        "target_s": 1.0,
    }
    result["within_target"] = result["dagbag_parse_median_s"] < 1.0
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
