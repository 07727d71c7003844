"""Whole jobs against the dev server over real HTTP: the pilot is a real subprocess, so is its payload."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import zlib

from autopilot_ops.panda.client import PandaClient
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.panda.factory import FactoryClient
from autopilot_ops.pilot import errorcodes

QUEUE = "LOCAL_QUEUE"


def history(job: dict) -> list[str]:
    return [entry["status"] for entry in job["history"]]


def submit(panda, trf, pars="", **kwargs) -> int:
    return panda.submit_jobs(QUEUE, 1, str(trf), pars, **kwargs)[0]


def test_success_with_inputs_and_outputs(panda, pilot, make_script):
    data = b"event data\n" * 1000
    (pilot.storage / "mc").mkdir(parents=True)
    (pilot.storage / "mc" / "in1.dat").write_bytes(data)
    trf = make_script("reco.sh", 'cat in1.dat > out1.dat; echo "args: $*"; echo "PANDAID=$PANDAID"\n')
    job_id = submit(
        panda,
        trf,
        "--events 10 --name 'a b'",
        out_files=["out1.dat"],
        in_files=[{"lfn": "in1.dat", "scope": "mc", "fsize": len(data), "checksum": f"ad:{zlib.adler32(data):08x}"}],
    )
    result = pilot.run(panda.url, "--keep-workdir")
    assert result.returncode == 0, result.stderr
    job = panda.job(job_id)
    assert job["status"] == "finished"
    assert history(job) == ["activated", "sent", "starting", "running", "holding", "finished"]
    assert (job["trans_exit_code"], job["pilot_error_code"], job["exe_error_code"]) == (0, 0, 0)
    assert job["start_time"] and job["end_time"] and job["node"]
    assert job["pilot_params"]["actualCoreCount"] == 1 and "cpuConsumptionTime" in job["pilot_params"]
    report = json.loads(job["job_output_report"])
    log_lfn = next(f["lfn"] for f in job["files"] if f["type"] == "log")
    assert set(report) == {"out1.dat", log_lfn}
    stored = pilot.storage / "autopilot" / "out1.dat"
    assert stored.read_bytes() == data
    assert report["out1.dat"]["fsize"] == len(data)
    assert report["out1.dat"]["adler32"] == f"{zlib.adler32(data):08x}"
    output = next(f for f in job["files"] if f["lfn"] == "out1.dat")
    assert output["GUID"] == report["out1.dat"]["guid"] and output["status"] == "ready"
    workdir = pilot.root / "work" / f"PanDA_Pilot-{job_id}"
    assert (workdir / "payload.stdout").read_text() == f"args: --events 10 --name a b\nPANDAID={job_id}\n"


def test_payload_failure(panda, pilot, make_script):
    job_id = submit(panda, make_script("fail.sh", "echo oops >&2; exit 3\n"))
    assert pilot.run(panda.url).returncode == 0
    job = panda.job(job_id)
    assert job["status"] == "failed"
    assert (job["trans_exit_code"], job["exe_error_code"]) == (3, 3)
    assert job["pilot_error_code"] == errorcodes.PAYLOADEXECUTIONFAILURE
    assert "exited with code 3" in job["pilot_error_diag"]
    assert json.loads(job["job_output_report"])  # the log tarball is staged out for failed jobs too
    assert history(job)[-3:] == ["running", "holding", "failed"]


def test_wall_time_exceeded(panda, pilot, make_script):
    job_id = submit(panda, make_script("slow.sh", "sleep 60\n"), max_walltime=1)
    assert pilot.run(panda.url, "--kill-grace", "1").returncode == 0
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.REACHEDMAXTIME
    assert "wall time of 1 s" in job["pilot_error_diag"]
    assert job["trans_exit_code"] == 128 + 15


def test_memory_exceeded(panda, pilot, make_script):
    hog = make_script("hog.sh", f"exec {sys.executable} -c 'x = bytearray(300 << 20); import time; time.sleep(60)'\n")
    job_id = submit(panda, hog, extra={"minRamCount": 100})
    assert pilot.run(panda.url, "--memory-poll", "0.1", "--kill-grace", "1").returncode == 0
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.PAYLOADEXCEEDMAXMEM
    assert "limit 100 MB" in job["pilot_error_diag"]
    assert job["pilot_params"]["maxRSS"] > 100 * 1024


def test_killed_by_server_command(panda, pilot, make_script, wait_for):
    started = pilot.root / "started"
    job_id = submit(panda, make_script("long.sh", f"touch {started}; sleep 60\n"))
    process = pilot.start(panda.url, "--heartbeat", "0.2", "--kill-grace", "1")
    wait_for(lambda: started.exists() and panda.job(job_id)["status"] == "running", what="payload running")
    assert panda.kill([job_id]) == [True]
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    job = panda.job(job_id)
    assert job["pilot_error_code"] == errorcodes.PANDAKILL
    assert "tobekilled" in job["pilot_error_diag"]
    assert job["status"] in ("failed", "cancelled", "closed")


def test_missing_input(panda, pilot, make_script):
    job_id = submit(panda, make_script("t.sh", "exit 0\n"), in_files=[{"lfn": "absent.dat", "scope": "mc"}])
    assert pilot.run(panda.url).returncode == 0
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.MISSINGINPUTFILE
    assert "absent.dat" in job["pilot_error_diag"]
    assert "running" not in history(job)


def test_input_with_bad_checksum(panda, pilot, make_script):
    (pilot.storage / "mc").mkdir(parents=True)
    (pilot.storage / "mc" / "in.dat").write_bytes(b"corrupted")
    job_id = submit(
        panda,
        make_script("t.sh", "exit 0\n"),
        in_files=[{"lfn": "in.dat", "scope": "mc", "fsize": 9, "checksum": "ad:12345678"}],
    )
    assert pilot.run(panda.url).returncode == 0
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.GETADMISMATCH
    assert "12345678" in job["pilot_error_diag"]


def test_missing_output(panda, pilot, make_script):
    job_id = submit(panda, make_script("t.sh", "exit 0\n"), out_files=["never.dat"])
    assert pilot.run(panda.url).returncode == 0
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.MISSINGOUTPUTFILE


def test_transformation_url_not_allowed(panda, pilot, tmp_path):
    (tmp_path / "files" / "hello.sh").write_text("#!/bin/sh\necho hi\n")
    job_id = submit(panda, f"{panda.url}/hello.sh")
    assert pilot.run(panda.url, "--allow-url-prefix", "https://trusted.example/").returncode == 0
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.TRFDOWNLOADFAILURE
    assert "not on the queue's allow-list" in job["pilot_error_diag"]


def test_transformation_url_allowed_and_pinned(panda, pilot, tmp_path):
    script = b"#!/bin/sh\necho hi > out.txt\n"
    (tmp_path / "files" / "hello.sh").write_bytes(script)
    url = f"{panda.url}/hello.sh"
    good, bad = submit(panda, url), submit(panda, url)
    pin = f"{url}={hashlib.sha256(script).hexdigest()}"
    assert pilot.run(panda.url, "--allow-url-prefix", f"{panda.url}/", "--trf-sha256", pin, "--once").returncode == 0
    assert (
        pilot.run(
            panda.url, "--allow-url-prefix", f"{panda.url}/", "--trf-sha256", f"{url}={'0' * 64}", "--once"
        ).returncode
        == 0
    )
    assert panda.job(good)["status"] == "finished"
    assert panda.job(bad)["pilot_error_code"] == errorcodes.TRFDOWNLOADFAILURE
    assert "sha256" in panda.job(bad)["pilot_error_diag"]


def test_no_jobs_exit_code(panda, pilot):
    result = pilot.run(panda.url)
    assert result.returncode == errorcodes.EXIT_NOJOBS
    assert "no jobs in PanDA" in result.stderr


def test_several_jobs_within_time_floor(panda, pilot, make_script):
    ids = panda.submit_jobs(QUEUE, 3, str(make_script("ok.sh", "exit 0\n")), "")
    result = pilot.run(panda.url, "--time-floor", "600", "--max-jobs", "2")
    assert result.returncode == 0
    finished = [panda.job(i)["status"] for i in ids]
    assert finished.count("finished") == 2 and finished.count("activated") == 1
    assert pilot.run(panda.url, "--once").returncode == 0
    assert [panda.job(i)["status"] for i in ids] == ["finished"] * 3


def test_legacy_protocol(tmp_path, pilot, make_script):
    with DevServer(tmp_path / "legacy-server", legacy=True) as server:
        job_id = server.submit_jobs(QUEUE, 1, str(make_script("t.sh", "echo x > o.dat\n")), "", out_files=["o.dat"])[0]
        result = pilot.run(server.url, "--protocol", "legacy")
        assert result.returncode == 0, result.stderr
        job = server.job(job_id)
        assert job["status"] == "finished"
        assert history(job)[-4:] == ["starting", "running", "holding", "finished"]
        assert "o.dat" in json.loads(job["job_output_report"])
        assert pilot.run(server.url, "--protocol", "legacy").returncode == errorcodes.EXIT_NOJOBS


def test_not_enough_local_disk(panda, pilot, make_script):
    job_id = submit(panda, make_script("t.sh", "exit 0\n"), extra={"maxDiskCount": 10**12})
    assert pilot.run(panda.url).returncode == 0
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.NOLOCALSPACE
    assert "the job needs 1000000000000 MB" in job["pilot_error_diag"]


def test_a_pilot_of_a_factory_links_its_job_to_its_worker(panda, pilot, make_script, monkeypatch):
    # what AutoPilot's back ends and cycle give a pilot: its factory, the submission's first id, its index
    monkeypatch.setenv("HARVESTER_ID", "autopilot-test")
    monkeypatch.setenv("AUTOPILOT_FIRST_PILOT_ID", "40")
    monkeypatch.setenv("AUTOPILOT_PILOT_INDEX", "2")
    factory = FactoryClient(PandaClient(panda.url), "autopilot-test")
    factory.heartbeat(dt.datetime.now(dt.timezone.utc), "test", "test")  # PanDA relates jobs of known factories
    job_id = submit(panda, make_script("ok.sh", "exit 0\n"))
    assert pilot.run(panda.url).returncode == 0
    assert panda.job(job_id)["status"] == "finished"
    assert panda.worker("autopilot-test", 42)["pandaIDs"] == [job_id]
