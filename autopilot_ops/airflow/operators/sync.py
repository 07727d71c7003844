"""Refresh the schedconfig snapshot file that the DAG factory reads."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context

from autopilot_ops.airflow.hooks.store import open_store
from autopilot_ops.airflow.schedconfig_snapshot import write_snapshot


class SnapshotSyncOperator(BaseOperator):
    """Write ``schedconfig``'s tags to ``snapshot_path`` atomically (temporary file, then rename)."""

    template_fields: Sequence[str] = ("snapshot_path",)

    def __init__(
        self, *, snapshot_path: str, postgres_conn_id: str | None = None, dsn: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.snapshot_path = snapshot_path
        self.postgres_conn_id = postgres_conn_id
        self.dsn = dsn

    def execute(self, context: Context) -> dict[str, Any]:
        with open_store(self.postgres_conn_id, self.dsn, owner=f"task {self.task_id}") as store:
            document = write_snapshot(store, Path(self.snapshot_path))
        tags = document["tags"]
        self.log.info(
            "snapshot %s: %d tags, %d queues", self.snapshot_path, len(tags), sum(t["queues"] for t in tags.values())
        )
        return {"tags": len(tags), "queues": sum(t["queues"] for t in tags.values())}
