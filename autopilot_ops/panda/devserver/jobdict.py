"""The job dict a pilot receives, built as ``pandaserver/jobdispatcher/Protocol.py: Response.appendJob`` does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from autopilot_ops.panda.devserver.jobspec import JOB_ZERO_ATTRIBUTES
from autopilot_ops.panda.protocol import JOB_KEYS, NULL, SC_SUCCESS


def attribute(spec: Mapping[str, Any], name: str) -> Any:
    """A JobSpec attribute as the server reads it: unset is ``"NULL"``, or 0 for ``JobSpec._zeroAttrs``."""
    if name in spec:
        return spec[name]
    return 0 if name in JOB_ZERO_ATTRIBUTES else NULL


def build_job_dict(job: Mapping[str, Any], spec: Mapping[str, Any], n_sent: int) -> dict[str, Any]:
    """The 53-key dict for one stored job (``job`` is its row, ``spec`` its submitted attributes)."""
    files = _file_fields(spec)
    task_id = attribute(spec, "jediTaskID") if spec.get("lockedby") == "jedi" else attribute(spec, "taskID")
    core_count = spec.get("coreCount")
    values: dict[str, Any] = {
        "StatusCode": SC_SUCCESS,
        "PandaID": job["panda_id"],
        "prodSourceLabel": job["prod_source_label"],
        "swRelease": attribute(spec, "AtlasRelease"),
        "homepackage": attribute(spec, "homepackage"),
        "transformation": attribute(spec, "transformation"),
        "jobName": job["job_name"],
        "jobDefinitionID": attribute(spec, "jobDefinitionID"),
        "cloud": attribute(spec, "cloud"),
        **files,
        "jobPars": attribute(spec, "jobParameters"),
        "attemptNr": job["attempt_nr"],
        "destinationSE": attribute(spec, "destinationSE"),
        "prodUserID": job["prod_user_id"],
        "maxCpuCount": attribute(spec, "maxCpuCount"),
        "minRamCount": job["min_ram_count"],
        "maxDiskCount": job["max_disk_count"],
        "cmtConfig": attribute(spec, "cmtConfig"),
        "processingType": attribute(spec, "processingType"),
        "transferType": attribute(spec, "transferType"),
        "sourceSite": attribute(spec, "sourceSite"),
        "currentPriority": job["current_priority"],
        "taskID": task_id,
        "coreCount": 1 if core_count in (None, NULL) else core_count,
        "jobsetID": attribute(spec, "jobsetID"),
        "reqID": attribute(spec, "reqID"),
        "nucleus": attribute(spec, "nucleus"),
        "maxWalltime": attribute(spec, "maxWalltime"),
        "resource_type": job["resource_type"],
        # Protocol.py reads these from the JEDI task; a job without a task has neither.
        "ioIntensity": None,
        "ioIntensityUnit": None,
        "nSent": n_sent,
    }
    job_dict = {key: values[key] for key in JOB_KEYS}
    if spec.get("container_name"):
        job_dict["container_name"] = spec["container_name"]
    return job_dict


def _file_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The comma-separated file fields; the odd trailing-comma trimming is the server's own."""
    ins: dict[str, list[str]] = {key: [] for key in ("lfn", "disp", "disptok", "guid")}
    in_tail = {key: "" for key in ("prod", "prodtok", "dataset", "fsize", "checksum", "scope")}
    outs: dict[str, list[str]] = {key: [] for key in ("lfn", "dest", "dataset", "desttok", "ddm")}
    out_tail = {key: "" for key in ("se", "scope", "disptok")}
    ddm_in: list[str] = []
    log_file = log_guid = scope_log = ""
    seen_inputs: set[str] = set()
    for item in spec.get("Files", ()):
        get = item.get
        if item["type"] == "input":
            if item["lfn"] in seen_inputs:
                continue
            seen_inputs.add(item["lfn"])
            ins["lfn"].append(item["lfn"])
            ins["disp"].append(str(get("dispatchDBlock", NULL)))
            ins["disptok"].append(str(get("dispatchDBlockToken", NULL)))
            ins["guid"].append(str(get("GUID", NULL)))
            in_tail["prod"] += f"{get('prodDBlock', NULL)},"
            in_tail["prodtok"] += f"{get('prodDBlockToken', NULL)},"
            in_tail["dataset"] += f"{get('dataset', NULL)},"
            in_tail["fsize"] += f"{get('fsize', 0)},"
            checksum = get("checksum")
            in_tail["checksum"] += f"{checksum if checksum not in ('', NULL, None) else get('md5sum', NULL)},"
            in_tail["scope"] += f"{get('scope', NULL)},"
            ddm_in.append("")
        elif item["type"] in ("output", "log"):
            outs["lfn"].append(item["lfn"])
            outs["dest"].append(str(get("destinationDBlock", NULL)))
            outs["dataset"].append(str(get("dataset", NULL)))
            out_tail["se"] += f"{get('destinationSE', NULL)},"
            if item["type"] == "log":
                log_file, log_guid, scope_log = item["lfn"], str(get("GUID", NULL)), str(get("scope", NULL))
            else:
                out_tail["scope"] += f"{get('scope', NULL)},"
            token = str(get("destinationDBlockToken", NULL)).split(",")[0]
            outs["desttok"].append(re.sub("^ddd:", "dst:", token))
            out_tail["disptok"] += f"{get('dispatchDBlockToken', NULL)},"
            # Without a site mapper Protocol.getDdmEndpoint answers "" for every file.
            outs["ddm"].append("")
    return {
        "inFiles": ",".join(ins["lfn"]),
        "dispatchDblock": ",".join(ins["disp"]),
        "dispatchDBlockToken": ",".join(ins["disptok"]),
        "dispatchDBlockTokenForOut": out_tail["disptok"][:-1],
        "outFiles": ",".join(outs["lfn"]),
        "destinationDblock": ",".join(outs["dest"]),
        "destinationDBlockToken": ",".join(outs["desttok"]),
        "prodDBlocks": in_tail["prod"][:-1],
        "prodDBlockToken": in_tail["prodtok"][:-1],
        "realDatasets": ",".join(outs["dataset"]),
        "realDatasetsIn": in_tail["dataset"][:-1],
        "fileDestinationSE": out_tail["se"][:-1],
        "logFile": log_file,
        "logGUID": log_guid,
        "GUID": ",".join(ins["guid"]),
        "checksum": in_tail["checksum"][:-1],
        "fsize": in_tail["fsize"][:-1],
        "scopeIn": in_tail["scope"][:-1],
        "scopeOut": out_tail["scope"][:-1],
        "scopeLog": scope_log,
        "ddmEndPointIn": ",".join(ddm_in),
        "ddmEndPointOut": ",".join(outs["ddm"]),
    }
