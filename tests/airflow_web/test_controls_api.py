"""The control API: who may call it, what it stores, and the audit trail it leaves."""

from __future__ import annotations

import datetime as dt

import pytest

from autopilot_ops.policy import Control, JobCount, QueueConfig, Snapshot, decide
from autopilot_ops.store.controls import active_controls

FUTURE = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)).isoformat()


@pytest.fixture
def queues(seed):
    seed.queue("Q_A", ["alpha"])
    seed.queue("Q_B", ["alpha", "beta"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/queues"),
        ("GET", "/api/controls"),
        ("GET", "/api/controls/queue/Q_A"),
        ("POST", "/api/controls/queue/Q_A"),
        ("DELETE", "/api/controls/queue/Q_A"),
        ("POST", "/api/queues/Q_A/kill-pilots"),
        ("POST", "/api/pilot-events"),
        ("GET", "/"),
        ("GET", "/queues/Q_A"),
        ("GET", "/logs/x.log"),
    ],
)
def test_every_route_refuses_a_caller_without_identity(client, queues, method, path):
    reply = client.request(method, path, json={"paused": True})
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"] == "Bearer"


def test_an_unknown_token_or_a_malformed_header_is_refused(client, queues):
    assert client.get("/api/queues", headers={"Authorization": "Bearer not-a-known-token-xxxxxxxx"}).status_code == 401
    assert client.get("/api/queues", headers={"Authorization": "Basic dXNlcjpwdw=="}).status_code == 401
    assert client.post("/api/controls/queue/Q_A", json={"paused": True},
                       headers={"Authorization": "Bearer "}).status_code == 401


def test_viewer_reads_but_cannot_act(client, queues, bearer, seed):
    assert client.get("/api/queues", headers=bearer("viewer")).status_code == 200
    for method, path in (("POST", "/api/controls/queue/Q_A"), ("DELETE", "/api/controls/queue/Q_A"),
                         ("POST", "/api/queues/Q_A/kill-pilots")):
        reply = client.request(method, path, json={"paused": True}, headers=bearer("viewer"))
        assert reply.status_code == 403, (method, path)
        assert "token:dashboard has role viewer" in reply.json()["detail"]
    assert seed.row("SELECT count(*) AS n FROM controls")["n"] == 0
    assert seed.events("control-set") == []


def test_pilot_token_may_post_events_but_not_change_controls(client, queues, bearer):
    assert client.post("/api/controls/tag/alpha", json={"paused": True}, headers=bearer("pilot")).status_code == 403
    reply = client.post("/api/pilot-events", json={"queue": "Q_A", "batch_id": "b-1", "event": "started"},
                        headers=bearer("pilot"))
    assert reply.status_code == 202


def test_a_token_variable_with_a_bad_entry_accepts_nobody(client, queues, bearer, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_AUTOPILOT_API_TOKENS", '{"short": "x"}')
    reply = client.get("/api/queues", headers=bearer("op"))
    assert reply.status_code == 401


def test_set_get_update_and_clear_a_queue_control_with_audit_rows(client, queues, bearer, seed):
    reply = client.post("/api/controls/queue/Q_A", headers=bearer("op"),
                        json={"paused": True, "reason": "site downtime", "expires_at": FUTURE})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["paused"], body["drain"], body["reason"], body["set_by"]) == (
        True, False, "site downtime", "token:panda-server")

    reply = client.post("/api/controls/queue/Q_A", headers=bearer("op"), json={"max_per_cycle": 5})
    assert reply.json()["paused"] is True, "fields left out keep their value"
    assert reply.json()["max_per_cycle"] == 5

    got = client.get("/api/controls/queue/Q_A", headers=bearer("viewer")).json()
    assert (got["paused"], got["max_per_cycle"], got["reason"]) == (True, 5, "site downtime")
    assert dt.datetime.fromisoformat(got["expires_at"]) == dt.datetime.fromisoformat(FUTURE)

    audit = seed.events("control-set")
    assert [a["who"] for a in audit] == ["token:panda-server"] * 2
    assert audit[0]["queue"] == "Q_A" and audit[0]["details"]["old"] is None
    assert audit[1]["details"]["old"]["max_per_cycle"] is None
    assert audit[1]["details"]["new"]["max_per_cycle"] == 5
    assert audit[1]["details"]["changed"] == ["max_per_cycle"]

    assert client.delete("/api/controls/queue/Q_A", headers=bearer("op")).json()["cleared"] is True
    assert client.get("/api/controls/queue/Q_A", headers=bearer("op")).status_code == 404
    assert client.delete("/api/controls/queue/Q_A", headers=bearer("op")).status_code == 404
    cleared = seed.events("control-cleared")
    assert len(cleared) == 1 and cleared[0]["details"]["old"]["paused"] is True


