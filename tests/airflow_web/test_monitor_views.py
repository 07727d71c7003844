"""The monitor's plots, groups of idle queues, PanDA's numbers in force, the pilots table's filter and sort,
the links to PanDA's job pages, the pilot page and the live-refresh markup, against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from autopilot_ops.airflow.config import SchedulerConfig
from autopilot_ops.airflow.dag_factory import monitor_dag
from autopilot_ops.airflow.webapp import history, pages
from autopilot_ops.airflow.webapp.app import create_app
from autopilot_ops.airflow.webapp.idle import why_idle
from autopilot_ops.airflow.webapp.settings import WebSettings
from autopilot_ops.store import monitor_queries
from autopilot_ops.store.events import record_event

NOW = dt.datetime.now(dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
SCRIPT = "<script>alert(1)</script>"


def ago(hours: float) -> dt.datetime:
    return NOW - hours * HOUR


@pytest.fixture
def site_data(seed):
    """Two tags at two sites; pilots whose lives span the plots' window; a cycle per queue."""
    seed.queue("Q_A", ["alpha"], site="SITE_1")
    seed.queue("Q_B", ["alpha"], site="SITE_2")
    seed.queue("Q_C", ["beta"], site="SITE_1")
    # waited 1 h, ran 2 h, finished 2.5 h ago
    seed.pilot("Q_A", "a-1", "finished", submitted_at=ago(5.5), started_at=ago(4.5), ended_at=ago(2.5),
               state_changed_at=ago(2.5), exit_code=0)
    seed.pilot("Q_A", "a-2", "running", submitted_at=ago(3.5), started_at=ago(0.5))
    seed.pilot("Q_B", "b-1", "queued", submitted_at=ago(1.5))
    seed.pilot("Q_B", "b-2", "failed", submitted_at=ago(30), started_at=ago(29), ended_at=ago(0.2),
               state_changed_at=ago(0.2), exit_code=64)
    seed.pilot("Q_C", "c-1", "submitted", submitted_at=ago(0.1))
    seed.pilot("Q_C", "c-old", "finished", submitted_at=ago(50), started_at=ago(49), ended_at=ago(48),
               state_changed_at=ago(48))
    for queue, activated in (("Q_A", 7), ("Q_B", 5), ("Q_C", 1)):
        seed.cycle(queue, "c1", ago(1.2), {"activated": activated}, decided=1, reason=["submit 1"])


def levels(plot: history.Plots, ends: list[dt.datetime], series: str, since: dt.datetime,
           until: dt.datetime) -> list[int]:
    """The plotted numbers of ``series`` at the plotted times within ``[since, until)``."""
    return [plot.counts[series][i] for i, end in enumerate(ends) if since <= end < until]


def test_pilot_history_counts_each_state_at_each_hour_and_the_ends_within_it(store, site_data):
    ends = history.window(NOW)
    with store.transaction() as cur:
        plots = history.plots_by(ends, monitor_queries.pilot_history(cur, ends[0], history.STEP),
                                 monitor_queries.activated_history(cur, ends[0], history.STEP))
    (plot,) = plots.values()
    assert levels(plot, ends, "queued", ago(5.5), ago(4.5)) == [1], "a-1 waits"
    assert levels(plot, ends, "running", ago(4.5), ago(3.5)) == [2], "a-1 and b-2 run"
    assert levels(plot, ends, "running", ago(2.5), ago(0.5)) == [1, 1], "a-1 ended; a-2 does not run yet"
    assert plot.counts["running"][-1] == 1 and plot.counts["queued"][-1] == 1 and plot.counts["submitted"][-1] == 1
    assert plot.counts["running"][0] == 1, "b-2 was running when the window began"
    assert sum(plot.counts["finished"]) == 1, "c-old ended before the window"
    assert levels(plot, ends, "finished", ago(2.5), ago(1.5)) == [1]
    assert sum(plot.counts["failed"]) == 1 and levels(plot, ends, "failed", ago(0.2), ago(-0.8)) == [1]
    assert plot.activated.lines[0].last == 13, "7 + 5 + 1 activated in the last cycles"


