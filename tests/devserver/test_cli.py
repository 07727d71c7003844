"""``autopilot panda-devserver`` as a real process: serve, submit, list, SIGTERM; and its argument checks."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autopilot_ops.cli.main import main

AUTOPILOT = str(Path(sys.executable).with_name("autopilot"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_alive(port: int, process: subprocess.Popen, deadline: float = 30.0) -> None:
    limit = time.monotonic() + deadline
    while time.monotonic() < limit:
        if process.poll() is not None:
            raise AssertionError(f"server exited early: {process.stderr.read() if process.stderr else ''}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/api/v1/system/is_alive", headers={"Accept": "application/json"})
            if json.loads(connection.getresponse().read())["success"]:
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not answer is_alive")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([AUTOPILOT, "panda-devserver", *args], capture_output=True, text=True, timeout=60)


def test_serve_submit_list_and_sigterm(tmp_path):
    port = free_port()
    db = tmp_path / "dev.db"
    files = tmp_path / "files"
    files.mkdir()
    (files / "payload.sh").write_text("echo hi\n")
    process = subprocess.Popen(
        [AUTOPILOT, "panda-devserver", "--port", str(port), "--db", str(db), "--files", str(files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_alive(port, process)
        url = f"http://127.0.0.1:{port}"
        submitted = run_cli("submit", "--server", url, "--queue", "CLIQ", "--count", "3",
                            "--transformation", f"{url}/payload.sh", "--job-pars", "--x 1", "--priority", "7",
                            "--json")
        assert submitted.returncode == 0, submitted.stderr
        rows = json.loads(submitted.stdout)
        assert len(rows) == 3 and all(row[1] == 1 for row in rows)
        listed = run_cli("jobs", "--db", str(db), "--json")
        assert listed.returncode == 0, listed.stderr
        jobs = json.loads(listed.stdout)
        assert [(job["panda_id"], job["status"], job["priority"]) for job in jobs] == [
            (row[0], "activated", 7) for row in rows
        ]
        one = run_cli("jobs", "--db", str(db), "--id", str(rows[0][0]))
        detail = json.loads(one.stdout)
        assert (detail["status"], detail["history"][0]["status"]) == ("activated", "activated")
        assert detail["spec"]["transformation"] == f"{url}/payload.sh"
        table = run_cli("jobs", "--db", str(db), "--queue", "CLIQ")
        assert table.stdout.splitlines()[0].split()[:3] == ["PANDA_ID", "SITE", "STATUS"]
        assert len(table.stdout.splitlines()) == 4
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/payload.sh")
        assert connection.getresponse().read() == b"echo hi\n"
        connection.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    lines = stderr.splitlines()
    assert any('"POST /api/v1/job/submit" 200' in line for line in lines)
    assert any('"GET /payload.sh" 200' in line for line in lines)
    assert lines[-1].endswith(f"PanDA dev server on http://127.0.0.1:{port} stopped")


def test_submit_to_a_dead_server_is_a_clean_error(capsys):
    port = free_port()
    code = main(["panda-devserver", "submit", "--server", f"http://127.0.0.1:{port}", "--queue", "Q",
                 "--transformation", "http://x/a.sh"])
    assert code == 2
    assert f"cannot reach http://127.0.0.1:{port}/api/v1/job/submit" in capsys.readouterr().err


def test_jobs_without_a_database_is_a_clean_error(tmp_path, capsys):
    assert main(["panda-devserver", "jobs", "--db", str(tmp_path / "none.db")]) == 2
    assert "no dev server database at" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "--auth open gives everyone the production role; it is refused on 0.0.0.0"),
        (["--auth", "token"], "--auth token needs --token-file FILE or $AUTOPILOT_DEVSERVER_TOKEN"),
        (["--auth", "identities"], "--auth identities needs --identities FILE"),
        (["--heartbeat-timeout", "-1"], "--heartbeat-timeout must be 0 or more, got -1"),
    ],
)
def test_serve_refuses_bad_options(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.delenv("AUTOPILOT_DEVSERVER_TOKEN", raising=False)
    assert main(["panda-devserver", "--port", "0", "--db", str(tmp_path / "d.db"), *args]) == 2
    assert message in capsys.readouterr().err


def test_serve_reports_a_busy_port(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["panda-devserver", "--port", str(port), "--db", str(tmp_path / "d.db")]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_identities_file_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "ids.json"
    bad.write_text(json.dumps({"identities": [{"dn": "/CN=x", "token": ""}]}))
    assert main(["panda-devserver", "--port", "0", "--db", str(tmp_path / "d.db"), "--auth", "identities",
                 "--identities", str(bad)]) == 2
    assert f"{bad}: identities[0]: field 'token'" in capsys.readouterr().err


def test_a_database_from_an_older_dev_server_is_refused(tmp_path, capsys):
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as connection:
        connection.execute("CREATE TABLE panda_jobs (panda_id INTEGER PRIMARY KEY, job_name TEXT)")
    assert main(["panda-devserver", "jobs", "--db", str(old)]) == 2
    assert "table panda_jobs lacks column(s) attempt_nr" in capsys.readouterr().err
    assert main(["panda-devserver", "jobs", "--db", str(tmp_path / "none.db")]) == 2


def test_a_queue_declared_from_the_command_line_is_served_at_once(tmp_path):
    """``queue NAME --harvester ID`` writes the queue's schedconfig into a running server's database: its
    ``add_sweep_command`` then finds the factory, and the ``--ce`` list filters the sweep."""
    port, db = free_port(), tmp_path / "dev.db"
    process = subprocess.Popen(
        [AUTOPILOT, "panda-devserver", "--port", str(port), "--db", str(db), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def sweep() -> dict:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"panda_queue": "SITE_Q", "status_list": ["running"], "ce_list": ["ce1.local:9619", "x"],
                           "submission_host_list": []})
        connection.request("POST", "/api/v1/harvester/add_sweep_command", body=body,
                           headers={"Content-Type": "application/json", "Accept": "application/json"})
        return json.loads(connection.getresponse().read())

    try:
        wait_alive(port, process)
        assert sweep()["success"] is False, "no factory serves the queue yet"
        declared = run_cli("queue", "--db", str(db), "SITE_Q", "--harvester", "site-factory", "--ce", "ce1.local:9619",
                           "--corecount", "8", "--ups")
        assert declared.returncode == 0, declared.stderr
        assert json.loads(declared.stdout) == {
            "harvester": "site-factory", "queues": [{"ce_endpoint": "ce1.local:9619"}], "corecount": 8,
            "capability": "ucore", "workflow": "pull_ups",
        }
        assert sweep()["success"] is True
        kept = run_cli("queue", "--db", str(db), "SITE_Q", "--status", "test")
        assert json.loads(kept.stdout)["harvester"] == "site-factory", "other fields are kept"
        listed = run_cli("queue", "--db", str(db))
        assert listed.stdout.splitlines()[1].split() == ["SITE_Q", "site-factory", "test", "8", "ce1.local:9619", "yes"]
    finally:
        process.terminate()
        process.wait(10)
    with sqlite3.connect(db) as connection:
        (params,) = connection.execute("SELECT params FROM harvester_commands").fetchone()
    assert json.loads(params)["computingElement"] == ["ce1.local:9619"], "the sweep kept the queue's own CEs"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Q9"], "no configuration of queue Q9"),
        (["--harvester", "h"], "give the queue's NAME"),
        (["Q9", "--delete", "--harvester", "h"], "--delete takes no other option"),
        (["Q9", "--corecount", "0"], "--corecount must be at least 1, got 0"),
        (["Q9", "--delete"], "no configuration of queue Q9"),
    ],
)
def test_queue_refuses_what_it_cannot_do_and_names_why(tmp_path, capsys, args, message):
    assert main(["panda-devserver", "queue", "--db", str(tmp_path / "dev.db"), *args]) != 0
    assert message in capsys.readouterr().err
