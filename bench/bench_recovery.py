"""Recovery after faults, against the real parts (PostgreSQL, the dev PanDA server, real pilot and scheduler
processes); print JSON with medians.

- ``final_update_after_outage``: the dev PanDA server is killed while a pilot's payload runs, the payload ends during
  the outage, the server comes back after ``BENCH_OUTAGE_S``; the time from the restart until the job is final on
  the server, delivered by the pilot itself (no resend by hand, no other pilot).
- ``panda_timeout``: PanDA accepts connections and never answers; the time the cycle takes under the fault (it
  must end by itself), then the time of the next cycle once PanDA answers again (normal: both queues submit).
- ``postgres_restart``: PostgreSQL (a throwaway embedded server) restarted between cycles; the time from the
  server being back until a normal cycle has completed, cycles retried every 0.2 s.
- ``sigkill_mid_cycle``: a scheduler process SIGKILLed after its submission key is written and before the back end
  answers; the time of the next cycle, which reconciles the pending key before deciding.
- ``kept_update_via_cycle``: as ``final_update_after_outage``, but the pilot gives up at once (``--final-patience
  0``) and hands its update to the kept dir; the time of the cycle that delivers it once the server is back (in
  production the wait for the next cycle, ``cycle_period``, comes on top).
- ``hostile_reply``: the statistics call answered with HTTP 500 and an HTML page; the time of the cycle under the
  fault (its retries included) and of the next, normal one.
- ``pilot_sigkill``: a pilot SIGKILLed while its payload (a shell with a child) runs; the time until the whole
  payload tree is gone (its guard kills it).
- ``disk_full``: a payload filling a 16 MiB tmpfs work dir; the time from the pilot's start until the job is
  final on the server with ``NOLOCALSPACE`` (the pilot's start-up and the acquisition included).
- ``slurmctld_restart`` and ``schedd_restart``: the daemon stopped and started by the repo's scripts; the time from
  its start until a submission through the back end succeeds (tried every 0.2 s), and how long the start script
  itself takes (it returns once the daemon answers). Skipped where the scripts
  cannot run (not root, no Slurm).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from pgschema import fresh_store

from autopilot_ops.airflow.hooks.panda import PandaHook
from autopilot_ops.backends.base import BackendError, PilotSpec
from autopilot_ops.backends.condor import CondorBackend
from autopilot_ops.backends.slurm import SlurmBackend
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.pilot import errorcodes
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.scheduler.kept_updates import deliver_kept_updates
from autopilot_ops.store.connection import Store
from autopilot_ops.store.schema import apply_schema
from tests.conftest import throwaway_server
from tests.faults.test_backend_faults import CONDOR_HOME, CONDOR_SCRIPT, CONDOR_USER, SLURM_SCRIPT, script
from tests.faults.test_faults import DevServerProcess, pilot_command, wait_for
from tests.faults.test_pilot_kill import TREE_SCRIPT, alive
from tests.faults.test_scheduler_faults import QUEUES, SCHEDULER_PROCESS, Silent, cycle_with

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
OUTAGE_S = float(os.environ.get("BENCH_OUTAGE_S", "10"))
DELIVERY_LIMIT_S = 180.0
T = TypeVar("T")


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def load(store: Store, tmp: Path, max_pilots: int = 100) -> None:
    path = tmp / "queues.yaml"
    path.write_text(QUEUES.format(state=tmp / "state", max_pilots=max_pilots))
    load_queues(store, str(path))


def normal(report) -> bool:
    return report.stats_error is None and report.submitted > 0


def cancel_pilots(tmp: Path) -> None:
    """Stop every local pilot the bench started (their supervisors' process groups)."""
    for pidfile in (tmp / "state").glob("*/supervisor.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.killpg(int(pidfile.read_text().split()[0]), signal.SIGKILL)


def in_fresh_dirs(one: Callable[[Path], T]) -> list[T]:
    """``one`` run ``REPEATS`` times, each in a new temporary directory."""
    results = []
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory() as name:
            results.append(one(Path(name)))
    return results


def pilot_argv(tmp: Path, panda_url: str, defaults: tuple[str, ...] = ()) -> list[str]:
    """The fault tests' pilot command for queue Q1, with ``defaults`` (options) left to the pilot's own."""
    argv = [a.replace("{queue}", "Q1").replace("{panda_url}", panda_url) for a in pilot_command(tmp)]
    for option in defaults:
        at = argv.index(option)
        del argv[at : at + 2]
    return argv


def one_outage(tmp: Path) -> float | None:
    """Seconds from the server's restart until the job is final on it; ``None`` if not within the limit."""
    panda = DevServerProcess(tmp / "panda", heartbeat_timeout=0)
    panda.start()
    go = tmp / "go"
    [job_id] = panda.submit(1, go)
    argv = pilot_argv(tmp, panda.url, ("--retries", "--backoff", "--final-patience"))
    env = {**os.environ, "AUTOPILOT_PILOT_HOME": str(tmp / "pilot-home")}
    pilot = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: panda.statuses().get(job_id) == "running", "the job running")
        panda.kill()
        go.touch()
        time.sleep(OUTAGE_S)
        panda.start()
        back = time.monotonic()
        try:
            wait_for(lambda: panda.statuses()[job_id] == "finished", "final", timeout=DELIVERY_LIMIT_S)
        except AssertionError:
            return None
        return time.monotonic() - back
    finally:
        pilot.kill()
        pilot.wait()
        panda.stop()


def final_update_after_outage() -> dict:
    delays = in_fresh_dirs(one_outage)
    delivered = [d for d in delays if d is not None]
    return {
        "outage_s": OUTAGE_S,
        "restart_to_final_median_s": median(delivered) if delivered else None,
        f"undelivered_within_{DELIVERY_LIMIT_S:.0f}s": len(delays) - len(delivered),
    }


def panda_timeout() -> dict:
    under, after = [], []
    for run in range(REPEATS):
        with fresh_store() as store, tempfile.TemporaryDirectory() as name, DevServer(Path(name) / "p") as panda:
            tmp = Path(name)
            load(store, tmp)
            panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
            panda.submit_jobs("Q2", 5, f"{panda.url}/noop.sh", "")
            silent = Silent()
            os.environ["AIRFLOW_CONN_PANDA_BENCH"] = json.dumps({"conn_type": "panda", "host": silent.url})
            hung = cycle_with(store, tmp, panda.url, PandaHook("panda_bench", timeout=3).active_job_stats_by_site)
            start = time.monotonic()
            report = hung.run(f"hung-{run}")
            under.append(time.monotonic() - start)
            silent.close()
            assert report.stats_error is not None and report.submitted == 0
            os.environ["AIRFLOW_CONN_PANDA_BENCH"] = json.dumps({"conn_type": "panda", "host": panda.url})
            good = cycle_with(store, tmp, panda.url, PandaHook("panda_bench", timeout=3).active_job_stats_by_site)
            start = time.monotonic()
            assert normal(good.run(f"good-{run}"))
            after.append(time.monotonic() - start)
            cancel_pilots(tmp)
    return {"hook_timeout_s": 3, "cycle_under_fault_median_s": median(under), "next_cycle_median_s": median(after)}


def postgres_restart() -> dict:
    delays = []
    server = throwaway_server()
    server.start()
    try:
        with Store(server.dsn, connect_timeout=5) as store, tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            apply_schema(store)
            load(store, tmp)
            with DevServer(tmp / "panda") as panda:
                panda.submit_jobs("Q1", 100, f"{panda.url}/noop.sh", "")
                panda.submit_jobs("Q2", 100, f"{panda.url}/noop.sh", "")
                cycle = cycle_with(store, tmp, panda.url, PandaClient(panda.url).active_job_stats_by_site)
                assert normal(cycle.run("before"))
                for run in range(REPEATS):
                    server.stop()
                    server.start()
                    back = time.monotonic()
                    attempt = 0
                    while True:
                        attempt += 1
                        try:
                            if normal(cycle.run(f"after-{run}-{attempt}")):
                                break
                        except Exception:  # the dead connection is found and replaced; try again
                            time.sleep(0.2)
                    delays.append(time.monotonic() - back)
                cancel_pilots(tmp)
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
    return {"back_to_normal_cycle_median_s": median(delays)}


def one_sigkill(store: Store, tmp: Path, panda: DevServer) -> float:
    """Seconds the next cycle takes after a scheduler process was SIGKILLed between its key and the answer."""
    load(store, tmp, max_pilots=2)
    panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
    panda.submit_jobs("Q2", 5, f"{panda.url}/noop.sh", "")
    fifo = tmp / "block"
    os.mkfifo(fifo)
    argv = [sys.executable, "-c", SCHEDULER_PROCESS, store.dsn, panda.url, str(tmp / "logs"), "k", "1", str(fifo)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: Path(f"{fifo}.submitted").exists(), "the back end called")
    proc.kill()
    proc.wait()
    cycle = cycle_with(store, tmp, panda.url, PandaClient(panda.url).active_job_stats_by_site)
    start = time.monotonic()
    report = cycle.run("after")
    elapsed = time.monotonic() - start
    with store.transaction() as cur:
        cur.execute("SELECT state FROM submissions WHERE cycle_id = 'k-0'")
        assert [r["state"] for r in cur.fetchall()] == ["reconciled"]
    assert report.stats_error is None
    return elapsed


def sigkill_mid_cycle() -> dict:
    recovery = []
    for _ in range(REPEATS):
        with fresh_store() as store, tempfile.TemporaryDirectory() as name, DevServer(Path(name) / "p") as panda:
            recovery.append(one_sigkill(store, Path(name), panda))
            cancel_pilots(Path(name))
    return {"recovering_cycle_median_s": median(recovery)}


def one_handover(store: Store, tmp: Path) -> float:
    """Seconds of the delivery, once the server is back, of an update the pilot handed over during the outage."""
    panda = DevServerProcess(tmp / "panda", heartbeat_timeout=0)
    panda.start()
    go = tmp / "go"
    [job_id] = panda.submit(1, go)
    kept = tmp / "logs" / "kept"
    env = {**os.environ, "AUTOPILOT_PILOT_HOME": str(tmp / "pilot-home"), "AUTOPILOT_KEPT_DIR": str(kept)}
    pilot = subprocess.Popen(pilot_argv(tmp, panda.url), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: panda.statuses().get(job_id) == "running", "the job running")
        panda.kill()
        go.touch()
        pilot.wait(timeout=120)
        assert (kept / f"{job_id}.json").exists()
        panda.start()
        start = time.monotonic()
        report = deliver_kept_updates(kept, PandaClient(panda.url), ["Q1"], store, "scheduler:bench")
        elapsed = time.monotonic() - start
        assert report.delivered == 1 and panda.statuses()[job_id] == "finished"
        return elapsed
    finally:
        pilot.kill()
        pilot.wait()
        panda.stop()


def kept_update_via_cycle() -> dict:
    delays = []
    for _ in range(REPEATS):
        with fresh_store() as store, tempfile.TemporaryDirectory() as name:
            delays.append(one_handover(store, Path(name)))
    return {"delivering_cycle_median_s": median(delays)}


class HtmlError(Silent):
    """Answers every request with HTTP 500 and an HTML page, as a broken proxy does."""

    def _accept(self) -> None:
        page = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
        head = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nConnection: close\r\n"
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(head + b"Content-Length: %d\r\n\r\n" % len(page) + page)


def hostile_reply() -> dict:
    under, after = [], []
    for run in range(REPEATS):
        with fresh_store() as store, tempfile.TemporaryDirectory() as name, DevServer(Path(name) / "p") as panda:
            tmp = Path(name)
            load(store, tmp)
            panda.submit_jobs("Q1", 5, f"{panda.url}/noop.sh", "")
            broken = HtmlError()
            start = time.monotonic()
            report = cycle_with(store, tmp, panda.url, PandaClient(broken.url).active_job_stats_by_site).run(f"h-{run}")
            under.append(time.monotonic() - start)
            broken.close()
            assert report.stats_error is not None and "500" in report.stats_error and report.submitted == 0
            start = time.monotonic()
            assert normal(
                cycle_with(store, tmp, panda.url, PandaClient(panda.url).active_job_stats_by_site).run(f"g-{run}")
            )
            after.append(time.monotonic() - start)
            cancel_pilots(tmp)
    return {"cycle_under_fault_median_s": median(under), "next_cycle_median_s": median(after)}


def one_pilot_kill(tmp: Path) -> float:
    panda = DevServerProcess(tmp / "panda", heartbeat_timeout=0)
    panda.start()
    (panda.files / "tree.sh").write_text(TREE_SCRIPT)
    pids = tmp / "payload.pids"
    argv = [str(Path(sys.executable).with_name("autopilot")), "panda-devserver", "submit", "--server", panda.url]
    argv += ["--queue", "Q1", "--transformation", f"{panda.url}/tree.sh", "--job-pars", str(pids)]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    env = {**os.environ, "AUTOPILOT_PILOT_HOME": str(tmp / "pilot-home")}
    pilot = subprocess.Popen(pilot_argv(tmp, panda.url), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, "the payload tree")
        tree = [int(pid) for pid in pids.read_text().split()]
        pilot.kill()
        start = time.monotonic()
        wait_for(lambda: not any(alive(pid) for pid in tree), "the payload tree gone", timeout=30)
        return time.monotonic() - start
    finally:
        pilot.kill()
        pilot.wait()
        panda.stop()


def pilot_sigkill() -> dict:
    delays = in_fresh_dirs(one_pilot_kill)
    return {"payload_tree_gone_median_s": median(delays)}


def one_disk_full(tmp: Path) -> float:
    disk = tmp / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], check=True)
    try:
        with DevServer(tmp / "panda", files_dir=tmp) as panda:
            (tmp / "fill.sh").write_text("#!/bin/sh\ndd if=/dev/zero of=out.dat bs=64k\n")
            (tmp / "fill.sh").chmod(0o755)
            [job_id] = panda.submit_jobs("Q1", 1, str(tmp / "fill.sh"), "", extra={"maxDiskCount": 10})
            argv = [*pilot_argv(tmp, panda.url), "--workdir", str(disk), "--min-free-space", "1"]
            env = {**os.environ, "AUTOPILOT_PILOT_HOME": str(tmp / "pilot-home")}
            start = time.monotonic()
            pilot = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_for(lambda: panda.job(job_id)["status"] == "failed", "the job failed")
            elapsed = time.monotonic() - start
            pilot.wait(timeout=60)
            assert panda.job(job_id)["pilot_error_code"] == errorcodes.NOLOCALSPACE
            return elapsed
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)


