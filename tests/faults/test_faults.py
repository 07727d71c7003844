"""Faults in the whole flow, without Airflow: the dev PanDA server killed and restarted mid-run, PostgreSQL
restarted mid-cycle, and a pilot killed with SIGKILL. In each case no job stays ``running`` on the server and
the scheduler's next cycle goes on normally."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import pytest

from autopilot_ops.backends.base import PilotSpec, SubmittedPilot
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.backends.registry import BackendFactory, backend_from_row
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.devserver.database import Database
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.store.connection import Store
from autopilot_ops.store.embedded import EmbeddedPostgres
from autopilot_ops.store.schema import apply_schema
from tests.conftest import throwaway_server

AUTOPILOT = str(Path(sys.executable).with_name("autopilot"))
QUEUE = "Q1"
QUEUES = """
backends:
  - {{name: local, kind: local, parameters: {{state_dir: "{state}", kill_grace_s: 1}}}}
defaults: {{backend: local, tags: [t1], queue_limit: 10, max_per_cycle: 2, cycle_period: 60}}
queues:
  - {{name: Q1, site: S1}}
"""
#: The payload: waits (at most 60 s) for the file its argument names, so faults land while it runs.
WAIT_SCRIPT = '#!/bin/sh\ni=0\nwhile [ ! -e "$1" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done\n'
ACTIVE = {"sent", "starting", "running", "holding", "transferring"}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DevServerProcess:
    """``autopilot panda-devserver`` as a subprocess on a fixed port and SQLite file, so it can be killed
    and restarted where it was."""

    def __init__(self, root: Path, heartbeat_timeout: float) -> None:
        self.root = root
        self.db = root / "panda.db"
        self.files = root / "files"
        self.files.mkdir(parents=True)
        (self.files / "wait.sh").write_text(WAIT_SCRIPT)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.heartbeat_timeout = heartbeat_timeout
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [AUTOPILOT, "panda-devserver", "--port", str(self.port), "--db", str(self.db)]
        argv += ["--files", str(self.files), "--heartbeat-timeout", str(self.heartbeat_timeout), "--quiet"]
        with open(self.root / "server.log", "a") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for(self._answers, f"dev server on {self.url}", timeout=20)

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"dev server exited: {(self.root / 'server.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/wait.sh", timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def submit(self, count: int, go: Path) -> list[int]:
        argv = [AUTOPILOT, "panda-devserver", "submit", "--server", self.url, "--queue", QUEUE]
        argv += ["--count", str(count), "--transformation", f"{self.url}/wait.sh", "--job-pars", str(go)]
        done = subprocess.run([*argv, "--json"], capture_output=True, text=True, timeout=30, check=True)
        return [int(reply[0]) for reply in json.loads(done.stdout)]

    def _read(self, read: Callable[[JobStore], Any]) -> Any:
        database = Database(str(self.db))
        try:
            return read(JobStore(database))
        finally:
            database.close()

    def statuses(self) -> dict[int, str]:
        return {job["panda_id"]: job["status"] for job in self._read(lambda store: store.jobs(QUEUE))}

    def job(self, panda_id: int) -> dict[str, Any]:
        return self._read(lambda store: store.job(panda_id))


@pytest.fixture
def devserver_process(tmp_path: Path) -> Iterator[Callable[[float], DevServerProcess]]:
    started: list[DevServerProcess] = []

    def start(heartbeat_timeout: float) -> DevServerProcess:
        server = DevServerProcess(tmp_path / "panda", heartbeat_timeout)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def load_test_queues(store: Store, tmp_path: Path) -> LocalBackend:
    path = tmp_path / "queues.yaml"
    path.write_text(QUEUES.format(state=tmp_path / "state"))
    load_queues(store, str(path))
    return LocalBackend("local", {"state_dir": str(tmp_path / "state")})


def pilot_command(tmp_path: Path) -> tuple[str, ...]:
    """A real pilot taking one job; few, quick retries so a dead server makes it keep its final update."""
    return (
        sys.executable, "-m", "autopilot_ops.pilot", "run", "--queue", "{queue}", "--server", "{panda_url}",
        "--allow-url-prefix", "{panda_url}/", "--max-jobs", "1", "--time-floor", "0", "--heartbeat", "1",
        "--retries", "2", "--backoff", "0.2", "--final-patience", "0", "--workdir", str(tmp_path / "work"),
    )  # fmt: skip


def make_cycle(
    store: Store,
    panda_url: str,
    tmp_path: Path,
    command: tuple[str, ...],
    backend_factory: BackendFactory = backend_from_row,
) -> SchedulingCycle:
    settings = CycleSettings(
        tag="t1",
        scheduler_id="t1@faults",
        pilot_command=command,
        log_root=tmp_path / "logs",
        panda_url=panda_url,
        environment={"AUTOPILOT_PILOT_HOME": str(tmp_path / "pilot-home")},
        backend_kinds=("local",),
    )
    client = PandaClient(panda_url)
    return SchedulingCycle(store, settings, client.active_job_stats_by_site, client, backend_factory)


def query(store: Store, sql: str) -> list[dict[str, Any]]:
    with store.transaction() as cur:
        cur.execute(sql)
        return [dict(row) for row in cur.fetchall()]


def pilots_done(store: Store, backend: LocalBackend) -> bool:
    ids = [row["batch_id"] for row in query(store, "SELECT batch_id FROM pilots")]
    return all(status.state.is_final for status in backend.status(ids).values())


def pilot_pids(state_dir: Path) -> list[int]:
    """PIDs of the local back end's pilots, from its ``pids`` records (``<index> <stat line>``)."""
    lines = [line.split() for path in state_dir.glob("*/pids") for line in path.read_text().splitlines()]
    pids = [int(fields[1]) for fields in lines]
    assert all(pid > 1 for pid in pids), lines  # never signal our own process group or init
    return pids


