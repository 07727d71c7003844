"""Submission, dispatch, updates, the job_output_report rule, kills and statistics."""

from __future__ import annotations

import json
import threading
from collections import Counter

from autopilot_ops.panda.devserver.jobspec import build_job_spec, dump_jobs_json
from autopilot_ops.panda.protocol import JOB_KEYS


def submit(client, specs):
    answer = client.post("/api/v1/job/submit", {"jobs": dump_jobs_json(specs)})
    assert answer.json()["success"] is True, answer.text
    return answer.json()["data"]


def test_submit_replies_like_the_real_server(client):
    specs = [build_job_spec("LOCAL_QUEUE", "http://x/hello.sh", "--n 2", job_definition_id=4242) for _ in range(3)]
    data = submit(client, specs)
    assert [row[1:] for row in data] == [[4242, spec["jobName"]] for spec in specs]
    assert all(isinstance(row[0], int) for row in data)
    assert len({row[0] for row in data}) == 3


def test_job_dict_has_the_reference_keys_order_and_types(client, srv, reference):
    ids = srv.submit_jobs("LOCAL_QUEUE", 1, "http://127.0.0.1:8765/hello.sh", "--sleep 0 --n 2", priority=1002)
    answer = client.acquire("LOCAL_QUEUE")
    envelope = answer.json()
    assert envelope["success"] is True and envelope["message"] == ""
    assert envelope["data"]["StatusCode"] == 0
    (job,) = envelope["data"]["jobs"]
    expected = reference["acquire"]["body"]["data"]["jobs"][0]
    assert list(job) == list(expected) == list(JOB_KEYS)
    assert {key: type(value).__name__ for key, value in job.items()} == reference["job_types"]
    varying = {"PandaID", "jobName", "outFiles", "destinationDblock", "realDatasets", "logFile", "logGUID",
               "scopeLog", "nSent", "jobDefinitionID"}
    assert {k: v for k, v in job.items() if k not in varying} == {k: v for k, v in expected.items() if k not in varying}
    assert job["PandaID"] == ids[0]
    assert job["logFile"] == job["outFiles"] == f"{job['jobName']}.log.tgz"


def test_full_job_life_matches_reference_replies(client, srv, reference):
    (panda_id,) = srv.submit_jobs("LOCAL_QUEUE", 1, f"{srv.url}/hello.sh", "")
    job = client.acquire("LOCAL_QUEUE", node="wn01").json()["data"]["jobs"][0]
    assert client.update(panda_id, "starting").json() == reference["update_running"]["body"]
    assert client.update(panda_id, "running", node="wn01", cpu_consumption_time=3).json() == (
        reference["update_running"]["body"]
    )
    finished = client.update(
        panda_id, "finished", job_output_report=client.output_report(job), trans_exit_code=0,
        start_time="2026-01-01 10:00:00", end_time="2026-01-01 10:05:00", core_count=2,
    )
    assert finished.json() == reference["update_finished"]["body"]
    status = client.get(f"/api/v1/pilot/get_job_status?job_ids={panda_id}").json()
    assert status == {"success": True, "message": "", "data": [{"job_id": panda_id, "status": "finished",
                                                               "attempt_number": 0}]}
    record = srv.job(panda_id)
    assert [h["status"] for h in record["history"]] == ["activated", "sent", "starting", "running", "holding",
                                                        "finished"]
    assert record["node"] == "wn01"
    assert (record["start_time"], record["end_time"]) == ("2026-01-01 10:00:00", "2026-01-01 10:05:00")
    assert record["trans_exit_code"] == 0
    assert record["pilot_params"]["actualCoreCount"] == 2
    assert record["pilot_params"]["cpuConsumptionTime"] == 3
    assert json.loads(record["job_output_report"]) == json.loads(client.output_report(job))
    assert record["files"][0]["status"] == "ready" and record["files"][0]["checksum"] == "ad:0a1b2c3d"


def test_highest_priority_first_then_lowest_id(client, srv):
    low = srv.submit_jobs("PRIO", 1, "http://x/a.sh", "", priority=5)
    high = srv.submit_jobs("PRIO", 2, "http://x/a.sh", "", priority=100)
    middle = srv.submit_jobs("PRIO", 1, "http://x/a.sh", "", priority=50)
    order = [client.acquire("PRIO").json()["data"]["jobs"][0]["PandaID"] for _ in range(4)]
    assert order == [*high, *middle, *low]
    assert client.acquire("PRIO").json()["message"] == "No jobs in PanDA"


def test_n_jobs_hands_out_several_jobs_in_priority_order(client, srv):
    ids = [srv.submit_jobs("BULK", 1, "http://x/a.sh", "", priority=p)[0] for p in (1, 3, 2)]
    jobs = client.acquire("BULK", n_jobs=5).json()["data"]["jobs"]
    assert [job["PandaID"] for job in jobs] == [ids[1], ids[2], ids[0]]
    assert {job["nSent"] for job in jobs} == {3}


