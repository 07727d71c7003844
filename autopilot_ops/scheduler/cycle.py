"""One scheduling cycle for one tag: observe (pilot states, PanDA and its commands, the store), decide (the
policy), act (submit through each queue's back end), and log why (a ``cycles`` row per queue); as a pilot
factory of PanDA, it then reports its pilots as workers, its heartbeat and its worker statistics."""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from autopilot_ops.backends.base import Backend, PilotSpec
from autopilot_ops.backends.registry import BackendFactory, UnusableBackend, backend_from_row, usable_backend
from autopilot_ops.credentials.checks import credential_for
from autopilot_ops.errors import describe_error
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.factory import FactoryClient
from autopilot_ops.pilot.config import HARVESTER_ID_VARIABLE, KEPT_DIR_VARIABLE
from autopilot_ops.policy import Decision, decide
from autopilot_ops.scheduler.factory_reports import FactoryReport, send_due_reports
from autopilot_ops.scheduler.job_stats import JobStats, as_job_stats
from autopilot_ops.scheduler.kept_updates import DeliveryReport, deliver_kept_updates, kept_dir_of
from autopilot_ops.scheduler.locks import QUEUE_LOCK_KEY, LockLost, locks_of
from autopilot_ops.scheduler.observe import Observation, backends_of_tag, observe, panda_data, queues_of_tag
from autopilot_ops.scheduler.panda_commands import CommandReport, take_commands
from autopilot_ops.scheduler.pilot_launch import BUNDLE_FIELDS, PilotBundles, placeholders
from autopilot_ops.scheduler.pilot_sweep import SweepReport, sweep_backend, utcnow
from autopilot_ops.scheduler.submission import PilotSubmitter, SubmitOutcome, submission_key
from autopilot_ops.scheduler.worker_reports import WorkerReport, report_workers
from autopilot_ops.store.backends import list_backends
from autopilot_ops.store.connection import Store, StoreError
from autopilot_ops.store.cycles import CycleRow, heartbeat_scheduler, record_cycles, scheduler_started_at
from autopilot_ops.store.submissions import queues_with_pending, settle_pending

log = logging.getLogger(__name__)

#: PanDA's statistics: :func:`~autopilot_ops.scheduler.job_stats.job_stats` of a client (per label), or the
#: reply of the older ``active_job_stats_by_site`` (``{site: {state: count}}``, for every label).
#: Seconds a cycle waits for queues another scheduler holds (two deployments in lockstep), and its poll period.
DEFAULT_BUSY_WAIT_S = 30.0
BUSY_POLL_S = 0.25

StatsSource = Callable[[], JobStats | Mapping[str, Mapping[str, int]]]


@dataclass(frozen=True)
class CycleSettings:
    """How a tag's scheduler submits. ``pilot_command`` items may use ``{queue}``, ``{site}``, ``{panda_url}``
    and ``{label}`` (the prodSourceLabel the pilots ask for), filled in per queue and label, and the bundle's
    ``{wrapper}``, ``{pilot_version}``, ``{bundle_url}`` and ``{bundle_sha256}`` (``pilot_launch``)."""

    tag: str
    scheduler_id: str
    pilot_command: Sequence[str]
    log_root: Path
    panda_url: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    global_cap: int | None = None
    window_s: int = 3600
    sweep: bool = True
    #: Serve only queues whose back end is of these kinds; ``None``: all of the tag's queues.
    backend_kinds: Sequence[str] | None = None
    #: Serve only queues routed to this Airflow worker queue (``WORKER_QUEUE_SQL``); ``None``: every queue.
    worker_queue: str | None = None
    #: The monitor's URL (``.../autopilot``): workers' ``stdOut``/``stdErr`` link to their logs there.
    monitor_url: str | None = None
    #: The pilot bundles the command's ``{bundle_url}``, ``{bundle_sha256}`` ... name (``pilot_launch``).
    bundles: PilotBundles | None = None
    #: How long a cycle waits for the queues another scheduler is cycling (``[autopilot] busy_queue_wait``).
    busy_wait_s: float = DEFAULT_BUSY_WAIT_S


@dataclass(frozen=True)
class _Batch:
    """What every batch of one cycle's queues is served with."""

    stats: JobStats | None
    backend_rows: Mapping[str, Mapping[str, Any]]
    cycle_id: str
    now: dt.datetime
    who: str
    acting: bool