def test_devserver_killed_and_restarted_while_pilots_run(
    store: Store, devserver_process: Callable[[float], DevServerProcess], tmp_path: Path
) -> None:
    panda = devserver_process(0)  # no lost-heartbeat watcher: the jobs must be ended by the pilots' reports
    backend = load_test_queues(store, tmp_path)
    go = tmp_path / "go"
    first = panda.submit(2, go)
    cycle = make_cycle(store, panda.url, tmp_path, pilot_command(tmp_path))
    assert cycle.run("run-1").submitted == 2
    wait_for(lambda: all(s == "running" for s in panda.statuses().values()), "both jobs running")
    panda.kill()
    go.touch()
    # The pilots finish their payloads, cannot deliver the final updates, hand them over and exit.
    wait_for(lambda: pilots_done(store, backend), "pilots exit while the server is down")
    kept = tmp_path / "logs" / "kept"
    assert len(list(kept.glob("*.json"))) == 2
    assert {panda.statuses()[i] for i in first} == {"running"}  # what the server knew when it died

    panda.start()  # same port, same SQLite file
    [late] = panda.submit(1, go)
    report = cycle.run("run-2")
    assert report.stats_error is None
    assert report.kept is not None and report.kept.delivered == 2  # the cycle sends the handed-over updates
    assert report.submitted >= 1
    sweep = report.sweeps["local"]
    assert sorted(t.new for t in sweep.transitions) == ["failed", "failed"]  # exit 79: updates undelivered
    wait_for(lambda: pilots_done(store, backend), "the run-2 pilot ends")
    statuses = panda.statuses()
    assert {statuses[i] for i in [*first, late]} == {"finished"}, statuses
    assert not list(kept.glob("*.json"))
    rows = query(store, "SELECT cycle_id, queue, submitted FROM cycles ORDER BY cycle_id")
    assert [(r["cycle_id"], r["queue"]) for r in rows] == [("run-1", QUEUE), ("run-2", QUEUE)]
    assert cycle.run("run-3").stats_error is None


class RestartsDatabaseAfterSubmit(LocalBackend):
    """The local back end, with PostgreSQL restarted right after its first submission: the scheduler's
    connection dies between the submission key and the pilots' rows."""

    server: EmbeddedPostgres
    fired = False

    def submit(self, n: int, spec: PilotSpec) -> list[SubmittedPilot]:
        pilots = super().submit(n, spec)
        if not self.fired:
            self.fired = True
            self.server.stop()
            self.server.start()
        return pilots


@pytest.fixture
def restartable_store() -> Iterator[tuple[Store, EmbeddedPostgres]]:
    server = throwaway_server()
    server.start()
    try:
        with Store(server.dsn, connect_timeout=5) as store:
            apply_schema(store)
            yield store, server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


