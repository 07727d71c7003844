"""Against a real ``airflow api-server``: the provider, the plugin with Airflow's own JWTs, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from autopilot_ops.cli.main import main

pytestmark = pytest.mark.airflow


def _get(server, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{server.url}{path}", headers=headers, timeout=30, **kwargs)


def test_airflow_lists_the_provider_and_its_connection_types(airflow_server):
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([airflow, "providers", "list", "-o", "json"], env=airflow_server.env,
                            capture_output=True, text=True, timeout=120, check=True)
    providers = {p["package_name"]: p for p in json.loads(result.stdout)}
    assert providers["autopilot-ops"]["version"] == "0.1.0"

    meta = _get(airflow_server, "/ui/connections/hook_meta", airflow_server.token("alice")).json()
    by_type = {m["connection_type"]: m for m in meta}
    panda = by_type["panda"]
    assert panda["hook_class_name"] == "autopilot_ops.airflow.hooks.panda.PandaHook"
    assert set(panda["extra_fields"]) == {
        "protocol", "origin", "cert_file", "key_file", "ca_bundle", "harvester_id", "factory"}
    assert panda["extra_fields"]["protocol"]["schema"]["enum"] == ["v1", "legacy"]
    assert panda["extra_fields"]["factory"]["schema"]["enum"] == ["on", "off"]
    assert panda["standard_fields"]["host"]["title"] == "Server URL"
    assert panda["standard_fields"]["password"]["title"] == "Token"
    assert set(by_type["slurm"]["extra_fields"]) == {"partition", "account"}
    assert set(by_type["htcondor"]["extra_fields"]) == {"schedd", "collector", "pool"}


def test_the_plugin_is_mounted_with_a_navigation_entry(airflow_server):
    plugins = _get(airflow_server, "/api/v2/plugins", airflow_server.token("alice")).json()["plugins"]
    (plugin,) = [p for p in plugins if p["name"] == "autopilot"]
    assert [app["url_prefix"] for app in plugin["fastapi_apps"]] == ["/autopilot"]
    assert plugin["external_views"][0]["href"] == "/autopilot/"


@pytest.fixture(scope="module")
def queue_in_store(airflow_server):
    with airflow_server.store.transaction() as cur:
        cur.execute("INSERT INTO backends (name, kind) VALUES ('local-1', 'local') ON CONFLICT DO NOTHING")
        cur.execute("INSERT INTO schedconfig (panda_queue, site, tags, backend) VALUES ('AF_Q', 'AF_SITE', "
                    "'{alpha}', 'local-1') ON CONFLICT DO NOTHING")
    return "AF_Q"


def test_plugin_pages_and_api_take_airflow_users_by_role(airflow_server, queue_in_store):
    url = f"{airflow_server.url}/autopilot"
    assert requests.get(f"{url}/api/queues", timeout=30).status_code == 401
    viewer, op = airflow_server.token("vic"), airflow_server.token("olga")
    reply = requests.get(f"{url}/api/queues", headers={"Authorization": f"Bearer {viewer}"}, timeout=30)
    assert reply.status_code == 200 and [q["queue"] for q in reply.json()] == ["AF_Q"]
    tampered = viewer[:-4] + ("AAAA" if not viewer.endswith("AAAA") else "BBBB")
    assert requests.get(f"{url}/api/queues", headers={"Authorization": f"Bearer {tampered}"},
                        timeout=30).status_code == 401

    control = f"{url}/api/controls/queue/AF_Q"
    denied = requests.post(control, json={"paused": True}, headers={"Authorization": f"Bearer {viewer}"}, timeout=30)
    assert denied.status_code == 403 and "user:vic has role viewer" in denied.json()["detail"]
    ok = requests.post(control, json={"paused": True, "reason": "via JWT"},
                       headers={"Authorization": f"Bearer {op}"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["set_by"] == "user:olga"

    # the browser's session cookie: reads work, writes only as JSON (a cross-site form cannot send that)
    cookies = {"_token": op}
    page = requests.get(f"{url}/queues/AF_Q", cookies=cookies, timeout=30)
    assert page.status_code == 200 and "via JWT" in page.text and "user:olga (op)" in page.text
    form = requests.post(control, data="paused=false", cookies=cookies, timeout=30,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 403
    as_json = requests.post(control, json={"paused": False}, cookies=cookies, timeout=30)
    assert as_json.status_code == 200 and as_json.json()["paused"] is False

    machine = requests.delete(control, headers={"Authorization": "Bearer machine-token-0123456789abcdef"},
                              timeout=30)
    assert machine.status_code == 200
    with airflow_server.store.transaction() as cur:
        cur.execute("SELECT who, what FROM pilot_events WHERE queue = 'AF_Q' ORDER BY id")
        assert [(r["who"], r["what"]) for r in cur.fetchall()] == [
            ("user:olga", "control-set"), ("user:olga", "control-set"), ("token:panda", "control-cleared")]


def test_a_machine_token_kept_in_an_airflow_connection_in_the_database(airflow_server, queue_in_store):
    """The connection is created through Airflow's REST API, so the app reads it from the metadata DB."""
    url = f"{airflow_server.url}/autopilot/api/pilot-events"
    event = {"queue": "AF_Q", "batch_id": "9-9", "event": "started"}
    token = "conn-token-0123456789abcdef"
    assert requests.post(url, json=event, headers={"Authorization": f"Bearer {token}"}, timeout=30).status_code == 401
    created = requests.post(f"{airflow_server.url}/api/v2/connections", timeout=30,
                            headers={"Authorization": f"Bearer {airflow_server.token('alice')}"},
                            json={"connection_id": "autopilot_api", "conn_type": "generic", "login": "pilot-fleet",
                                  "password": token, "extra": json.dumps({"role": "pilot"})})
    assert created.status_code == 201, created.text
    reply = requests.post(url, json=event, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert reply.status_code == 202, reply.text
    with airflow_server.store.transaction() as cur:
        cur.execute("SELECT who FROM pilot_events WHERE what = 'pilot.started' AND queue = 'AF_Q'")
        assert [row["who"] for row in cur.fetchall()] == ["token:pilot-fleet"]


def _cli(server, monkeypatch, capsys, user, *argv):
    monkeypatch.setenv("AUTOPILOT_AIRFLOW_PASSWORD", {"olga": "olga-pw", "vic": "vic-pw"}.get(user, "wrong"))
    code = main(["scheduler", "--airflow-url", server.url, "--user", user, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_scheduler_cli_lists_starts_triggers_and_stops_a_tag(airflow_server, monkeypatch, capsys):
    code, out, _ = _cli(airflow_server, monkeypatch, capsys, "olga", "--json", "list")
    assert code == 0
    assert [(r["tag"], r["dag_id"], r["state"]) for r in json.loads(out)] == [("alpha", "autopilot_alpha", "stopped")]

    assert _cli(airflow_server, monkeypatch, capsys, "olga", "start", "alpha")[:2] == (
        0, "scheduler alpha (autopilot_alpha): running\n")
    dag = _get(airflow_server, "/api/v2/dags/autopilot_alpha", airflow_server.token("alice")).json()
    assert dag["is_paused"] is False

    code, out, _ = _cli(airflow_server, monkeypatch, capsys, "olga", "--json", "trigger", "alpha")
    run = json.loads(out)
    assert code == 0 and run["state"] == "queued" and run["dag_run_id"]

    code, out, _ = _cli(airflow_server, monkeypatch, capsys, "olga", "--json", "status", "alpha")
    status = json.loads(out)
    assert status["state"] == "running" and [c["dag_run_id"] for c in status["cycles"]] == [run["dag_run_id"]]

    assert _cli(airflow_server, monkeypatch, capsys, "olga", "stop", "alpha")[0] == 0
    assert _get(airflow_server, "/api/v2/dags/autopilot_alpha", airflow_server.token("alice")).json()["is_paused"]


@pytest.mark.parametrize(
    ("user", "argv", "fragment"),
    [
        ("olga", ["start", "nosuchtag"], "scheduler DAG autopilot_nosuchtag of tag 'nosuchtag': not found"),
        ("mallory", ["list"], "refused the login of user 'mallory'"),
        ("vic", ["start", "alpha"], "Airflow refused it (HTTP 403"),
    ],
)
def test_scheduler_cli_errors_are_clear(airflow_server, monkeypatch, capsys, user, argv, fragment):
    code, _, err = _cli(airflow_server, monkeypatch, capsys, user, *argv)
    assert code == 2 and fragment in err


def test_scheduler_cli_names_an_unreachable_server(monkeypatch, capsys):
    monkeypatch.setenv("AUTOPILOT_AIRFLOW_PASSWORD", "x")
    code = main(["scheduler", "--airflow-url", "http://127.0.0.1:9", "--user", "u", "list"])
    assert code == 2 and "cannot reach Airflow at http://127.0.0.1:9/auth/token" in capsys.readouterr().err
