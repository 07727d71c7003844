"""The monitor's sweep of every back end: one badly configured back end does not stop the others."""

from __future__ import annotations

from collections.abc import Callable

from autopilot_ops.backends.base import PilotSpec
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.scheduler.pilot_sweep import SweepReport
from autopilot_ops.scheduler.submission import PilotSubmitter
from autopilot_ops.scheduler.sweeps import sweep_all
from autopilot_ops.store.backends import upsert_backend
from autopilot_ops.store.connection import Store


def test_a_badly_configured_back_end_is_reported_and_the_others_swept(
    store: Store, local_backend: LocalBackend, make_spec: Callable[..., PilotSpec]
) -> None:
    PilotSubmitter(store, local_backend, "test").submit(1, make_spec(command=("sleep", "30")))
    with store.transaction() as cur:
        upsert_backend(cur, "broken", "local", parameters={"kill_grace_s": "soon"})
        cur.execute("INSERT INTO pilots (queue, backend, batch_id) VALUES ('Q1', 'broken', 'b1')")
    reports = sweep_all(store, "monitor:test")
    assert reports["broken"] == "back end 'broken': ValueError: could not convert string to float: 'soon'"
    assert isinstance(reports["local"], SweepReport) and reports["local"].seen == 1
    with store.transaction() as cur:
        cur.execute("SELECT batch_id FROM pilots WHERE backend = 'local'")
        local_backend.cancel([r["batch_id"] for r in cur.fetchall()])
