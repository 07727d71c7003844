"""The operators' back ends read the Airflow connection a registry row names (``conn_id``): against the real
Slurm cluster of scripts/slurm-local.sh, a cycle submits with the connection's partition."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from autopilot_ops.airflow.hooks.backend_factory import connection_backend
from autopilot_ops.backends.registry import UnusableBackend, usable_backend
from autopilot_ops.backends.slurm import SlurmBackend
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.store.connection import Store

QUEUES = """
backends:
  - {{name: site-slurm, kind: slurm, parameters: {{conn_id: slurm_site, log_root: "{logs}"}}}}
defaults: {{backend: site-slurm, tags: [t1], queue_limit: 10, max_per_cycle: 1, cycle_period: 60}}
queues:
  - {{name: SLURM_CONN_Q, site: S1}}
"""


def row(kind: str, **parameters: object) -> dict:
    return {"kind": kind, "parameters": parameters, "submit_host": None, "enabled": True}


def connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_the_connection_fills_in_what_the_row_leaves_out(monkeypatch) -> None:
    connection(monkeypatch, "slurm_site", conn_type="slurm", host="login.example.org",
               extra={"partition": "pilots", "account": "atlas"})
    backend = connection_backend("s1", row("slurm", conn_id="slurm_site", account="mine"))
    assert isinstance(backend, SlurmBackend)
    assert backend.submit_host == "login.example.org"
    assert backend.parameters == {"partition": "pilots", "account": "mine"}  # the row's own parameter wins


def test_a_connection_on_a_kind_without_one_is_refused_naming_the_parameter() -> None:
    with pytest.raises(UnusableBackend, match=r"back end 'l1': ValueError: parameter 'conn_id': kind 'local'"):
        usable_backend("l1", row("local", conn_id="x"), connection_backend)


def test_a_missing_connection_is_refused_naming_it() -> None:
    with pytest.raises(UnusableBackend, match="no_such_connection"):
        usable_backend("s1", row("slurm", conn_id="no_such_connection"), connection_backend)


@pytest.mark.slurm
@pytest.mark.skipif(shutil.which("sinfo") is None, reason="sinfo not found: Slurm is not installed here")
def test_a_cycle_submits_with_the_connections_partition(store: Store, tmp_path: Path, monkeypatch) -> None:
    """The connection's partition reaches sbatch: a partition the cluster lacks is refused by Slurm itself."""
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(logs=tmp_path / "logs"))
    load_queues(store, str(path))
    settings = CycleSettings(tag="t1", scheduler_id="t1@test", pilot_command=("sleep", "60"),
                             log_root=tmp_path / "logs", backend_kinds=("slurm",))
    stats = {"SLURM_CONN_Q": {"activated": 5}}
    cycle = SchedulingCycle(store, settings, lambda: stats, backend_factory=connection_backend)

    connection(monkeypatch, "slurm_site", conn_type="slurm", extra={"partition": "no-such-partition"})
    [refused] = cycle.run("conn-1").results
    assert refused.outcome.missed == 1
    assert "--partition=no-such-partition" in str(refused.outcome.skipped)
    assert "invalid partition" in str(refused.outcome.skipped)

    connection(monkeypatch, "slurm_site", conn_type="slurm", extra={"partition": "debug"})
    cycle = SchedulingCycle(store, settings, lambda: stats, backend_factory=connection_backend)
    report = cycle.run("conn-2")
    assert report.submitted == 1, report.lines()
    with store.transaction() as cur:
        cur.execute("SELECT batch_id FROM pilots")
        [batch_id] = [r["batch_id"] for r in cur.fetchall()]
    try:
        shown = subprocess.run(["scontrol", "show", "job", "-o", batch_id], capture_output=True, text=True).stdout
        assert "Partition=debug" in shown
    finally:
        subprocess.run(["scancel", batch_id.split("_")[0]], check=False)
