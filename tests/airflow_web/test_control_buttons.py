"""The control panels of the pages: ops get buttons whose requests, sent as the page's script sends them, change
the control and show it in force on the next load; viewers and pilots see the state and no button."""

from __future__ import annotations

import datetime as dt
import html
import json
import re

import pytest
import requests

PANEL = re.compile(r'<div class="control" id="control-(?P<scope>\w+)-(?P<target>[^"]+)">(?P<body>.*?)</div>', re.S)
BUTTON = re.compile(r'<button type="button" data-method="(?P<method>\w+)"(?: data-body=\'(?P<body>[^\']*)\')?>'
                    r'(?P<label>[^<]+)</button>')


@pytest.fixture
def queues(seed):
    seed.queue("Q_A", ["alpha"])
    seed.queue("Q_B", ["alpha", "beta"])
    seed.queue("LONE", [], site="SITE_Z")


def panels(page: str) -> dict[str, dict]:
    """``{"tag alpha": {"state", "paused", "url", "buttons": {label: (method, body)}}}`` from a page."""
    found = {}
    for match in PANEL.finditer(page):
        body = match["body"]
        state = re.search(r'<span class="control-state" data-paused="(\w+)" data-draining="(\w+)">([^<]*)</span>', body)
        url = re.search(r'<span class="control-actions" data-url="([^"]+)">', body)
        found[f"{match['scope']} {match['target']}"] = {
            "state": state[3],
            "paused": state[1] == "true",
            "draining": state[2] == "true",
            "url": url[1] if url else None,
            "buttons": {b["label"]: (b["method"], json.loads(html.unescape(b["body"])) if b["body"] else None)
                        for b in BUTTON.finditer(body)},
            "text": body,
        }
    return found


def press(client, headers, panel, label, reason=None):
    """What the page's script does for a button: its method and JSON body (plus the typed reason) to its URL."""
    method, body = panel["buttons"][label]
    if body is not None and reason:
        body = {**body, "reason": reason}
    path = panel["url"].removeprefix("/autopilot")
    return client.request(method, path, headers={**headers, "Content-Type": "application/json"},
                          content=json.dumps(body) if body is not None else None)


def test_an_op_pauses_and_resumes_a_tag_from_the_overview(client, queues, bearer):
    op = bearer("op")
    page = client.get("/", headers=op).text
    found = panels(page)
    assert set(found) == {"tag alpha"}, "one panel per scheduler tag; SITE_Z is a site, not a tag"
    assert "These queues have no tag" in page
    alpha = found["tag alpha"]
    assert (alpha["state"], alpha["url"]) == ("not paused", "/autopilot/api/controls/tag/alpha")
    assert alpha["buttons"] == {"Pause": ("POST", {"paused": True}), "Drain": ("POST", {"drain": True})}
    assert "<script>" in page

    assert press(client, op, alpha, "Pause", reason="storage <down>").status_code == 200
    alpha = panels(client.get("/", headers=op).text)["tag alpha"]
    assert alpha["paused"] and alpha["state"] == "paused"
    assert "control set by token:panda-server" in alpha["text"] and "storage &lt;down&gt;" in alpha["text"]
    assert alpha["buttons"] == {"Resume": ("POST", {"paused": False}), "Drain": ("POST", {"drain": True}),
                                "Clear": ("DELETE", None)}
    queue_page = client.get("/queues/Q_B", headers=op).text
    assert "No pilot is submitted:\ntag alpha paused (storage &lt;down&gt;)." in queue_page
    assert panels(queue_page)["queue Q_B"]["state"] == "not paused", "the queue's own control is another one"

    assert press(client, op, alpha, "Resume").status_code == 200
    alpha = panels(client.get("/", headers=op).text)["tag alpha"]
    assert not alpha["paused"] and alpha["state"] == "not paused"
    assert "storage &lt;down&gt;" in alpha["text"], "resuming keeps the reason unless a new one is typed"

    assert press(client, op, alpha, "Clear").status_code == 200
    assert "Clear" not in panels(client.get("/", headers=op).text)["tag alpha"]["buttons"]


