"""Auth modes: bearer token, and identities with and without the production role."""

from __future__ import annotations

import pytest

from autopilot_ops.panda.devserver.auth import AuthConfigError, parse_identities
from autopilot_ops.panda.devserver.testing import DevServer

PILOT = {"dn": "/DC=org/CN=Pilot", "token": "pilot-token", "production": True}
ALICE = {"dn": "/DC=org/CN=Alice", "token": "alice-token", "production": False}
BOB = {"dn": "/DC=org/CN=Bob", "token": "bob-token", "production": False}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": "atlas"}


@pytest.fixture
def token_server(tmp_path):
    with DevServer(tmp_path, auth="token", token="s3cret") as server:
        yield server


@pytest.fixture
def identity_server(tmp_path):
    with DevServer(tmp_path, auth="identities", identities=[PILOT, ALICE, BOB]) as server:
        yield server


def test_token_mode_without_credentials_has_no_identity(token_server, connect):
    client = connect(token_server.url)
    answer = client.acquire("Q")
    assert answer.json() == {"success": False, "message": "SSL secure connection is required", "data": None}


def test_token_mode_with_the_token(token_server, connect):
    client = connect(token_server.url)
    assert client.post("/api/v1/pilot/acquire_jobs", {"site_name": "Q"}, **bearer("s3cret")).json()["message"] == (
        "No jobs in PanDA"
    )


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"Authorization": "Bearer wrong", "Origin": "atlas"}, "Invalid token. the token is not known to this server"),
        ({"Authorization": "Bearer s3cret"}, "Token decode failure. the Origin header naming the VO is missing"),
        ({"Authorization": "Basic czNjcmV0", "Origin": "atlas"}, "Invalid token."),
    ],
)
def test_bad_tokens_are_refused_before_the_method_runs(token_server, connect, headers, detail):
    client = connect(token_server.url)
    answer = client.post("/api/v1/system/is_alive", {}, **headers)
    assert answer.status == 403
    assert answer.text.startswith(f"ERROR : Token authentication failed. {detail}")
    assert client.get("/api/v1/system/is_alive").status == 200  # the connection stays usable


def test_statistics_and_liveness_need_no_identity(token_server, connect):
    client = connect(token_server.url)
    assert client.get("/api/v1/system/is_alive").json()["success"] is True
    stats = client.get("/api/v1/statistics/active_job_stats_by_site").json()
    assert stats["message"] == "Database failure getting the job statistics"


def test_update_job_needs_the_production_role(identity_server, connect):
    client = connect(identity_server.url)
    (panda_id,) = identity_server.submit_jobs("Q", 1, "http://x/a.sh", "")
    report = {"job_id": panda_id, "job_status": "running"}
    answer = client.post("/api/v1/pilot/update_job", report, **bearer("alice-token"))
    assert answer.json() == {"success": False, "message": "production or pilot role required", "data": None}
    assert identity_server.job(panda_id)["status"] == "activated"
    ok = client.post("/api/v1/pilot/update_job", report, **bearer("pilot-token"))
    assert ok.json()["success"] is True


def test_non_production_callers_cannot_acquire_production_jobs(identity_server, connect):
    client = connect(identity_server.url)
    identity_server.submit_jobs("Q", 1, "http://x/a.sh", "")
    answer = client.post("/api/v1/pilot/acquire_jobs", {"site_name": "Q"}, **bearer("alice-token"))
    assert answer.json()["message"] == "no production/pilot role in VOMS FQANs or non pilot owner"
    assert client.post("/api/v1/pilot/acquire_jobs", {"site_name": "Q"}, **bearer("pilot-token")).json()["success"]


def test_user_jobs_go_only_to_their_owner_without_production_role(identity_server, connect):
    client = connect(identity_server.url)
    (alice_job,) = identity_server.submit_jobs("Q", 1, "http://x/a.sh", "", prod_source_label="user",
                                               token="alice-token")
    (bob_job,) = identity_server.submit_jobs("Q", 1, "http://x/a.sh", "", prod_source_label="user", token="bob-token")
    assert identity_server.job(alice_job)["prod_user_id"] == ALICE["dn"]
    as_bob = client.post("/api/v1/pilot/acquire_jobs", {"site_name": "Q", "prod_source_label": "user", "n_jobs": 5},
                         **bearer("bob-token")).json()
    assert [job["PandaID"] for job in as_bob["data"]["jobs"]] == [bob_job]
    as_pilot = client.post("/api/v1/pilot/acquire_jobs", {"site_name": "Q", "prod_source_label": "user"},
                           **bearer("pilot-token")).json()
    assert [job["PandaID"] for job in as_pilot["data"]["jobs"]] == [alice_job]


def test_submitting_managed_jobs_needs_the_production_role(identity_server):
    with pytest.raises(Exception, match="is missing production for prodSourceLabel=managed submission"):
        identity_server.submit_jobs("Q", 1, "http://x/a.sh", "", token="alice-token")


def test_users_kill_only_their_own_jobs(identity_server, connect):
    client = connect(identity_server.url)
    (alice_job,) = identity_server.submit_jobs("Q", 1, "http://x/a.sh", "", prod_source_label="user",
                                               token="alice-token")
    by_bob = client.post("/api/v1/job/kill", {"job_ids": [alice_job]}, **bearer("bob-token")).json()
    by_alice = client.post("/api/v1/job/kill", {"job_ids": [alice_job]}, **bearer("alice-token")).json()
    assert (by_bob["data"], by_alice["data"]) == ([False], [True])
    assert identity_server.job(alice_job)["status"] == "cancelled"


def test_identity_entries_are_validated():
    with pytest.raises(AuthConfigError, match=r"identities\[1\]: field 'dn'"):
        parse_identities([PILOT, {"dn": "Alice", "token": "t"}])
    with pytest.raises(AuthConfigError, match="repeats an earlier entry's token"):
        parse_identities([PILOT, {**ALICE, "token": PILOT["token"]}])
    with pytest.raises(AuthConfigError, match="field 'production' must be true or false"):
        parse_identities([{**ALICE, "production": "yes"}])
