"""The lost-heartbeat watcher, static files, and the legacy methods behind their switch."""

from __future__ import annotations

import gzip
import http.client
import json
import time
from urllib.parse import parse_qsl, urlencode

from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.panda.protocol import parse_legacy_pickle, parse_legacy_reply


def test_check_heartbeats_fails_silent_jobs_with_watcher_codes(tmp_path, connect):
    with DevServer(tmp_path) as srv:
        client = connect(srv.url)
        sent, running, fresh = srv.submit_jobs("HB", 3, "http://x/a.sh", "")
        client.acquire("HB", n_jobs=2)
        client.update(running, "running")
        time.sleep(0.3)
        client.acquire("HB")
        assert sorted(srv.check_heartbeats(timeout=0.25)) == [sent, running]
        lost = srv.job(running)
        assert lost["status"] == "failed"
        assert lost["dispatcher_error_code"] == 100  # jobdispatcher/ErrorCode.py: EC_Watcher
        assert lost["dispatcher_error_diag"].startswith("lost heartbeat : ")
        assert lost["end_time"] is not None
        assert srv.job(sent)["dispatcher_error_code"] == 102  # EC_SendError
        assert srv.job(fresh)["status"] == "sent"
        assert client.update(running, "running").json()["data"]["command"] == "tobekilled"


def test_watcher_thread_fails_a_job_on_its_own(tmp_path, connect):
    with DevServer(tmp_path, heartbeat_timeout=0.2) as srv:
        client = connect(srv.url)
        (panda_id,) = srv.submit_jobs("HB", 1, "http://x/a.sh", "")
        client.acquire("HB")
        client.update(panda_id, "running")
        deadline = time.monotonic() + 30
        while srv.job(panda_id)["status"] != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
        record = srv.job(panda_id)
        assert record["status"] == "failed"
        assert [h["status"] for h in record["history"]][-1] == "failed"
        assert record["history"][-1]["reason"].startswith("lost heartbeat")


def test_static_files_are_served_and_confined(srv, client, tmp_path):
    (tmp_path / "secret.txt").write_text("not for you")
    answer = client.send("GET", "/hello.sh")
    assert answer.status == 200 and answer.text == "#!/bin/sh\necho hello\n"
    assert answer.headers["content-length"] == str(len(answer.text))
    head = client.send("HEAD", "/hello.sh")
    assert head.status == 200 and head.text == "" and head.headers["content-length"] == str(len(answer.text))
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/missing.sh", "/"):
        assert client.send("GET", path).status == 404
    assert client.send("POST", "/hello.sh", b"x").status == 405
    assert client.get("/api/v1/system/is_alive").status == 200


def test_legacy_methods_answer_url_encoded(tmp_path, connect):
    with DevServer(tmp_path, legacy=True) as srv:
        client = connect(srv.url)
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        empty = client.send("POST", "/server/panda/getJob", urlencode({"siteName": "LEG"}).encode(), form)
        assert parse_legacy_reply(empty.text) == {"StatusCode": "20"}
        (panda_id,) = srv.submit_jobs("LEG", 1, "http://x/a.sh", "--n 1", log_file=False)
        reply = client.send("POST", "/server/panda/getJob", urlencode({"siteName": "LEG", "node": "wn"}).encode(), form)
        job = parse_legacy_reply(reply.text)
        assert (job["StatusCode"], job["PandaID"], job["jobPars"]) == ("0", str(panda_id), "--n 1")
        update = {"jobId": panda_id, "state": "finished", "transExitCode": 0, "xml": ""}
        done = client.send("POST", "/server/panda/updateJob", urlencode(update).encode(), form)
        assert parse_legacy_reply(done.text) == {"StatusCode": "0", "command": "NULL"}
        status = client.send("GET", f"/server/panda/getStatus?ids={panda_id}+424242")
        assert dict(parse_qsl(status.text)) == {"StatusCode": "0", "status": "finished+notfound", "attemptNr": "0+0"}


def test_legacy_json_mode(tmp_path, connect):
    with DevServer(tmp_path, legacy=True) as srv:
        client = connect(srv.url)
        srv.submit_jobs("LEGJ", 2, "http://x/a.sh", "")
        body = gzip.compress(json.dumps({"siteName": "LEGJ", "nJobs": 2}).encode())
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        answer = client.send("POST", "/server/panda/getJob", body, headers)
        assert answer.headers["content-type"] == "application/json"
        data = answer.json()
        assert data["StatusCode"] == 0 and len(data["jobs"]) == 2


def test_legacy_statistics_pickle_is_plain_data(tmp_path):
    with DevServer(tmp_path, legacy=True) as srv:
        srv.submit_jobs("LEGS", 2, "http://x/a.sh", "")
        connection = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        connection.request("GET", "/server/panda/getJobStatisticsPerSite")
        payload = connection.getresponse().read()
        connection.close()
        assert parse_legacy_pickle(payload) == {"LEGS": {"activated": 2, "assigned": 0, "running": 0}}