def test_postgres_restarted_mid_cycle(restartable_store: tuple[Store, EmbeddedPostgres], tmp_path: Path) -> None:
    """Fault 4 with real pilots, each taking one of six trivial jobs: PostgreSQL restarted between the key and
    the pilots' rows, and again between two cycles. Every job a pilot acquired ends ``finished`` on the server,
    each key's pilots are recorded once, and the cycles after each restart submit what they decide."""
    store, server = restartable_store
    backend = load_test_queues(store, tmp_path)

    def faulty_backend(name: str, row: Any) -> LocalBackend:
        assert row["kind"] == "local"
        faulty = RestartsDatabaseAfterSubmit(name, row["parameters"], row["submit_host"])
        faulty.server = server
        return faulty

    files = tmp_path / "files"
    files.mkdir()
    (files / "noop.sh").write_text("#!/bin/sh\nexit 0\n")
    with DevServer(tmp_path / "panda", files_dir=files) as panda:  # no lost-heartbeat watcher: pilots end jobs
        jobs = panda.submit_jobs(QUEUE, 6, f"{panda.url}/noop.sh", "")
        cycle = make_cycle(store, panda.url, tmp_path, pilot_command(tmp_path), faulty_backend)
        with pytest.raises(psycopg2.Error):
            cycle.run("run-1")  # the key is written, the pilots run, their rows could not be
        assert query(store, "SELECT cycle_id, state FROM submissions") == [{"cycle_id": "run-1", "state": "pending"}]
        assert query(store, "SELECT count(*) AS n FROM pilots") == [{"n": 0}]

        report = cycle.run("run-2")  # same objects: the store reconnects; run-1's pilots are reconciled
        assert report.stats_error is None
        states = {r["cycle_id"]: r["state"] for r in query(store, "SELECT cycle_id, state FROM submissions")}
        assert states["run-1"] == "reconciled"
        pilots = query(store, "SELECT batch_id, cycle_id FROM pilots")
        batch_ids = [p["batch_id"] for p in pilots]
        assert len(batch_ids) == len(set(batch_ids))
        assert sorted(batch_ids) == sorted(p.batch_id for sub in ("run-1", "run-2") for p in found(backend, sub))
        assert sum(p["cycle_id"] == "run-1" for p in pilots) == 2
        assert sum(p["cycle_id"] == "run-2" for p in pilots) == 2

        cycle.run("run-2")  # a retry of the same cycle submits nothing new
        assert len(query(store, "SELECT batch_id FROM pilots")) == len(batch_ids)
        wait_for(lambda: pilots_done(store, backend), "the run-1 and run-2 pilots end")
        acquired = [i for i in jobs if panda.job(i)["status"] != "activated"]
        assert len(acquired) == 4, "each of the four pilots took one job"
        assert {panda.job(i)["status"] for i in acquired} == {"finished"}, "zero jobs lost to the restart"

        server.stop()  # restarted between two cycles: the store's idle connection is left dead
        server.start()
        # The Store checks a connection idle for a second before reusing it, so the next cycle reconnects.
        time.sleep(1.1)
        report = cycle.run("run-3")
        assert report.stats_error is None
        swept = query(store, "SELECT state FROM pilots WHERE cycle_id IN ('run-1', 'run-2')")
        assert [p["state"] for p in swept] == ["finished"] * 4, "the sweep after the restart sees them end"
        rows = query(store, "SELECT cycle_id, decided, submitted FROM cycles WHERE queue = 'Q1' ORDER BY cycle_id")
        assert [r["cycle_id"] for r in rows] == ["run-2", "run-3"]
        assert rows[-1]["submitted"] == rows[-1]["decided"] == 2, "the next cycle is normal: the 2 jobs left"
        pilots = query(store, "SELECT batch_id FROM pilots")
        assert len({p["batch_id"] for p in pilots}) == len(pilots) == len(batch_ids) + 2
        assert sorted(p["batch_id"] for p in pilots) == sorted(
            p.batch_id for sub in ("run-1", "run-2", "run-3") for p in found(backend, sub)
        )

        wait_for(lambda: pilots_done(store, backend), "the run-3 pilots end")
        assert {panda.job(i)["status"] for i in jobs} == {"finished"}, "every job acquired is final on the server"
        report = cycle.run("run-4")
        assert report.stats_error is None
        assert sorted(t.new for t in report.sweeps["local"].transitions) == ["finished", "finished"]
        assert query(store, "SELECT DISTINCT state FROM pilots") == [{"state": "finished"}]
        assert query(store, "SELECT decided, submitted FROM cycles WHERE cycle_id = 'run-4'") == [
            {"decided": 0, "submitted": 0}
        ], "nothing activated is left"


def found(backend: LocalBackend, cycle_id: str) -> list[Any]:
    return backend.find_pilots(QUEUE, cycle_id) or []


def test_pilot_killed_with_sigkill(
    store: Store, devserver_process: Callable[[float], DevServerProcess], tmp_path: Path
) -> None:
    panda = devserver_process(4)
    backend = load_test_queues(store, tmp_path)
    [job_id] = panda.submit(1, tmp_path / "never")
    cycle = make_cycle(store, panda.url, tmp_path, pilot_command(tmp_path))
    assert cycle.run("run-1").submitted == 1
    wait_for(lambda: panda.statuses()[job_id] == "running", "the job running")
    [pid] = pilot_pids(tmp_path / "state")
    payload = psutil.Process(pid).children(recursive=True)  # its guard kills it with the pilot; else below
    assert payload
    try:
        os.kill(pid, signal.SIGKILL)
        # The lost-heartbeat watcher (jobdispatcher/Watcher.py in panda-server) fails the silent job.
        job = wait_for(lambda: (j := panda.job(job_id))["status"] == "failed" and j, "the job failed", timeout=30)
        assert job["dispatcher_error_code"] == 100
        assert [h["status"] for h in job["history"]][-2:] == ["running", "failed"]
        wait_for(lambda: pilots_done(store, backend), "the back end sees the pilot gone")
        report = cycle.run("run-2")
        assert report.stats_error is None
        [change] = report.sweeps["local"].transitions
        assert change.new == "failed"
        [pilot] = query(store, "SELECT state, exit_code FROM pilots")
        assert pilot["state"] == "failed" and pilot["exit_code"] != 0
        rows = query(store, "SELECT cycle_id FROM cycles ORDER BY cycle_id")
        assert [r["cycle_id"] for r in rows] == ["run-1", "run-2"]
    finally:
        for process in payload:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
