"""Faults: signals, a vanished payload, a malformed job, and the server down at start, during heartbeats
and at the final update (the report must still arrive)."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from contextlib import contextmanager

import psutil
import pytest

from autopilot_ops.panda.devserver.server import PandaDevServer, ServerConfig
from autopilot_ops.pilot import errorcodes

QUEUE = "LOCAL_QUEUE"


def history(job: dict) -> list[str]:
    return [entry["status"] for entry in job["history"]]


def waiting_payload(make_script, root, then=""):
    """A payload that writes its pid, waits for the file ``go``, then runs ``then``; returns (script, pid
    file, go file)."""
    pid_file, go = root / "payload.pid", root / "go"
    script = make_script("wait.sh", f"echo $$ > {pid_file}\nwhile [ ! -f {go} ]; do sleep 0.05; done\n{then}\n")
    return script, pid_file, go


def stop_server(panda) -> int:
    """Stop the dev server of the ``panda`` fixture; returns its port (the database stays)."""
    port = panda.port
    panda.server.stop()
    panda.server = None
    return port


@contextmanager
def restarted(panda, port):
    server = PandaDevServer(ServerConfig(db=panda.workdir / "panda-devserver.db", port=port))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie waiting for init to reap it counts as dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_signal_stops_payload_and_reports(panda, pilot, make_script, wait_for, signum):
    script, pid_file, _ = waiting_payload(make_script, pilot.root.parent)
    job_id = panda.submit_jobs(QUEUE, 1, str(script), "")[0]
    process = pilot.start(panda.url, "--kill-grace", "2")
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), what="payload start")
    payload_pid = int(pid_file.read_text())
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    job = panda.job(job_id)
    assert job["status"] == "failed"
    assert job["pilot_error_code"] == errorcodes.SIGNAL_ERRORS[signum]
    assert signal.Signals(signum).name in job["pilot_error_diag"]
    assert history(job)[-3:] == ["running", "holding", "failed"]
    assert not alive(payload_pid)


def test_vanished_payload_is_reported(panda, pilot, make_script):
    job_id = panda.submit_jobs(QUEUE, 1, str(make_script("die.sh", "kill -9 $$\n")), "")[0]
    assert pilot.run(panda.url).returncode == 0
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.KILLSIGNAL
    assert "SIGKILL" in job["pilot_error_diag"] and job["trans_exit_code"] == 137


def test_malformed_job_is_reported_failed(scripted_server, pilot):
    scripted_server.reply(
        200,
        {
            "success": True,
            "message": "",
            "data": {
                "StatusCode": 0,
                "jobs": [{"PandaID": 77, "transformation": "/bin/true", "inFiles": "a.dat,b.dat", "fsize": "1"}],
            },
        },
    )
    scripted_server.reply(200, {"success": True, "message": "", "data": {"StatusCode": 0, "command": "NULL"}})
    result = pilot.run(scripted_server.url, "--once")
    assert result.returncode == 0, result.stderr
    assert "field 'fsize' has 1 entries, expected 2" in result.stderr
    update = scripted_server.requests[-1]
    assert update.path == "/api/v1/pilot/update_job"
    body = json.loads(update.body)
    assert (body["job_id"], body["job_status"], body["pilot_error_code"]) == (
        77,
        "failed",
        errorcodes.CONVERSIONFAILURE,
    )
    assert "'fsize'" in body["pilot_error_diag"]


def test_server_down_at_start(pilot):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = pilot.run(f"http://127.0.0.1:{port}")
    assert result.returncode == errorcodes.EXIT_COMMUNICATIONFAILURE
    assert "cannot get a job" in result.stderr and "no answer after 2 tries" in result.stderr


def test_server_down_during_heartbeats(panda, pilot, make_script, wait_for):
    script, _pid_file, go = waiting_payload(make_script, pilot.root.parent)
    job_id = panda.submit_jobs(QUEUE, 1, str(script), "")[0]
    process = pilot.start(panda.url, "--heartbeat", "0.1")
    lines: list[str] = []

    def read_log() -> None:
        for line in process.stderr:
            lines.append(line)

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    wait_for(lambda: panda.job(job_id)["status"] == "running", what="the job running on the server")
    port = stop_server(panda)
    wait_for(lambda: any("not delivered" in line for line in lines), what="a heartbeat on the dead server")
    with restarted(panda, port) as server:
        go.touch()
        process.wait(timeout=60)
        reader.join(timeout=10)
        assert process.returncode == 0, "".join(lines)
        job = server.store.job(job_id)
        assert job["status"] == "finished"
        assert history(job)[-3:] == ["running", "holding", "finished"]


@pytest.mark.parametrize("delivery", ["resend-command", "next-pilot"])
def test_server_down_at_final_update(panda, pilot, make_script, wait_for, delivery):
    script, _pid_file, go = waiting_payload(make_script, pilot.root.parent, then="echo result > out.dat")
    job_id = panda.submit_jobs(QUEUE, 1, str(script), "", out_files=["out.dat"])[0]
    process = pilot.start(panda.url, "--final-patience", "0")
    wait_for(lambda: panda.job(job_id)["status"] == "running", what="the job running on the server")
    port = stop_server(panda)
    go.touch()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == errorcodes.EXIT_COMMUNICATIONFAILURE, stderr
    kept = pilot.home / "outbox" / f"{job_id}.json"
    assert json.loads(kept.read_text())["job_status"] == "finished"
    with restarted(panda, port) as server:
        assert server.store.job(job_id)["status"] == "running"
        if delivery == "resend-command":
            result = pilot.run(None, subcommand="resend")
            assert result.returncode == 0 and "delivered 1" in result.stdout, result.stderr
        else:
            assert pilot.run(server.url).returncode == errorcodes.EXIT_NOJOBS
        job = server.store.job(job_id)
        assert job["status"] == "finished"
        assert "out.dat" in json.loads(job["job_output_report"])
        assert history(job)[-3:] == ["running", "holding", "finished"]
        assert not kept.exists()


def test_signal_cuts_short_the_retries_of_a_dead_server(pilot, wait_for):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = pilot.start(f"http://127.0.0.1:{port}", "--retries", "50", "--backoff", "30")
    lines: list[str] = []

    def read_log() -> None:
        for line in process.stderr:
            lines.append(line)

    threading.Thread(target=read_log, daemon=True).start()
    wait_for(lambda: any("try 2/50" in line for line in lines), what="the first retry")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM  # not 50 tries of up to 30 s each


def test_final_update_waits_out_a_server_outage(panda, pilot, make_script, wait_for):
    """The server is down when the payload ends: the pilot keeps trying (with patience), takes no new job
    meanwhile, and the final update arrives once the server is back, with no one's help."""
    script, _pid_file, go = waiting_payload(make_script, pilot.root.parent)
    job_id = panda.submit_jobs(QUEUE, 1, str(script), "")[0]
    process = pilot.start(panda.url, "--final-patience", "300")
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    wait_for(lambda: panda.job(job_id)["status"] == "running", what="the job running on the server")
    port = stop_server(panda)
    go.touch()
    wait_for(lambda: any("trying again" in line for line in lines), timeout=60, what="a final-update retry")
    with restarted(panda, port) as server:
        assert process.wait(timeout=120) == 0, "".join(lines)
        reader.join(timeout=10)
        job = server.store.job(job_id)
        assert job["status"] == "finished"
        assert history(job)[-2:] == ["holding", "finished"]
    log_text = "".join(lines)
    assert "cannot get a job" not in log_text and log_text.count("job_done") <= 1
    assert not list((pilot.home / "outbox").glob("*.json"))


def test_final_update_gives_up_before_the_slot_ends(panda, pilot, make_script, wait_for):
    script, _pid_file, go = waiting_payload(make_script, pilot.root.parent)
    job_id = panda.submit_jobs(QUEUE, 1, str(script), "")[0]
    slot_end = time.time() + 61  # the margin leaves no time for retries
    process = pilot.start(panda.url, "--final-patience", "3600", "--slot-end", str(slot_end))
    wait_for(lambda: panda.job(job_id)["status"] == "running", what="the job running on the server")
    stop_server(panda)
    go.touch()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == errorcodes.EXIT_COMMUNICATIONFAILURE, stderr
    assert (pilot.home / "outbox" / f"{job_id}.json").exists()
