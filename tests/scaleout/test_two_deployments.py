"""Two AutoPilot deployments (each an Airflow of its own, ``[autopilot] deployment_id`` site-a and site-b) on one
AutoPilot database, serving the same queues. Two full Airflows are too heavy for CI on 2 cores, so the
deployments' cycles run here as their Airflow tasks would run them: ``SchedulingCycle`` with the scheduler ids
``t1@site-a`` and ``t1@site-b``, on stores of their own, at the same time, with the run ids Airflow gives both
(the same schedule gives the same ``scheduled__<date>`` run id), against one shared batch system."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psycopg2
import pytest

from autopilot_ops.airflow.config import cycle_id_for, scheduler_id_for
from autopilot_ops.backends.base import Backend, PilotSpec, PilotState, PilotStatus, SubmittedPilot
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleReport, CycleSettings, SchedulingCycle
from autopilot_ops.scheduler.locks import QUEUE_LOCK_KEY
from autopilot_ops.store.connection import Store
from autopilot_ops.store.cycles import heartbeat_scheduler

QUEUES = """
backends: [{name: batch, kind: local}]
defaults: {backend: batch, tags: [t1], queue_limit: 100, max_pilots: 100, max_per_cycle: 100, cycle_period: 60}
queues:
  - {name: Q1, site: S1}
  - {name: Q2, site: S1}
  - {name: Q3, site: S2}
  - {name: Q4, site: S2}
"""
ACTIVATED = 20
DEPLOYMENTS = ("site-a", "site-b")


class SharedBatch(Backend):
    """One batch system both deployments submit to: every pilot it was given, with the submission's key, and
    when each submission ran; a slow submit, so that the two deployments' cycles overlap."""

    kind = "local"
    ids = itertools.count(1)
    lock = threading.Lock()
    pilots: dict[str, tuple[str, str]] = {}
    #: (queue, scheduler, start, end) of every submission
    calls: list[tuple[str, str, float, float]] = []

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        start = time.monotonic()
        time.sleep(0.2)
        made = []
        with self.lock:
            for index in range(n):
                batch_id = str(next(self.ids))
                self.pilots[batch_id] = (spec.queue, spec.cycle_id)
                made.append(SubmittedPilot(batch_id, spec.log_root / "out", spec.log_root / "err", index))
            self.calls.append((spec.queue, spec.scheduler, start, time.monotonic()))
        return made

    def status(self, batch_ids: Sequence[str]) -> dict[str, PilotStatus]:
        return {b: PilotStatus(PilotState.QUEUED) for b in batch_ids if b in self.pilots}

    def cancel(self, batch_ids: Sequence[str]) -> None:
        """Nothing is cancelled in these tests."""

    def find_pilots(self, queue: str, cycle_id: str) -> list[SubmittedPilot]:
        return []

    def log_paths(self, batch_id: str) -> None:
        return None


@pytest.fixture
def panda(tmp_path: Path) -> Iterator[DevServer]:
    with DevServer(tmp_path / "panda") as server:
        for queue in ("Q1", "Q2", "Q3", "Q4"):
            server.submit_jobs(queue, ACTIVATED, f"{server.url}/noop.sh", "")
        yield server


@pytest.fixture
def deployments(store: Store, pg_dsn: str, panda: DevServer, tmp_path: Path) -> Iterator[list[SchedulingCycle]]:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES)
    load_queues(store, str(path))
    SharedBatch.pilots = {}
    SharedBatch.calls = []
    stores = [Store(pg_dsn) for _ in DEPLOYMENTS]
    cycles = [
        SchedulingCycle(
            own,
            CycleSettings(
                tag="t1",
                scheduler_id=scheduler_id_for("t1", deployment),
                pilot_command=("true",),
                log_root=tmp_path / "logs",
                panda_url=panda.url,
                backend_kinds=("local",),
                worker_queue="default",
            ),
            PandaClient(panda.url).active_job_stats_by_site,
            backend_factory=lambda name, row: SharedBatch(name),
        )
        for own, deployment in zip(stores, DEPLOYMENTS)
    ]
    yield cycles
    for own in stores:
        own.close()


