"""Names from the job that become paths are refused before anything is downloaded or run."""

from __future__ import annotations

import pytest

from autopilot_ops.pilot import errorcodes
from autopilot_ops.pilot.job import JobDefinitionError, parse_job

QUEUE = "LOCAL_QUEUE"

BASE = {
    "PandaID": 7,
    "transformation": "/bin/true",
    "inFiles": "in1.dat",
    "scopeIn": "mc16",
    "realDatasetsIn": "mc16:mc16.input",
    "dispatchDblock": "panda.disp",
    "GUID": "NULL",
    "outFiles": "out1.dat,job.log.tgz",
    "scopeOut": "mc16",
    "realDatasets": "user.me.out,user.me.log",
    "destinationDblock": "panda.dest,panda.dest",
    "logFile": "job.log.tgz",
    "scopeLog": "mc16",
}


def test_plain_names_are_accepted():
    job = parse_job(BASE)
    assert job.input_files[0].lfn == "in1.dat" and job.log_file.lfn == "job.log.tgz"


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"logFile": "../../../../tmp/x.log.tgz", "outFiles": "out1.dat,../../../../tmp/x.log.tgz"}, "logFile", 1371),
        ({"logFile": "/tmp/y.log.tgz", "outFiles": "out1.dat,/tmp/y.log.tgz"}, "logFile", 1371),
        ({"outFiles": "../out1.dat,job.log.tgz"}, "outFiles", 1371),
        ({"outFiles": "sub/out1.dat,job.log.tgz"}, "outFiles", 1371),
        ({"outFiles": "out\x00.dat,job.log.tgz"}, "outFiles", 1371),
        ({"outFiles": "out\n.dat,job.log.tgz"}, "outFiles", 1371),
        ({"outFiles": "x" * 252 + ",job.log.tgz"}, "outFiles", errorcodes.LFNTOOLONG),
        ({"inFiles": ".."}, "inFiles", errorcodes.CONVERSIONFAILURE),
        ({"inFiles": "/etc/passwd"}, "inFiles", errorcodes.CONVERSIONFAILURE),
        ({"inFiles": "in\x1b.dat"}, "inFiles", errorcodes.CONVERSIONFAILURE),
        ({"inFiles": "y" * 300}, "inFiles", errorcodes.LFNTOOLONG),
        ({"scopeIn": ".."}, "scopeIn", errorcodes.CONVERSIONFAILURE),
        ({"scopeIn": "../../etc"}, "scopeIn", errorcodes.CONVERSIONFAILURE),
        ({"scopeOut": "a/b"}, "scopeOut", errorcodes.CONVERSIONFAILURE),
        ({"scopeLog": "s" * 26}, "scopeLog", errorcodes.CONVERSIONFAILURE),
        ({"realDatasetsIn": "../ds"}, "realDatasetsIn", errorcodes.CONVERSIONFAILURE),
        ({"realDatasets": "user.me.out,../../ds"}, "realDatasets", errorcodes.CONVERSIONFAILURE),
        ({"dispatchDblock": "/abs/disp"}, "dispatchDblock", errorcodes.CONVERSIONFAILURE),
        ({"destinationDblock": "panda.dest,..:x\x00"}, "destinationDblock", errorcodes.CONVERSIONFAILURE),
        ({"transformation": "http://127.0.0.1/trf\x00.sh"}, "transformation", errorcodes.CONVERSIONFAILURE),
        ({"transformation": "http://127.0.0.1/trf%00.sh"}, "transformation", errorcodes.CONVERSIONFAILURE),
        ({"transformation": "/bin/true\n/bin/sh"}, "transformation", errorcodes.CONVERSIONFAILURE),
    ],
)
def test_path_like_names_are_refused(changes, field, code):
    with pytest.raises(JobDefinitionError) as caught:
        parse_job({**BASE, **changes})
    assert caught.value.field == field and caught.value.code == code
    assert f"field '{field}'" in str(caught.value) and "value '" in str(caught.value)


def test_pilot_refuses_a_traversing_log_file(panda, pilot, make_script, tmp_path):
    """The whole pilot: the job fails with the code and a diag naming the field, and nothing runs or is written."""
    marker = tmp_path / "payload-ran"
    trf = make_script("trf.sh", f"touch {marker}\n")
    target = tmp_path / "outside"
    escape = "../" * 12 + str(target).lstrip("/") + "/x.dat"
    job_id = panda.submit_jobs(QUEUE, 1, str(trf), "", out_files=[escape])[0]
    result = pilot.run(panda.url)
    assert result.returncode == 0, result.stderr
    job = panda.job(job_id)
    assert job["status"] == "failed" and job["pilot_error_code"] == errorcodes.BADOUTPUTFILENAME
    assert "field 'outFiles'" in job["pilot_error_diag"] and "../" in job["pilot_error_diag"]
    assert not marker.exists() and not target.exists()
    assert not (pilot.root / "work" / f"PanDA_Pilot-{job_id}").exists()
