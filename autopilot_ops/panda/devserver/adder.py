"""The ``job_output_report`` rule that ends a job ``finished`` or ``failed``.

Follows ``pandaserver/dataservice/adder_gen.py: AdderGen.parse_job_output_report``: a job with output or log
files needs a JSON object ``{lfn: {"guid", "fsize", "adler32" or "md5sum"}}`` covering all of them; without
it, or with a file missing or unknown, the job fails with ``ddmErrorCode`` 200 (``dataservice/ErrorCode.py:
EC_Adder``) and the server's diagnostic text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: ``pandaserver/dataservice/ErrorCode.py``
EC_ADDER = 200
_MD5 = re.compile("^[a-fA-F0-9]{32}$")


@dataclass
class AdderResult:
    """The final state, the DDM error if any, and the per-file outcome (``lfn`` -> attributes to set)."""

    status: str
    ddm_error_code: int | None = None
    ddm_error_diag: str | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def settle(
    reported_status: str,
    files: Sequence[Mapping[str, Any]],
    report: str,
    trans_exit_code: int | None,
    pilot_error_code: int | None,
) -> AdderResult:
    """Decide the final state of a job the pilot reported ``finished`` or ``failed``."""
    outputs = [item for item in files if item["type"] in ("output", "log")]
    if not outputs:
        return AdderResult(reported_status)
    input_lfns = {item["lfn"] for item in files if item["type"] == "input"}
    try:
        entries = _parse_report(report, input_lfns)
    except (ValueError, TypeError, KeyError):
        result = AdderResult("failed", files={item["lfn"]: {"status": "failed"} for item in outputs})
        # adder_gen.py blames the report only when neither the payload nor the pilot reported an error.
        if trans_exit_code in (None, 0) and pilot_error_code in (None, 0):
            result.ddm_error_code = EC_ADDER
            result.ddm_error_diag = "Could not get GUID/LFN/MD5/FSIZE/SURL from pilot JSON"
        return result
    result = AdderResult(reported_status)
    known = {item["lfn"] for item in files}
    for lfn in entries:
        if lfn not in known:
            result.status = "failed"
            result.ddm_error_code = EC_ADDER
            result.ddm_error_diag = f"pilot produced {lfn} inconsistently with jobdef"
            result.files = {item["lfn"]: {"status": "failed"} for item in outputs}
            return result
    for item in outputs:
        lfn = item["lfn"]
        if reported_status == "failed" and item["type"] != "log":
            result.files[lfn] = {"status": "failed"}
        elif lfn not in entries:
            result.files[lfn] = {"status": "failed"}
            result.status = "failed"
            result.ddm_error_code = EC_ADDER
            result.ddm_error_diag = f"expected output {lfn} is missing in pilot JSON"
        else:
            result.files[lfn] = {"status": "ready", **entries[lfn]}
    return result


def _parse_report(report: str, input_lfns: set[str]) -> dict[str, dict[str, Any]]:
    data = json.loads(report)
    if not isinstance(data, dict):
        raise TypeError("job_output_report is not a JSON object")
    entries: dict[str, dict[str, Any]] = {}
    for lfn, info in data.items():
        guid = str(info["guid"])
        fsize = int(info["fsize"]) if "fsize" in info else None
        md5sum = str(info["md5sum"]) if "md5sum" in info else None
        if md5sum is not None and not _MD5.match(md5sum):
            md5sum = None
        adler32 = str(info["adler32"]) if "adler32" in info else None
        if lfn not in input_lfns and (fsize is None or (md5sum is None and adler32 is None)):
            raise ValueError(f"{lfn}: fsize/md5sum/adler32 missing")
        checksum = f"ad:{adler32}" if adler32 is not None else f"md5:{md5sum}"
        entries[str(lfn)] = {"GUID": guid, "fsize": fsize, "md5sum": md5sum, "checksum": checksum}
    return entries
