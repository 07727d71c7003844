"""Update pilot states from the back ends; optionally wait, deferred, until no pilot is live."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from airflow.sdk import BaseOperator, Context

from autopilot_ops.airflow.hooks.backend_factory import connection_backend
from autopilot_ops.airflow.hooks.store import open_store
from autopilot_ops.scheduler.sweeps import count_live, describe, sweep_all


class PilotMonitorOperator(BaseOperator):
    """Sweep every back end with live pilots (one status call each) and record state changes; with
    ``worker_queue``, only those of queues routed to that Airflow worker queue.

    With ``wait_until_settled`` the task then sweeps again every ``poll_interval`` seconds until every pilot
    is final or ``timeout_s`` passes. Between sweeps it defers to Airflow's ``TimeDeltaTrigger``, which only
    waits, so no worker slot is held; the sweeps themselves run in the task, as every sweep does.
    """

    def __init__(
        self,
        *,
        postgres_conn_id: str | None = None,
        dsn: str | None = None,
        wait_until_settled: bool = False,
        poll_interval: float = 30.0,
        timeout_s: float = 3600.0,
        worker_queue: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.worker_queue = worker_queue
        self.postgres_conn_id = postgres_conn_id
        self.dsn = dsn
        self.wait_until_settled = wait_until_settled
        self.poll_interval = poll_interval
        self.timeout_s = timeout_s

    def execute(self, context: Context) -> dict[str, Any]:
        return self._sweep_then_wait(time.time() + self.timeout_s)

    def execute_complete(self, context: Context, event: Any = None, deadline: float = 0.0) -> dict[str, Any]:
        """Resumed after a wait: sweep again."""
        return self._sweep_then_wait(deadline)

    def _sweep_then_wait(self, deadline: float) -> dict[str, Any]:
        with open_store(self.postgres_conn_id, self.dsn, owner=f"task {self.task_id}") as store:
            reports = sweep_all(
                store, f"monitor:{self.dag_id}", factory=connection_backend, worker_queue=self.worker_queue
            )
            with store.transaction() as cur:
                live = count_live(cur)
        for line in describe(reports):
            self.log.info("%s", line)
        self.log.info("%d pilots live", live)
        if self.wait_until_settled and live:
            if time.time() >= deadline:
                raise TimeoutError(f"{live} pilots still live after {self.timeout_s:.0f}s")
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.defer(
                trigger=TimeDeltaTrigger(dt.timedelta(seconds=self.poll_interval)),
                method_name="execute_complete",
                kwargs={"deadline": deadline},
            )
        return {"live": live, "changes": sum(len(r.transitions) for r in reports.values() if not isinstance(r, str))}