def test_an_op_drains_a_queue_from_its_page(client, queues, bearer, seed):
    op = bearer("op")
    panel = panels(client.get("/queues/Q_A", headers=op).text)["queue Q_A"]
    assert panel["url"] == "/autopilot/api/controls/queue/Q_A"
    assert press(client, op, panel, "Drain", reason="retiring").status_code == 200
    page = client.get("/queues/Q_A", headers=op).text
    panel = panels(page)["queue Q_A"]
    assert (panel["state"], panel["draining"], panel["paused"]) == ("draining", True, False)
    assert set(panel["buttons"]) == {"Pause", "Stop draining", "Clear"}
    assert "No pilot is submitted:\nqueue Q_A draining (retiring)." in page
    assert seed.row("SELECT drain, reason, set_by FROM controls WHERE target = 'Q_A'") == {
        "drain": True, "reason": "retiring", "set_by": "token:panda-server"}


def test_pausing_an_expired_control_starts_a_fresh_one(client, queues, bearer, seed, store):
    with store.transaction() as cur:
        cur.execute("INSERT INTO controls (scope, target, paused, max_per_cycle, expires_at, set_by, reason) "
                    "VALUES ('queue', 'Q_A', true, 2, %s, 'user:old', 'last week')",
                    (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1),))
    op = bearer("op")
    panel = panels(client.get("/queues/Q_A", headers=op).text)["queue Q_A"]
    assert panel["state"] == "not paused" and "; expired " in panel["text"]
    fresh = {"drain": False, "fixed_number": None, "max_per_cycle": None, "expires_at": None, "reason": None}
    assert panel["buttons"]["Pause"] == ("POST", {**fresh, "paused": True})
    assert press(client, op, panel, "Pause").status_code == 200
    assert panels(client.get("/queues/Q_A", headers=op).text)["queue Q_A"]["paused"]
    assert seed.row("SELECT paused, max_per_cycle, expires_at, reason FROM controls WHERE target = 'Q_A'") == {
        "paused": True, "max_per_cycle": None, "expires_at": None, "reason": None}


@pytest.mark.parametrize("role", ["viewer", "pilot"])
def test_viewers_and_pilots_see_the_state_but_no_button(client, queues, bearer, role):
    assert client.post("/api/controls/tag/alpha", headers=bearer("op"),
                       json={"paused": True, "reason": "downtime"}).status_code == 200
    for path, name in (("/", "tag alpha"), ("/queues/Q_A", "queue Q_A")):
        page = client.get(path, headers=bearer(role)).text
        panel = panels(page)[name]
        assert panel["buttons"] == {} and panel["url"] is None
        assert "changing it needs the op or admin role" in panel["text"]
        # no control button, nor the script that sends their requests (the live refresh is every reader's)
        assert "data-method=" not in page and "const button = event.target.closest" not in page
    assert panels(client.get("/", headers=bearer(role)).text)["tag alpha"]["state"] == "paused"


def test_a_refused_change_is_not_applied(client, queues, bearer, seed):
    """The server, not the page, decides: a viewer sending what the op's button sends gets 403."""
    panel = panels(client.get("/", headers=bearer("op")).text)["tag alpha"]
    reply = press(client, bearer("viewer"), panel, "Pause")
    assert reply.status_code == 403 and "has role viewer" in reply.json()["detail"]
    assert seed.row("SELECT count(*) AS n FROM controls")["n"] == 0


@pytest.mark.airflow
def test_in_airflow_the_session_cookie_decides_who_gets_buttons(airflow_server):
    with airflow_server.store.transaction() as cur:
        cur.execute("INSERT INTO backends (name, kind) VALUES ('local-1', 'local') ON CONFLICT DO NOTHING")
        cur.execute("INSERT INTO schedconfig (panda_queue, site, tags, backend) VALUES ('BTN_Q', 'BTN_SITE', "
                    "'{buttons}', 'local-1') ON CONFLICT DO NOTHING")
    url = f"{airflow_server.url}/autopilot"
    for user, expected in (("alice", {"Pause", "Drain"}), ("olga", {"Pause", "Drain"}), ("vic", set())):
        page = requests.get(f"{url}/?tag=buttons", cookies={"_token": airflow_server.token(user)}, timeout=30)
        assert page.status_code == 200
        assert set(panels(page.text)["tag buttons"]["buttons"]) == expected, user