def test_tag_control_is_listed_and_audited_without_a_queue(client, queues, bearer, seed):
    assert client.post("/api/controls/tag/alpha", headers=bearer("op"), json={"drain": True}).status_code == 200
    listed = client.get("/api/controls", headers=bearer("viewer")).json()
    assert [(c["scope"], c["target"], c["drain"]) for c in listed] == [("tag", "alpha", True)]
    audit = seed.events("control-set")
    assert audit[0]["queue"] is None and audit[0]["details"]["target"] == "alpha"


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/api/controls/queue/NO_SUCH", {"paused": True}, 404, "no queue named 'NO_SUCH'"),
        ("/api/controls/tag/gamma", {"paused": True}, 404, "no tag named 'gamma'"),
        ("/api/controls/site/Q_A", {"paused": True}, 422, "scope"),
        ("/api/controls/queue/Q_A", {}, 422, "no field to change"),
        ("/api/controls/queue/Q_A", {"paused": "yes"}, 422, "paused"),
        ("/api/controls/queue/Q_A", {"paused": None}, 422, "'paused' must be true or false"),
        ("/api/controls/queue/Q_A", {"fixed_number": -1}, 422, "fixed_number"),
        ("/api/controls/queue/Q_A", {"max_per_cycle": 2.5}, 422, "max_per_cycle"),
        ("/api/controls/queue/Q_A", {"pause": True}, 422, "pause"),
        ("/api/controls/queue/Q_A", {"expires_at": "2020-01-01T00:00:00Z"}, 422, "in the past"),
        ("/api/controls/queue/Q_A", {"expires_at": "2099-01-01T00:00:00"}, 422, "expires_at"),
    ],
)
def test_bad_control_requests_are_refused_and_name_the_field(client, queues, bearer, seed, path, body, status,
                                                             fragment):
    reply = client.post(path, json=body, headers=bearer("op"))
    assert reply.status_code == status
    assert fragment in reply.text
    assert seed.events("control-set") == []


def test_active_controls_skip_expired_and_unrelated_ones_and_a_pause_stops_submission(client, queues, bearer,
                                                                                      store):
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    assert client.post("/api/controls/tag/alpha", headers=bearer("op"), json={"max_per_cycle": 3}).status_code == 200
    assert client.post("/api/controls/queue/Q_B", headers=bearer("op"), json={"paused": True}).status_code == 200
    assert client.post("/api/controls/queue/Q_A", headers=bearer("op"),
                       json={"fixed_number": 7, "expires_at": FUTURE}).status_code == 200
    with store.transaction() as cur:  # let Q_A's control expire
        cur.execute("UPDATE controls SET expires_at = %s WHERE target = 'Q_A'", (past,))
        now = dt.datetime.now(dt.timezone.utc)
        for_a = active_controls(cur, "Q_A", ["alpha"], now)
        for_b = active_controls(cur, "Q_B", ["alpha", "beta"], now)
    assert [c.label for c in for_a] == ["tag:alpha"]
    assert [c.label for c in for_b] == ["queue:Q_B", "tag:alpha"]
    assert all(isinstance(c, Control) for c in for_b)

    def decided(controls):
        snapshot = Snapshot(queue=QueueConfig(panda_queue="Q", queue_limit=100),
                            activated=(JobCount("managed", "SCORE", 50),), controls=controls,
                            panda_data_age=10.0, now=now)
        return decide(snapshot).n

    assert decided(for_a) == 3, "the tag's max_per_cycle caps the queue"
    assert decided(for_b) == 0, "the queue's pause stops submission"
