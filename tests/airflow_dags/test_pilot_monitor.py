"""The monitor operator: one sweep, or sweeps until every pilot is final, waiting deferred in between on
Airflow's own ``TimeDeltaTrigger`` (which only waits: the sweeps run in the task)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from airflow.exceptions import TaskDeferred
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

from autopilot_ops.airflow.operators.pilot_monitor import PilotMonitorOperator
from autopilot_ops.backends.base import PilotSpec
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.scheduler.submission import PilotSubmitter
from autopilot_ops.store.backends import upsert_backend
from autopilot_ops.store.connection import Store


def live_pilot(store: Store, tmp_path: Path, seconds: str) -> LocalBackend:
    params = {"state_dir": str(tmp_path / "state"), "kill_grace_s": 1}
    with store.transaction() as cur:
        upsert_backend(cur, "local", "local", parameters=params)
    backend = LocalBackend("local", params)
    spec = PilotSpec("Q1", "c1", "test", ["sleep", seconds], tmp_path / "logs")
    assert PilotSubmitter(store, backend, "test").submit(1, spec).submitted == 1
    return backend


def test_waits_deferred_between_sweeps_until_every_pilot_is_final(store: Store, pg_dsn: str, tmp_path: Path) -> None:
    live_pilot(store, tmp_path, "1")
    monitor = PilotMonitorOperator(task_id="monitor", dsn=pg_dsn, wait_until_settled=True, poll_interval=0.5)
    with pytest.raises(TaskDeferred) as deferred:
        monitor.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, TimeDeltaTrigger)  # a trigger that only waits
    assert deferred.value.method_name == "execute_complete"
    deadline = deferred.value.kwargs["deadline"]
    assert deadline > time.time()
    time.sleep(1.5)  # the pilot ends meanwhile; the resumed task's sweep sees it
    assert monitor.execute_complete(context={}, event=None, deadline=deadline) == {"live": 0, "changes": 1}


def test_gives_up_at_the_deadline(store: Store, pg_dsn: str, tmp_path: Path) -> None:
    backend = live_pilot(store, tmp_path, "30")
    monitor = PilotMonitorOperator(task_id="monitor", dsn=pg_dsn, wait_until_settled=True, timeout_s=60)
    try:
        with pytest.raises(TimeoutError, match="1 pilots still live after 60s"):
            monitor.execute_complete(context={}, event=None, deadline=time.time() - 1)
    finally:
        with store.transaction() as cur:
            cur.execute("SELECT batch_id FROM pilots")
            backend.cancel([r["batch_id"] for r in cur.fetchall()])


def test_one_sweep_without_waiting(store: Store, pg_dsn: str, tmp_path: Path) -> None:
    backend = live_pilot(store, tmp_path, "30")
    try:
        result = PilotMonitorOperator(task_id="monitor", dsn=pg_dsn).execute(context={})
        assert result["live"] == 1
    finally:
        with store.transaction() as cur:
            cur.execute("SELECT batch_id FROM pilots")
            backend.cancel([r["batch_id"] for r in cur.fetchall()])
