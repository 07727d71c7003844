"""One scheduling cycle for one tag: observe (pilot states, PanDA, the store), decide (the policy), act
(submit through each queue's back end), and log why (a ``cycles`` row per queue)."""

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

from autopilot_ops.backends.base import Backend, PilotSpec
from autopilot_ops.backends.registry import UnknownBackendKind, create_backend
from autopilot_ops.policy import Decision, decide
from autopilot_ops.scheduler.lifecycle import PilotLifecycle, SubmitOutcome, SweepReport, utcnow
from autopilot_ops.scheduler.observe import backends_of_tag, observe
from autopilot_ops.store.backends import list_backends
from autopilot_ops.store.connection import Store
from autopilot_ops.store.cycles import CycleRow, heartbeat_scheduler, record_cycles

log = logging.getLogger(__name__)

StatsSource = Callable[[], Mapping[str, Mapping[str, int]]]


@dataclass(frozen=True)
class CycleSettings:
    """How a tag's scheduler submits. ``pilot_command`` items may use ``{queue}``, ``{site}`` and
    ``{panda_url}``, filled in per queue."""

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
            for name, s in self.sweeps.items()
        )
        out.extend(r.summary() for r in self.results)
        return out


class SchedulingCycle:
    """Runs cycles for one tag against one store, one PanDA statistics source and the registered back ends."""

    def __init__(self, store: Store, settings: CycleSettings, stats_source: StatsSource):
        self.store = store
        self.settings = settings
        self.stats_source = stats_source
        self._backends: dict[str, Backend] = {}

    def _backend(self, name: str, rows: Mapping[str, Mapping[str, Any]]) -> Backend | str:
        """The back end named ``name``, or why it cannot be used."""
        if name in self._backends:
            return self._backends[name]
        row = rows.get(name)
        if row is None:
            return f"back end {name!r} is not registered"
        if not row["enabled"]:
            return f"back end {name!r} is disabled"
        try:
            backend = create_backend(row["kind"], name, row["parameters"], row["submit_host"])
        except UnknownBackendKind as exc:
            return str(exc)
        self._backends[name] = backend
        return backend

    def run(self, cycle_id: str, now: dt.datetime | None = None) -> CycleReport:
        started = time.perf_counter()
        now = now or utcnow()
        settings = self.settings
        who = f"scheduler:{settings.scheduler_id}"
        report = CycleReport(settings.tag, cycle_id)
        stats, stats_age = None, None
        try:
            stats, stats_age = self.stats_source(), 0.0
        except Exception as exc:  # a dead or broken PanDA server stops submission, with the reason logged
            report.stats_error = f"{type(exc).__name__}: {exc}"
            log.warning("tag %s: PanDA statistics failed: %s", settings.tag, exc)
        with self.store.transaction() as cur:
            heartbeat_scheduler(cur, settings.scheduler_id, settings.tag, socket.gethostname(), getpass.getuser(), now)
            backend_rows = {row["name"]: row for row in list_backends(cur)}
            tag_backends = backends_of_tag(cur, settings.tag, settings.backend_kinds)
        if settings.sweep:
            for name in tag_backends:
                backend = self._backend(name, backend_rows)
                if isinstance(backend, Backend):
                    report.sweeps[name] = PilotLifecycle(self.store, backend, who).sweep(now)
        with self.store.transaction() as cur:
            seen = observe(
                cur,
                settings.tag,
                stats,
                stats_age,
                now,
                window_s=settings.window_s,
                global_cap=settings.global_cap,
                backend_kinds=settings.backend_kinds,
            )
        rows = []
        for queue in seen.queues:
            name = queue["panda_queue"]
            decision = decide(seen.snapshots[name])
            outcome = self._act(queue, decision, backend_rows, cycle_id, who)
            report.results.append(QueueResult(name, decision, outcome))
            reason = list(decision.reason)
            if outcome.skipped:
                reason.append(f"not submitted: {outcome.skipped}")
            rows.append(
                CycleRow(
                    cycle_id,
                    name,
                    settings.scheduler_id,
                    now,
                    seen.inputs[name],
                    decision.n,
                    reason,
                    outcome.submitted,
                    outcome.missed,
                )
            )
        with self.store.transaction() as cur:
            record_cycles(cur, rows)
        report.seconds = time.perf_counter() - started
        return report

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
        if not queue["backend"]:
            return SubmitOutcome(skipped="the queue names no back end")
        backend = self._backend(queue["backend"], backend_rows)
        if not isinstance(backend, Backend):
            return SubmitOutcome(missed=decision.n, skipped=backend)
        return PilotLifecycle(self.store, backend, who).submit(decision.n, self._spec(queue, cycle_id))

    def _spec(self, queue: Mapping[str, Any], cycle_id: str) -> PilotSpec:
        settings = self.settings
        fields = {"queue": queue["panda_queue"], "site": queue["site"], "panda_url": settings.panda_url}
        return PilotSpec(
            queue=queue["panda_queue"],
            cycle_id=cycle_id,
            scheduler=settings.scheduler_id,
            command=[part.format(**fields) for part in settings.pilot_command],
            log_root=settings.log_root,
            environment=dict(settings.environment),
            corecount=queue["corecount"] or 1,
            memory_mb=queue["maxrss"] or None,
            walltime_s=queue["maxtime"] or None,
            parameters=queue["backend_parameters"],
        )
