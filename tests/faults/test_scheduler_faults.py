"""Faults on the scheduler's side (issue 10, faults 2, 3, 7 and 10), against the real parts: PostgreSQL, the
dev PanDA server over HTTP, the PanDA hook, the local back end's real pilot processes, and scheduler
processes. Each test checks that no submission key yields its pilots twice and that the next cycle is normal;
fault 7's pilots are real AutoPilot pilots, and every job they took ends finished on the server (zero jobs lost).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from autopilot_ops.airflow.hooks.panda import MAX_REPLY_BYTES, PandaHook
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.cycle import CycleReport, CycleSettings, SchedulingCycle
from autopilot_ops.scheduler.pilot_sweep import sweep_backend
from autopilot_ops.store.connection import Store
from tests.faults.conftest import assert_no_job_lost
from tests.faults.test_faults import WAIT_SCRIPT, make_cycle, pilot_command, pilots_done, wait_for

STATS_PATH = "/api/v1/statistics/active_job_stats_by_site"
QUEUES = """
backends:
  - {{name: local, kind: local, parameters: {{state_dir: "{state}", kill_grace_s: 1}}}}
defaults: {{backend: local, tags: [t1], queue_limit: 10, max_per_cycle: 2, max_pilots: {max_pilots}, cycle_period: 60}}
queues:
  - {{name: Q1, site: S1}}
  - {{name: Q2, site: S1}}
"""
#: One scheduler process: ``cycles`` cycles of tag t1, each with its own cycle id, its pilots launched as
#: ``launch`` (JSON: ``command`` and ``environment``) says. With ``block``, its back end writes
#: ``<block>.submitted`` once the pilots are started and then waits on the fifo ``<block>`` for ever, so the test
#: can SIGKILL it after the key is written and before the back end's answer is recorded.
SCHEDULER_PROCESS = """
import json
import sys
from pathlib import Path
from autopilot_ops.backends.local import LocalBackend
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.backends.registry import backend_from_row
from autopilot_ops.scheduler.cycle import CycleSettings, SchedulingCycle
from autopilot_ops.store.connection import Store

dsn, panda_url, log_root, name, cycles, block, launch = sys.argv[1:8]
launch = json.loads(launch)

class Blocking(LocalBackend):
    def submit(self, n, spec):
        pilots = super().submit(n, spec)
        Path(block + ".submitted").write_text(" ".join(p.batch_id for p in pilots))
        Path(block).read_text()  # a fifo nobody writes: blocks until the process is killed
        return pilots

def blocking(name, row):
    return Blocking(name, row["parameters"], row["submit_host"])

settings = CycleSettings(tag="t1", scheduler_id=f"t1@{name}", pilot_command=launch["command"],
                         environment=launch["environment"], log_root=Path(log_root), panda_url=panda_url,
                         backend_kinds=("local",))
with Store(dsn) as store:
    factory = blocking if block else backend_from_row
    cycle = SchedulingCycle(store, settings, PandaClient(panda_url).active_job_stats_by_site, backend_factory=factory)
    for i in range(int(cycles)):
        cycle.run(f"{name}-{i}")
"""


def query(store: Store, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
    with store.transaction() as cur:
        cur.execute(sql, args)
        return [dict(row) for row in cur.fetchall()]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def load(store: Store, tmp_path: Path, state: Path) -> Callable[[int], LocalBackend]:
    def load_with(max_pilots: int) -> LocalBackend:
        path = tmp_path / "queues.yaml"
        path.write_text(QUEUES.format(state=state, max_pilots=max_pilots))
        load_queues(store, str(path))
        return LocalBackend("local", {"state_dir": str(state), "kill_grace_s": 1})

    return load_with


@pytest.fixture
def panda(tmp_path: Path) -> Iterator[DevServer]:
    with DevServer(tmp_path / "panda") as server:
        server.submit_jobs("Q1", 20, f"{server.url}/noop.sh", "")
        server.submit_jobs("Q2", 20, f"{server.url}/noop.sh", "")
        yield server


def hook_on(monkeypatch: pytest.MonkeyPatch, url: str, timeout: float = 3.0) -> PandaHook:
    """The scheduler's own statistics source: the PanDA hook on an Airflow connection to ``url``."""
    monkeypatch.setenv("AIRFLOW_CONN_PANDA_FAULT", json.dumps({"conn_type": "panda", "host": url}))
    return PandaHook("panda_fault", timeout=timeout)


