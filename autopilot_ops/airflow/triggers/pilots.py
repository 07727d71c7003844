"""Wait, in the triggerer, until no pilot is live: sweep the back ends every ``poll_interval`` seconds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from autopilot_ops.airflow.operators.store_args import open_store
from autopilot_ops.scheduler.monitor import count_live, sweep_all


class PilotsSettledTrigger(BaseTrigger):
    """Fires ``{"status": "settled"}`` once every pilot is in a final state, or ``{"status": "timeout"}``."""

    def __init__(
        self,
        *,
        postgres_conn_id: str | None = None,
        dsn: str | None = None,
        poll_interval: float = 30.0,
        deadline: float,
    ) -> None:
        super().__init__()
        self.postgres_conn_id = postgres_conn_id
        self.dsn = dsn
        self.poll_interval = poll_interval
        self.deadline = deadline

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "postgres_conn_id": self.postgres_conn_id,
                "dsn": self.dsn,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
            },
        )

    def _sweep(self) -> int:
        with open_store("pilots-settled-trigger", self.postgres_conn_id, self.dsn) as store:
            sweep_all(store, "trigger:pilots-settled")
            with store.transaction() as cur:
                return count_live(cur)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            live = await asyncio.to_thread(self._sweep)
            if live == 0:
                yield TriggerEvent({"status": "settled", "live": 0})
                return
            if time.time() >= self.deadline:
                yield TriggerEvent({"status": "timeout", "live": live})
                return
            await asyncio.sleep(self.poll_interval)
