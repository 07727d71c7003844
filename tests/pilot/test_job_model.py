"""The typed job: per-file records from comma lists, NULL as unset, malformed dicts named by field."""

from __future__ import annotations

import pytest

from autopilot_ops.pilot.job import JobDefinitionError, describe, panda_id_of, parse_job

# A job dict as PanDA 1.0.4 hands it out (shared/reference/panda-server-1.0.4/acquire_jobs-reply.json),
# with two inputs and one output added.
REFERENCE_JOB = {
    "StatusCode": 0,
    "PandaID": 2,
    "prodSourceLabel": "managed",
    "swRelease": "NULL",
    "homepackage": "NULL",
    "transformation": "https://example.invalid/trf/hello.sh",
    "jobName": "localtest.f2765e13",
    "jobDefinitionID": 1232,
    "cloud": "WORLD",
    "inFiles": "in1.dat,in2.dat",
    "dispatchDblock": "d1,d1",
    "dispatchDBlockToken": "NULL,NULL",
    "dispatchDBlockTokenForOut": "NULL",
    "outFiles": "out1.dat,localtest.log.tgz",
    "destinationDblock": "panda.dest,panda.dest",
    "destinationDBlockToken": "NULL,NULL",
    "prodDBlocks": "p1,p1",
    "prodDBlockToken": "NULL,NULL",
    "realDatasets": "ds.out,ds.log",
    "realDatasetsIn": "ds.in,ds.in",
    "fileDestinationSE": "local,local",
    "logFile": "localtest.log.tgz",
    "logGUID": "6649a394-bfcf-448a-a9a9-10e68f2a20db",
    "jobPars": "--message hello --sleep 1",
    "attemptNr": 0,
    "GUID": "g1,g2",
    "checksum": "ad:0a0b0c0d,md5:00112233445566778899aabbccddeeff",
    "fsize": "10,20",
    "scopeIn": "sc1,sc2",
    "scopeOut": "user",
    "scopeLog": "panda",
    "ddmEndPointIn": "",
    "ddmEndPointOut": "",
    "destinationSE": "local",
    "prodUserID": "/DC=local/CN=pilot",
    "maxCpuCount": 600,
    "minRamCount": 1000,
    "maxDiskCount": 100,
    "cmtConfig": "NULL",
    "processingType": "NULL",
    "transferType": "NULL",
    "sourceSite": "NULL",
    "currentPriority": 1000,
    "taskID": "NULL",
    "coreCount": 1,
    "jobsetID": "NULL",
    "reqID": "NULL",
    "nucleus": "NULL",
    "maxWalltime": "NULL",
    "resource_type": "Undefined",
    "ioIntensity": None,
    "ioIntensityUnit": None,
    "nSent": 1,
}


def test_comma_lists_become_per_file_records():
    job = parse_job(REFERENCE_JOB)
    assert [f.lfn for f in job.input_files] == ["in1.dat", "in2.dat"]
    first, second = job.input_files
    assert (first.guid, first.fsize, first.checksum, first.scope, first.dataset) == (
        "g1",
        10,
        "ad:0a0b0c0d",
        "sc1",
        "ds.in",
    )
    assert (second.guid, second.fsize, second.scope) == ("g2", 20, "sc2")
    assert first.ddm_endpoint is None


def test_outfiles_split_into_outputs_and_log():
    job = parse_job(REFERENCE_JOB)
    assert [f.lfn for f in job.output_files] == ["out1.dat"]
    assert job.output_files[0].scope == "user" and job.output_files[0].dataset == "ds.out"
    assert job.log_file is not None
    assert (job.log_file.lfn, job.log_file.guid, job.log_file.scope, job.log_file.dataset) == (
        "localtest.log.tgz",
        "6649a394-bfcf-448a-a9a9-10e68f2a20db",
        "panda",
        "ds.log",
    )


def test_null_means_unset_and_limits_fall_back():
    job = parse_job(REFERENCE_JOB)
    assert job.task_id is None and job.cmt_config is None and job.sw_release is None
    assert job.max_walltime is None
    assert job.wall_time_limit == 600  # maxCpuCount when maxWalltime is NULL
    assert job.memory_limit_mb == 1000
    assert parse_job({**REFERENCE_JOB, "maxWalltime": 30}).wall_time_limit == 30


def test_legacy_string_values_are_converted():
    legacy = {key: str(value) for key, value in REFERENCE_JOB.items() if value is not None}
    job = parse_job(legacy)
    assert job.panda_id == 2 and job.core_count == 1 and job.input_files[1].fsize == 20


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"PandaID": "twelve"}, "PandaID"),
        ({"PandaID": None}, "PandaID"),
        ({"transformation": "NULL"}, "transformation"),
        ({"GUID": "g1"}, "GUID"),
        ({"fsize": "10,big"}, "fsize"),
        ({"maxCpuCount": "soon"}, "maxCpuCount"),
        ({"inFiles": "a,,b"}, "inFiles"),
        ({"scopeOut": "a,b"}, "scopeOut"),
        ({"coreCount": -2}, "coreCount"),
        ({"jobPars": ["--a"]}, "jobPars"),
    ],
)
def test_malformed_dict_names_the_field(change, field):
    with pytest.raises(JobDefinitionError) as caught:
        parse_job({**REFERENCE_JOB, **change})
    assert caught.value.field == field
    assert f"'{field}'" in str(caught.value)


def test_not_a_dict():
    with pytest.raises(JobDefinitionError, match="must be a JSON object"):
        parse_job(["PandaID", 1])


def test_panda_id_of_malformed_dict():
    assert panda_id_of({**REFERENCE_JOB, "fsize": "x"}) == 2
    assert panda_id_of({"PandaID": "x"}) is None
    assert panda_id_of("nonsense") is None


def test_describe_lists_files():
    text = describe(parse_job(REFERENCE_JOB))
    assert "PandaID        2" in text and "in2.dat" in text and "out1.dat" in text
    assert "6649a394-bfcf-448a-a9a9-10e68f2a20db" in text
