"""Job specs as ``/api/v1/job/submit`` carries them, and a builder for the specs AutoPilot submits.

``pandaclient.Client.submitJobs`` sends ``JobUtils.dump_jobs_json(jobs)``: a JSON list with one *state* per job,
the values of ``JobSpec._attributes`` in order followed by a list of file states (the values of
``FileSpec._attributes`` then the owner, ``None``); datetimes are ``{"_datetime_object": "%Y-%m-%d %H:%M:%S.%f"}``
(``pandaserver/taskbuffer/JobSpec.py``, ``FileSpec.py``, ``srvcore/CoreUtils.py: NonJsonObjectEncoder``).
A state shorter than the attribute list leaves the missing attributes unset, as ``JobSpec.__setstate__`` does.
As a convenience the server also accepts a dict per job (attribute -> value, files under ``"Files"`` as dicts),
like ``JobSpec.load_from_dict``.

Specs are held as plain dicts that omit unset attributes (``None`` or ``"NULL"``).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from autopilot_ops.panda.protocol import DATE_FORMAT, NULL

#: ``pandaserver/taskbuffer/JobSpec.py: JobSpec._attributes``, in order.
JOB_ATTRIBUTES = (
    "PandaID",
    "jobDefinitionID",
    "schedulerID",
    "pilotID",
    "creationTime",
    "creationHost",
    "modificationTime",
    "modificationHost",
    "AtlasRelease",
    "transformation",
    "homepackage",
    "prodSeriesLabel",
    "prodSourceLabel",
    "prodUserID",
    "assignedPriority",
    "currentPriority",
    "attemptNr",
    "maxAttempt",
    "jobStatus",
    "jobName",
    "maxCpuCount",
    "maxCpuUnit",
    "maxDiskCount",
    "maxDiskUnit",
    "ipConnectivity",
    "minRamCount",
    "minRamUnit",
    "startTime",
    "endTime",
    "cpuConsumptionTime",
    "cpuConsumptionUnit",
    "commandToPilot",
    "transExitCode",
    "pilotErrorCode",
    "pilotErrorDiag",
    "exeErrorCode",
    "exeErrorDiag",
    "supErrorCode",
    "supErrorDiag",
    "ddmErrorCode",
    "ddmErrorDiag",
    "brokerageErrorCode",
    "brokerageErrorDiag",
    "jobDispatcherErrorCode",
    "jobDispatcherErrorDiag",
    "taskBufferErrorCode",
    "taskBufferErrorDiag",
    "computingSite",
    "computingElement",
    "jobParameters",
    "metadata",
    "prodDBlock",
    "dispatchDBlock",
    "destinationDBlock",
    "destinationSE",
    "nEvents",
    "grid",
    "cloud",
    "cpuConversion",
    "sourceSite",
    "destinationSite",
    "transferType",
    "taskID",
    "cmtConfig",
    "stateChangeTime",
    "prodDBUpdateTime",
    "lockedby",
    "relocationFlag",
    "jobExecutionID",
    "VO",
    "pilotTiming",
    "workingGroup",
    "processingType",
    "prodUserName",
    "nInputFiles",
    "countryGroup",
    "batchID",
    "parentID",
    "specialHandling",
    "jobsetID",
    "coreCount",
    "nInputDataFiles",
    "inputFileType",
    "inputFileProject",
    "inputFileBytes",
    "nOutputDataFiles",
    "outputFileBytes",
    "jobMetrics",
    "workQueue_ID",
    "jediTaskID",
    "jobSubStatus",
    "actualCoreCount",
    "reqID",
    "maxRSS",
    "maxVMEM",
    "maxSWAP",
    "maxPSS",
    "avgRSS",
    "avgVMEM",
    "avgSWAP",
    "avgPSS",
    "maxWalltime",
    "nucleus",
    "eventService",
    "failedAttempt",
    "hs06sec",
    "gshare",
    "hs06",
    "totRCHAR",
    "totWCHAR",
    "totRBYTES",
    "totWBYTES",
    "rateRCHAR",
    "rateWCHAR",
    "rateRBYTES",
    "rateWBYTES",
    "resource_type",
    "diskIO",
    "memory_leak",
    "memory_leak_x2",
    "container_name",
    "job_label",
    "gco2_regional",
    "gco2_global",
    "cpu_architecture_level",
    "outputFileType",
)
#: ``JobSpec._zeroAttrs``: stored as 0 when unset.
JOB_ZERO_ATTRIBUTES = (
    "assignedPriority",
    "currentPriority",
    "attemptNr",
    "maxAttempt",
    "maxCpuCount",
    "maxDiskCount",
    "minRamCount",
    "cpuConsumptionTime",
    "pilotErrorCode",
    "exeErrorCode",
    "supErrorCode",
    "ddmErrorCode",
    "brokerageErrorCode",
    "jobDispatcherErrorCode",
    "taskBufferErrorCode",
    "nEvents",
    "relocationFlag",
    "jobExecutionID",
    "nOutputDataFiles",
    "outputFileBytes",
)
#: ``pandaserver/taskbuffer/FileSpec.py: FileSpec._attributes``, in order.
FILE_ATTRIBUTES = (
    "row_ID",
    "PandaID",
    "GUID",
    "lfn",
    "type",
    "dataset",
    "status",
    "prodDBlock",
    "prodDBlockToken",
    "dispatchDBlock",
    "dispatchDBlockToken",
    "destinationDBlock",
    "destinationDBlockToken",
    "destinationSE",
    "fsize",
    "md5sum",
    "checksum",
    "scope",
    "jediTaskID",
    "datasetID",
    "fileID",
    "attemptNr",
)
FILE_TYPES = ("input", "output", "log", "pseudo_input")
_DATETIME_KEY = "_datetime_object"
_DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class JobSpecError(ValueError):
    """A submitted job spec that cannot be read; the message names the job and the field."""


def load_jobs_json(text: str) -> list[dict[str, Any]]:
    """Parse the ``jobs`` parameter of ``job/submit`` into spec dicts (``JobUtils.load_jobs_json``)."""
    try:
        states = json.loads(text, object_hook=_decode_datetime)
    except ValueError as exc:
        raise JobSpecError(f"jobs is not JSON: {exc}") from exc
    if not isinstance(states, list):
        raise JobSpecError(f"jobs must be a JSON list of job specs, got {type(states).__name__}")
    return [_load_job(index, state) for index, state in enumerate(states)]


def dump_jobs_json(specs: Iterable[Mapping[str, Any]]) -> str:
    """Serialise spec dicts the way ``pandaclient`` does, so any PanDA server accepts them."""
    states = []
    for spec in specs:
        state: list[Any] = [_wire_value(spec.get(name)) for name in JOB_ATTRIBUTES]
        files = [[_wire_value(item.get(name)) for name in FILE_ATTRIBUTES] + [None] for item in spec.get("Files", ())]
        states.append([*state, files])
    return json.dumps(states, default=_encode_datetime)


def build_job_spec(
    queue: str,
    transformation: str,
    job_pars: str,
    *,
    priority: int = 1000,
    prod_source_label: str = "managed",
    job_definition_id: int = 1,
    label: str = "autopilot",
    in_files: Sequence[str | Mapping[str, Any]] = (),
    out_files: Sequence[str] = (),
    log_file: bool = True,
    core_count: int = 1,
    max_cpu_count: int = 600,
    min_ram_count: int = 1000,
    max_disk_count: int = 100,
    max_walltime: int | None = None,
    destination_se: str = "local",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A job for ``queue`` with the defaults of the reference recording (``cloud`` WORLD, 600 s CPU, 1000 MB).

    ``in_files`` items are LFNs or dicts with ``lfn`` and optional ``guid``, ``fsize``, ``checksum``
    (``ad:<adler32>`` or ``md5:<md5>``), ``scope``, ``dataset``; ``out_files`` are LFNs. A log file
    ``<jobName>.log.tgz`` is added unless ``log_file`` is false. ``extra`` sets any other JobSpec attribute.
    """
    job_name = f"{label}.{uuid.uuid4()}"
    out_dataset = f"{label}.{uuid.uuid4()}"
    files = [_input_file(label, item) for item in in_files]
    for lfn in out_files:
        files.append(_output_file("output", lfn, label, out_dataset, destination_se))
    if log_file:
        files.append(_output_file("log", f"{job_name}.log.tgz", label, out_dataset, destination_se))
    spec: dict[str, Any] = {
        "jobDefinitionID": job_definition_id,
        "jobName": job_name,
        "transformation": transformation,
        "jobParameters": job_pars,
        "prodSourceLabel": prod_source_label,
        "computingSite": queue,
        "cloud": "WORLD",
        "assignedPriority": priority,
        "currentPriority": priority,
        "maxCpuCount": max_cpu_count,
        "minRamCount": min_ram_count,
        "maxDiskCount": max_disk_count,
        "coreCount": core_count,
        "destinationSE": destination_se,
        "destinationDBlock": out_dataset,
        "prodDBlock": files[0]["dataset"] if files and files[0]["type"] == "input" else None,
        "maxWalltime": max_walltime,
        "Files": files,
    }
    if extra:
        unknown = sorted(set(extra) - set(JOB_ATTRIBUTES))
        if unknown:
            raise JobSpecError(f"extra names unknown JobSpec attributes: {', '.join(unknown)}")
        spec.update(extra)
    return _compact(spec)