def test_pilot_history_per_tag_and_site(store, site_data):
    ends = history.window(NOW)
    with store.transaction() as cur:
        by_site = history.plots_by(ends, monitor_queries.pilot_history(cur, ends[0], history.STEP, "site"), [])
        by_tag = history.plots_by(ends, monitor_queries.pilot_history(cur, ends[0], history.STEP, "tag",
                                                                      ["Q_C"]), [])
    assert set(by_site) == {"SITE_1", "SITE_2"}
    assert by_site["SITE_2"].counts["queued"][-1] == 1 and by_site["SITE_1"].counts["queued"][-1] == 0
    assert set(by_tag) == {"beta"} and by_tag["beta"].counts["submitted"][-1] == 1


def test_the_overview_plots_every_series_for_all_queues_a_tag_its_sites_and_a_site(client, site_data, bearer):
    page = client.get("/", headers=bearer("viewer")).text
    assert "Pilots and activated jobs over the last 24 h: all queues" in page
    bands = re.findall(r'<polygon class="series-(\w+)"', page)
    assert bands == list(history.SERIES)
    assert re.findall(r'<polyline class="series-(\w+)"', page) == ["activated"]
    tag_page = client.get("/?tag=alpha", headers=bearer("viewer")).text
    assert "over the last 24 h: tag alpha" in tag_page
    assert re.findall(r'<h3 id="site-(\w+)">', tag_page) == ["SITE_1", "SITE_2"]
    assert tag_page.count('<figure class="plot-pilots">') == 3
    site_page = client.get("/?site=SITE_1", headers=bearer("viewer")).text
    assert ">Q_A</a>" in site_page and ">Q_C</a>" in site_page and ">Q_B</a>" not in site_page
    assert "over the last 24 h: site SITE_1" in site_page


@pytest.mark.parametrize(("line", "group"), [
    ("control tag:alpha (by op) paused -> 0", "paused"),
    ("control queue:Q (by op) drains -> 0", "paused"),
    ("status offline -> 0", "offline"),
    ("PanDA data 900s old > 3 polls x 60s = 180s -> 0", "stale data"),
    ("no PanDA data yet -> 0", "stale data"),
    ("credential token /t/x expires in 12 min < 1 h -> 0", "credential expiring"),
    ("credential token /t/x expired 5 min ago -> 0", "credential expiring"),
    ("max_pilots 10 - alive 10 = 0: 3 -> 0", "throttled"),
    ("global cap 0: 3 -> 0", "throttled"),
    ("target 0 - queued 4 -> 0", "no work"),
    ("something new -> 0", "other"),
])
def test_why_a_queue_submits_nothing(line, group):
    queue = {"status": "online", "last_cycle_at": NOW, "last_decided": 0, "last_reason": ["activated=3", line]}
    assert why_idle(queue, stopped=False) == (group, line)


def test_a_queue_that_submits_or_never_cycled_is_not_idle_and_a_control_in_force_pauses():
    submits = {"status": "online", "last_cycle_at": NOW, "last_decided": 2, "last_reason": ["submit 2"]}
    assert why_idle(submits, stopped=False) is None
    assert why_idle({**submits, "last_cycle_at": None, "last_decided": None}, stopped=False) is None
    assert why_idle(submits, stopped=True)[0] == "paused", "paused since its last cycle"
    assert why_idle({**submits, "status": "brokeroff"}, stopped=False)[0] == "offline"


def test_the_overview_groups_the_idle_queues_and_lists_panda_numbers_in_force(client, seed, store, bearer):
    for name, reason in (("Q_STALE", "no PanDA data yet -> 0"), ("Q_CRED", "credential token /t expires in 12 min "
                                                                           "< 1 h -> 0"),
                         ("Q_OK", None), ("Q_PAUSED", None)):
        seed.queue(name, ["alpha"])
        seed.cycle(name, "c1", NOW, {}, decided=0 if reason else 3, reason=[reason or "submit 3"])
    assert client.post("/api/controls/queue/Q_PAUSED", headers=bearer("op"),
                       json={"paused": True}).status_code == 200
    with store.transaction() as cur:
        cur.execute("INSERT INTO panda_worker_targets VALUES ('Q_OK', 'managed', 'SCORE', 5, 42, now(), "
                    "now() + interval '1 hour'), ('Q_OK', 'user', 'SCORE', 9, 41, now(), now() - interval '1 s')")
    page = client.get("/", headers=bearer("viewer")).text
    groups = dict(re.findall(r'<details class="idle-group" data-group="([^"]+)"[^>]*>\s*<summary>[^<]*</summary>'
                             r'<ul>\s*<li><a href="[^"]*">(\w+)</a>', page))
    assert groups == {"paused": "Q_PAUSED", "stale data": "Q_STALE", "credential expiring": "Q_CRED"}
    commands = page[page.index('id="panda-commands"'):page.index('<h2 id="tag-alpha">')]
    assert "<td>managed</td><td>SCORE</td><td class=\"num\">5</td>" in commands
    assert "<td>user</td>" not in commands, "an expired number is not in force"


