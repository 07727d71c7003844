"""The PanDA client over real loopback HTTP: wire format, retries, 4xx, broken replies, auth headers."""

from __future__ import annotations

import json
import socket
import struct
import threading
from urllib.parse import parse_qs

import pytest

from autopilot_ops.panda.client import PandaAuth, PandaClient, RetryPolicy
from autopilot_ops.panda.devserver.testing import DevServer
from autopilot_ops.panda.errors import (
    PandaCommunicationError,
    PandaError,
    PandaHTTPError,
    PandaRefused,
    PandaReplyError,
)

FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02)
JOB = {"PandaID": 13, "transformation": "http://127.0.0.1/hello.sh", "jobPars": ""}


def ok(data):
    return {"success": True, "message": "", "data": data}


def client(server, **kwargs) -> PandaClient:
    return PandaClient(server.url, retry=FAST, timeout=5, **kwargs)


def test_acquire_sends_typed_json_and_returns_jobs(scripted_server):
    scripted_server.reply(200, ok({"StatusCode": 0, "jobs": [JOB]}))
    jobs = client(scripted_server).acquire_jobs("Q1", prod_source_label="managed", node="n1", memory=2000)
    assert jobs == [JOB]
    request = scripted_server.requests[0]
    assert (request.method, request.path) == ("POST", "/api/v1/pilot/acquire_jobs")
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    body = json.loads(request.body)
    assert body == {"site_name": "Q1", "n_jobs": 1, "prod_source_label": "managed", "node": "n1", "memory": 2000}


def test_no_jobs_is_an_empty_list(scripted_server):
    scripted_server.reply(200, {"success": False, "message": "No jobs in PanDA", "data": None})
    assert client(scripted_server).acquire_jobs("Q1") == []


def test_python_repr_reply_is_understood(scripted_server):
    scripted_server.reply(200, "{'success': True, 'message': '', 'data': {'StatusCode': 0, 'command': 'tobekilled'}}")
    assert client(scripted_server).update_job(13, "running").command == "tobekilled"


def test_5xx_is_retried_then_succeeds(scripted_server):
    scripted_server.reply(503, "busy")
    scripted_server.reply(502, "bad gateway")
    scripted_server.reply(200, ok({"StatusCode": 0, "command": "NULL"}))
    reply = client(scripted_server).update_job(13, "finished", trans_exit_code=0)
    assert reply.command is None
    assert len(scripted_server.requests) == 3
    assert json.loads(scripted_server.requests[-1].body) == {
        "job_id": 13,
        "job_status": "finished",
        "trans_exit_code": 0,
    }


def test_5xx_until_retries_run_out(scripted_server):
    scripted_server.reply(500, "boom")
    with pytest.raises(PandaCommunicationError, match="no answer after 3 tries"):
        client(scripted_server).update_job(13, "running")
    assert len(scripted_server.requests) == 3


def test_4xx_is_not_retried(scripted_server):
    scripted_server.reply(403, "ERROR : method acquire_jobs is forbidden")
    with pytest.raises(PandaHTTPError) as caught:
        client(scripted_server).acquire_jobs("Q1")
    assert caught.value.status == 403 and "forbidden" in str(caught.value)
    assert len(scripted_server.requests) == 1


@pytest.mark.parametrize(
    ("reply", "field"),
    [
        ("<html>proxy error</html>", "envelope"),
        (json.dumps(ok([1, 2])), "data"),
        (json.dumps(ok({"StatusCode": 0, "jobs": "none"})), "data.jobs"),
        (json.dumps(ok({"StatusCode": "zero", "jobs": []})), "StatusCode"),
        (json.dumps({"success": True, "data": {}}), "envelope"),
    ],
)
def test_broken_reply_names_endpoint_and_field(scripted_server, reply, field):
    scripted_server.reply(200, reply)
    with pytest.raises(PandaReplyError) as caught:
        client(scripted_server).acquire_jobs("Q1")
    assert caught.value.field == field
    assert "/api/v1/pilot/acquire_jobs" in str(caught.value) and f"'{field}'" in str(caught.value)


def test_refusal_carries_the_message(scripted_server):
    scripted_server.reply(200, {"success": False, "message": "production or pilot role required", "data": None})
    with pytest.raises(PandaRefused, match="production or pilot role required"):
        client(scripted_server).update_job(13, "running")


def test_closed_port_is_a_communication_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PandaCommunicationError, match="no answer after 3 tries"):
        PandaClient(f"http://127.0.0.1:{port}", retry=FAST, timeout=2).acquire_jobs("Q1")


def test_token_and_origin_headers(scripted_server):
    scripted_server.reply(200, ok({"StatusCode": 0, "command": None}))
    auth = PandaAuth(token="t0ken", origin="atlas.pilot")
    client(scripted_server, auth=auth).update_job(13, "running")
    headers = scripted_server.requests[0].headers
    assert headers["Authorization"] == "Bearer t0ken" and headers["Origin"] == "atlas.pilot"


def test_token_over_plain_http_to_remote_host_is_refused():
    with pytest.raises(PandaError, match="plain http"):
        PandaClient("http://panda.example.org:25080", auth=PandaAuth(token="t"))


