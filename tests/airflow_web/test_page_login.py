"""A browser without an Airflow session is sent to Airflow's login, which brings it back to the page it asked
for; machines and API calls keep getting a plain 401."""

from __future__ import annotations

import pytest
import requests

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.mark.parametrize(
    ("path", "login"),
    [
        ("/", "/api/v2/auth/login?next=%2Fautopilot%2F"),
        ("/queues/Q_A?x=1", "/api/v2/auth/login?next=%2Fautopilot%2Fqueues%2FQ_A%3Fx%3D1"),
        ("/logs/Q_A/1-0.out", "/api/v2/auth/login?next=%2Fautopilot%2Flogs%2FQ_A%2F1-0.out"),
    ],
)
def test_a_browser_without_session_goes_to_the_airflow_login(client, path, login):
    reply = client.get(path, headers=BROWSER, follow_redirects=False)
    assert reply.status_code == 303
    assert reply.headers["location"] == login


def test_an_expired_session_cookie_also_goes_to_the_login(client):
    client.cookies.set("_token", "not-a-valid-jwt")
    reply = client.get("/", headers=BROWSER, follow_redirects=False)
    assert reply.status_code == 303


@pytest.mark.parametrize(
    "headers",
    [
        {"Accept": "application/json"},
        {**BROWSER, "Authorization": "Bearer not-a-known-token-xxxxxxxx"},
    ],
)
def test_machines_and_bad_tokens_still_get_401(client, headers):
    reply = client.get("/", headers=headers, follow_redirects=False)
    assert reply.status_code == 401
    assert client.get("/api/queues", headers=BROWSER, follow_redirects=False).status_code == 401


def test_a_reader_with_a_token_gets_the_page(client, bearer):
    assert client.get("/", headers={**BROWSER, **bearer("viewer")}, follow_redirects=False).status_code == 200


@pytest.mark.airflow
def test_in_airflow_the_login_redirect_reaches_the_login_page_and_comes_back(airflow_server):
    reply = requests.get(f"{airflow_server.url}/autopilot/?tag=alpha", headers=BROWSER, allow_redirects=False,
                         timeout=30)
    assert reply.status_code == 303
    login = requests.get(f"{airflow_server.url}{reply.headers['location']}", allow_redirects=False, timeout=30)
    # SimpleAuthManager's own page, which sends the user to ``next`` once logged in
    assert login.status_code == 307
    assert login.headers["location"] == "/auth/login?next=%2Fautopilot%2F%3Ftag%3Dalpha"