@pytest.fixture
def pilots(seed):
    seed.queue("Q_P", ["alpha"])
    ids = {
        "done": seed.pilot("Q_P", "p-1", "finished", exit_code=0, submitted_at=ago(3)),
        "bad": seed.pilot("Q_P", "p-2", "failed", exit_code=137, submitted_at=ago(2)),
        "run": seed.pilot("Q_P", "p-3", "running", submitted_at=ago(1)),
    }
    with seed.store.transaction() as cur:
        for job in (5001, 5002):
            record_event(cur, "pilots", "pilot.job", "Q_P", ids["done"], {"job_id": job})
            record_event(cur, "pilots", "pilot.job_done", "Q_P", ids["done"], {"job_id": job, "state": "finished"})
    return ids


def pilot_rows(page: str) -> list[tuple[str, str]]:
    """``(id, state)`` of the pilots table's rows, in order."""
    table = page[page.index('<table class="pilots">'):]
    table = table[:table.index("</table>")]
    return re.findall(r'<tr data-pilot="(\d+)">.*?</td>\s*<td>[^<]*</td><td>[^<]*</td>\s*<td>(\w+)', table, re.S)


def test_the_pilots_table_filters_by_state_and_sorts_by_a_column(client, pilots, bearer):
    done, bad, run = str(pilots["done"]), str(pilots["bad"]), str(pilots["run"])
    assert [p for p, _ in pilot_rows(client.get("/queues/Q_P", headers=bearer("viewer")).text)] == [run, bad, done]
    page = client.get("/queues/Q_P?state=failed", headers=bearer("viewer")).text
    assert pilot_rows(page) == [(bad, "failed")]
    assert '<option value="failed" selected>' in page
    by_exit = client.get("/queues/Q_P?sort=-exit", headers=bearer("viewer")).text
    assert [p for p, _ in pilot_rows(by_exit)] == [bad, done, run], "exit codes descending, none last"
    assert 'aria-sort="descending"' in by_exit and 'href="?sort=exit"' in by_exit, "the header reverses it"
    assert [p for p, _ in pilot_rows(client.get("/queues/Q_P?sort=exit", headers=bearer("viewer")).text)] == [
        run, done, bad]
    for bad_query in ("sort=batch_id;drop", "state=lost"):
        assert client.get(f"/queues/Q_P?{bad_query}", headers=bearer("viewer")).status_code == 422


def test_panda_job_ids_link_to_the_panda_monitor_when_configured(store, api_tokens, bearer, log_root, pilots):
    plain = create_app(WebSettings(dsn=store.dsn, log_root=log_root, token_cache_seconds=0))
    linked = create_app(WebSettings(dsn=store.dsn, log_root=log_root, token_cache_seconds=0,
                                    panda_monitor_url="https://panda.example/job?pandaid={panda_id}"))
    with TestClient(plain, root_path="/autopilot") as a, TestClient(linked, root_path="/autopilot") as b:
        page = a.get("/queues/Q_P", headers=bearer("viewer")).text
        assert "<td>5001 5002</td>" in page and "panda.example" not in page
        page = b.get("/queues/Q_P", headers=bearer("viewer")).text
        assert ('<a href="https://panda.example/job?pandaid=5001">5001</a> '
                '<a href="https://panda.example/job?pandaid=5002">5002</a>') in page
        story = b.get(f"/pilots/{pilots['done']}", headers=bearer("viewer")).text
        assert '<a href="https://panda.example/job?pandaid=5002">5002</a>' in story
    for app in (plain, linked):
        app.state.store_pool.close()


def test_a_monitor_url_without_the_placeholder_is_refused():
    with pytest.raises(ValueError, match=r"has no \{panda_id\}"):
        WebSettings(panda_monitor_url="https://panda.example/job")
    assert WebSettings(panda_monitor_url="https://p/{panda_id}").panda_job_url("1 2") == "https://p/1%202"


