"""``autopilot pilot``: show-job, dry runs, replayed job files, interactive output, monitor events, auth."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from autopilot_ops.cli.main import main
from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.pilot import errorcodes
from tests.pilot.conftest import pilot_env

QUEUE = "LOCAL_QUEUE"


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def write_job(path, **fields):
    job = {"PandaID": 4242, "transformation": "/bin/true", "jobPars": "", "outFiles": "", "logFile": "NULL", **fields}
    path.write_text(json.dumps(job))
    return path


def test_show_job(tmp_path, capsys):
    job_file = write_job(tmp_path / "job.json", inFiles="a.dat,b.dat", GUID="g1,g2", scopeIn="s,s", jobPars="--n 5")
    assert main(["pilot", "show-job", str(job_file)]) == 0
    out = capsys.readouterr().out
    assert "PandaID        4242" in out and "--n 5" in out and "b.dat" in out and '"guid": "g2"' in out
    assert main(["pilot", "show-job", "--json", str(job_file)]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["panda_id"] == 4242 and [f["guid"] for f in parsed["input_files"]] == ["g1", "g2"]


def test_show_job_reads_an_acquire_reply(tmp_path, capsys):
    reply = {
        "success": True,
        "message": "",
        "data": {
            "StatusCode": 0,
            "jobs": [{"PandaID": 1, "transformation": "/bin/true"}, {"PandaID": 2, "transformation": "/bin/false"}],
        },
    }
    (tmp_path / "reply.json").write_text(json.dumps(reply))
    assert main(["pilot", "show-job", str(tmp_path / "reply.json")]) == 0
    out = capsys.readouterr().out
    assert "PandaID        1" in out and "/bin/false" in out


def test_show_job_malformed(tmp_path, capsys):
    job_file = write_job(tmp_path / "job.json", inFiles="a.dat,b.dat", GUID="g1")
    assert main(["pilot", "show-job", str(job_file)]) == 2
    assert "field 'GUID' has 1 entries, expected 2" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["pilot", "show-job", str(tmp_path / "bad.json")]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_dry_run_contacts_no_server(tmp_path, pilot, make_script):
    trf = make_script("t.sh", 'echo "dry payload $*"\n')
    job_file = write_job(tmp_path / "job.json", transformation=str(trf), jobPars="--x 1")
    result = pilot.run(closed_port_url(), "--dry-run", "--job-file", str(job_file), "--keep-workdir")
    assert result.returncode == 0, result.stderr
    assert "dry run: job 4242 would end finished" in result.stderr
    assert (pilot.root / "work" / "PanDA_Pilot-4242" / "payload.stdout").read_text() == "dry payload --x 1\n"
    result = pilot.run(closed_port_url(), "--dry-run")
    assert result.returncode == 0 and "would POST" in result.stdout and '"site_name": "LOCAL_QUEUE"' in result.stdout


def test_job_file_replay_reports_to_server(tmp_path, pilot, make_script):
    with DevServer(tmp_path / "srv") as server:
        job_id = server.submit_jobs(QUEUE, 1, "/bin/false", "")[0]
        with PandaClient(server.url) as client:
            saved = client.acquire_jobs(QUEUE)[0]
        saved["transformation"] = str(make_script("fixed.sh", "exit 0\n"))  # the fix being tried out
        (tmp_path / "job.json").write_text(json.dumps(saved))
        result = pilot.run(server.url, "--job-file", str(tmp_path / "job.json"), "--keep-workdir")
        assert result.returncode == 0, result.stderr
        assert server.job(job_id)["status"] == "finished"
        assert (pilot.root / "work" / f"PanDA_Pilot-{job_id}" / "job.json").exists()


def test_interactive_streams_output_and_status(tmp_path, pilot, make_script):
    trf = make_script("t.sh", 'echo "line one"; echo "line two" >&2\n')
    job_file = write_job(tmp_path / "job.json", transformation=str(trf))
    result = pilot.run(None, "--dry-run", "--interactive", "--job-file", str(job_file))
    assert result.returncode == 0
    assert "line one" in result.stdout and "line two" in result.stderr
    for phase in ("stage-in", "running", "finished"):
        assert f"[autopilot] job 4242 | {phase}" in result.stderr


def test_monitor_events_are_posted(tmp_path, pilot, scripted_server):
    token_file = tmp_path / "monitor.token"
    token_file.write_text("mon-secret\n")
    job_file = write_job(tmp_path / "job.json")
    scripted_server.reply(200, "{}")
    result = pilot.run(
        None,
        "--dry-run",
        "--job-file",
        str(job_file),
        "--monitor-url",
        f"{scripted_server.url}/api/events",
        "--monitor-token-file",
        str(token_file),
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(r.body) for r in scripted_server.requests]
    assert [e["event"] for e in events] == ["started", "job", "job_done", "exiting"]
    assert events[1]["job_id"] == 4242 and events[2]["state"] == "finished" and events[3]["exit_code"] == 0
    assert all(r.headers["Authorization"] == "Bearer mon-secret" for r in scripted_server.requests)
    assert {e["queue"] for e in events} == {QUEUE}


def test_events_only_logged_without_monitor(tmp_path, pilot):
    result = pilot.run(None, "--dry-run", "--job-file", str(write_job(tmp_path / "job.json")))
    assert "event job_done job_id=4242 state=finished" in result.stderr
    assert "event exiting exit_code=0" in result.stderr


def test_token_auth(tmp_path, pilot, make_script):
    with DevServer(tmp_path / "srv", auth="token", token="s3cret") as server:
        job_id = server.submit_jobs(QUEUE, 1, str(make_script("t.sh", "exit 0\n")), "")[0]
        (tmp_path / "bad.token").write_text("wrong")
        refused = pilot.run(server.url, "--token-file", str(tmp_path / "bad.token"), "--origin", "autopilot")
        assert refused.returncode == errorcodes.EXIT_COMMUNICATIONFAILURE
        assert server.job(job_id)["status"] == "activated"
        (tmp_path / "good.token").write_text("s3cret\n")
        result = pilot.run(server.url, "--token-file", str(tmp_path / "good.token"), "--origin", "autopilot")
        assert result.returncode == 0, result.stderr
        assert server.job(job_id)["status"] == "finished"


def test_bad_options_are_clean_errors(tmp_path, pilot):
    result = pilot.run(closed_port_url(), "--token-file", str(tmp_path / "absent.token"))
    assert result.returncode == 2 and "cannot read the token file" in result.stderr
    result = pilot.run(closed_port_url(), "--max-jobs", "0")
    assert result.returncode == 2 and "--max-jobs must be at least 1" in result.stderr


def test_pilot_imports_stay_light(tmp_path):
    """What batch jobs run (``python -m autopilot_ops.pilot``) must not pull in Airflow or the database."""
    modules = [
        "autopilot_ops.pilot.__main__",
        "autopilot_ops.pilot.loop",
        "autopilot_ops.pilot.movers.file",
        "autopilot_ops.pilot.movers.http",
        "autopilot_ops.pilot.vo.generic",
    ]
    code = (
        f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
        "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'psycopg2', 'sqlalchemy'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_a_relative_kept_dir_is_made_at_start_where_the_pilot_starts(tmp_path, pilot, panda):
    """HTCondor brings back the kept dir of the job's scratch dir, and holds the job if it is missing."""
    start = tmp_path / "scratch"
    start.mkdir()
    (pilot.root / "work").mkdir(parents=True)
    env = {**pilot_env(), "AUTOPILOT_KEPT_DIR": "autopilot-kept"}
    result = subprocess.run(
        pilot.command("run", panda.url), cwd=start, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == errorcodes.EXIT_NOJOBS, result.stderr
    assert (start / "autopilot-kept").is_dir()