def disk_full() -> dict:
    if os.geteuid() != 0:
        return {"skipped": "mounting a tmpfs needs root"}
    delays = in_fresh_dirs(one_disk_full)
    return {"pilot_start_to_final_median_s": median(delays)}


def daemon_restart(restart: tuple[Path, str, str], backend, spec: PilotSpec) -> dict:
    """Stop and start a batch daemon ``REPEATS`` times; seconds from its start until a submission succeeds."""
    path, stop, start_command = restart
    delays, starts = [], []
    for run in range(REPEATS):
        script(path, stop)
        started = time.monotonic()
        script(path, start_command)  # returns once the daemon answers
        back = time.monotonic()
        starts.append(back - started)
        while True:
            try:
                pilots = backend.submit(1, PilotSpec(spec.queue, f"r{run}", "bench", spec.command, spec.log_root))
                break
            except BackendError:
                time.sleep(0.2)
        delays.append(time.monotonic() - back)
        backend.cancel([p.batch_id for p in pilots])
    return {"start_script_median_s": median(starts), "then_to_submission_median_s": median(delays)}


def slurmctld_restart() -> dict:
    if os.geteuid() != 0 or shutil.which("sinfo") is None:
        return {"skipped": "needs root and Slurm (scripts/slurm-local.sh)"}
    script(SLURM_SCRIPT, "start")
    with tempfile.TemporaryDirectory() as name:
        backend = SlurmBackend("slurm-bench", {"log_root": name, "command_timeout_s": 60})
        spec = PilotSpec("SLURM_BENCH", "-", "bench", ["sleep", "300"], Path(name))
        return daemon_restart((SLURM_SCRIPT, "stop-controller", "start-controller"), backend, spec)


