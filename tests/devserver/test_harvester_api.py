"""The pilot-factory (Harvester) API, checked against the replies of a real PanDA server 1.0.4."""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any
from urllib.parse import urlencode

import pytest

from autopilot_ops.panda.devserver.database import Database, DatabaseError
from autopilot_ops.panda.devserver.testing import DevServer

HARVESTER = "autopilot-acceptance"
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?$")
DATABASE_ERROR = {"success": False, "message": "database error in the PanDA server", "data": None}
PILOT = {"dn": "/DC=org/CN=Pilot", "token": "pilot-token", "production": True}
ALICE = {"dn": "/DC=org/CN=Alice", "token": "alice-token", "production": False}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Origin": "atlas"}


def send(client: Any, request: dict[str, Any], **headers: str) -> Any:
    """A recorded request, as it was sent: GET parameters in the query, POST ones as a JSON body."""
    if request["method"] == "GET":
        query = urlencode(request["params"] or {})
        return client.get(request["path"] + (f"?{query}" if query else ""), **headers)
    return client.post(request["path"], request["body"], **headers)


def without_dates(data: Any) -> Any:
    """A reply's data with each command's ``creation_date`` checked for its format and left out."""
    if isinstance(data, list) and data and isinstance(data[0], dict) and "creation_date" in data[0]:
        assert all(ISO_TIME.match(item["creation_date"]) for item in data), data
        return [{key: value for key, value in item.items() if key != "creation_date"} for item in data]
    return data


def set_up_as_recorded(srv: DevServer) -> None:
    """The recording's queues: FACTORY_QUEUE (a unified pilot-streaming queue served by the factory) and
    LOCAL_QUEUE (configured, but naming no factory)."""
    srv.set_queue("FACTORY_QUEUE", harvester=HARVESTER, capability="ucore", workflow="pull_ups")
    srv.set_queue("LOCAL_QUEUE", capability="ucore", workflow="pull")


