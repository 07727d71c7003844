"""Operators that run one scheduling cycle for the queues of a tag: one base, one subclass per back end.

Each run makes one bulk statistics call to PanDA, takes PanDA's commands, applies the policy to every queue,
submits through the queues' back ends, writes a ``cycles`` row per queue, reports the pilots to PanDA as
workers (unless the connection's ``factory`` is ``off``), and logs a readable per-queue summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context

from autopilot_ops.airflow.config import SchedulerConfig, cycle_id_for, scheduler_id_for
from autopilot_ops.airflow.hooks.backend_factory import connection_backend
from autopilot_ops.airflow.hooks.store import open_store
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.scheduler.job_stats import job_stats


class PilotSchedulerOperator(BaseOperator):
    """Run one scheduling cycle for the queues of ``tag`` whose back end is of one of ``backend_kinds`` (and,
    with ``worker_queue``, that are routed to that Airflow worker queue; give the task ``queue=`` the same).

    The store comes from ``postgres_conn_id`` or ``dsn``; PanDA from the HTTP connection ``panda_conn_id``.
    ``pilot_command`` items may use ``{queue}``, ``{site}``, ``{panda_url}`` and ``{label}``.
    """

    template_fields: Sequence[str] = ("tag", "log_root")
    ui_color = "#d6eaf8"
    #: The back-end kinds this operator submits to; ``None``: every kind.
    default_backend_kinds: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        *,
        tag: str,
        backend_kinds: Sequence[str] | None = None,
        postgres_conn_id: str | None = None,
        dsn: str | None = None,
        panda_conn_id: str = "panda_default",
        pilot_command: Sequence[str] | None = None,
        log_root: str | None = None,
        global_cap: int | None = None,
        scheduler_id: str | None = None,
        worker_queue: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tag = tag
        kinds = backend_kinds if backend_kinds is not None else self.default_backend_kinds
        self.backend_kinds = tuple(kinds) if kinds is not None else None
        self.postgres_conn_id = postgres_conn_id
        self.dsn = dsn
        self.panda_conn_id = panda_conn_id
        self.pilot_command = tuple(pilot_command) if pilot_command else None
        self.log_root = log_root
        self.global_cap = global_cap
        self.scheduler_id = scheduler_id
        self.worker_queue = worker_queue

    def cycle_settings(self, defaults: SchedulerConfig, panda_url: str) -> CycleSettings:
        """This task's cycle settings; the scheduler id is ``<tag>@<deployment id>`` on whichever worker."""
        return CycleSettings(
            tag=self.tag,
            scheduler_id=self.scheduler_id or scheduler_id_for(self.tag, defaults.deployment_id),
            pilot_command=self.pilot_command or defaults.pilot_command,
            log_root=Path(self.log_root) if self.log_root else defaults.log_root,
            panda_url=panda_url,
            global_cap=self.global_cap if self.global_cap is not None else defaults.global_cap,
            backend_kinds=self.backend_kinds,
            worker_queue=self.worker_queue,
            monitor_url=defaults.monitor_url,
            bundles=defaults.bundles,
            busy_wait_s=defaults.busy_wait_s,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        from autopilot_ops.airflow.hooks.panda import PandaHook

        panda = PandaHook(panda_conn_id=self.panda_conn_id)
        config = SchedulerConfig.from_airflow_conf()
        settings = self.cycle_settings(config, panda.panda_connection().url)
        with open_store(self.postgres_conn_id, self.dsn, owner=f"task {self.task_id}") as store:
            cycle = SchedulingCycle(
                store,
                settings,
                lambda: job_stats(panda.get_client()),
                panda.get_client(),
                backend_factory=connection_backend,
                factory=panda.get_factory(),
            )
            report = cycle.run(cycle_id_for(context["run_id"], config.deployment_id))
        for line in report.lines():
            self.log.info("%s", line)
        return {
            "cycle_id": report.cycle_id,
            "queues": len(report.results),
            "submitted": report.submitted,
            "decided": sum(r.decision.n for r in report.results),
            "stats_error": report.stats_error,
        }


class LocalPilotOperator(PilotSchedulerOperator):
    """A scheduling cycle for the tag's queues on ``local`` back ends (pilots as processes on this host)."""

    default_backend_kinds = ("local",)


class SlurmPilotOperator(PilotSchedulerOperator):
    """A scheduling cycle for the tag's queues on ``slurm`` back ends (one ``sbatch --array`` per queue)."""

    default_backend_kinds = ("slurm",)


class CondorPilotOperator(PilotSchedulerOperator):
    """A scheduling cycle for the tag's queues on HTCondor pools and CEs (one transaction per queue)."""

    default_backend_kinds = ("condor", "condor-ce")


#: The operator for each built-in back-end kind; other kinds use the base class.
OPERATOR_FOR_KIND: dict[str, type[PilotSchedulerOperator]] = {
    kind: cls
    for cls in (LocalPilotOperator, SlurmPilotOperator, CondorPilotOperator)
    for kind in cls.default_backend_kinds or ()
}