def schedd_restart() -> dict:
    if os.geteuid() != 0:
        return {"skipped": "needs root (scripts/condor-local.sh)"}
    script(CONDOR_SCRIPT, "start")
    root = Path(tempfile.mkdtemp(prefix="autopilot-condor-bench-", dir="/tmp"))  # /tmp is shared with the pool
    root.chmod(0o755)
    try:
        params = {
            "config_file": str(CONDOR_HOME / "client.env"),
            "job_owner": CONDOR_USER,
            "submit": {"requirements": "False"},
        }
        spec = PilotSpec("CONDOR_BENCH", "-", "bench", ["/bin/sleep", "300"], root)
        return daemon_restart(
            (CONDOR_SCRIPT, "stop-schedd", "start-schedd"), CondorBackend("condor-bench", params), spec
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    # The servers and Airflow's logging write to stdout; keep it for the JSON alone.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    results: dict[str, dict] = {}
    only = set(sys.argv[1:])  # names of benches to run; all when none is given
    for name, bench in (
        ("panda_timeout", panda_timeout),
        ("postgres_restart", postgres_restart),
        ("sigkill_mid_cycle", sigkill_mid_cycle),
        ("final_update_after_outage", final_update_after_outage),
        ("kept_update_via_cycle", kept_update_via_cycle),
        ("hostile_reply", hostile_reply),
        ("pilot_sigkill", pilot_sigkill),
        ("disk_full", disk_full),
        ("slurmctld_restart", slurmctld_restart),
        ("schedd_restart", schedd_restart),
    ):
        if not only or name in only:
            results[name] = bench()
    print(json.dumps({"bench": "recovery", "repeats": REPEATS, **results}, indent=2), file=out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