def call(client: Any, path: str, payload: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    if payload is None:
        return client.get(f"/api/v1/{path}", **headers).json()
    return client.post(f"/api/v1/{path}", payload, **headers).json()


def test_every_recorded_call_gets_the_recorded_reply_in_order(srv, client, harvester_reference):
    set_up_as_recorded(srv)
    for key, recorded in harvester_reference.items():
        if key == "acquire_commands_set_n_workers":
            srv.run_pilot_streaming()  # the recording ran PanDA's pilot-streaming step here
        answer = send(client, recorded["request"])
        assert answer.status == recorded["status"], key
        got, expected = answer.json(), recorded["reply"]
        assert set(got) == {"success", "message", "data"}, key
        assert (got["success"], got["message"]) == (expected["success"], expected["message"]), key
        assert without_dates(got["data"]) == without_dates(expected["data"]), key
    (instance,) = srv.harvester_instances()
    assert instance["harvester_id"] == HARVESTER
    assert (instance["owner"], instance["hostname"]) == ("pilot", "")
    assert (instance["sw_version"], instance["commit_stamp"]) == ("0.1.0", "abc123")
    assert instance["starttime"] == "2026-12-01 22:00:42"
    workers = {worker["workerID"]: worker for worker in srv.workers(HARVESTER)}
    assert sorted(workers) == [1, 2]
    described = {n: (workers[n]["batchID"], workers[n]["status"], workers[n]["pilotStatus"]) for n in workers}
    assert described == {1: ("1001.0", "submitted", "started"), 2: ("1001.1", "finished", None)}
    assert workers[1]["nodeID"] == "wn1" and workers[1]["pilotStartTime"] is not None
    assert workers[2]["endTime"] == "2026-12-01 22:00:42"
    assert {worker["computingSite"] for worker in workers.values()} == {"FACTORY_QUEUE"}
    assert [(c["command"], c["status"]) for c in srv.commands(HARVESTER)] == [
        ("KILL_WORKERS", "acknowledged"),
        ("SET_N_WORKERS_JOBTYPE:FACTORY_QUEUE", "retrieved"),
    ]


def test_the_first_heartbeat_fails_but_creates_the_instance_without_its_data(srv, client):
    data = {"sw_version": "0.1.0", "commit_stamp": "abc123"}
    first = call(client, "harvester/heartbeat", {"harvester_id": "h", "data": data})
    assert first == DATABASE_ERROR
    (created,) = srv.harvester_instances()
    assert (created["description"], created["sw_version"]) == ("automatic", None)
    assert call(client, "harvester/heartbeat", {"harvester_id": "h", "data": data})["success"] is True
    assert srv.harvester_instances()[0]["sw_version"] == "0.1.0"


def test_a_heartbeat_key_that_is_no_column_is_a_database_error(srv, client):
    call(client, "harvester/heartbeat", {"harvester_id": "h", "data": {}})
    assert call(client, "harvester/heartbeat", {"harvester_id": "h", "data": {"colour": "red"}}) == DATABASE_ERROR
    assert call(client, "harvester/heartbeat", {"harvester_id": "h", "data": {"SW_Version": "2"}})["success"]
    assert srv.harvester_instances()[0]["sw_version"] == "2"


PRODUCTION_CALLS = [
    ("harvester/acquire_commands", {"harvester_id": HARVESTER, "n_commands": 10}),
    ("harvester/acknowledge_commands", {"command_ids": [1]}),
    ("harvester/add_sweep_command",
     {"panda_queue": "FACTORY_QUEUE", "status_list": [], "ce_list": [], "submission_host_list": []}),
    ("harvester/add_target_slots", {"panda_queue": "FACTORY_QUEUE", "slots": 10}),
    ("pilot/update_worker_status", {"worker_id": 1, "harvester_id": HARVESTER, "status": "started"}),
]
SECURE_CALLS = [
    ("harvester/heartbeat", {"harvester_id": HARVESTER, "data": {}}),
    ("harvester/update_workers", {"harvester_id": HARVESTER, "workers": [{"workerID": 1, "status": "submitted"}]}),
    ("harvester/report_worker_statistics", {"harvester_id": HARVESTER, "panda_queue": "Q", "statistics": "{}"}),
    ("harvester/update_service_metrics", {"harvester_id": HARVESTER, "metrics": []}),
    ("harvester/get_worker_statistics", None),
]


@pytest.fixture
def identity_server(tmp_path):
    with DevServer(tmp_path, auth="identities", identities=[PILOT, ALICE]) as server:
        server.set_queue("FACTORY_QUEUE", harvester=HARVESTER)
        yield server


@pytest.mark.parametrize(("path", "payload"), PRODUCTION_CALLS)
def test_production_calls_need_the_production_role(identity_server, connect, path, payload):
    client = connect(identity_server.url)
    refused = call(client, path, payload, **bearer(ALICE["token"]))
    assert refused == {"success": False, "message": "production or pilot role required", "data": None}
    assert call(client, path, payload, **bearer(PILOT["token"]))["message"] != refused["message"]


@pytest.mark.parametrize(("path", "payload"), PRODUCTION_CALLS + SECURE_CALLS)
def test_every_call_needs_an_identity(identity_server, connect, path, payload):
    client = connect(identity_server.url)
    assert call(client, path, payload) == {"success": False, "message": "SSL secure connection is required",
                                           "data": None}


@pytest.mark.parametrize(("path", "payload"), SECURE_CALLS)
def test_the_other_calls_need_no_production_role(identity_server, connect, path, payload):
    client = connect(identity_server.url)
    call(client, path, payload, **bearer(ALICE["token"]))  # the first heartbeat of an instance fails
    again = call(client, path, payload, **bearer(ALICE["token"]))
    assert (again["success"], again["message"]) in ((True, ""), (True, "OK"))


def test_an_instance_owned_by_a_plain_identity_is_named_after_its_dn(identity_server, connect):
    client = connect(identity_server.url)
    call(client, "harvester/heartbeat", {"harvester_id": "alices", "data": {}}, **bearer(ALICE["token"]))
    assert identity_server.harvester_instances()[0]["owner"] == "Alice"


@pytest.mark.parametrize(
    ("path", "payload", "message"),
    [
        ("harvester/update_workers", {"harvester_id": "h", "workers": {"workerID": 1}},
         "Type error: 'workers' must be of type list, got dict."),
        ("harvester/report_worker_statistics", {"harvester_id": "h", "panda_queue": "Q", "statistics": {}},
         "Type error: 'statistics' must be of type str, got dict."),
        ("harvester/heartbeat", {"harvester_id": "h", "data": "{}"},
         "Type error: 'data' must be of type dict, got str."),
        ("harvester/acquire_commands", {"harvester_id": "h", "n_commands": "10"},
         "Type error: 'n_commands' must be of type int, got str."),
        ("harvester/add_sweep_command",
         {"panda_queue": "Q", "status_list": "running", "ce_list": [], "submission_host_list": []},
         "Type error: 'status_list' must be of type list, got str."),
        ("harvester/add_sweep_command",
         {"panda_queue": "Q", "status_list": ["running", 1], "ce_list": [], "submission_host_list": []},
         "Type error: All elements in 'status_list' must be str."),
        ("harvester/add_target_slots", {"panda_queue": "Q", "slots": "10"},
         "Type error: 'slots' must be of type int, got str."),
        ("harvester/update_workers", {"harvester_id": "h"}, "Argument error: missing a required argument: 'workers'"),
        ("harvester/get_current_worker_id", {"harvester_id": "h"}, "expecting GET, received POST"),
    ],
)
def test_parameters_are_checked_as_the_real_server_does(client, path, payload, message):
    assert call(client, path, payload) == {"success": False, "message": message, "data": None}


def test_get_parameters_are_cast_and_an_instance_without_workers_has_no_current_id(client):
    assert call(client, "harvester/get_current_worker_id?harvester_id=nobody") == DATABASE_ERROR
    call(client, "harvester/update_workers", {"harvester_id": "h", "workers": [{"workerID": 41, "status": "idle"}]})
    assert call(client, "harvester/get_current_worker_id?harvester_id=h")["data"] == 41


def worker(worker_id: int, status: str, **fields: Any) -> dict[str, Any]:
    return {"workerID": worker_id, "status": status, "computingSite": "Q", **fields}


def test_a_final_status_is_kept_for_three_hours(srv, client):
    def update(status: str) -> None:
        reply = call(client, "harvester/update_workers", {"harvester_id": "h", "workers": [worker(1, status)]})
        assert reply["data"] == [True]

    update("failed")
    update("running")
    assert srv.worker("h", 1)["status"] == "failed"
    with srv.store.database.transaction() as cursor:
        cursor.execute("UPDATE harvester_workers SET last_update = last_update - 3 * 3600 - 1")
    update("running")
    assert srv.worker("h", 1)["status"] == "running"


def test_a_worker_that_cannot_be_stored_fails_the_call_keeping_those_before(srv, client):
    workers = [worker(1, "submitted"), worker(2, "submitted", nCore="many"), worker(3, "submitted")]
    assert call(client, "harvester/update_workers", {"harvester_id": "h", "workers": workers}) == DATABASE_ERROR
    assert [w["workerID"] for w in srv.workers("h")] == [1]
    too_long = worker(4, "submitted", stdOut="http://x/" + "a" * 250)
    assert call(client, "harvester/update_workers", {"harvester_id": "h", "workers": [too_long]}) == DATABASE_ERROR
    assert call(client, "harvester/update_workers", {"harvester_id": "h", "workers": [{"workerID": 5}]}) == (
        DATABASE_ERROR  # status is NOT NULL
    )


def acquire_with_worker(srv: DevServer, client: Any, worker_id: int) -> int:
    (panda_id,) = srv.submit_jobs("Q", 1, f"{srv.url}/hello.sh", "")
    reply = client.acquire("Q", harvester_id="h", worker_id=worker_id).json()
    assert reply["data"]["jobs"][0]["PandaID"] == panda_id
    return panda_id


def test_acquire_jobs_with_a_worker_id_relates_the_job_to_a_known_instance(srv, client):
    unrelated = acquire_with_worker(srv, client, 7)
    assert (srv.worker("h", 7)["status"], srv.worker("h", 7)["nJobs"], srv.worker("h", 7)["pandaIDs"]) == (
        "running", 1, []  # no instance "h" yet: the worker is recorded, the relation is not
    )
    call(client, "harvester/heartbeat", {"harvester_id": "h", "data": {}})
    related = acquire_with_worker(srv, client, 7)
    assert srv.worker("h", 7)["pandaIDs"] == [related] and related != unrelated
    listed = {"harvester_id": "h", "workers": [worker(7, "running", pandaid_list=[unrelated])]}
    call(client, "harvester/update_workers", listed)
    assert srv.worker("h", 7)["pandaIDs"] == [unrelated]  # pandaid_list replaces the relations


@pytest.mark.parametrize(("sync_level", "job_status"), [(1, "failed"), (0, "running")])
def test_a_final_worker_with_sync_level_one_fails_its_running_job(srv, client, sync_level, job_status):
    call(client, "harvester/heartbeat", {"harvester_id": "h", "data": {}})
    panda_id = acquire_with_worker(srv, client, 3)
    client.update(panda_id, "running")
    done = worker(3, "finished", syncLevel=sync_level, diagMessage="batch job gone")
    assert call(client, "harvester/update_workers", {"harvester_id": "h", "workers": [done]})["data"] == [True]
    job = srv.job(panda_id)
    assert job["status"] == job_status
    if sync_level == 1:
        assert job["task_buffer_error_code"] == 300
        assert job["task_buffer_error_diag"] == "The worker was finished while the job was running : batch job gone"
        assert client.update(panda_id, "running").json()["data"]["command"] == "tobekilled"


def test_a_worker_error_code_is_set_on_its_active_jobs(srv, client):
    call(client, "harvester/heartbeat", {"harvester_id": "h", "data": {}})
    panda_id = acquire_with_worker(srv, client, 4)
    failed = worker(4, "failed", errorCode=1008, diagMessage="held")
    call(client, "harvester/update_workers", {"harvester_id": "h", "workers": [failed]})
    job = srv.job(panda_id)
    assert (job["sup_error_code"], job["sup_error_diag"]) == (1008, "Diag from worker : held")
    assert job["status"] == "sent"  # without syncLevel 1 the job's status is left alone


def test_sweep_acquire_acknowledge_and_acquire_again(srv, client):
    srv.set_queue("Q", harvester="h", queues=[{"ce_endpoint": "ce1:9619"}])
    sweep = {"panda_queue": "Q", "status_list": ["submitted"], "ce_list": ["ce1:9619", "ce9:9619"],
             "submission_host_list": ["s1"]}
    assert call(client, "harvester/add_sweep_command", sweep)["success"] is True
    assert call(client, "harvester/acquire_commands", {"harvester_id": "other", "n_commands": 10})["data"] == []
    (command,) = call(client, "harvester/acquire_commands", {"harvester_id": "h", "n_commands": 10})["data"]
    assert command["command"] == "KILL_WORKERS" and command["ack_requested"] == 0
    assert command["params"] == {"status": ["submitted"], "computingSite": ["Q"], "computingElement": ["ce1:9619"],
                                 "submissionHost": ["s1"]}
    assert srv.commands("h")[0]["status"] == "retrieved"
    assert call(client, "harvester/acquire_commands", {"harvester_id": "h", "n_commands": 10})["data"] == []
    ack = call(client, "harvester/acknowledge_commands", {"command_ids": [command["command_id"]]})
    assert ack == {"success": True, "message": "", "data": None}
    assert srv.commands("h")[0]["status"] == "acknowledged"
    assert call(client, "harvester/acquire_commands", {"harvester_id": "h", "n_commands": 10})["data"] == []
    assert call(client, "harvester/acknowledge_commands", {"command_ids": []}) == DATABASE_ERROR


def test_commands_come_oldest_first_n_at_a_time(srv, client):
    ids = [srv.add_command("h", f"COMMAND_{n}", {"n": n}) for n in range(3)]
    first = call(client, "harvester/acquire_commands", {"harvester_id": "h", "n_commands": 2})["data"]
    assert [c["command_id"] for c in first] == ids[:2] and first[1]["params"] == {"n": 1}
    rest = call(client, "harvester/acquire_commands", {"harvester_id": "h", "n_commands": 2})["data"]
    assert [c["command_id"] for c in rest] == ids[2:]


@pytest.mark.parametrize(
    ("schedconfig", "message"),
    [
        (None, "Error retrieving queue configuration from DB"),
        ({"harvester": ""}, "Queue not served by any harvester ID"),
        ({"capability": "ucore"}, "Problem generating command. Check PanDA server logs"),
    ],
)
def test_a_sweep_of_a_queue_no_factory_serves_is_refused(srv, client, schedconfig, message):
    if schedconfig is not None:
        srv.set_queue("Q", **schedconfig)
    sweep = {"panda_queue": "Q", "status_list": [], "ce_list": [], "submission_host_list": []}
    assert call(client, "harvester/add_sweep_command", sweep) == {"success": False, "message": message, "data": None}
    assert srv.sweep("Q", ["running"]) == message
    assert srv.commands() == []


def test_pilot_streaming_asks_for_the_workers_the_activated_jobs_need(srv, client):
    srv.set_queue("UPS_Q", harvester="h", capability="ucore", workflow="pull_ups")
    srv.submit_jobs("UPS_Q", 3, f"{srv.url}/hello.sh", "", extra={"resource_type": "SCORE"})
    stats = json.dumps({"managed": {"SCORE": {"submitted": 1, "running": 2}}})
    call(client, "harvester/report_worker_statistics", {"harvester_id": "h", "panda_queue": "UPS_Q",
                                                        "statistics": stats})
    assert srv.run_pilot_streaming() == {"UPS_Q": {"h": {"managed": {"SCORE": 3}}}}
    (command,) = call(client, "harvester/acquire_commands", {"harvester_id": "h", "n_commands": 10})["data"]
    assert (command["command"], command["params"]) == ("SET_N_WORKERS_JOBTYPE:UPS_Q", {"managed": {"SCORE": 3}})


def test_worker_statistics_replace_the_queues_last_report(srv, client):
    def report(statistics: Any) -> dict[str, Any]:
        payload = {"harvester_id": "h", "panda_queue": "Q", "statistics": json.dumps(statistics)}
        return call(client, "harvester/report_worker_statistics", payload)

    assert report({"managed": {"SCORE": {"running": 3}, "Undefined": {"running": 9}}})["message"] == "OK"
    assert report({"managed": {"MCORE": {"submitted": 2}}})["message"] == "OK"
    assert srv.worker_statistics() == {"Q": {"h": {"managed": {"MCORE": {"submitted": 2}}}}}
    assert call(client, "harvester/get_worker_statistics")["data"] == srv.worker_statistics()
    bad = {"harvester_id": "h", "panda_queue": "Q", "statistics": "not json"}
    assert call(client, "harvester/report_worker_statistics", bad) == {"success": False, "message": "database error",
                                                                        "data": None}


def test_update_worker_status_only_knows_started_and_finished(srv, client):
    payload = {"worker_id": 99, "harvester_id": "h", "status": "running"}
    assert call(client, "pilot/update_worker_status", payload)["message"] == (
        "Invalid worker state. The worker state has to be in ('started', 'finished')"
    )
    payload["status"] = "finished"
    assert call(client, "pilot/update_worker_status", payload)["success"] is True  # an unknown worker is no error


def test_service_metrics_need_microseconds_in_their_time(client):
    metrics = [["2026-12-01 22:00:42.123456", "factory.local", json.dumps({"cpu_pc": 3})]]
    assert call(client, "harvester/update_service_metrics", {"harvester_id": "h", "metrics": metrics}) == {
        "success": True, "message": "", "data": [True]
    }
    metrics[0][2] = {"cpu_pc": 3}
    assert call(client, "harvester/update_service_metrics", {"harvester_id": "h", "metrics": metrics}) == (
        DATABASE_ERROR
    )


def test_dialogs_replace_the_message_with_the_same_id(srv, client):
    dialog = {"diagID": 1, "moduleName": "submitter", "identifier": "q", "creationTime": "2026-12-01 22:00:42.0",
              "messageLevel": "ERROR", "diagMessage": "first"}
    assert call(client, "harvester/add_dialogs", {"harvester_id": "h", "dialogs": [dialog]})["success"] is True
    dialog["diagMessage"] = "second"
    call(client, "harvester/add_dialogs", {"harvester_id": "h", "dialogs": [dialog]})
    with srv.store.database.transaction() as cursor:
        rows = cursor.execute("SELECT diag_message FROM harvester_dialogs").fetchall()
    assert rows == [{"diag_message": "second"}]
    dialog["creationTime"] = "yesterday"
    assert call(client, "harvester/add_dialogs", {"harvester_id": "h", "dialogs": [dialog]}) == DATABASE_ERROR


def test_target_slots_are_set_and_removed(srv, client):
    slots = {"panda_queue": "Q", "slots": 5, "resource_type": "MCORE", "expiration_date": "2"}
    assert call(client, "harvester/add_target_slots", slots)["message"] == (
        "set numSlots=5 for PQ=Q gshare=None resource=MCORE"
    )
    assert [(s["num_slots"], s["resource_type"]) for s in srv.server.context.commands.slots()] == [(5, "MCORE")]
    call(client, "harvester/add_target_slots", {**slots, "slots": -1})
    assert srv.server.context.commands.slots() == []
    bad = call(client, "harvester/add_target_slots", {**slots, "expiration_date": "soon"})
    assert bad == {"success": False, "message": "database error in the panda server", "data": None}


def test_a_database_with_other_factory_columns_is_refused(tmp_path):
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as connection:
        connection.execute("CREATE TABLE harvester_workers (harvester_id TEXT, worker_id BIGINT, colour TEXT)")
    with pytest.raises(DatabaseError) as caught:
        Database(old)
    message = str(caught.value)
    assert "table harvester_workers lacks column(s) batch_id" in message
    assert "has unknown column(s) colour" in message and "another version of the dev server" in message


def test_a_worker_named_twice_in_one_call_sees_its_own_first_update(srv, client):
    twice = [worker(1, "finished", batchID="7.0"), worker(1, "running", nCore=4)]
    assert call(client, "harvester/update_workers", {"harvester_id": "h", "workers": twice})["data"] == [True, True]
    stored = srv.worker("h", 1)
    assert (stored["status"], stored["batchID"], stored["nCore"]) == ("finished", "7.0", 4)


def test_a_worker_related_to_a_job_in_an_earlier_call_is_synced_with_it(srv, client):
    call(client, "harvester/heartbeat", {"harvester_id": "h", "data": {}})
    panda_id = acquire_with_worker(srv, client, 9)
    client.update(panda_id, "running")
    others = [worker(8, "finished", syncLevel=1), worker(9, "failed", syncLevel=1, diagMessage="lost")]
    assert call(client, "harvester/update_workers", {"harvester_id": "h", "workers": others})["data"] == [True] * 2
    assert srv.job(panda_id)["status"] == "failed"