def cycle_with(store: Store, tmp_path: Path, panda_url: str, stats: Callable[[], Any]) -> SchedulingCycle:
    settings = CycleSettings(
        tag="t1",
        scheduler_id="t1@faults",
        pilot_command=("sleep", "120"),
        log_root=tmp_path / "logs",
        panda_url=panda_url,
        backend_kinds=("local",),
    )
    return SchedulingCycle(store, settings, stats)


def assert_no_double_submission(store: Store, backend: LocalBackend) -> int:
    """Every key's pilots are recorded once, are the back end's pilots of that key, and are no more than the
    key asked for; the pilots in all match what the cycles say they submitted. Returns the pilot count."""
    pilots = query(store, "SELECT queue, cycle_id, batch_id FROM pilots")
    assert len({p["batch_id"] for p in pilots}) == len(pilots)
    for key in query(store, "SELECT queue, cycle_id, requested, state FROM submissions"):
        of_key = (key["queue"], key["cycle_id"])
        recorded = sorted(p["batch_id"] for p in pilots if (p["queue"], p["cycle_id"]) == of_key)
        made = sorted(p.batch_id for p in backend.find_pilots(key["queue"], key["cycle_id"]) or [])
        assert recorded == made, key
        assert len(made) <= key["requested"], key
    submitted = query(store, "SELECT coalesce(sum(submitted), 0) AS n FROM cycles")[0]["n"]
    reconciled = sum(
        len(backend.find_pilots(k["queue"], k["cycle_id"]) or [])
        for k in query(store, "SELECT queue, cycle_id FROM submissions WHERE state = 'reconciled'")
    )
    assert submitted + reconciled == len(pilots)
    return len(pilots)


def assert_next_cycle_normal(store: Store, cycle: SchedulingCycle, run: str) -> CycleReport:
    report = cycle.run(run)
    assert report.stats_error is None
    rows = {r["queue"]: r for r in query(store, "SELECT * FROM cycles WHERE cycle_id = %s", (run,))}
    assert set(rows) == {"Q1", "Q2"}
    for row in rows.values():
        assert (row["decided"], row["submitted"]) == (2, 2), row["reason"]
    return report


def cancel_all(store: Store, backend: LocalBackend) -> None:
    backend.cancel([p["batch_id"] for p in query(store, "SELECT batch_id FROM pilots")])