def run_together(cycles: list[SchedulingCycle], run_id: str) -> list[CycleReport]:
    """Both deployments' cycle tasks of one Airflow run id, started at the same moment."""
    barrier = threading.Barrier(len(cycles))
    reports: list[CycleReport | BaseException] = [RuntimeError("did not run")] * len(cycles)

    def run(index: int) -> None:
        barrier.wait()
        try:
            reports[index] = cycles[index].run(cycle_id_for(run_id, DEPLOYMENTS[index]))  # as their operators do
        except BaseException as exc:  # reported below, in the test's thread
            reports[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cycles))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for report in reports:
        if isinstance(report, BaseException):
            raise report
    return reports  # type: ignore[return-value]


def pilot_rows(store: Store) -> list[dict]:
    with store.transaction() as cur:
        cur.execute("SELECT queue, cycle_id, batch_id FROM pilots")
        return [dict(row) for row in cur.fetchall()]


def heartbeat_both(store: Store) -> None:
    """Both deployments running (each has cycled before): each counts the other from its first cycle here."""
    now = dt.datetime.now(dt.timezone.utc)
    with store.transaction() as cur:
        for deployment in DEPLOYMENTS:
            heartbeat_scheduler(cur, scheduler_id_for("t1", deployment), "t1", "host", "autopilot", now)


def per_queue(pilots: list[dict]) -> dict[str, int]:
    return {q: sum(1 for p in pilots if p["queue"] == q) for q in ("Q1", "Q2", "Q3", "Q4")}


def test_two_deployments_never_submit_a_pilot_twice_and_count_each_other(
    deployments: list[SchedulingCycle], store: Store
) -> None:
    """Started at the same moment and from nothing, neither having seen the other: never a pilot twice, never
    more than one per job, and from the second run on each counts both."""
    runs = [f"scheduled__2026-12-02T21:0{minute}:00+00:00" for minute in range(3)]
    for run_id in runs:
        for report in run_together(deployments, run_id):
            assert sorted([r.queue for r in report.results] + report.busy) == ["Q1", "Q2", "Q3", "Q4"]
    pilots = pilot_rows(store)
    assert len(pilots) == len(SharedBatch.pilots) and len({p["batch_id"] for p in pilots}) == len(pilots)
    assert all(0 < n <= ACTIVATED for n in per_queue(pilots).values()), per_queue(pilots)
    with store.transaction() as cur:
        cur.execute("SELECT id FROM schedulers WHERE tag = 't1' ORDER BY id")
        assert [r["id"] for r in cur.fetchall()] == ["t1@site-a", "t1@site-b"]
        cur.execute("SELECT scheduler, reason FROM cycles WHERE cycle_id = ANY(%s)",
                    ([cycle_id_for(runs[-1], deployment) for deployment in DEPLOYMENTS],))
        last = cur.fetchall()
    # from the second run on, each deployment counts both: the multi-instance factor is 2
    assert last and all(
        re.search(rf"n_act=ceil\({ACTIVATED}/2 instances/1 jobs_per_pilot\)", " ".join(r["reason"])) for r in last
    )


def test_two_deployments_in_lockstep_each_serve_every_queue(deployments: list[SchedulingCycle], store: Store) -> None:
    """Both running, their cycles of the same run ids starting at the same moment (the same schedule): each finds
    some queues locked by the other, waits for them and serves them after it, so every queue gets both halves of
    its pilots; the two never submit for one queue at once."""
    heartbeat_both(store)
    for minute in range(3):
        for report in run_together(deployments, f"scheduled__2026-12-02T21:0{minute}:00+00:00"):
            assert report.busy == [] and sorted(r.queue for r in report.results) == ["Q1", "Q2", "Q3", "Q4"]
    pilots = pilot_rows(store)
    assert per_queue(pilots) == dict.fromkeys(("Q1", "Q2", "Q3", "Q4"), ACTIVATED)
    assert len({p["batch_id"] for p in pilots}) == len(pilots) == len(SharedBatch.pilots)
    with store.transaction() as cur:
        cur.execute("SELECT scheduler, count(*) AS n FROM pilots GROUP BY scheduler ORDER BY scheduler")
        assert [dict(r) for r in cur.fetchall()] == [
            {"scheduler": "t1@site-a", "n": 2 * ACTIVATED}, {"scheduler": "t1@site-b", "n": 2 * ACTIVATED}
        ], "each deployment submitted its half of each queue's pilots"
    for queue in ("Q1", "Q2", "Q3", "Q4"):
        spans = sorted((start, end) for q, _, start, end in SharedBatch.calls if q == queue)
        assert all(end <= later for (_, end), (later, _) in itertools.pairwise(spans)), f"{queue}: at once"