@dataclass(frozen=True)
class QueueResult:
    queue: str
    decision: Decision
    outcome: SubmitOutcome

    def summary(self) -> str:
        done = f"submitted {self.outcome.submitted}"
        if self.outcome.missed:
            done += f", missed {self.outcome.missed}"
        if self.outcome.skipped:
            done += f", skipped: {self.outcome.skipped}"
        return f"{self.queue}: decided {self.decision.n} ({self.decision}); {done}"


@dataclass
class CycleReport:
    tag: str
    cycle_id: str
    results: list[QueueResult] = field(default_factory=list)
    sweeps: dict[str, SweepReport] = field(default_factory=dict)
    stats_error: str | None = None
    seconds: float = 0.0
    #: Queues another scheduler was cycling for all of ``busy_wait_s`` (it held their lock): left to it, no row
    #: written here.
    busy: list[str] = field(default_factory=list)
    #: final updates pilots handed over, sent on to PanDA this cycle
    kept: DeliveryReport | None = None
    #: as a pilot factory: PanDA's commands taken, workers reported, heartbeat and statistics sent
    commands: CommandReport | None = None
    workers: WorkerReport | None = None
    factory: FactoryReport | None = None

    @property
    def submitted(self) -> int:
        return sum(r.outcome.submitted for r in self.results)

    def lines(self) -> list[str]:
        head = f"cycle {self.cycle_id} of tag {self.tag}: {len(self.results)} queues, {self.submitted} pilots submitted"
        out = [head + f" in {self.seconds:.2f}s"]
        if self.stats_error:
            out.append(f"PanDA statistics unavailable: {self.stats_error}")
        out.extend(
            f"back end {name}: {len(s.transitions)} state changes, {len(s.cancelled)} cancelled"
            + (f", error: {s.backend_error}" if s.backend_error else "")
            + (f", {s.skipped}" if s.skipped else "")
            for name, s in self.sweeps.items()
        )
        if self.kept is not None and (self.kept.delivered or self.kept.rejected or self.kept.stopped):
            out.append(
                f"kept final updates: {self.kept.delivered} delivered, {self.kept.rejected} rejected"
                + (f" ({self.kept.stopped})" if self.kept.stopped else "")
            )
        out.extend(self._factory_lines())
        out.extend(r.summary() for r in self.results)
        out.extend(f"{name}: skipped, another scheduler is cycling this queue" for name in self.busy)
        return out


    def _factory_lines(self) -> list[str]:
        out = []
        if self.commands is not None:
            out.extend(f"PanDA command {cid}: {outcome}" for cid, outcome in self.commands.outcomes.items())
            if self.commands.error:
                out.append(f"PanDA commands: {self.commands.error}")
        workers = self.workers
        if workers is not None and (workers.sent or workers.error):
            out.append(
                f"workers reported to PanDA: {workers.accepted} of {workers.sent} in {workers.calls} calls"
                + (f"; stopped: {workers.error}" if workers.error else "")
            )
        if self.factory is not None and self.factory.error:
            out.append(f"pilot-factory reports stopped: {self.factory.error}")
        return out


