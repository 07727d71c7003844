"""Kill requests and pilot events: the rows they write, and the pilot's own event reporter end to end."""

from __future__ import annotations

import pytest

from autopilot_ops.pilot.events import EventReporter
from autopilot_ops.store.controls import pending_kill_requests
from autopilot_ops.store.events import record_event


@pytest.fixture
def pilots(seed):
    seed.queue("Q_A", ["alpha"])
    seed.queue("Q_B", ["alpha"])
    return {
        "running": seed.pilot("Q_A", "1-0", "running"),
        "queued": seed.pilot("Q_A", "1-1", "queued"),
        "finished": seed.pilot("Q_A", "1-2", "finished"),
        "other": seed.pilot("Q_B", "2-0", "running"),
    }


def test_kill_pilots_marks_the_queues_live_pilots_and_audits_the_request(client, pilots, bearer, seed, store):
    reply = client.post("/api/queues/Q_A/kill-pilots", json={"reason": "bad node"}, headers=bearer("op"))
    assert reply.status_code == 202
    assert reply.json() == {"queue": "Q_A", "requested": 2, "pilot_ids": [pilots["running"], pilots["queued"]]}

    request = seed.events("kill-pilots")
    assert len(request) == 1
    assert (request[0]["who"], request[0]["queue"], request[0]["details"]["reason"]) == (
        "token:panda-server", "Q_A", "bad node")
    marked = seed.events("kill-requested")
    assert [(m["pilot_id"], m["details"]["batch_id"], m["details"]["request"]) for m in marked] == [
        (pilots["running"], "1-0", request[0]["id"]), (pilots["queued"], "1-1", request[0]["id"])]

    with store.transaction() as cur:
        pending = pending_kill_requests(cur, "local-1")
        assert [(p["pilot_id"], p["reason"]) for p in pending] == [
            (pilots["running"], "bad node"), (pilots["queued"], "bad node")]
        record_event(cur, "scheduler", "kill-done", queue="Q_A", pilot_id=pilots["running"])
        assert [p["pilot_id"] for p in pending_kill_requests(cur)] == [pilots["queued"]]
        cur.execute("UPDATE pilots SET state = 'cancelled' WHERE id = %s", (pilots["queued"],))
        assert pending_kill_requests(cur) == []


def test_kill_pilots_can_be_limited_to_some_states(client, pilots, bearer):
    reply = client.post("/api/queues/Q_A/kill-pilots", json={"states": ["queued"]}, headers=bearer("op"))
    assert reply.json()["pilot_ids"] == [pilots["queued"]]
    bad = client.post("/api/queues/Q_A/kill-pilots", json={"states": ["finished"]}, headers=bearer("op"))
    assert bad.status_code == 422


def test_kill_pilots_without_a_body_and_for_an_unknown_queue(client, pilots, bearer, seed):
    assert client.post("/api/queues/Q_B/kill-pilots", headers=bearer("op")).json()["requested"] == 1
    reply = client.post("/api/queues/NOPE/kill-pilots", headers=bearer("op"))
    assert reply.status_code == 404
    assert len(seed.events("kill-pilots")) == 1


def test_pilot_event_by_batch_id_updates_the_heartbeat(client, pilots, bearer, seed):
    assert seed.row("SELECT last_heartbeat FROM pilots WHERE id = %s", pilots["running"])["last_heartbeat"] is None
    reply = client.post("/api/pilot-events", headers=bearer("pilot"), json={
        "queue": "Q_A", "batch_id": "1-0", "event": "job", "details": {"panda_id": 42}})
    assert reply.status_code == 202 and reply.json() == {"recorded": True, "pilot_id": pilots["running"]}
    stored = seed.events("pilot.job")
    assert len(stored) == 1
    assert (stored[0]["who"], stored[0]["pilot_id"], stored[0]["details"]) == (
        "token:pilots", pilots["running"], {"panda_id": 42, "batch_id": "1-0"})
    assert seed.row("SELECT last_heartbeat FROM pilots WHERE id = %s", pilots["running"])["last_heartbeat"]


def test_pilot_event_by_database_id_and_for_an_unknown_batch_id(client, pilots, bearer, seed):
    ok = client.post("/api/pilot-events", headers=bearer("pilot"),
                     json={"queue": "Q_A", "pilot_id": pilots["queued"], "event": "exiting"})
    assert ok.json()["pilot_id"] == pilots["queued"]
    unknown = client.post("/api/pilot-events", headers=bearer("pilot"),
                          json={"queue": "Q_A", "batch_id": "9-9", "event": "started"})
    assert unknown.status_code == 202 and unknown.json()["pilot_id"] is None
    assert seed.events("pilot.started")[0]["details"] == {"batch_id": "9-9"}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"queue": "Q_B", "batch_id": "1-0", "event": "x"}, 202, ""),  # same batch id, other queue: unknown there
        ({"queue": "Q_B", "pilot_id": "RUNNING", "event": "x"}, 422, "belongs to queue 'Q_A'"),
        ({"queue": "Q_A", "pilot_id": 999999, "event": "x"}, 404, "no pilot with id 999999"),
        ({"queue": "Q_A", "event": "x"}, 422, "give 'pilot_id' or 'batch_id'"),
        ({"queue": "Q_A", "batch_id": "1-0", "event": "kill-requested"}, 202, ""),
        ({"queue": "Q_A", "batch_id": "1-0", "event": "bad name!"}, 422, "event"),
        ({"queue": "Q_A", "batch_id": "1-0", "event": "x", "details": {"blob": "y" * 20000}}, 413, "16384"),
    ],
)
def test_pilot_event_validation(client, pilots, bearer, seed, body, status, fragment):
    if body.get("pilot_id") == "RUNNING":
        body = {**body, "pilot_id": pilots["running"]}
    reply = client.post("/api/pilot-events", headers=bearer("pilot"), json=body)
    assert reply.status_code == status, reply.text
    assert fragment in reply.text
    assert seed.events("kill-requested") == [], "a pilot cannot forge a control-plane event"


def test_the_pilots_event_reporter_posts_to_the_app_over_http(live_url, pilots, seed, bearer):
    """The pilot's own reporter (``autopilot_ops.pilot.events``) against the app on a real server."""
    token = bearer("pilot")["Authorization"].split()[1]
    reporter = EventReporter("1-0", "Q_A", f"{live_url}/api/pilot-events", token)
    reporter.emit("started", node="wn01")
    reporter.emit("job_done", panda_id=7, state="finished")
    reporter.close()
    started, done = seed.events("pilot.started"), seed.events("pilot.job_done")
    assert [e["pilot_id"] for e in started + done] == [pilots["running"]] * 2
    assert started[0]["details"]["node"] == "wn01" and started[0]["who"] == "token:pilots"
    assert (done[0]["details"]["panda_id"], done[0]["details"]["state"]) == (7, "finished")