def test_no_double_dispatch_under_concurrent_acquires(srv, connect):
    ids = srv.submit_jobs("RACE", 40, "http://x/a.sh", "")
    clients = [connect(srv.url) for _ in range(64)]
    barrier = threading.Barrier(len(clients))
    got: list[int] = []
    empty = []
    lock = threading.Lock()

    def one_acquire(raw):
        barrier.wait()
        envelope = raw.acquire("RACE", node=f"wn{id(raw)}").json()
        with lock:
            if envelope["success"]:
                got.extend(job["PandaID"] for job in envelope["data"]["jobs"])
            else:
                empty.append(envelope["message"])

    threads = [threading.Thread(target=one_acquire, args=(raw,)) for raw in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(got) == sorted(ids)
    assert not [pid for pid, n in Counter(got).items() if n > 1]
    assert empty == ["No jobs in PanDA"] * (len(clients) - len(ids))
    assert {srv.job(pid)["status"] for pid in ids} == {"sent"}


def test_filters_memory_disk_and_label(client, srv):
    (big,) = srv.submit_jobs("FILTER", 1, "http://x/a.sh", "", extra={"minRamCount": 8000})
    (user_job,) = srv.submit_jobs("FILTER", 1, "http://x/a.sh", "", prod_source_label="user")
    assert client.acquire("FILTER", memory=4000).json()["message"] == "No jobs in PanDA"
    assert client.acquire("FILTER", memory=16000).json()["data"]["jobs"][0]["PandaID"] == big
    assert client.acquire("FILTER").json()["message"] == "No jobs in PanDA"  # managed pilots skip user jobs
    assert client.acquire("FILTER", prod_source_label="user").json()["data"]["jobs"][0]["PandaID"] == user_job


def test_finished_without_output_report_ends_failed(client, srv):
    (panda_id,) = srv.submit_jobs("ADDER", 1, "http://x/a.sh", "")
    client.acquire("ADDER")
    assert client.update(panda_id, "finished").json()["data"] == {"StatusCode": 0, "command": "NULL"}
    record = srv.job(panda_id)
    assert record["status"] == "failed"
    assert record["ddm_error_code"] == 200
    assert record["ddm_error_diag"] == "Could not get GUID/LFN/MD5/FSIZE/SURL from pilot JSON"
    assert [h["status"] for h in record["history"]][-2:] == ["holding", "failed"]


def test_finished_with_a_missing_output_ends_failed(client, srv):
    (panda_id,) = srv.submit_jobs("ADDER", 1, "http://x/a.sh", "", out_files=["out.root"])
    job = client.acquire("ADDER").json()["data"]["jobs"][0]
    assert job["outFiles"] == f"out.root,{job['logFile']}"
    report = {job["logFile"]: {"guid": job["logGUID"], "fsize": 5, "md5sum": "0" * 32}}
    client.update(panda_id, "finished", job_output_report=json.dumps(report))
    record = srv.job(panda_id)
    assert record["status"] == "failed"
    assert record["ddm_error_diag"] == "expected output out.root is missing in pilot JSON"


def test_finished_with_a_report_lacking_checksums_ends_failed(client, srv):
    (panda_id,) = srv.submit_jobs("ADDER", 1, "http://x/a.sh", "")
    job = client.acquire("ADDER").json()["data"]["jobs"][0]
    report = {job["logFile"]: {"guid": job["logGUID"], "fsize": 5}}
    client.update(panda_id, "finished", job_output_report=json.dumps(report))
    assert srv.job(panda_id)["status"] == "failed"


def test_finished_with_outputs_and_a_full_report_ends_finished(client, srv):
    (panda_id,) = srv.submit_jobs("ADDER", 1, "http://x/a.sh", "", out_files=["a.root", "b.root"])
    job = client.acquire("ADDER").json()["data"]["jobs"][0]
    client.update(panda_id, "finished", job_output_report=client.output_report(job))
    record = srv.job(panda_id)
    assert record["status"] == "finished" and record["ddm_error_code"] is None
    assert {f["lfn"]: f["status"] for f in record["files"]} == {"a.root": "ready", "b.root": "ready",
                                                                job["logFile"]: "ready"}


def test_failed_report_keeps_the_pilot_codes(client, srv):
    (panda_id,) = srv.submit_jobs("ADDER", 1, "http://x/a.sh", "")
    client.acquire("ADDER")
    client.update(panda_id, "running")
    client.update(panda_id, "failed", pilot_error_code=1305, pilot_error_diag="payload died", exe_error_code=137)
    record = srv.job(panda_id)
    assert (record["status"], record["pilot_error_code"], record["exe_error_code"]) == ("failed", 1305, 137)
    assert record["pilot_error_diag"] == "payload died"
    assert record["ddm_error_code"] is None  # the pilot's error, not the report, explains the failure


def test_input_files_are_listed_comma_separated(client, srv):
    files = [{"lfn": "in1.dat", "guid": "g1", "fsize": 10, "checksum": "ad:00000001", "scope": "sc"}, "in2.dat"]
    srv.submit_jobs("FILES", 1, "http://x/a.sh", "", in_files=files)
    job = client.acquire("FILES").json()["data"]["jobs"][0]
    assert job["inFiles"] == "in1.dat,in2.dat"
    assert job["GUID"].split(",")[0] == "g1"
    assert job["fsize"] == "10,0"
    assert job["checksum"].split(",")[0] == "ad:00000001"
    assert job["scopeIn"] == "sc,autopilot"


def test_updates_to_unknown_or_finished_jobs_tell_the_pilot_to_stop(client, srv):
    assert client.update(987654321, "running").json()["data"] == {"StatusCode": 0, "command": "tobekilled"}
    (panda_id,) = srv.submit_jobs("DONE", 1, "http://x/a.sh", "", log_file=False)
    client.acquire("DONE")
    client.update(panda_id, "finished")
    assert srv.job(panda_id)["status"] == "finished"  # no outputs, no report needed
    assert client.update(panda_id, "running").json()["data"]["command"] == "tobekilled"


def test_invalid_job_status(client):
    answer = client.update(1, "exploded").json()
    assert answer == {"success": False, "message": "Invalid job status: exploded", "data": {"StatusCode": 50}}


def test_running_does_not_go_back_to_starting(client, srv):
    (panda_id,) = srv.submit_jobs("ORDER", 1, "http://x/a.sh", "")
    client.acquire("ORDER")
    client.update(panda_id, "running")
    client.update(panda_id, "starting")
    assert srv.job(panda_id)["status"] == "running"


def test_kill_cancels_waiting_jobs_and_tells_running_ones(client, srv):
    waiting, running = srv.submit_jobs("KILL", 2, "http://x/a.sh", "")
    client.acquire("KILL")  # hands out `waiting` (lower id first)
    client.acquire("KILL")
    client.update(running, "running")
    answer = client.post("/api/v1/job/kill", {"job_ids": [waiting, running, 987654321]}).json()
    assert answer == {"success": True, "message": "", "data": [True, True, False]}
    assert srv.job(waiting)["status"] == "cancelled"
    assert srv.job(waiting)["task_buffer_error_code"] == 100
    assert srv.job(running)["status"] == "running"
    assert client.update(running, "running").json()["data"]["command"] == "tobekilled"
    assert client.update(waiting, "running").json()["data"]["command"] == "tobekilled"


def test_update_jobs_bulk(client, srv):
    first, second = srv.submit_jobs("BULKUPD", 2, "http://x/a.sh", "")
    client.acquire("BULKUPD", n_jobs=2)
    answer = client.post(
        "/api/v1/pilot/update_jobs_bulk",
        {"job_list": [{"job_id": first, "job_status": "running"}, {"job_id": second, "job_status": "nonsense"}]},
    ).json()
    assert answer["success"] is True
    assert answer["data"][0] == {"success": True, "message": "", "data": {"StatusCode": 0, "command": "NULL"}}
    assert answer["data"][1]["message"] == "Invalid job status: nonsense"
    assert srv.job(first)["status"] == "running"
    broken = client.post("/api/v1/pilot/update_jobs_bulk", {"job_list": [{"job_status": "running"}]}).json()
    assert broken == {"success": False, "message": "failed with KeyError 'job_id'", "data": []}


def test_active_job_stats_by_site(client, srv, reference):
    empty = client.get("/api/v1/statistics/active_job_stats_by_site").json()
    assert empty == {"success": False, "message": "Database failure getting the job statistics", "data": {}}
    ids = srv.submit_jobs("LOCAL_QUEUE", 3, "http://x/a.sh", "")
    srv.submit_jobs("OTHER", 1, "http://x/a.sh", "")
    client.acquire("LOCAL_QUEUE")
    client.acquire("LOCAL_QUEUE")
    client.update(ids[0], "finished")
    client.update(ids[1], "running")
    stats = client.get("/api/v1/statistics/active_job_stats_by_site").json()
    assert stats["success"] is True
    assert stats["data"] == {
        "LOCAL_QUEUE": {"activated": 1, "running": 1, "assigned": 0},
        "OTHER": {"activated": 1, "assigned": 0, "running": 0},
    }
    shape = reference["stats_by_site"]["body"]["data"]["LOCAL_QUEUE"]
    assert set(shape) <= set(stats["data"]["LOCAL_QUEUE"]) | {"holding"}
    detailed = client.get("/api/v1/statistics/active_job_detailed_stats_by_site").json()["data"]
    assert detailed["OTHER"] == {"Undefined": {"managed": {"activated": 1, "assigned": 0, "running": 0}}}


def test_malformed_times_are_ignored_and_running_sets_the_start(client, srv):
    (panda_id,) = srv.submit_jobs("TIMES", 1, "http://x/a.sh", "")
    client.acquire("TIMES")
    answer = client.update(panda_id, "running", start_time="yesterday at noon")
    assert answer.json()["success"] is True
    record = srv.job(panda_id)
    assert record["start_time"] is not None and record["start_time"] != "yesterday at noon"
    assert len(record["start_time"]) == len("2026-01-01 10:00:00")
