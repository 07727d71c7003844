"""The wire helpers of ``autopilot_ops.panda.protocol`` and the job-spec format of ``job/submit``."""

from __future__ import annotations

import datetime
import json
import pickle

import pytest

from autopilot_ops.panda.devserver.jobspec import (
    FILE_ATTRIBUTES,
    JOB_ATTRIBUTES,
    JobSpecError,
    build_job_spec,
    dump_jobs_json,
    load_jobs_json,
)
from autopilot_ops.panda.protocol import (
    Envelope,
    ProtocolError,
    api_path,
    parse_envelope,
    parse_legacy_pickle,
    parse_legacy_reply,
    serialise_envelope,
)


def test_envelopes_round_trip_in_both_encodings():
    envelope = {"success": True, "message": "", "data": {"StatusCode": 0, "jobs": [{"a": None, "b": True}]}}
    for as_json in (True, False):
        text = serialise_envelope(envelope, as_json)
        assert parse_envelope(text) == Envelope(True, "", envelope["data"])
    assert serialise_envelope({"success": True, "message": "", "data": None}, False) == (
        "{'success': True, 'message': '', 'data': None}"
    )


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("<html>502 Bad Gateway</html>", "neither JSON nor a Python literal"),
        ("[1, 2]", "not an envelope dict"),
        ('{"success": true, "data": 1}', "lacks field message"),
        ('{"success": "yes", "message": "", "data": 1}', "'success' is str, not bool"),
    ],
)
def test_broken_envelopes_are_named(text, fault):
    with pytest.raises(ProtocolError, match=fault):
        parse_envelope(text)


def test_legacy_replies():
    assert parse_legacy_reply("StatusCode=0&command=NULL") == {"StatusCode": "0", "command": "NULL"}
    with pytest.raises(ProtocolError, match="lacks field StatusCode"):
        parse_legacy_reply("ERROR : method getJob is forbidden")
    assert parse_legacy_pickle(pickle.dumps({"Q": {"running": 1}})) == {"Q": {"running": 1}}
    with pytest.raises(ProtocolError, match="only plain data"):
        parse_legacy_pickle(pickle.dumps(datetime.datetime(2020, 1, 1)))


def test_api_path():
    assert api_path("pilot", "acquire_jobs") == "/api/v1/pilot/acquire_jobs"


def test_pandaclient_positional_states_are_read():
    """A state as ``JobUtils.dump_jobs_json`` writes it: attribute values in order, unset ones as "NULL"."""
    state = ["NULL"] * len(JOB_ATTRIBUTES)
    values = {"jobDefinitionID": 7, "transformation": "http://x/t.sh", "computingSite": "Q", "jobName": "j1",
              "assignedPriority": 900, "creationTime": {"_datetime_object": "2024-05-01 10:00:00.000000"}}
    for name, value in values.items():
        state[JOB_ATTRIBUTES.index(name)] = value
    log_file = ["NULL"] * len(FILE_ATTRIBUTES) + [None]
    log_file[FILE_ATTRIBUTES.index("lfn")] = "j1.log.tgz"
    log_file[FILE_ATTRIBUTES.index("type")] = "log"
    (spec,) = load_jobs_json(json.dumps([[*state, [log_file]]]))
    assert spec["jobDefinitionID"] == 7 and spec["assignedPriority"] == 900
    assert spec["creationTime"] == "2024-05-01 10:00:00"
    assert "cloud" not in spec
    assert spec["Files"] == [{"lfn": "j1.log.tgz", "type": "log"}]


def test_built_specs_survive_the_wire_format():
    spec = build_job_spec("Q", "http://x/t.sh", "-a", priority=5, in_files=["in.dat"], out_files=["out.dat"])
    (loaded,) = load_jobs_json(dump_jobs_json([spec]))
    assert loaded == spec
    assert [f["type"] for f in loaded["Files"]] == ["input", "output", "log"]


@pytest.mark.parametrize(
    ("jobs", "fault"),
    [
        ("not json", "jobs is not JSON"),
        ('{"a": 1}', "must be a JSON list"),
        ('[{"transformation": "t"}]', "job 0: field computingSite must be a non-empty string"),
        ('[{"computingSite": "Q", "transformation": "t", "Files": [{"lfn": "x", "type": "weird"}]}]',
         "job 0 file 0: field type must be one of"),
        ('[{"computingSite": "Q", "transformation": "t", "currentPriority": "high"}]',
         "job 0: field currentPriority must be an integer"),
    ],
)
def test_bad_job_specs_are_named(jobs, fault):
    with pytest.raises(JobSpecError, match=fault):
        load_jobs_json(jobs)


def test_submit_reports_bad_specs(client):
    answer = client.post("/api/v1/job/submit", {"jobs": "[]"}).json()
    assert answer == {"success": False, "message": "No jobs were submitted", "data": None}
    broken = client.post("/api/v1/job/submit", {"jobs": '[{"transformation": "t"}]'}).json()
    assert broken["message"] == "Failed to deserialize jobs: job 0: field computingSite must be a non-empty string"
