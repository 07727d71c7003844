"""``AutopilotCleanupOperator``: the old cleanSpace as one task, removing old pilot logs and old store rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from autopilot_ops.airflow.hooks.store import open_store
from autopilot_ops.cleanup.logs import LogPolicy, clean_logs
from autopilot_ops.cleanup.rows import RowRetention, sweep_rows

Number = float | int | str | None


class AutopilotCleanupOperator(BaseOperator):
    """Remove pilot logs under ``log_root`` by age and disk watermark (see :mod:`autopilot_ops.cleanup.logs`),
    then sweep old rows from the store (see :mod:`autopilot_ops.cleanup.rows`). Returns both reports (XCom).

    A part is skipped when its input is missing: no ``log_root``, or neither ``postgres_conn_id`` nor ``dsn``.
    Ages and watermarks are templated and may be Jinja strings. They are checked before anything is removed.
    """

    template_fields: Sequence[str] = (
        "log_root",
        "postgres_conn_id",
        "log_max_age_days",
        "live_minutes",
        "high_watermark_pct",
        "low_watermark_pct",
        "log_budget_bytes",
        "finished_hours",
        "failed_hours",
        "cancelled_hours",
        "missed_hours",
        "events_hours",
        "cycles_days",
        "submissions_days",
    )
    ui_color = "#efe6d2"

    def __init__(
        self,
        *,
        log_root: str | None = None,
        postgres_conn_id: str | None = None,
        dsn: str | None = None,
        log_max_age_days: Number = 7,
        live_minutes: Number = 30,
        high_watermark_pct: Number = 90,
        low_watermark_pct: Number = 80,
        watch_filesystem: bool = True,
        log_budget_bytes: Number = None,
        finished_hours: Number = 24,
        failed_hours: Number = 72,
        cancelled_hours: Number = None,
        missed_hours: Number = None,
        events_hours: Number = None,
        cycles_days: Number = 7,
        submissions_days: Number = 7,
        batch_size: int = 5000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.log_root = log_root
        self.postgres_conn_id = postgres_conn_id
        self.dsn = dsn
        self.log_max_age_days = log_max_age_days
        self.live_minutes = live_minutes
        self.high_watermark_pct = high_watermark_pct
        self.low_watermark_pct = low_watermark_pct
        self.watch_filesystem = watch_filesystem
        self.log_budget_bytes = log_budget_bytes
        self.finished_hours = finished_hours
        self.failed_hours = failed_hours
        self.cancelled_hours = cancelled_hours
        self.missed_hours = missed_hours
        self.events_hours = events_hours
        self.cycles_days = cycles_days
        self.submissions_days = submissions_days
        self.batch_size = batch_size

    def execute(self, context: Context) -> dict[str, Any]:
        policy, retention = self.log_policy(), self.row_retention()
        if not (self.log_root or self.postgres_conn_id or self.dsn):
            raise ValueError(f"task {self.task_id}: nothing to clean; set log_root, postgres_conn_id or dsn")
        result: dict[str, Any] = {}
        if self.log_root:
            logs = clean_logs(self.log_root, policy)
            for line in logs.summary_lines():
                self.log.info("%s", line)
            for error in logs.errors:
                self.log.warning("%s", error)
            if logs.error_count > len(logs.errors):
                self.log.warning("... and %d more errors", logs.error_count - len(logs.errors))
            result["logs"] = logs.to_dict()
        if self.postgres_conn_id or self.dsn:
            with open_store(self.postgres_conn_id, self.dsn, owner=f"task {self.task_id}") as store:
                rows = sweep_rows(store, retention)
            for line in rows.summary_lines():
                self.log.info("%s", line)
            result["rows"] = rows.to_dict()
        return result

    def log_policy(self) -> LogPolicy:
        budget = self._number("log_budget_bytes", self.log_budget_bytes)
        return LogPolicy(
            max_age_days=self._number("log_max_age_days", self.log_max_age_days),
            live_minutes=self._required("live_minutes", self.live_minutes),
            high_watermark_pct=self._required("high_watermark_pct", self.high_watermark_pct),
            low_watermark_pct=self._required("low_watermark_pct", self.low_watermark_pct),
            watch_filesystem=self.watch_filesystem,
            budget_bytes=None if budget is None else int(budget),
        )

    def row_retention(self) -> RowRetention:
        return RowRetention(
            finished_hours=self._required("finished_hours", self.finished_hours),
            failed_hours=self._required("failed_hours", self.failed_hours),
            cancelled_hours=self._number("cancelled_hours", self.cancelled_hours),
            missed_hours=self._number("missed_hours", self.missed_hours),
            events_hours=self._number("events_hours", self.events_hours),
            cycles_days=self._required("cycles_days", self.cycles_days),
            submissions_days=self._required("submissions_days", self.submissions_days),
            batch_size=self.batch_size,
        )

    def _number(self, name: str, value: Number) -> float | None:
        """A rendered field as a number; ``None`` (off, or the default) when empty."""
        if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
            return None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"task {self.task_id}: field {name!r} is not a number: {value!r}") from None

    def _required(self, name: str, value: Number) -> float:
        number = self._number(name, value)
        if number is None:
            raise ValueError(f"task {self.task_id}: field {name!r} needs a number")
        return number
