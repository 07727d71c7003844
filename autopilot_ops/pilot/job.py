"""The typed job: a PanDA job dict parsed into per-file records and checked values.

The dict is what ``acquire_jobs`` hands out (PanDAWMS/panda-server ``pandaserver/jobdispatcher/Protocol.py``,
``Response.appendJob``): multi-file fields are comma-separated strings in file order, ``outFiles`` holds the
outputs and then the log file, and an unset value is the string ``"NULL"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import partial

from autopilot_ops.pilot import errorcodes, names
from autopilot_ops.record import Record, field

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

NULL = "NULL"


class JobDefinitionError(ValueError):
    """The job dict is malformed; names the field, and the job when its PandaID could be read; ``code`` is the
    pilot3 error code to report."""

    def __init__(
        self, field_name: str, problem: str, panda_id: int | None = None, code: int = errorcodes.CONVERSIONFAILURE
    ) -> None:
        self.field = field_name
        self.panda_id = panda_id
        self.code = code
        job = f"job {panda_id}" if panda_id is not None else "job"
        super().__init__(f"malformed {job} definition: field '{field_name}' {problem}")


class FileSpec(Record):
    """One input, output or log file of a job."""

    lfn: str
    scope: str | None = None
    guid: str | None = None
    fsize: int | None = None
    checksum: str | None = None
    dataset: str | None = None
    ddm_endpoint: str | None = None


class Job(Record):
    """A PanDA job as the pilot runs it."""

    panda_id: int
    transformation: str
    job_pars: str = ""
    job_name: str | None = None
    attempt_nr: int = 0
    prod_source_label: str | None = None
    core_count: int = 1
    max_cpu_count: int | None = None
    max_walltime: int | None = None
    min_ram_count: int | None = None
    max_disk_count: int | None = None
    task_id: int | None = None
    cmt_config: str | None = None
    sw_release: str | None = None
    resource_type: str | None = None
    input_files: tuple[FileSpec, ...] = ()
    output_files: tuple[FileSpec, ...] = ()
    log_file: FileSpec | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def wall_time_limit(self) -> int | None:
        """Seconds the payload may run: ``maxWalltime``, else ``maxCpuCount``; None when neither is set."""
        for limit in (self.max_walltime, self.max_cpu_count):
            if limit and limit > 0:
                return limit
        return None

    @property
    def memory_limit_mb(self) -> int | None:
        """The job's memory in MB (``minRamCount``); None when unset."""
        return self.min_ram_count if self.min_ram_count and self.min_ram_count > 0 else None


def _unset(value: Any) -> bool:
    return value is None or value == "" or value == NULL


def _text(raw: Mapping[str, Any], key: str, panda_id: int | None) -> str | None:
    value = raw.get(key)
    if _unset(value):
        return None
    if isinstance(value, (dict, list, tuple, bool)):
        raise JobDefinitionError(key, f"must be a string, got {type(value).__name__}", panda_id)
    return str(value)


def _integer(value: Any, key: str, panda_id: int | None) -> int | None:
    if _unset(value):
        return None
    if isinstance(value, bool):
        raise JobDefinitionError(key, f"must be an integer, got {value!r}", panda_id)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise JobDefinitionError(key, f"must be an integer, got {value!r}", panda_id)


def _column(raw: Mapping[str, Any], key: str, count: int, panda_id: int | None) -> list[str | None]:
    """Split the comma list ``raw[key]`` into ``count`` values; unset or empty means all unset."""
    text = _text(raw, key, panda_id)
    if text is None or count == 0:
        return [None] * count
    items = text.split(",")
    if len(items) != count:
        raise JobDefinitionError(key, f"has {len(items)} entries, expected {count}", panda_id)
    return [None if _unset(item.strip()) else item.strip() for item in items]


def _names(raw: Mapping[str, Any], key: str, panda_id: int | None) -> list[str]:
    text = _text(raw, key, panda_id)
    if text is None:
        return []
    names = [name.strip() for name in text.split(",")]
    if any(not name or name == NULL for name in names):
        raise JobDefinitionError(key, f"has an empty file name in {text!r}", panda_id)
    return names


def _inputs(raw: Mapping[str, Any], panda_id: int) -> tuple[FileSpec, ...]:
    lfns = _names(raw, "inFiles", panda_id)
    n = len(lfns)
    guids = _column(raw, "GUID", n, panda_id)
    sizes = [_integer(size, "fsize", panda_id) for size in _column(raw, "fsize", n, panda_id)]
    checksums = _column(raw, "checksum", n, panda_id)
    scopes = _column(raw, "scopeIn", n, panda_id)
    datasets = _column(raw, "realDatasetsIn", n, panda_id)
    endpoints = _column(raw, "ddmEndPointIn", n, panda_id)
    return tuple(
        FileSpec(lfn, scopes[i], guids[i], sizes[i], checksums[i], datasets[i], endpoints[i])
        for i, lfn in enumerate(lfns)
    )


def _outputs(raw: Mapping[str, Any], panda_id: int) -> tuple[tuple[FileSpec, ...], FileSpec | None]:
    names = _names(raw, "outFiles", panda_id)
    log_lfn = _text(raw, "logFile", panda_id)
    if log_lfn is not None and log_lfn not in names:
        names.append(log_lfn)
    datasets = _column(raw, "realDatasets", len(names), panda_id)
    endpoints = _column(raw, "ddmEndPointOut", len(names), panda_id)
    output_names = [name for name in names if name != log_lfn]
    scopes = _column(raw, "scopeOut", len(output_names), panda_id)
    outputs = []
    log_file = None
    for i, lfn in enumerate(names):
        if lfn == log_lfn:
            log_file = FileSpec(
                lfn,
                scope=_text(raw, "scopeLog", panda_id),
                guid=_text(raw, "logGUID", panda_id),
                dataset=datasets[i],
                ddm_endpoint=endpoints[i],
            )
        else:
            scope = scopes[output_names.index(lfn)]
            outputs.append(FileSpec(lfn, scope=scope, dataset=datasets[i], ddm_endpoint=endpoints[i]))
    return tuple(outputs), log_file