def _input_file(label: str, item: str | Mapping[str, Any]) -> dict[str, Any]:
    entry = {"lfn": item} if isinstance(item, str) else dict(item)
    if not entry.get("lfn"):
        raise JobSpecError(f"input file {item!r} has no lfn")
    dataset = entry.get("dataset") or f"{label}.input"
    return _compact(
        {
            "type": "input",
            "lfn": entry["lfn"],
            "GUID": entry.get("guid") or str(uuid.uuid4()),
            "fsize": entry.get("fsize"),
            "checksum": entry.get("checksum"),
            "scope": entry.get("scope") or label,
            "dataset": dataset,
            "prodDBlock": dataset,
            "dispatchDBlock": entry.get("dispatch_dblock") or dataset,
            "dispatchDBlockToken": entry.get("dispatch_dblock_token") or NULL,
            "prodDBlockToken": entry.get("prod_dblock_token") or NULL,
            "status": "ready",
        }
    )


def _output_file(kind: str, lfn: str, label: str, dataset: str, destination_se: str) -> dict[str, Any]:
    return {
        "type": kind,
        "lfn": lfn,
        "GUID": str(uuid.uuid4()),
        "scope": label,
        "dataset": dataset,
        "destinationDBlock": dataset,
        "destinationSE": destination_se,
        "status": "unknown",
    }


