"""Stage-in checks and stage-out with the file report."""

from __future__ import annotations

import json
import tarfile
import zlib

import pytest

from autopilot_ops.pilot import errorcodes
from autopilot_ops.pilot.errorcodes import JobFailure
from autopilot_ops.pilot.job import parse_job
from autopilot_ops.pilot.staging import (
    make_log_tarball,
    output_report,
    stage_in,
    stage_out_file,
)

DATA = b"input bytes\n"


def job_with_input(checksum: str, fsize: int | None = len(DATA)):
    return parse_job(
        {
            "PandaID": 5,
            "transformation": "/bin/true",
            "inFiles": "in.dat",
            "scopeIn": "sc",
            "GUID": "g-in",
            "fsize": "" if fsize is None else str(fsize),
            "checksum": checksum,
            "outFiles": "out.dat,log.tgz",
            "logFile": "log.tgz",
            "logGUID": "g-log",
            "scopeOut": "sc",
        }
    )


@pytest.fixture
def storage(tmp_path):
    (tmp_path / "storage" / "sc").mkdir(parents=True)
    (tmp_path / "storage" / "sc" / "in.dat").write_bytes(DATA)
    (tmp_path / "work").mkdir()
    return tmp_path


def template(root):
    return (root / "storage").as_uri() + "/{scope}/{lfn}"


def test_stage_in_verifies_adler32_and_md5(storage):
    import hashlib

    for checksum in (f"ad:{zlib.adler32(DATA):08x}", f"md5:{hashlib.md5(DATA).hexdigest()}"):
        paths = stage_in(job_with_input(checksum), storage / "work", template(storage))
        assert paths == [storage / "work" / "in.dat"] and paths[0].read_bytes() == DATA
        paths[0].unlink()


@pytest.mark.parametrize(
    ("checksum", "fsize", "code"),
    [
        ("ad:00000001", len(DATA), errorcodes.GETADMISMATCH),
        ("md5:00000000000000000000000000000000", len(DATA), errorcodes.GETMD5MISMATCH),
        ("", 999, errorcodes.STAGEINFAILED),
        ("sha1:1234", len(DATA), errorcodes.UNKNOWNCHECKSUMTYPE),
    ],
)
def test_stage_in_rejects_corrupt_input(storage, checksum, fsize, code):
    with pytest.raises(JobFailure) as caught:
        stage_in(job_with_input(checksum, fsize), storage / "work", template(storage))
    assert caught.value.code == code and "in.dat" in caught.value.diag


def test_stage_in_missing_input(storage):
    (storage / "storage" / "sc" / "in.dat").unlink()
    with pytest.raises(JobFailure) as caught:
        stage_in(job_with_input(""), storage / "work", template(storage))
    assert caught.value.code == errorcodes.MISSINGINPUTFILE


def test_stage_out_and_report(storage):
    job = job_with_input("")
    work = storage / "work"
    (work / "out.dat").write_bytes(b"result")
    (work / "payload.stdout").write_text("hello\n")
    (work / "in.dat").write_bytes(DATA)
    out = stage_out_file(job.output_files[0], work / "out.dat", template(storage))
    assert (storage / "storage" / "sc" / "out.dat").read_bytes() == b"result"
    tarball = make_log_tarball(job, work, exclude=())
    log = stage_out_file(job.log_file, tarball, template(storage))
    assert log.guid == "g-log" and len(out.guid) == 36
    with tarfile.open(storage / "storage" / "unscoped" / "log.tgz") as archive:
        assert archive.getnames() == ["log/payload.stdout"]
    report = json.loads(output_report([out, log]))
    assert report["out.dat"] == {"guid": out.guid, "fsize": 6, "adler32": f"{zlib.adler32(b'result'):08x}"}
    assert set(report) == {"out.dat", "log.tgz"}


def test_stage_out_missing_output(storage):
    job = job_with_input("")
    with pytest.raises(JobFailure) as caught:
        stage_out_file(job.output_files[0], storage / "work" / "out.dat", template(storage))
    assert caught.value.code == errorcodes.MISSINGOUTPUTFILE


def test_new_guid_is_a_random_uuid4():
    import uuid

    from autopilot_ops.pilot.staging import new_guid

    first, second = new_guid(), new_guid()
    parsed = uuid.UUID(first)
    assert str(parsed) == first and parsed.version == 4 and parsed.variant == uuid.RFC_4122 and first != second
