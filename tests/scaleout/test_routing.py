"""Routing by Airflow worker queue: ``worker_queue`` on a queue or its back end, stored, carried into the
snapshot, one cycle task per worker queue with ``queue=``, and each task serving only its worker queue's queues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autopilot_ops.airflow.config import SchedulerConfig
from autopilot_ops.airflow.dag_factory import MONITOR_DAG_ID, build_dags
from autopilot_ops.airflow.schedconfig_snapshot import SnapshotError, read_snapshot, write_snapshot
from autopilot_ops.queues.errors import QueueFileError
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.observe import backends_of_tag, queues_of_tag
from autopilot_ops.scheduler.sweeps import backends_with_live_pilots
from autopilot_ops.store.connection import Store

QUEUES = """
backends:
  - {name: local, kind: local}
  - {name: hpc, kind: slurm, worker_queue: hpc-login}
defaults: {backend: local, tags: [t1], cycle_period: 60}
queues:
  - {name: PLAIN, site: S1}
  - {name: ON_HPC, site: S1, backend: hpc}
  - {name: HPC_ELSEWHERE, site: S1, backend: hpc, worker_queue: hpc-gw}
  - {name: LOCAL_ON_GW, site: S2, worker_queue: hpc-gw}
"""


@pytest.fixture
def routed(store: Store, tmp_path: Path) -> Store:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES)
    load_queues(store, str(path))
    return store


def config(path: Path) -> SchedulerConfig:
    return SchedulerConfig(path, path.parent / "logs", None, "postgresql://unused/x", "panda_default", ("true",), None)


def test_worker_queues_are_stored_with_the_queue_winning_over_its_back_end(routed: Store) -> None:
    with routed.transaction() as cur:
        cur.execute("SELECT name, worker_queue FROM backends ORDER BY name")
        assert {r["name"]: r["worker_queue"] for r in cur.fetchall()} == {"hpc": "hpc-login", "local": None}
        served = {
            worker_queue: [q["panda_queue"] for q in queues_of_tag(cur, "t1", worker_queue=worker_queue)]
            for worker_queue in ("default", "hpc-login", "hpc-gw", None)
        }
        assert backends_of_tag(cur, "t1", worker_queue="hpc-login") == ["hpc"]
        assert backends_of_tag(cur, "t1", ("slurm",), worker_queue="hpc-gw") == ["hpc"]
    assert served == {
        "default": ["PLAIN"],
        "hpc-login": ["ON_HPC"],
        "hpc-gw": ["HPC_ELSEWHERE", "LOCAL_ON_GW"],
        None: ["HPC_ELSEWHERE", "LOCAL_ON_GW", "ON_HPC", "PLAIN"],  # no filter: `autopilot cycle TAG`
    }


def test_one_cycle_task_per_worker_queue_and_kind_runs_on_that_worker_queue(routed: Store, tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    document = write_snapshot(routed, path)
    assert document["tags"]["t1"]["worker_queues"] == {
        "default": ["local"],
        "hpc-gw": ["local", "slurm"],
        "hpc-login": ["slurm"],
    }
    dag = build_dags(config(path))["autopilot_t1"]
    tasks = {t.task_id: (t.queue, t.worker_queue, t.backend_kinds) for t in dag.tasks}
    assert tasks == {
        "cycle_local": ("default", "default", ("local",)),
        "cycle_local_on_hpc-gw": ("hpc-gw", "hpc-gw", ("local",)),
        "cycle_slurm_on_hpc-gw": ("hpc-gw", "hpc-gw", ("slurm",)),
        "cycle_slurm_on_hpc-login": ("hpc-login", "hpc-login", ("slurm",)),
    }


def test_a_snapshot_from_before_routing_runs_every_kind_on_default(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    tags = {"t": {"cycle_period": 30, "queues": 2, "backend_kinds": ["local", "slurm"]}}
    path.write_text(json.dumps({"version": 1, "tags": tags}))
    dag = build_dags(config(path))["autopilot_t"]
    assert {t.task_id: t.queue for t in dag.tasks} == {"cycle_local": "default", "cycle_slurm": "default"}
    path.write_text(json.dumps({"version": 1, "tags": {"t": {**tags["t"], "worker_queues": ["x"]}}}))
    with pytest.raises(SnapshotError, match=r"tag 't': field 'worker_queues': expected an object"):
        read_snapshot(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("backends: [{name: b, kind: local, worker_queue: 'no spaces'}]\nqueues: []", "backends[0].worker_queue"),
        ("queues: [{name: Q, site: S, worker_queue: '-x'}]", "queue 'Q': field 'worker_queue'"),
    ],
)
def test_a_bad_worker_queue_is_named_with_its_field(store: Store, tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(QueueFileError, match="PanDA name") as error:
        load_queues(store, str(path))
    assert where in str(error.value)


def test_the_monitor_sweeps_each_back_end_from_the_worker_queue_of_its_queues(routed: Store, tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    write_snapshot(routed, path)
    monitor = build_dags(config(path))[MONITOR_DAG_ID]
    assert {t.task_id: (t.queue, t.worker_queue) for t in monitor.tasks} == {
        "sweep_pilots": ("default", "default"),
        "sweep_pilots_on_hpc-gw": ("hpc-gw", "hpc-gw"),
        "sweep_pilots_on_hpc-login": ("hpc-login", "hpc-login"),
    }
    with routed.transaction() as cur:
        for queue, backend in (("PLAIN", "local"), ("LOCAL_ON_GW", "local"), ("GONE", "hpc")):
            cur.execute("INSERT INTO pilots (queue, backend, batch_id, state) VALUES (%s, %s, %s, 'running')",
                        (queue, backend, f"{queue}-1"))
        cur.execute("INSERT INTO pilots (queue, backend, batch_id, state) VALUES ('ON_HPC', 'hpc', 'x', 'finished')")
        swept = {wq: backends_with_live_pilots(cur, wq) for wq in ("default", "hpc-gw", "hpc-login", None)}
    # a queue no longer in schedconfig (GONE) goes by its back end's worker queue; final pilots ask no one
    assert swept == {"default": ["local"], "hpc-gw": ["local"], "hpc-login": ["hpc"], None: ["hpc", "local"]}


def test_without_routing_the_monitor_has_one_sweep_of_every_back_end(tmp_path: Path) -> None:
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps({"version": 1, "tags": {"t": {"cycle_period": 30, "queues": 1,
                                                             "backend_kinds": ["local"]}}}))
    monitor = build_dags(config(path))[MONITOR_DAG_ID]
    assert [(t.task_id, t.worker_queue) for t in monitor.tasks] == [("sweep_pilots", None)]