def test_a_queue_busy_for_all_the_wait_is_left_to_the_other(
    deployments: list[SchedulingCycle], store: Store, pg_dsn: str
) -> None:
    """A queue another scheduler holds past ``busy_wait_s`` is skipped as busy, in bounded time, with no row of
    this cycle; one whose lock comes free within the wait is served in the same cycle."""
    cycle = deployments[0]
    cycle.settings = dataclasses.replace(cycle.settings, busy_wait_s=1.0)
    other = psycopg2.connect(pg_dsn)
    other.autocommit = True
    try:
        with other.cursor() as cur:
            cur.execute(f"SELECT pg_advisory_lock({QUEUE_LOCK_KEY})", ("Q1",))
        started = time.monotonic()
        report = cycle.run("held")
        assert 1.0 <= time.monotonic() - started < 10
        assert report.busy == ["Q1"] and sorted(r.queue for r in report.results) == ["Q2", "Q3", "Q4"]
        assert "Q1: skipped, another scheduler is cycling this queue" in report.lines()
        with store.transaction() as cur:
            cur.execute("SELECT queue FROM cycles WHERE cycle_id = 'held' ORDER BY queue")
            assert [r["queue"] for r in cur.fetchall()] == ["Q2", "Q3", "Q4"]

        cycle.settings = dataclasses.replace(cycle.settings, busy_wait_s=30.0)
        threading.Timer(0.5, lambda: other.cursor().execute(
            f"SELECT pg_advisory_unlock({QUEUE_LOCK_KEY})", ("Q1",))).start()
        report = cycle.run("freed")
        assert report.busy == [] and sorted(r.queue for r in report.results) == ["Q1", "Q2", "Q3", "Q4"]
        assert next(r for r in report.results if r.queue == "Q1").outcome.submitted == ACTIVATED
    finally:
        other.close()


def test_two_deployments_taking_turns_keep_one_pilot_per_activated_job(
    deployments: list[SchedulingCycle], store: Store
) -> None:
    """Both deployments running (each has cycled before), their cycles of the same run ids one after the other
    (their schedulers are not in lockstep): each submits its share of every queue's jobs, and together they keep
    one pilot per job, never one twice. (A deployment that starts alone first fills the queue by itself; the
    share applies from when the other is seen.)"""
    heartbeat_both(store)
    for minute in range(3):
        run_id = f"scheduled__2026-12-02T21:0{minute}:00+00:00"
        for cycle, deployment in zip(deployments, DEPLOYMENTS):
            cycle.run(cycle_id_for(run_id, deployment))
    pilots = pilot_rows(store)
    assert per_queue(pilots) == dict.fromkeys(("Q1", "Q2", "Q3", "Q4"), ACTIVATED)
    assert len({p["batch_id"] for p in pilots}) == len(pilots) == len(SharedBatch.pilots)
    with store.transaction() as cur:
        cur.execute("SELECT scheduler, count(*) AS n FROM pilots GROUP BY scheduler ORDER BY scheduler")
        assert [dict(r) for r in cur.fetchall()] == [
            {"scheduler": "t1@site-a", "n": 2 * ACTIVATED}, {"scheduler": "t1@site-b", "n": 2 * ACTIVATED}
        ], "each deployment submitted its half of each queue's pilots"
