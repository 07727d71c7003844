"""The overview and queue pages render what the store holds, escaped, with links to the pilots' logs."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from fastapi.testclient import TestClient

from autopilot_ops.airflow.webapp.app import create_app
from autopilot_ops.airflow.webapp.settings import WebSettings


@pytest.fixture
def data(seed, log_root):
    seed.queue("Q_A", ["alpha"])
    seed.queue("Q_B", ["alpha"])
    seed.queue("UNTAGGED", [], site="SITE_Z")
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    for i in range(4):
        seed.cycle("Q_A", f"c{i}", start + dt.timedelta(minutes=10 * i),
                   {"queued": i, "running": 2 * i, "activated": 10 + i}, decided=i,
                   reason=[f"activated={10 + i}", f"submit {i}"])
    seed.cycle("Q_B", "c9", start, {"queued": 0}, decided=0, reason=["status <b>odd</b> -> 0", "submit 0"])
    (log_root / "Q_A").mkdir()
    (log_root / "Q_A" / "1-0.out").write_text("out")
    seed.pilot("Q_A", "1-0", "running", stdout_path=str(log_root / "Q_A" / "1-0.out"),
               stderr_path="/elsewhere/1-0.err")
    seed.pilot("Q_A", "1-1", "queued")
    seed.pilot("Q_A", "1-2", "finished")


def test_overview_groups_queues_by_scheduler_tag_with_counts_and_last_decision(client, data, bearer):
    reply = client.get("/", headers=bearer("viewer"))
    assert reply.status_code == 200
    page = reply.text
    assert '<h2 id="tag-alpha"><a href="/autopilot/?tag=alpha">alpha</a>' in page
    assert "(DAG autopilot_alpha, 2 queues)" in page
    assert "(DAG autopilot_SITE_Z, 1 queues)" in page, "a queue without tags is scheduled under its site"
    table = page[page.index('<h2 id="tag-alpha">'):]
    row_a = table[table.index('>Q_A</a>'):table.index('>Q_B</a>')]
    cells = re.findall(r'<td class="num">([^<]*)</td>', row_a)
    # submitted, queued, running, held, finished, failed, cancelled, missed, activated, decided / submitted
    assert cells[:9] == ["0", "1", "1", "0", "1", "0", "0", "0", "13"]
    assert "<summary>submit 3</summary>" in row_a
    assert "status &lt;b&gt;odd&lt;/b&gt; -&gt; 0" in page
    assert "<b>odd</b>" not in page
    assert 'href="/autopilot/queues/Q_A"' in page


def test_overview_of_one_tag(client, data, bearer):
    page = client.get("/?tag=SITE_Z", headers=bearer("viewer")).text
    assert ">UNTAGGED</a>" in page and ">Q_A</a>" not in page
    rows = client.get("/api/queues?tag=alpha", headers=bearer("viewer")).json()
    assert [row["queue"] for row in rows] == ["Q_A", "Q_B"]
    assert rows[0]["pilots"] == {"running": 1, "queued": 1, "finished": 1}


def test_queue_page_shows_cycles_chart_pilots_logs_and_controls(client, data, bearer):
    assert client.post("/api/controls/queue/Q_A", headers=bearer("op"),
                       json={"paused": True, "reason": "downtime"}).status_code == 200
    page = client.get("/queues/Q_A", headers=bearer("viewer")).text
    points = re.findall(r'<polyline [^>]*points="([^"]*)"', page)
    assert len(points) == 4 and all(len(p.split()) == 4 for p in points), \
        "queued, running, activated, decided x 4 cycles"
    series = re.findall(r'<polyline class="series-(\w+)" data-series="\w+"', page)
    assert series == ["queued", "running", "activated", "decided"]
    for i in range(4):  # each cycle's mark on the chart links to its row, with its reason
        assert f'<a href="#cycle-c{i}"' in page and f'<tr id="cycle-c{i}">' in page
    assert "<li>submit 3</li>" in page[page.index('<tr id="cycle-c3">'):]
    assert page.count("<li>submit ") == 4
    assert 'href="/autopilot/logs/Q_A/1-0.out">stdout</a>' in page
    assert "stderr</a>" not in page, "a log outside the log root gets no link"
    assert "downtime" in page and "token:panda-server" in page
    assert "control-set" in page, "the audit trail is listed"


def test_unknown_queue_page_is_404(client, data, bearer):
    assert client.get("/queues/NOPE", headers=bearer("viewer")).status_code == 404


def test_queue_summary_api_for_machines(client, data, bearer):
    rows = {row["queue"]: row for row in client.get("/api/queues", headers=bearer("viewer")).json()}
    assert set(rows) == {"Q_A", "Q_B", "UNTAGGED"}
    assert rows["Q_A"]["pilots"] == {"running": 1, "queued": 1, "finished": 1}
    assert (rows["Q_A"]["activated"], rows["Q_A"]["last_decided"], rows["Q_A"]["last_reason"]) == (
        13, 3, ["activated=13", "submit 3"])
    assert rows["UNTAGGED"]["scheduler_tag"] == "SITE_Z" and rows["UNTAGGED"]["last_cycle_at"] is None


def test_a_dead_database_is_a_clear_503(store, api_tokens, bearer, log_root):
    app = create_app(WebSettings(dsn="postgresql://nobody@127.0.0.1:9/none", log_root=log_root,
                                 token_cache_seconds=0))
    with TestClient(app) as client:
        reply = client.get("/api/queues", headers=bearer("viewer"))
    assert reply.status_code == 503
    assert "cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:9/none" in reply.json()["detail"]


def test_identity_is_checked_before_the_database_is_touched(store, api_tokens, log_root):
    app = create_app(WebSettings(dsn="postgresql://nobody@127.0.0.1:9/none", log_root=log_root))
    with TestClient(app) as client:
        assert client.get("/api/queues").status_code == 401
        assert client.post("/api/controls/queue/Q", json={"paused": "not a bool"}).status_code == 401
