"""Stage-in with size and checksum checks, stage-out of outputs and the log tarball, and the file report.

Error codes follow PanDAWMS/pilot3 ``pilot/common/errorcodes.py``; the report is the ``job_output_report``
JSON string ``{lfn: {"guid", "fsize", "adler32"}}`` that ``update_job`` hands to the server's adder
(``pilot_api.py: update_job`` -> ``AdderGen.dump_file_report``).
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from autopilot_ops.pilot import checksums, errorcodes
from autopilot_ops.pilot.errorcodes import JobFailure
from autopilot_ops.pilot.job import FileSpec, Job
from autopilot_ops.pilot.movers.base import (
    DataMover,
    MissingFileError,
    TransferError,
    UnknownMoverError,
    load_mover,
)
from autopilot_ops.record import Record


class StagedFile(Record):
    """An output or log file that reached storage."""

    lfn: str
    guid: str
    fsize: int
    adler32: str
    url: str


def file_url(
    template: str, spec: FileSpec, code: int = errorcodes.STAGEINFAILED, guid: str | None = None
) -> str:
    """Fill a storage URL template with the file's ``scope``, ``lfn``, ``dataset``, ``guid`` (``guid`` when given)
    and ``rse`` (its ``ddmEndPointIn``/``ddmEndPointOut``); a bad template fails the job with ``code``."""
    try:
        return template.format(
            scope=spec.scope or "unscoped",
            lfn=spec.lfn,
            dataset=spec.dataset or "",
            guid=guid or spec.guid or "",
            rse=spec.ddm_endpoint or "",
        )
    except (KeyError, IndexError, ValueError) as exc:
        raise JobFailure(code, f"bad storage URL template {template!r}: {exc}") from exc


def _mover(url: str, name: str | None, options: Mapping[str, str], code: int) -> DataMover:
    try:
        return load_mover(url, name, options)
    except UnknownMoverError as exc:
        raise JobFailure(code, str(exc)) from exc


def verify(spec: FileSpec, path: Path) -> None:
    """Check the staged-in ``path`` against the size and checksum PanDA gave for it."""
    size = path.stat().st_size
    if spec.fsize and size != spec.fsize:  # 0 is FileSpec's default: size unknown
        raise JobFailure(errorcodes.STAGEINFAILED, f"input {spec.lfn} has {size} bytes, expected {spec.fsize}")
    if spec.checksum is None:
        return
    try:
        kind, expected = checksums.parse(spec.checksum)
    except checksums.ChecksumError as exc:
        raise JobFailure(errorcodes.UNKNOWNCHECKSUMTYPE, f"input {spec.lfn}: {exc}") from exc
    actual = checksums.compute(kind, path)
    if actual != expected:
        code = errorcodes.GETADMISMATCH if kind == "adler32" else errorcodes.GETMD5MISMATCH
        raise JobFailure(code, f"input {spec.lfn} {kind} is {actual}, expected {expected}")


def stage_in(
    job: Job, workdir: Path, template: str, mover: str | None = None, options: Mapping[str, str] | None = None
) -> list[Path]:
    """Fetch every input into ``workdir`` and verify it; raise :class:`JobFailure` on the first failure."""
    paths = []
    for spec in job.input_files:
        url = file_url(template, spec)
        destination = workdir / spec.lfn
        try:
            _mover(url, mover, options or {}, errorcodes.STAGEINFAILED).get(url, destination)
        except MissingFileError as exc:
            raise JobFailure(errorcodes.MISSINGINPUTFILE, f"stage-in of {spec.lfn}: {exc}") from exc
        except TransferError as exc:
            raise JobFailure(exc.code or errorcodes.STAGEINFAILED, f"stage-in of {spec.lfn}: {exc}") from exc
        verify(spec, destination)
        paths.append(destination)
    return paths


def stage_out_file(
    spec: FileSpec, path: Path, template: str, mover: str | None = None, options: Mapping[str, str] | None = None
) -> StagedFile:
    """Copy one output (or the log) to storage; the GUID is PanDA's when it gave one, else a new one."""
    if not path.is_file():
        raise JobFailure(errorcodes.MISSINGOUTPUTFILE, f"output {spec.lfn} was not produced by the payload")
    guid = spec.guid or new_guid()  # before the copy: a catalogue (Rucio) registers the GUID the report carries
    url = file_url(template, spec, errorcodes.STAGEOUTFAILED, guid)
    try:
        _mover(url, mover, options or {}, errorcodes.STAGEOUTFAILED).put(path, url)
    except TransferError as exc:
        raise JobFailure(exc.code or errorcodes.STAGEOUTFAILED, f"stage-out of {spec.lfn}: {exc}") from exc
    return StagedFile(spec.lfn, guid, path.stat().st_size, checksums.adler32(path), url)


def new_guid() -> str:
    """A random (version 4) UUID, as ``str(uuid.uuid4())`` without importing ``uuid`` (and ``platform``)."""
    value = bytearray(os.urandom(16))
    value[6] = (value[6] & 0x0F) | 0x40
    value[8] = (value[8] & 0x3F) | 0x80
    text = value.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def make_log_tarball(job: Job, workdir: Path, exclude: Iterable[str]) -> Path:
    """Tar and gzip the work dir (minus inputs, outputs and ``exclude``) into the job's ``logFile``."""
    assert job.log_file is not None
    tarball = workdir / job.log_file.lfn
    skip = {tarball.name, *exclude, *(spec.lfn for spec in job.input_files)}
    skip.update(spec.lfn for spec in job.output_files)
    top = job.log_file.lfn.removesuffix(".tgz").removesuffix(".tar.gz")
    try:
        with tarfile.open(tarball, "w:gz", compresslevel=6) as archive:
            for entry in sorted(workdir.iterdir()):
                if entry.name not in skip:
                    archive.add(entry, arcname=f"{top}/{entry.name}")
    except OSError as exc:
        raise JobFailure(errorcodes.LOGFILECREATIONFAILURE, f"log tarball {tarball.name}: {exc}") from exc
    return tarball


def output_report(staged: Iterable[StagedFile]) -> str:
    """The ``job_output_report`` JSON string: ``{lfn: {"guid", "fsize", "adler32"}}``."""
    return json.dumps({f.lfn: {"guid": f.guid, "fsize": f.fsize, "adler32": f.adler32} for f in staged})