def test_the_panda_monitor_url_comes_from_the_autopilot_section(monkeypatch):
    monkeypatch.setenv("AIRFLOW__AUTOPILOT__PANDA_MONITOR_URL", "https://bigpanda.example/job?pandaid={panda_id}")
    assert WebSettings.from_airflow_conf().panda_job_url(7) == "https://bigpanda.example/job?pandaid=7"


def test_the_pilot_page_tells_its_whole_story(client, seed, store, bearer, log_root):
    seed.queue("Q_S", ["alpha"])
    (log_root / "Q_S").mkdir()
    (log_root / "Q_S" / "s.err").write_text("err")
    pilot_id = seed.pilot("Q_S", "s-1", "finished", cycle_id="cyc-9", exit_code=0, submitted_at=ago(1),
                          started_at=ago(0.5), ended_at=ago(0.1), stderr_path=str(log_root / "Q_S" / "s.err"))
    other = seed.pilot("Q_S", "s-2", "running")
    events = [
        (ago(1), "sched-1", "submitted", None, {"cycle": "cyc-9", "submitted": 1}),
        (ago(0.9), "sweep", "pilot-state", pilot_id, {"from": "submitted", "to": "queued"}),
        (ago(0.45), "sweep", "pilot-state", pilot_id, {"from": "queued", "to": "running"}),
        (ago(0.4), "pilots", "pilot.job", pilot_id, {"job_id": 777}),
        (ago(0.2), "pilots", "pilot.job_done", pilot_id, {"job_id": 777, "state": "finished"}),
        (ago(0.05), "sweep", "pilot-state", pilot_id, {"from": "running", "to": "finished", "exit_code": 0}),
        (ago(0.4), "pilots", "pilot.job", other, {"job_id": 888}),
    ]
    with store.transaction() as cur:
        for at, who, what, pilot, details in events:
            cur.execute("INSERT INTO pilot_events (at, who, what, queue, pilot_id, details) "
                        "VALUES (%s, %s, %s, 'Q_S', %s, %s)", (at, who, what, pilot, json.dumps(details)))
    page = client.get(f"/pilots/{pilot_id}", headers=bearer("viewer")).text
    story = page[page.index('<ol class="story">'):]
    steps = re.findall(r'<li data-what="([^"]+)">', story)
    assert steps == ["row.submitted", "submitted", "pilot-state", "row.started", "pilot-state", "pilot.job",
                     "pilot.job_done", "row.ended", "pilot-state"]
    text = " ".join(re.sub(r"<[^>]+>", " ", story).split())
    assert "submitted by cycle cyc-9 to back end local-1 as s-1" in text
    assert "submitted → queued" in text and "running → finished, exit code 0" in text
    assert "ended finished with exit code 0" in text
    jobs = page[page.index('id="jobs"'):page.index('id="story"')]
    assert "<td>777</td>" in jobs and "888" not in jobs and "<td>finished</td>" in jobs
    assert 'href="/autopilot/logs/Q_S/s.err">stderr</a>' in page
    assert 'href="/autopilot/queues/Q_S">Q_S</a>' in page
    queue_page = client.get("/queues/Q_S", headers=bearer("viewer")).text
    assert f'<a href="/autopilot/pilots/{pilot_id}">{pilot_id}</a>' in queue_page
    assert client.get("/pilots/999999", headers=bearer("viewer")).status_code == 404


def test_the_pilot_page_escapes_hostile_values(client, seed, store, bearer):
    seed.queue("Q_H", ["alpha"])
    pilot_id = seed.pilot("Q_H", SCRIPT, "failed", state_reason=SCRIPT, cycle_id=SCRIPT)
    with store.transaction() as cur:
        record_event(cur, SCRIPT, "pilot.job", "Q_H", pilot_id, {"job_id": SCRIPT})
    with_link = create_app(WebSettings(dsn=store.dsn, token_cache_seconds=0,
                                       panda_monitor_url="https://p/job?id={panda_id}"))
    with TestClient(with_link, root_path="/autopilot") as linked:
        for page in (client.get(f"/pilots/{pilot_id}", headers=bearer("viewer")).text,
                     linked.get(f"/pilots/{pilot_id}", headers=bearer("viewer")).text,
                     linked.get("/queues/Q_H", headers=bearer("viewer")).text):
            assert SCRIPT not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert f'href="https://p/job?id={quote(SCRIPT, safe="")}"' in linked.get(
            f"/pilots/{pilot_id}", headers=bearer("viewer")).text
    with_link.state.store_pool.close()