def test_get_job_status_repeats_the_key(scripted_server):
    scripted_server.reply(
        200,
        ok(
            [
                {"job_id": 1, "status": "running", "attempt_number": 0},
                {"job_id": 2, "status": "not found", "attempt_number": 0},
            ]
        ),
    )
    statuses = client(scripted_server).get_job_status([1, 2])
    assert [s["status"] for s in statuses] == ["running", "not found"]
    path, _, query = scripted_server.requests[0].path.partition("?")
    assert path == "/api/v1/pilot/get_job_status" and parse_qs(query) == {"job_ids": ["1", "2"]}


def test_active_job_stats_by_site(scripted_server):
    scripted_server.reply(200, ok({"LOCAL_QUEUE": {"activated": 3, "running": 1}}))
    scripted_server.reply(
        200, {"success": False, "message": "Database failure getting the job statistics", "data": None}
    )
    c = client(scripted_server)
    assert c.active_job_stats_by_site() == {"LOCAL_QUEUE": {"activated": 3, "running": 1}}
    assert c.active_job_stats_by_site() == {}
    assert scripted_server.requests[0].method == "GET"


def test_legacy_get_job_and_update(scripted_server):
    scripted_server.reply(200, "StatusCode=0&PandaID=7&transformation=%2Fbin%2Ftrue&jobPars=")
    scripted_server.reply(200, "StatusCode=0&command=NULL")
    scripted_server.reply(200, "StatusCode=20")
    c = client(scripted_server, protocol_name="legacy")
    jobs = c.acquire_jobs("Q1", prod_source_label="managed", memory=100)
    assert jobs[0]["PandaID"] == "7" and jobs[0]["transformation"] == "/bin/true"
    assert c.update_job(7, "finished", job_output_report="{}", trans_exit_code=0).command is None
    assert c.acquire_jobs("Q1") == []
    get, update = scripted_server.requests[0], scripted_server.requests[1]
    assert get.path == "/server/panda/getJob"
    assert parse_qs(get.body.decode()) == {"siteName": ["Q1"], "prodSourceLabel": ["managed"], "mem": ["100"]}
    assert update.path == "/server/panda/updateJob"
    assert parse_qs(update.body.decode()) == {
        "jobId": ["7"],
        "state": ["finished"],
        "xml": ["{}"],
        "transExitCode": ["0"],
    }


def test_against_the_dev_server(tmp_path):
    with DevServer(tmp_path) as server, PandaClient(server.url, retry=FAST) as c:
        first, second = server.submit_jobs("LOCAL_QUEUE", 2, "/bin/true", "")
        assert c.is_alive()
        assert c.active_job_stats_by_site()["LOCAL_QUEUE"]["activated"] == 2
        job = c.acquire_jobs("LOCAL_QUEUE", prod_source_label="managed", node="n1")[0]
        assert job["PandaID"] in (first, second)
        assert c.update_job(job["PandaID"], "running", node="n1").command is None
        server.kill([job["PandaID"]])
        assert c.update_job(job["PandaID"], "running").command == "tobekilled"
        statuses = {s["job_id"]: s["status"] for s in c.get_job_status([first, second, 987654])}
        assert statuses[job["PandaID"]] == "running" and statuses[987654] == "not found"
        with pytest.raises(PandaRefused, match=r"Type error: 'trans_exit_code' must be of type int"):
            c.update_job(job["PandaID"], "finished", trans_exit_code="zero")


def test_server_side_timeout_is_a_communication_failure(scripted_server):
    scripted_server.reply(200, {"success": True, "message": "Timed out", "data": {"StatusCode": 10}})
    with pytest.raises(PandaCommunicationError, match="StatusCode 10"):
        client(scripted_server).update_job(13, "finished")
    scripted_server.replies[:] = []
    scripted_server.reply(200, {"success": True, "message": "", "data": {"StatusCode": 50}})
    with pytest.raises(PandaRefused, match="StatusCode 50"):
        client(scripted_server).update_job(13, "finished")


class SilentServer:
    """Accepts connections and reads each request, then either never answers (``mode`` "silent") or closes
    the connection without a reply ("reset"); counts the requests that arrived."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.recv(65536)
            self.requests += 1
            if self.mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            else:
                self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("mode", ["silent", "reset"])
def test_acquire_is_not_resent_once_the_request_may_have_arrived(mode, caplog):
    server = SilentServer(mode)
    try:
        with caplog.at_level("ERROR"), pytest.raises(PandaCommunicationError, match="acquire_jobs"):
            PandaClient(server.url, retry=FAST, timeout=0.5).acquire_jobs("Q1", node="wn042.example")
    finally:
        server.close()
    assert server.requests == 1  # a lost reply may have carried a job: asking again would orphan it
    if mode == "silent":
        logged = caplog.text
        assert "wn042.example" in logged and "read timeout" in logged and "'site_name': 'Q1'" in logged


def test_update_is_resent_after_a_read_timeout():
    server = SilentServer("silent")
    try:
        with pytest.raises(PandaCommunicationError, match="no answer after 3 tries"):
            PandaClient(server.url, retry=FAST, timeout=0.3).update_job(13, "running")
    finally:
        server.close()
    assert server.requests == 3


def test_unresolvable_name_is_retried_for_acquire():
    with pytest.raises(PandaCommunicationError, match="no answer after 3 tries"):
        PandaClient("http://no-such-host.invalid:25080", retry=FAST, timeout=2).acquire_jobs("Q1")
