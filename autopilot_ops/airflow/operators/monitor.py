"""Update pilot states from the back ends; optionally wait, deferred, until no pilot is live."""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import BaseOperator, Context

from autopilot_ops.airflow.operators.store_args import open_store
from autopilot_ops.scheduler.monitor import count_live, describe, sweep_all


class PilotMonitorOperator(BaseOperator):
    """Sweep every back end with live pilots (one status call each) and record state changes.

    With ``wait_until_settled`` the task then defers to :class:`PilotsSettledTrigger`, which keeps sweeping
    in the triggerer until every pilot is final or ``timeout_s`` passes, so no worker slot is held.
    """

    def __init__(
        self,
        *,
        postgres_conn_id: str | None = None,
        dsn: str | None = None,
        wait_until_settled: bool = False,
        poll_interval: float = 30.0,
        timeout_s: float = 3600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.postgres_conn_id = postgres_conn_id
        self.dsn = dsn
        self.wait_until_settled = wait_until_settled
        self.poll_interval = poll_interval
        self.timeout_s = timeout_s

    def execute(self, context: Context) -> dict[str, Any]:
        with open_store(self.task_id, self.postgres_conn_id, self.dsn) as store:
            reports = sweep_all(store, f"monitor:{self.dag_id}")
            with store.transaction() as cur:
                live = count_live(cur)
        for line in describe(reports):
            self.log.info("%s", line)
        self.log.info("%d pilots live", live)
        if self.wait_until_settled and live:
            from autopilot_ops.airflow.triggers.pilots import PilotsSettledTrigger

            self.defer(
                trigger=PilotsSettledTrigger(
                    postgres_conn_id=self.postgres_conn_id,
                    dsn=self.dsn,
                    poll_interval=self.poll_interval,
                    deadline=time.time() + self.timeout_s,
                ),
                method_name="execute_complete",
            )
        return {"live": live, "changes": sum(len(r.transitions) for r in reports.values() if not isinstance(r, str))}

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event["status"] != "settled":
            raise TimeoutError(f"{event['live']} pilots still live after {self.timeout_s:.0f}s")
        self.log.info("every pilot has ended")
        return {"live": 0}
