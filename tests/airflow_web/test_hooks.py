"""The PanDA hook against the PanDA dev server and a replaying server; the back-end and store hooks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg2.extensions
import pytest

from autopilot_ops.airflow.hooks.htcondor import CondorHook
from autopilot_ops.airflow.hooks.panda import PandaHook
from autopilot_ops.airflow.hooks.slurm import SlurmHook
from autopilot_ops.airflow.hooks.store import AutopilotStoreHook
from autopilot_ops.backends.slurm import SlurmBackend
from autopilot_ops.panda.devserver.jobspec import build_job_spec, dump_jobs_json
from autopilot_ops.panda.errors import (
    PandaCommunicationError,
    PandaError,
    PandaHTTPError,
    PandaRefused,
    PandaReplyError,
)

REPLIES = json.loads((Path(__file__).resolve().parents[1] / "data" / "panda-server-1.0.4" / "replies.json").read_text())


def connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_statistics_submit_and_kill_against_the_dev_server(devserver):
    hook = PandaHook("panda_dev")
    assert hook.active_job_stats_by_site() == {}, "no active job anywhere: the server's 'failure' means empty"
    spec = build_job_spec("LOCAL_QUEUE", f"{devserver.url}/hello.sh", "--sleep 0")
    submitted = hook.submit_jobs(dump_jobs_json([spec, spec]))
    ids = [entry[0] for entry in submitted]
    assert [devserver.job(i)["status"] for i in ids] == ["activated", "activated"]
    stats = hook.active_job_stats_by_site()
    assert stats == devserver.stats() and stats["LOCAL_QUEUE"]["activated"] == 2
    assert hook.kill_jobs(ids) == [True, True]
    assert [devserver.job(i)["status"] for i in ids] == ["cancelled", "cancelled"]


def test_a_wrong_token_is_an_http_error_naming_the_endpoint(devserver, monkeypatch):
    connection(monkeypatch, "panda_bad", conn_type="panda", host=devserver.url, password="wrong",
               extra={"origin": "autopilot"})
    with pytest.raises(PandaHTTPError) as caught:
        PandaHook("panda_bad").active_job_stats_by_site()
    assert caught.value.status == 403 and "/api/v1/statistics/active_job_stats_by_site" in str(caught.value)


def test_the_hook_gives_a_pilot_client_on_the_same_connection(devserver):
    client = PandaHook("panda_dev").get_client()
    assert client.url == devserver.url and client.auth.token == devserver.token and client.is_alive()


class Replay:
    """A stdlib HTTP server on loopback answering each path with a recorded (status, body), and keeping
    what it received."""

    def __init__(self):
        self.answers: dict[str, tuple[int, str]] = {}
        self.received: list[dict] = []
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                replay.received.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                        "body": self.rfile.read(length).decode()})
                status, body = replay.answers.get(self.path.split("?")[0], (404, "no such path"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def recorded(self, name: str, path: str) -> None:
        reply = REPLIES[name]
        body = reply["body"] if isinstance(reply["body"], str) else json.dumps(reply["body"])
        self.answers[path] = (reply["http"], body)


@pytest.fixture
def replay(monkeypatch):
    server = Replay()
    connection(monkeypatch, "panda_replay", conn_type="panda", host=server.url, password="tok-123",
               extra={"origin": "atlas", "cert_file": "", "protocol": "v1"})
    yield server
    server.server.shutdown()
    server.server.server_close()


STATS = "/api/v1/statistics/active_job_stats_by_site"


def test_recorded_statistics_reply_and_the_headers_sent(replay):
    replay.recorded("stats_by_site", STATS)
    assert PandaHook("panda_replay").active_job_stats_by_site() == REPLIES["stats_by_site"]["body"]["data"]
    (request,) = replay.received
    assert request["method"] == "GET"
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert (headers["authorization"], headers["origin"], headers["accept"]) == (
        "Bearer tok-123", "atlas", "application/json")
    assert "protocol" not in headers and "cert_file" not in headers, "connection extras are not sent as headers"


def test_recorded_submit_reply_is_returned_and_the_jobs_travel_as_a_json_string(replay):
    replay.recorded("submit", "/api/v1/job/submit")
    jobs = json.dumps([{"jobName": n} for n in "abc"])
    assert PandaHook("panda_replay").submit_jobs(jobs) == REPLIES["submit"]["body"]["data"]
    assert json.loads(replay.received[0]["body"]) == {"jobs": jobs}


@pytest.mark.parametrize(
    ("status", "body", "error", "fragment"),
    [
        (403, REPLIES["unknown_method"]["body"], PandaHTTPError, "is forbidden"),
        (500, "Internal Server Error", PandaCommunicationError, "HTTP 500"),
        (200, "<html>proxy error</html>", PandaReplyError, "field 'envelope'"),
        (200, json.dumps({"success": True, "message": ""}), PandaReplyError, "lacks field data"),
        (200, json.dumps({"success": True, "message": "", "data": [1, 2]}), PandaReplyError, "field 'data'"),
        (200, json.dumps({"success": True, "message": "", "data": {"S": {"running": "x"}}}), PandaReplyError,
         "field 'data.S'"),
        (200, json.dumps({"success": False, "message": "DB down", "data": None}), PandaRefused, "DB down"),
    ],
)
def test_broken_statistics_replies_raise_errors_naming_the_problem(replay, status, body, error, fragment):
    replay.answers[STATS] = (status, body)
    with pytest.raises(error) as caught:
        PandaHook("panda_replay").active_job_stats_by_site()
    assert fragment in str(caught.value) and STATS in str(caught.value)


def test_connection_test_asks_is_alive(replay):
    hook = PandaHook("panda_replay")
    assert hook.test_connection() == (False, "PanDA /api/v1/system/is_alive: HTTP 404: no such path")
    replay.recorded("is_alive", "/api/v1/system/is_alive")
    assert hook.test_connection() == (True, f"PanDA server at {replay.url} is alive")


def test_kill_reply_must_have_one_result_per_id(replay):
    replay.answers["/api/v1/job/kill"] = (200, json.dumps({"success": True, "message": "", "data": [True]}))
    with pytest.raises(PandaReplyError, match="not one result per job id"):
        PandaHook("panda_replay").kill_jobs([1, 2])
    assert json.loads(replay.received[0]["body"]) == {"job_ids": [1, 2]}


def test_submit_refuses_what_is_not_a_json_list(replay):
    for bad in ("not json", "{}", "[]"):
        with pytest.raises(PandaError, match="argument 'jobs'"):
            PandaHook("panda_replay").submit_jobs(bad)
    assert replay.received == []


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"host": "http://127.0.0.1:1", "extra": {"protocol": "legacy"}}, "legacy protocol"),
        ({"host": "http://127.0.0.1:1", "extra": {"protocol": "v2"}}, "field 'protocol'"),
        ({"host": "http://panda.example.org", "password": "secret-token"}, "plain http"),
        ({"host": "ftp://panda.example.org"}, "field 'host'"),
    ],
)
def test_bad_connections_are_refused_before_any_request(monkeypatch, fields, fragment):
    connection(monkeypatch, "panda_bad_conn", conn_type="panda", **fields)
    with pytest.raises(PandaError, match=fragment):
        PandaHook("panda_bad_conn").active_job_stats_by_site()


def test_slurm_hook_builds_the_slurm_back_end(monkeypatch):
    connection(monkeypatch, "slurm_site", conn_type="slurm", host="login.example.org",
               extra={"partition": "pilots", "account": "", "unrelated": "x"})
    hook = SlurmHook("slurm_site")
    assert hook.backend_config() == ("login.example.org", {"partition": "pilots"})
    backend = hook.get_conn()
    assert isinstance(backend, SlurmBackend)
    assert (backend.name, backend.submit_host, backend.parameters) == (
        "slurm_site", "login.example.org", {"partition": "pilots"})


def test_condor_hook_reads_schedd_and_pool_or_collector(monkeypatch):
    connection(monkeypatch, "condor_site", conn_type="htcondor", host="ignored",
               extra={"schedd": "schedd1.example.org", "extra__htcondor__collector": "cm.example.org:9618"})
    assert CondorHook("condor_site").backend_config() == (
        None, {"schedd": "schedd1.example.org", "pool": "cm.example.org:9618"})
    connection(monkeypatch, "condor_pool", conn_type="htcondor", extra={"pool": "pool.example.org", "collector": "x"})
    backend = CondorHook("condor_pool").get_conn()
    assert type(backend).__name__ == "CondorBackend" and backend.parameters == {"pool": "pool.example.org"}


def test_store_hook_on_a_dsn_and_on_a_postgres_connection(store, pg_dsn, monkeypatch):
    with AutopilotStoreHook(dsn=pg_dsn).get_conn().transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM schedconfig")
        assert cur.fetchone()["n"] == 0
    params = psycopg2.extensions.parse_dsn(pg_dsn)
    connection(monkeypatch, "autopilot_db", conn_type="postgres", host=params["host"], port=int(params["port"]),
               login=params["user"], schema=params["dbname"])
    hook = AutopilotStoreHook()
    with hook.get_conn().transaction() as cur:
        cur.execute("SELECT current_database() AS db")
        assert cur.fetchone()["db"] == params["dbname"]
    hook.close()
    with pytest.raises(ValueError, match="postgres_conn_id or a dsn"):
        AutopilotStoreHook(postgres_conn_id=None)
