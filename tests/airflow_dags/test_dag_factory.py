"""The DAG factory: DAGs from the snapshot file, only the wanted one for a task, and dags/ imports cleanly."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autopilot_ops.airflow.config import SchedulerConfig
from autopilot_ops.airflow.dag_factory import CLEANUP_DAG_ID, MONITOR_DAG_ID, SYNC_DAG_ID, build_dags
from autopilot_ops.airflow.schedconfig_snapshot import SnapshotError, read_snapshot, write_snapshot
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.store.connection import Store

SNAPSHOT = {
    "version": 1,
    "generated_at": "2026-11-26T00:00:00+00:00",
    "tags": {
        "demo": {"cycle_period": 30, "queues": 3, "backend_kinds": ["local"]},
        "cern prod": {"cycle_period": 120, "queues": 2, "backend_kinds": ["condor", "condor-ce", "slurm"]},
        "SITE_X": {"cycle_period": 300, "queues": 1, "backend_kinds": []},
    },
}


def config(tmp_path: Path, snapshot: dict | None = SNAPSHOT) -> SchedulerConfig:
    path = tmp_path / "snapshot.json"
    if snapshot is not None:
        path.write_text(json.dumps(snapshot))
    return SchedulerConfig(
        snapshot_path=path,
        log_root=tmp_path / "logs",
        postgres_conn_id=None,
        dsn="postgresql://postgres@127.0.0.1:5432/test",
        panda_conn_id="panda_default",
        pilot_command=("true",),
        global_cap=None,
    )


def test_one_dag_per_tag_plus_service_dags(tmp_path: Path) -> None:
    dags = build_dags(config(tmp_path))
    assert set(dags) == {
        "autopilot_demo",
        "autopilot_cern_prod",
        "autopilot_SITE_X",
        SYNC_DAG_ID,
        MONITOR_DAG_ID,
        CLEANUP_DAG_ID,
    }
    demo = dags["autopilot_demo"]
    assert demo.schedule == dt.timedelta(seconds=30) or demo.timetable.summary.endswith("0:00:30")
    assert demo.max_active_runs == 1 and demo.catchup is False and demo.is_paused_upon_creation is True
    assert [t.task_id for t in demo.tasks] == ["cycle_local"]
    assert type(demo.tasks[0]).__name__ == "LocalPilotOperator" and demo.tasks[0].tag == "demo"
    cern = dags["autopilot_cern_prod"]
    assert {t.task_id: type(t).__name__ for t in cern.tasks} == {
        "cycle_condor_condor_ce": "CondorPilotOperator",
        "cycle_slurm": "SlurmPilotOperator",
    }
    assert dags["autopilot_SITE_X"].tasks == []


def test_task_parsing_builds_only_its_own_dag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "autopilot_demo")
    assert list(build_dags(config(tmp_path))) == ["autopilot_demo"]
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", MONITOR_DAG_ID)
    assert list(build_dags(config(tmp_path))) == [MONITOR_DAG_ID]


def test_missing_snapshot_gives_only_service_dags_and_bad_one_names_the_field(tmp_path: Path) -> None:
    assert set(build_dags(config(tmp_path, None))) == {SYNC_DAG_ID, MONITOR_DAG_ID, CLEANUP_DAG_ID}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "tags": {"t": {"cycle_period": "soon"}}}))
    with pytest.raises(SnapshotError, match=r"bad.json: tag 't': bad or missing field"):
        read_snapshot(bad)


def test_snapshot_from_schedconfig_is_written_atomically(store: Store, repo_root: Path, tmp_path: Path) -> None:
    load_queues(store, str(repo_root / "autopilot_ops" / "data" / "demo-queues.yaml"))
    path = tmp_path / "snap" / "snapshot.json"
    write_snapshot(store, path)
    [info] = read_snapshot(path)
    assert (info.tag, info.cycle_period, info.queues, info.backend_kinds) == ("demo", 30, 3, ("local",))
    assert [p.name for p in path.parent.iterdir()] == ["snapshot.json"]


def test_dags_folder_imports_without_errors(tmp_path: Path, repo_root: Path) -> None:
    """Airflow's own DagBag loads dags/ in a fresh process, with the snapshot named in the config."""
    (tmp_path / "snapshot.json").write_text(json.dumps(SNAPSHOT))
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__AUTOPILOT__SNAPSHOT_PATH": str(tmp_path / "snapshot.json"),
        "AIRFLOW__AUTOPILOT__DSN": "postgresql://postgres@127.0.0.1:5432/test",
    }
    code = (
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"bag = DagBag(dag_folder={str(repo_root / 'dags')!r})\n"
        "import json; print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},"
        " 'dags': sorted(bag.dag_ids)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert "autopilot_demo" in report["dags"] and SYNC_DAG_ID in report["dags"]
