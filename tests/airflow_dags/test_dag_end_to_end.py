"""``dag.test()`` of a tag's scheduler DAG with the local back end against the dev PanDA server: jobs injected
into the dev server are run by pilots that the DAG submitted, and end ``finished`` there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from autopilot_ops.airflow.schedconfig_snapshot import write_snapshot
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.store.connection import Store

TRANSFORMATION = """#!/bin/sh
echo "payload got: $*"
echo "done" > result.txt
"""

QUEUES = """
backends:
  - {{name: local, kind: local, parameters: {{state_dir: "{state}"}}}}
defaults: {{backend: local, tags: [e2e], queue_limit: 3, max_per_cycle: 3, cycle_period: 30}}
queues:
  - {{name: E2E_Q, site: E2E_SITE}}
"""

RUN_DAG = """
import json
from autopilot_ops.airflow.dag_factory import build_dags
dag = build_dags()["autopilot_e2e"]
run = dag.test()
print(json.dumps({"state": str(run.state)}))
"""


def test_scheduler_dag_runs_injected_jobs_to_finished(
    store: Store, pg_dsn: str, airflow_home: Path, tmp_path: Path, repo_root: Path
) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "hello.sh").write_text(TRANSFORMATION)
    queues = tmp_path / "queues.yaml"
    queues.write_text(QUEUES.format(state=tmp_path / "state"))
    load_queues(store, str(queues))
    snapshot = tmp_path / "snapshot.json"
    write_snapshot(store, snapshot)
    autopilot = Path(sys.executable).with_name("autopilot")
    with DevServer(tmp_path / "panda", files_dir=files) as panda:
        ids = panda.submit_jobs("E2E_Q", 4, f"{panda.url}/hello.sh", "--n 1")
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(repo_root / "dags"),
            "AIRFLOW_CONN_PANDA_DEFAULT": json.dumps({"conn_type": "panda", "host": panda.url}),
            "AIRFLOW__AUTOPILOT__DSN": pg_dsn,
            "AIRFLOW__AUTOPILOT__SNAPSHOT_PATH": str(snapshot),
            "AIRFLOW__AUTOPILOT__LOG_ROOT": str(tmp_path / "logs"),
            "AIRFLOW__AUTOPILOT__PILOT_COMMAND": (
                f"{autopilot} pilot run --queue {{queue}} --server {{panda_url}} --allow-url-prefix {{panda_url}}/ "
                f"--max-jobs 10 --heartbeat 5 --workdir {tmp_path / 'work'}"
            ),
        }
        env.pop("AUTOPILOT_DSN", None)
        result = subprocess.run(
            [sys.executable, "-c", RUN_DAG], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1])["state"] == "success"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(panda.job(i)["status"] not in ("finished", "failed") for i in ids):
            time.sleep(0.5)
        jobs = [panda.job(i) for i in ids]
    assert [j["status"] for j in jobs] == ["finished"] * 4, [(j["status"], j["pilot_error_diag"]) for j in jobs]
    assert all(json.loads(j["job_output_report"]) for j in jobs)
    with store.transaction() as cur:
        cur.execute("SELECT queue, decided, submitted, reason FROM cycles")
        [cycle] = cur.fetchall()
        cur.execute("SELECT count(*) AS n FROM pilots WHERE queue = 'E2E_Q'")
        pilots = cur.fetchone()["n"]
    assert (cycle["queue"], cycle["decided"], cycle["submitted"]) == ("E2E_Q", 3, 3)
    assert any("activated=4" in line for line in cycle["reason"])
    assert pilots == 3