def test_links_to_a_queue_are_percent_encoded(client, seed, bearer):
    seed.queue("Q A?b#c", ["alpha"])
    page = client.get("/", headers=bearer("viewer")).text
    assert 'href="/autopilot/queues/Q%20A%3Fb%23c"' in page
    assert client.get("/queues/Q%20A%3Fb%23c", headers=bearer("viewer")).status_code == 200


@pytest.mark.parametrize("path", ["/", "/queues/Q_P", "/pilots/{run}"])
def test_every_page_refreshes_in_place_and_says_how_old_its_data_and_pilot_states_are(client, pilots, bearer,
                                                                                        path):
    page = client.get(path.format(**pilots), headers=bearer("viewer")).text
    generated = dt.datetime.fromisoformat(re.search(r'<body data-generated-at="([^"]+)" data-refresh="(\d+)"',
                                                    page)[1])
    assert abs((generated - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 60
    assert 10 <= pages.REFRESH_SECONDS <= 30 and f'data-refresh="{pages.REFRESH_SECONDS}"' in page
    assert re.search(r'<div id="\w+-live" data-live>', page), "the part the script swaps"
    assert 'id="data-age"' in page and "window.setInterval(() => refresh(false)" in page
    assert "the autopilot-monitor DAG sweeps every 2 min" in page and "(no report yet)" in page


def test_the_pages_say_when_a_back_end_last_reported_a_pilot_state(client, seed, bearer):
    seen = dt.datetime(2026, 5, 4, 3, 2, 1, tzinfo=dt.timezone.utc)
    seed.queue("Q_L", ["alpha"])
    seed.pilot("Q_L", "l-1", "finished", last_seen=seen)
    seed.pilot("Q_L", "l-2", "running", last_seen=seen - HOUR)
    for path in ("/", "/queues/Q_L"):
        assert "(the latest report: 2026-05-04 03:02:01 UTC)" in client.get(path, headers=bearer("viewer")).text


def test_the_stated_lag_is_the_monitor_dags_schedule(tmp_path: Path):
    config = SchedulerConfig(snapshot_path=tmp_path / "s.json", log_root=tmp_path, postgres_conn_id=None,
                             dsn="postgresql://x", panda_conn_id="panda", pilot_command=("true",), global_cap=None)
    assert monitor_dag(config).schedule == pages.SWEEP_PERIOD


def test_the_pages_follow_airflows_colour_mode(client, pilots, bearer):
    page = client.get("/", headers=bearer("viewer")).text
    head = page[:page.index("</head>")]
    assert 'window.localStorage.getItem("theme")' in head and "prefers-color-scheme: dark" in head
    assert head.index("localStorage") < head.index("<style>"), "set before the first paint"
    assert ':root[data-theme="dark"]' in head and "font-family: Inter" in head


def test_a_big_group_of_idle_queues_names_only_the_first(client, seed, bearer, monkeypatch):
    monkeypatch.setattr(pages, "IDLE_LISTED", 2)
    for name in ("Q_1", "Q_2", "Q_3"):
        seed.queue(name, ["alpha"])
        seed.cycle(name, "c1", NOW, {"activated": 0}, decided=0, reason=["target 0 - queued 0 -> 0", "submit 0"])
    page = client.get("/", headers=bearer("viewer")).text
    group = page[page.index('data-group="no work"'):page.index("</details>", page.index('data-group="no work"'))]
    assert "no work: 3 queues" in group and ">Q_1</a>" in group and ">Q_2</a>" in group and ">Q_3</a>" not in group
    assert "and 1 more" in group


def test_the_story_keeps_a_pilots_start_after_its_submission_whatever_the_clocks(client, seed, bearer):
    seed.queue("Q_T", ["alpha"])
    pilot_id = seed.pilot("Q_T", "t-1", "finished", submitted_at=ago(1), started_at=ago(1.001),
                          ended_at=ago(1.002), exit_code=0)
    story = client.get(f"/pilots/{pilot_id}", headers=bearer("viewer")).text
    assert re.findall(r'<li data-what="([^"]+)">', story) == ["row.submitted", "row.started", "row.ended"]