def _check(check: Callable[[str], None], value: str | None, key: str, panda_id: int) -> None:
    if value is None:
        return
    try:
        check(value)
    except names.BadName as exc:
        raise JobDefinitionError(key, str(exc), panda_id, exc.code) from None


def _check_names(raw: Mapping[str, Any], job: Job) -> None:
    """Refuse every name that becomes a path or a storage URL part unless it is a plain name (``names``)."""
    pid = job.panda_id
    _check(names.check_transformation, job.transformation, "transformation", pid)
    for spec in job.input_files:
        _check(names.check_lfn, spec.lfn, "inFiles", pid)
        _check(names.check_scope, spec.scope, "scopeIn", pid)
        _check(names.check_dataset, spec.dataset, "realDatasetsIn", pid)
    output = partial(names.check_lfn, output=True)
    for spec in job.output_files:
        _check(output, spec.lfn, "outFiles", pid)
        _check(names.check_scope, spec.scope, "scopeOut", pid)
        _check(names.check_dataset, spec.dataset, "realDatasets", pid)
    if job.log_file is not None:
        _check(output, job.log_file.lfn, "logFile", pid)
        _check(names.check_scope, job.log_file.scope, "scopeLog", pid)
        _check(names.check_dataset, job.log_file.dataset, "realDatasets", pid)
    for key in ("dispatchDblock", "destinationDblock"):
        for value in (_text(raw, key, pid) or "").split(","):
            _check(names.check_dataset, None if _unset(value.strip()) else value.strip(), key, pid)


def parse_job(raw: Any) -> Job:
    """Parse a PanDA job dict; raise :class:`JobDefinitionError` naming the bad field (and value, for a name)."""
    if not isinstance(raw, Mapping):
        raise JobDefinitionError("<job>", f"must be a JSON object, got {type(raw).__name__}")
    panda_id = _integer(raw.get("PandaID"), "PandaID", None)
    if panda_id is None or panda_id <= 0:
        raise JobDefinitionError("PandaID", f"must be a positive integer, got {raw.get('PandaID')!r}")
    transformation = _text(raw, "transformation", panda_id)
    if transformation is None:
        raise JobDefinitionError("transformation", "is missing", panda_id)
    outputs, log_file = _outputs(raw, panda_id)

    def integer(key: str) -> int | None:
        return _integer(raw.get(key), key, panda_id)

    core_count = integer("coreCount") or 1  # PanDA sends 1 for an unset core count (Protocol.py)
    if core_count < 1:
        raise JobDefinitionError("coreCount", f"must be at least 1, got {core_count}", panda_id)
    job = Job(
        panda_id=panda_id,
        transformation=transformation,
        job_pars=_text(raw, "jobPars", panda_id) or "",
        job_name=_text(raw, "jobName", panda_id),
        attempt_nr=integer("attemptNr") or 0,
        prod_source_label=_text(raw, "prodSourceLabel", panda_id),
        core_count=core_count,
        max_cpu_count=integer("maxCpuCount"),
        max_walltime=integer("maxWalltime"),
        min_ram_count=integer("minRamCount"),
        max_disk_count=integer("maxDiskCount"),
        task_id=integer("taskID"),
        cmt_config=_text(raw, "cmtConfig", panda_id),
        sw_release=_text(raw, "swRelease", panda_id),
        resource_type=_text(raw, "resource_type", panda_id),
        input_files=_inputs(raw, panda_id),
        output_files=outputs,
        log_file=log_file,
        raw=dict(raw),
    )
    _check_names(raw, job)
    return job


def panda_id_of(raw: Any) -> int | None:
    """The PandaID of a (possibly malformed) job dict, when it can be read at all."""
    if not isinstance(raw, Mapping):
        return None
    try:
        value = _integer(raw.get("PandaID"), "PandaID", None)
    except JobDefinitionError:
        return None
    return value if value and value > 0 else None


def describe(job: Job) -> str:
    """A human-readable, multi-line description of ``job`` (for ``autopilot pilot show-job``)."""
    lines = [
        f"PandaID        {job.panda_id}",
        f"job name       {job.job_name or '-'}",
        f"label          {job.prod_source_label or '-'}   attempt {job.attempt_nr}",
        f"transformation {job.transformation}",
        f"parameters     {job.job_pars or '-'}",
        f"cores          {job.core_count}",
        f"wall time      {job.wall_time_limit or '-'} s",
        f"memory         {job.memory_limit_mb or '-'} MB",
    ]
    for title, files in (("inputs", job.input_files), ("outputs", job.output_files)):
        lines.append(f"{title:<14} {len(files)}")
        for spec in files:
            details = {k: v for k, v in vars(spec).items() if k != "lfn" and v is not None}
            lines.append(f"  {spec.lfn}  {json.dumps(details, sort_keys=True)}")
    if job.log_file is not None:
        lines.append(f"log            {job.log_file.lfn}  guid {job.log_file.guid or '-'}")
    return "\n".join(lines)