class SchedulingCycle:
    """Runs cycles for one tag against one store, one PanDA statistics source and the registered back ends
    (built by ``backend_factory``). With ``panda``, a client of the same server, it also delivers the final
    updates its pilots handed over; with ``factory``, it is a pilot factory of that server too."""

    def __init__(
        self,
        store: Store,
        settings: CycleSettings,
        stats_source: StatsSource,
        panda: PandaClient | None = None,
        backend_factory: BackendFactory = backend_from_row,
        factory: FactoryClient | None = None,
    ):
        self.store = store
        self.settings = settings
        self.stats_source = stats_source
        self.panda = panda
        self.factory = factory
        self.backend_factory = backend_factory
        self._backends: dict[str, Backend] = {}

    def _backend(self, name: str | None, rows: Mapping[str, Mapping[str, Any]]) -> Backend:
        """The back end named ``name``; raises ``UnusableBackend`` naming why it cannot be used."""
        if name in self._backends:
            return self._backends[name]
        backend = usable_backend(name, rows.get(name or ""), self.backend_factory)
        self._backends[backend.name] = backend
        return backend

    def _backend_or_reason(self, name: str | None, rows: Mapping[str, Mapping[str, Any]]) -> Backend | str:
        """The back end named ``name``, or why it cannot be used (a bad configuration included)."""
        try:
            return self._backend(name, rows)
        except UnusableBackend as exc:
            return str(exc)

    def run(self, cycle_id: str, now: dt.datetime | None = None, *, dry_run: bool = False) -> CycleReport:
        """Observe, decide and act for every queue of the tag this scheduler can lock; a queue another scheduler
        is cycling is served once its lock comes free, within ``busy_wait_s``. A queue's error ends only that
        queue, with its own ``cycles`` row. Rows are written as queues finish: at once after a queue
        that called its back end or failed, and those of quiet queues in bulk before the next back-end call.

        A ``dry_run`` observes and decides only: it takes no lock and changes nothing (no sweep, command,
        submission, row or report), so it may run beside the scheduler itself."""
        started = time.perf_counter()
        now = now or utcnow()
        settings = self.settings
        who = f"scheduler:{settings.scheduler_id}"
        report = CycleReport(settings.tag, cycle_id)
        stats = None
        try:
            stats = as_job_stats(self.stats_source())
        except Exception as exc:  # a dead or broken PanDA server stops submission, with the reason logged
            report.stats_error = describe_error(exc)
            log.warning("tag %s: PanDA statistics failed: %s", settings.tag, exc)
        with self.store.transaction() as cur:
            if not dry_run:
                heartbeat_scheduler(
                    cur, settings.scheduler_id, settings.tag, socket.gethostname(), getpass.getuser(), now
                )
            backend_rows = {row["name"]: row for row in list_backends(cur)}
            tag_backends = backends_of_tag(cur, settings.tag, settings.backend_kinds, settings.worker_queue)
            queues = queues_of_tag(cur, settings.tag, settings.backend_kinds, settings.worker_queue)
        names = [q["panda_queue"] for q in queues]
        by_name = {q["panda_queue"]: q for q in queues}
        context = _Batch(stats, backend_rows, cycle_id, now, who, acting=not dry_run)
        if dry_run:
            self._serve(queues, report, context)
            report.seconds = time.perf_counter() - started
            return report
        locks = locks_of(self.store)
        mine = locks.try_lock(QUEUE_LOCK_KEY, names)
        try:
            if self.factory is not None and report.stats_error is None:
                # before the sweep, so that the pilots PanDA wants killed go in this cycle's sweep
                report.commands = take_commands(self.store, self.factory, who, now)
            if settings.sweep:
                for name in tag_backends:
                    backend = self._backend_or_reason(name, backend_rows)
                    if isinstance(backend, Backend):
                        report.sweeps[name] = sweep_backend(self.store, backend, who, now)
            self._serve([by_name[name] for name in names if name in mine], report, context)
        finally:
            locks.release(QUEUE_LOCK_KEY, mine)
        report.busy = self._serve_when_free([name for name in names if name not in mine], by_name, report, context)
        report.seconds = time.perf_counter() - started
        return report

    def _serve_when_free(
        self, busy: list[str], by_name: Mapping[str, Mapping[str, Any]], report: CycleReport, context: _Batch
    ) -> list[str]:
        """Cycle the queues another scheduler was cycling as their locks come free, for at most
        ``busy_wait_s`` (two deployments in lockstep: each serves the other's first queues after it); the
        queues still busy then."""
        locks = locks_of(self.store)
        deadline = time.monotonic() + self.settings.busy_wait_s
        while busy and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(BUSY_POLL_S, left))
            got = locks.try_lock(QUEUE_LOCK_KEY, busy)
            if not got:
                continue
            try:
                self._serve([by_name[name] for name in busy if name in got], report, context, first=False)
            finally:
                locks.release(QUEUE_LOCK_KEY, got)
            busy = [name for name in busy if name not in got]
        return busy

    def _serve(
        self, ours: Sequence[Mapping[str, Any]], report: CycleReport, context: _Batch, *, first: bool = True
    ) -> None:
        """Observe, decide and act for ``ours`` (locked by this scheduler, or a dry run's); each queue's row is
        written as it finishes. The ``first`` batch also sends on the pilots' kept final updates and, as a pilot
        factory, reports to PanDA; a later one leaves that to the next cycle (the scheduler it waited for has
        just done it, and what is not sent waits in PostgreSQL and the kept directory)."""
        if not ours:
            return
        names = [q["panda_queue"] for q in ours]
        acting, backend_rows = context.acting, context.backend_rows
        if self.panda is not None and report.stats_error is None and acting and first:
            report.kept = self._deliver_kept(names, context.who)
        errors = self._reconcile(ours, backend_rows, context.who) if acting else {}
        settings = self.settings
        with self.store.transaction() as cur:
            panda = panda_data(cur, names, context.stats, report.stats_error, context.now)
            seen = observe(
                cur, ours, settings.tag, panda, context.now, window_s=settings.window_s,
                global_cap=settings.global_cap,
                backend_parameters={name: row["parameters"] or {} for name, row in backend_rows.items()},
                scheduler=settings.scheduler_id,
            )
        done: list[CycleRow] = []  # rows of queues that called no back end, written in bulk

        def flush() -> None:
            with self.store.transaction() as cur:
                record_cycles(cur, done)
            done.clear()

        for queue in ours:
            if not acting:
                report.results.append(self._dry_run(queue, seen))
                continue
            error = errors.get(queue["panda_queue"])
            result, row = self._queue(
                queue, seen, error, backend_rows, context.cycle_id, context.now, before_act=flush
            )
            report.results.append(result)
            done.append(row)
            if result.decision.n > 0 or error is not None:
                flush()
        flush()
        if self.factory is not None and acting and first:
            self._report_to_panda(names, report, context.now)

    @staticmethod
    def _dry_run(queue: Mapping[str, Any], seen: Observation) -> QueueResult:
        """The decision for one queue, and nothing done about it."""
        name = queue["panda_queue"]
        decision = decide(seen.snapshots[name])
        return QueueResult(name, decision, SubmitOutcome(skipped="dry run" if decision.n else None))

    def _report_to_panda(self, queues: Sequence[str], report: CycleReport, now: dt.datetime) -> None:
        """As a pilot factory: the queues' workers, the heartbeat and statistics that are due (never raising
        for PanDA; what is not sent waits in PostgreSQL)."""
        assert self.factory is not None
        settings = self.settings
        report.workers = report_workers(
            self.store, self.factory, queues, now, monitor_url=settings.monitor_url, log_root=settings.log_root
        )
        with self.store.transaction() as cur:
            started_at = scheduler_started_at(cur, settings.scheduler_id) or now
        report.factory = send_due_reports(self.store, self.factory, queues, started_at, now)

    def _deliver_kept(self, queues: Sequence[str], who: str) -> DeliveryReport:
        """Send on the final updates pilots of ``queues`` handed over; a failure here stops no submission."""
        assert self.panda is not None
        try:
            return deliver_kept_updates(kept_dir_of(self.settings.log_root), self.panda, queues, self.store, who)
        except (OSError, StoreError, psycopg2.Error) as exc:
            log.warning("tag %s: kept final updates not delivered: %s", self.settings.tag, exc)
            return DeliveryReport(stopped=describe_error(exc))

    def _reconcile(
        self, queues: list[dict[str, Any]], backend_rows: Mapping[str, Mapping[str, Any]], who: str
    ) -> dict[str, str]:
        """Settle keys left pending by a crash, for every queue (paused, drained and offline ones too),
        before anything is decided; the error of each queue where that failed."""
        with self.store.transaction() as cur:
            pending = set(queues_with_pending(cur, [q["panda_queue"] for q in queues]))
        errors = {}
        for queue in queues:
            name = queue["panda_queue"]
            if name not in pending:
                continue
            try:
                backend = self._backend(queue["backend"], backend_rows)
                PilotSubmitter(self.store, backend, who).reconcile(name)
            except (StoreError, LockLost, psycopg2.Error):
                raise
            except Exception as exc:  # the queue is decided with nothing submitted, and says why
                errors[name] = f"reconciling pending submissions failed: {describe_error(exc)}"
        return errors

    def _queue(
        self,
        queue: Mapping[str, Any],
        seen: Observation,
        error: str | None,
        backend_rows: Mapping[str, Mapping[str, Any]],
        cycle_id: str,
        now: dt.datetime,
        before_act: Callable[[], None],
    ) -> tuple[QueueResult, CycleRow]:
        """Decide and act for one queue; any error of its own becomes its reason, and its key is settled.
        ``before_act`` runs before the back end is called (the rows of the queues done so far are written)."""
        name = queue["panda_queue"]
        who = f"scheduler:{self.settings.scheduler_id}"
        decision, outcome = Decision(0, ("submit 0",)), SubmitOutcome()
        if error is not None:
            outcome = SubmitOutcome(skipped=error)
        else:
            try:
                decision = decide(seen.snapshots[name])
                if decision.n > 0:
                    before_act()
                outcome = self._act(queue, decision, backend_rows, cycle_id, who)
            except (StoreError, LockLost, psycopg2.Error):
                raise
            except Exception as exc:  # one bad queue must not stop its tag
                log.exception("queue %s: cycle %s failed", name, cycle_id)
                detail = f"error: {describe_error(exc)}"
                labels = queue["prod_source_labels"]
                with self.store.transaction() as cur:
                    for label, _ in decision.labels:
                        settle_pending(cur, name, submission_key(cycle_id, label, labels), detail)
                outcome = SubmitOutcome(missed=decision.n, skipped=detail)
        reason = list(decision.reason)
        stats_error = seen.inputs[name]["stats_error"]
        if stats_error:
            reason.insert(0, f"PanDA statistics failed: {stats_error}")
        elif seen.inputs[name]["stats_note"]:
            reason.insert(0, seen.inputs[name]["stats_note"])
        if outcome.skipped:
            reason.append(f"not submitted: {outcome.skipped}")
        row = CycleRow(
            cycle_id,
            name,
            self.settings.scheduler_id,
            now,
            seen.inputs[name],
            decision.n,
            reason,
            outcome.submitted,
            outcome.missed,
        )
        return QueueResult(name, decision, outcome), row

    def _act(
        self,
        queue: Mapping[str, Any],
        decision: Decision,
        backend_rows: Mapping[str, Mapping[str, Any]],
        cycle_id: str,
        who: str,
    ) -> SubmitOutcome:
        if decision.n <= 0:
            return SubmitOutcome()
        backend = self._backend_or_reason(queue["backend"], backend_rows)
        if not isinstance(backend, Backend):
            return SubmitOutcome(missed=decision.n, skipped=backend)
        submitter = PilotSubmitter(self.store, backend, who)
        parameters = backend_rows[backend.name]["parameters"] or {}
        return SubmitOutcome.combined(
            submitter.submit(n, self._spec(queue, cycle_id, parameters, label), label) for label, n in decision.labels
        )

    def _factory_environment(self) -> dict[str, str]:
        """``HARVESTER_ID`` for the pilots of a factory: with their worker id, they send it to PanDA."""
        return {HARVESTER_ID_VARIABLE: self.factory.harvester_id} if self.factory is not None else {}

    def _spec(
        self, queue: Mapping[str, Any], cycle_id: str, backend_parameters: Mapping[str, Any], label: str
    ) -> PilotSpec:
        """The submission of ``label``'s pilots; they carry the credential of that job type (a test queue's
        ``test`` pilots, that of the queue's first)."""
        settings = self.settings
        labels = queue["prod_source_labels"]
        fields = {"queue": queue["panda_queue"], "site": queue["site"], "panda_url": settings.panda_url, "label": label}
        pilot_version = None
        if placeholders(settings.pilot_command) & BUNDLE_FIELDS:
            if settings.bundles is None:
                raise ValueError("the pilot command names a pilot bundle, but no URL is known for the bundles: set "
                                 "[autopilot] pilot_bundle_url, or [api] base_url (the plugin serves them)")
            fields.update(settings.bundles.fields(queue["pilot_version"]))
            pilot_version = fields["pilot_version"]
        return PilotSpec(
            queue=queue["panda_queue"],
            cycle_id=submission_key(cycle_id, label, labels),
            scheduler=settings.scheduler_id,
            command=[part.format(**fields) for part in settings.pilot_command],
            log_root=settings.log_root,
            environment={**self._factory_environment(), KEPT_DIR_VARIABLE: str(kept_dir_of(settings.log_root)),
                         **settings.environment},
            corecount=queue["corecount"] or 1,
            memory_mb=queue["maxrss"] or None,
            walltime_s=queue["maxtime"] or None,
            parameters=queue["backend_parameters"],
            credential=credential_for(queue, backend_parameters, label if label in labels else labels[0]),
            pilot_version=pilot_version,
        )