class Silent:
    """A socket that accepts connections and never answers (a hung PanDA server, a black-holing proxy)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_panda_unreachable_by_timeout(
    store: Store, load: Callable[[int], LocalBackend], panda: DevServer, tmp_path: Path, monkeypatch
) -> None:
    backend = load(10)
    silent = Silent()
    try:
        hook = hook_on(monkeypatch, silent.url, timeout=2)
        cycle = cycle_with(store, tmp_path, panda.url, hook.active_job_stats_by_site)
        done: list[CycleReport] = []
        runner = threading.Thread(target=lambda: done.append(cycle.run("run-1")), daemon=True)
        runner.start()
        runner.join(60)
        assert not runner.is_alive(), "the cycle did not end while PanDA kept the connection open"
    finally:
        silent.close()
    [report] = done
    assert STATS_PATH in report.stats_error and "Timeout" in report.stats_error
    rows = query(store, "SELECT queue, decided, submitted, reason FROM cycles WHERE cycle_id = 'run-1'")
    assert {r["queue"] for r in rows} == {"Q1", "Q2"}
    for row in rows:
        assert row["reason"][0].startswith(f"PanDA statistics failed: PandaCommunicationError: PanDA {STATS_PATH}")
        assert (row["decided"], row["submitted"]) == (0, 0) and "no PanDA data yet -> 0" in row["reason"]
    assert query(store, "SELECT * FROM submissions") == []
    good = cycle_with(store, tmp_path, panda.url, hook_on(monkeypatch, panda.url).active_job_stats_by_site)
    assert_next_cycle_normal(store, good, "run-2")
    assert assert_no_double_submission(store, backend) == 4
    cancel_all(store, backend)


class Hostile(BaseHTTPRequestHandler):
    """Answers the statistics call with ``server.reply`` = (status, content type, body)."""

    def do_GET(self) -> None:
        status, kind, body = self.server.reply
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


HOSTILE_REPLIES = {
    "not JSON": ((200, "application/json", b"<html>maintenance</html>"), "PandaReplyError", "field 'envelope'"),
    "wrong shape": (
        (200, "application/json", json.dumps({"success": True, "message": "", "data": [1, 2, 3]}).encode()),
        "PandaReplyError",
        "field 'data' is a list, not a dict",
    ),
    "wrong counts": (
        (200, "application/json", json.dumps({"success": True, "message": "", "data": {"Q1": {"n": "x"}}}).encode()),
        "PandaReplyError",
        "field 'data.Q1'",
    ),
    "huge body": (
        (200, "application/json", b"[" + b"1," * (MAX_REPLY_BYTES // 2 + 1) + b"1]"),
        "PandaReplyError",
        f"field 'body' is over {MAX_REPLY_BYTES} bytes",
    ),
    "HTTP 500 HTML": (
        (500, "text/html", b"<html><body><h1>500 Internal Server Error</h1></body></html>"),
        "PandaCommunicationError",
        "HTTP 500: <html><body><h1>500 Internal Server Error",
    ),
}


@pytest.mark.parametrize("kind", list(HOSTILE_REPLIES))
def test_hostile_statistics_reply(
    store: Store, load: Callable[[int], LocalBackend], panda: DevServer, tmp_path: Path, monkeypatch, kind: str
) -> None:
    backend = load(10)
    reply, error, detail = HOSTILE_REPLIES[kind]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.reply = reply
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        report = cycle_with(store, tmp_path, panda.url, hook_on(monkeypatch, url).active_job_stats_by_site).run("run-1")
    finally:
        server.shutdown()
        server.server_close()
    assert report.stats_error.startswith(f"{error}: PanDA {STATS_PATH}: ") and detail in report.stats_error
    rows = query(store, "SELECT queue, decided, submitted, reason FROM cycles WHERE cycle_id = 'run-1'")
    assert {r["queue"] for r in rows} == {"Q1", "Q2"}
    for row in rows:
        assert row["reason"][0] == f"PanDA statistics failed: {report.stats_error}"
        assert (row["decided"], row["submitted"]) == (0, 0)
    assert query(store, "SELECT * FROM submissions") == []
    good = cycle_with(store, tmp_path, panda.url, hook_on(monkeypatch, panda.url).active_job_stats_by_site)
    assert_next_cycle_normal(store, good, "run-2")
    assert assert_no_double_submission(store, backend) == 4
    cancel_all(store, backend)


#: Placeholder pilots: they take no job.
SLEEPING_PILOTS = {"command": ["sleep", "120"], "environment": {}}


def scheduler_process(
    pg_dsn: str,
    panda: DevServer,
    tmp_path: Path,
    name: str,
    cycles: int,
    block: str = "",
    launch: Mapping[str, Any] = SLEEPING_PILOTS,
) -> Any:
    logs = str(tmp_path / "logs")
    argv = [sys.executable, "-c", SCHEDULER_PROCESS, pg_dsn, panda.url, logs, name, str(cycles), block]
    argv.append(json.dumps(launch))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_cycle_process_sigkilled_between_key_and_answer(
    store: Store, load: Callable[[int], LocalBackend], tmp_path: Path, pg_dsn: str
) -> None:
    """Real pilots, each taking one job whose payload waits for the file ``go``: the killed cycle's two Q1 pilots
    (started by the back end before the kill) take and run their jobs, the next cycle reconciles them (no
    double submission) and is normal, and every job handed out (two per queue) ends ``finished``."""
    backend = load(2)  # max_pilots 2: pilots counted twice would show as more than 2
    files, go = tmp_path / "files", tmp_path / "go"
    files.mkdir()
    (files / "wait.sh").write_text(WAIT_SCRIPT)
    command = pilot_command(tmp_path)
    launch = {"command": list(command), "environment": {"AUTOPILOT_PILOT_HOME": str(tmp_path / "pilot-home")}}
    with DevServer(tmp_path / "panda", files_dir=files) as panda:
        jobs = {queue: panda.submit_jobs(queue, 3, f"{panda.url}/wait.sh", str(go)) for queue in ("Q1", "Q2")}

        def statuses(queue: str) -> list[str]:
            return sorted(panda.job(i)["status"] for i in jobs[queue])

        fifo = tmp_path / "block"
        os.mkfifo(fifo)
        proc = scheduler_process(pg_dsn, panda, tmp_path, "killed", 1, block=str(fifo), launch=launch)
        marker = Path(f"{fifo}.submitted")
        try:
            deadline = time.monotonic() + 60
            while not marker.exists():
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the back end was never called"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            keys = query(store, "SELECT queue, cycle_id, state FROM submissions")
            assert keys == [{"queue": "Q1", "cycle_id": "killed-0", "state": "pending"}]
            assert query(store, "SELECT * FROM pilots") == []
            started = marker.read_text().split()
            assert len(started) == 2
            assert sorted(started) == sorted(p.batch_id for p in backend.find_pilots("Q1", "killed-0"))
            # the orphaned pilots run on: each takes a job, whose payload waits
            wait_for(lambda: statuses("Q1") == ["activated", "running", "running"], "the killed cycle's pilots' jobs")

            cycle = make_cycle(store, panda.url, tmp_path, command)
            report = cycle.run("after")
            assert report.stats_error is None
            key = query(store, "SELECT state FROM submissions WHERE cycle_id = 'killed-0'")
            assert key == [{"state": "reconciled"}]
            rows = {r["queue"]: r for r in query(store, "SELECT * FROM cycles WHERE cycle_id = 'after'")}
            assert rows["Q1"]["inputs"]["queued"] + rows["Q1"]["inputs"]["running"] == 2, "counted before deciding"
            assert (rows["Q1"]["decided"], rows["Q1"]["submitted"]) == (0, 0), rows["Q1"]["reason"]
            assert (rows["Q2"]["decided"], rows["Q2"]["submitted"]) == (2, 2), "the next cycle is normal"
            recorded = query(store, "SELECT batch_id FROM pilots WHERE queue = 'Q1'")
            assert sorted(p["batch_id"] for p in recorded) == sorted(started)
            wait_for(lambda: statuses("Q2") == ["activated", "running", "running"], "the next cycle's pilots' jobs")

            go.touch()
            wait_for(lambda: pilots_done(store, backend), "every pilot ends")
            for queue in ("Q1", "Q2"):
                assert_no_job_lost(panda, jobs[queue], acquired=2)
            sweep = sweep_backend(store, backend, "test")
            assert sorted(t.new for t in sweep.transitions) == ["finished"] * 4, sweep
            assert assert_no_double_submission(store, backend) == 4
        finally:
            if proc.poll() is None:
                proc.kill()
            cancel_all(store, backend)


def test_two_scheduler_processes_cycling_one_queue(
    store: Store, load: Callable[[int], LocalBackend], panda: DevServer, tmp_path: Path, pg_dsn: str
) -> None:
    backend = load(4)
    procs = [scheduler_process(pg_dsn, panda, tmp_path, name, 100) for name in ("a", "b")]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    per_queue = query(store, "SELECT queue, count(*) AS n FROM pilots GROUP BY queue ORDER BY queue")
    assert per_queue == [{"queue": "Q1", "n": 4}, {"queue": "Q2", "n": 4}], "max_pilots 4, never passed"
    assert assert_no_double_submission(store, backend) == 8
    decided = query(store, "SELECT coalesce(sum(decided), 0) AS n FROM cycles")[0]["n"]
    assert decided == 8, "every pilot decided was submitted once, and none more was decided"
    rows = query(store, "SELECT scheduler, count(*) AS n FROM cycles GROUP BY scheduler ORDER BY scheduler")
    assert rows == [{"scheduler": "t1@a", "n": 200}, {"scheduler": "t1@b", "n": 200}], "each cycled both queues, always"
    # they competed: a cycle of one started while the other was cycling the same queue (and waited for its lock)
    overlaps = query(
        store,
        "SELECT count(*) AS n FROM cycles a JOIN cycles b ON a.queue = b.queue AND a.scheduler = 't1@a' "
        "AND b.scheduler = 't1@b' AND a.started_at < b.ended_at AND b.started_at < a.ended_at",
    )[0]["n"]
    assert overlaps > 0
    cancel_all(store, backend)