def _load_job(index: int, state: Any) -> dict[str, Any]:
    if isinstance(state, Mapping):
        files_in = state.get("Files", [])
        values = {name: state.get(name) for name in JOB_ATTRIBUTES}
        file_states = [_load_file(index, n, f) for n, f in enumerate(_as_list(index, "Files", files_in))]
    elif isinstance(state, list) and state:
        values = {name: (state[i] if i + 1 < len(state) else None) for i, name in enumerate(JOB_ATTRIBUTES)}
        file_states = [_load_file(index, n, f) for n, f in enumerate(_as_list(index, "Files", state[-1]))]
    else:
        raise JobSpecError(f"job {index}: a job spec must be a list (JobSpec state) or an object")
    spec = _compact(values)
    spec["Files"] = file_states
    # A spec without a label would match no pilot's request; the dev server takes it as a production job.
    spec.setdefault("prodSourceLabel", "managed")
    for name in ("computingSite", "transformation"):
        if not isinstance(spec.get(name), str) or not spec[name]:
            raise JobSpecError(f"job {index}: field {name} must be a non-empty string")
    for name in JOB_ZERO_ATTRIBUTES:
        if name in spec and not isinstance(spec[name], int):
            try:
                spec[name] = int(spec[name])
            except (TypeError, ValueError) as exc:
                raise JobSpecError(f"job {index}: field {name} must be an integer, got {spec[name]!r}") from exc
    return spec


def _load_file(job_index: int, file_index: int, state: Any) -> dict[str, Any]:
    if isinstance(state, Mapping):
        values = {name: state.get(name) for name in FILE_ATTRIBUTES}
    elif isinstance(state, list):
        values = {name: (state[i] if i + 1 < len(state) else None) for i, name in enumerate(FILE_ATTRIBUTES)}
    else:
        raise JobSpecError(f"job {job_index} file {file_index}: a file spec must be a list or an object")
    entry = _compact(values)
    entry.pop("row_ID", None)
    entry.pop("PandaID", None)
    if entry.get("type") not in FILE_TYPES:
        raise JobSpecError(f"job {job_index} file {file_index}: field type must be one of {', '.join(FILE_TYPES)}")
    if not isinstance(entry.get("lfn"), str) or not entry["lfn"]:
        raise JobSpecError(f"job {job_index} file {file_index}: field lfn must be a non-empty string")
    return entry


def _as_list(index: int, name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise JobSpecError(f"job {index}: field {name} must be a list")
    return value


def _compact(values: Mapping[str, Any]) -> dict[str, Any]:
    """Drop unset attributes; datetimes become ``DATE_FORMAT`` text so specs stay JSON."""
    return {
        key: value.strftime(DATE_FORMAT) if isinstance(value, datetime.datetime) else value
        for key, value in values.items()
        if value is not None and value != NULL
    }


def _wire_value(value: Any) -> Any:
    return NULL if value is None else value


def _decode_datetime(obj: dict[str, Any]) -> Any:
    if _DATETIME_KEY in obj:
        return datetime.datetime.strptime(str(obj[_DATETIME_KEY]), _DATETIME_FORMAT)
    return obj


def _encode_datetime(obj: Any) -> Any:
    if isinstance(obj, datetime.datetime):
        return {_DATETIME_KEY: obj.strftime(_DATETIME_FORMAT)}
    raise TypeError(f"cannot serialise {type(obj).__name__} in a job spec")
