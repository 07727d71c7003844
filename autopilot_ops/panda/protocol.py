"""The PanDA server 1.0.x wire format, shared by the pilot's client and the development server.

Only constants and pure (de)serialisers live here; neither side's logic does.

Paths
    ``api_path("pilot", "acquire_jobs")`` -> ``/api/v1/pilot/acquire_jobs`` (``latest`` aliases ``v1``);
    ``legacy_path("getJob")`` -> ``/server/panda/getJob`` (removed in 1.0.0: the real server answers 403).

Requests (``pandaserver/server/panda.py``)
    POST bodies are typed JSON (``Content-Type: application/json``, optionally ``Content-Encoding: gzip``);
    GET parameters come from the query string and a list repeats its key (``?job_ids=1&job_ids=2``).

Replies
    Every ``/api/v1`` reply is the envelope ``{"success": bool, "message": str, "data": ...}``, serialised
    as JSON when the request sent ``Accept: application/json`` or ``Content-Type: application/json``, and
    as a Python ``repr`` otherwise; the HTTP ``Content-Type`` header is ``text/plain`` either way. A
    forbidden method is an HTTP 403 with the plain text ``ERROR : method <name> is forbidden``.
    ``parse_envelope`` reads both forms. The legacy dispatcher replied with url-encoded ``key=value&...``
    (``parse_legacy_reply``), and the legacy ``getJobStatisticsPerSite`` with a pickled dict
    (``parse_legacy_pickle`` reads it without running code).

Quirks of the real server that clients must expect
    - ``acquire_jobs`` with no work: ``success`` false and ``message`` ``"No jobs in PanDA"``.
    - ``active_job_stats_by_site`` with no active job anywhere: ``success`` false and ``message``
      ``"Database failure getting the job statistics"`` (``statistics_api.py``: ``success = data != {}``);
      ``active_job_detailed_stats_by_site`` likewise, with ``" with resource_type and prodsourcelabel"`` added.
    - ``update_job`` for a job the server no longer holds as active answers ``success`` true with
      ``command`` ``"tobekilled"`` (``job_complex_module.py: updateJobStatus``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

from autopilot_ops.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: PanDA's own plain-HTTP port, the development server's default.
DEFAULT_PORT = 25080
API_VERSION = "v1"
#: ``pandaserver/server/panda.py``: ``latest`` maps to the newest version.
API_VERSION_ALIASES = {"latest": API_VERSION}

#: Format of ``start_time``/``end_time`` in ``update_job`` (``pilot_api.py``).
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: How the server spells an unset job attribute (``JobSpec.__getattribute__``).
NULL = "NULL"

MESSAGE_NO_JOBS = "No jobs in PanDA"
MESSAGE_SSL = "SSL secure connection is required"
MESSAGE_PROD_ROLE = "production or pilot role required"
#: ``acquire_jobs`` of non-user jobs without a production role (``pilot_api.py``).
MESSAGE_NO_PILOT_ROLE = "no production/pilot role in VOMS FQANs or non pilot owner"
MESSAGE_NO_STATS = "Database failure getting the job statistics"
MESSAGE_NO_DETAILED_STATS = f"{MESSAGE_NO_STATS} with resource_type and prodsourcelabel"

#: Pilot commands in ``update_job`` replies (``command``).
COMMAND_NONE = "NULL"
COMMAND_KILL = "tobekilled"

#: ``pandaserver/jobdispatcher/Protocol.py`` status codes (``StatusCode`` in replies).
SC_SUCCESS = 0
SC_TIMEOUT = 10
SC_NO_JOBS = 20
SC_FAILED = 30
SC_INVALID = 50
SC_ROLE = 60

#: States a pilot may report through ``update_job`` (``pilot_api.py: VALID_JOB_STATES``).
PILOT_STATES = ("starting", "running", "transferring", "holding", "finished", "failed")
#: Server-side states a job goes through; ``sent`` is set when a pilot acquires it.
JOB_STATES = (
    "defined",
    "assigned",
    "activated",
    "sent",
    "starting",
    "running",
    "holding",
    "transferring",
    "finished",
    "failed",
    "cancelled",
    "closed",
)
FINAL_STATES = ("finished", "failed", "cancelled", "closed")
#: ``get_job_status`` answer for an unknown id.
STATUS_NOT_FOUND = "not found"

#: The 53 keys of a job dict handed to a pilot, in the server's order (``Protocol.py: Response.appendJob``).
JOB_KEYS = (
    "StatusCode",
    "PandaID",
    "prodSourceLabel",
    "swRelease",
    "homepackage",
    "transformation",
    "jobName",
    "jobDefinitionID",
    "cloud",
    "inFiles",
    "dispatchDblock",
    "dispatchDBlockToken",
    "dispatchDBlockTokenForOut",
    "outFiles",
    "destinationDblock",
    "destinationDBlockToken",
    "prodDBlocks",
    "prodDBlockToken",
    "realDatasets",
    "realDatasetsIn",
    "fileDestinationSE",
    "logFile",
    "logGUID",
    "jobPars",
    "attemptNr",
    "GUID",
    "checksum",
    "fsize",
    "scopeIn",
    "scopeOut",
    "scopeLog",
    "ddmEndPointIn",
    "ddmEndPointOut",
    "destinationSE",
    "prodUserID",
    "maxCpuCount",
    "minRamCount",
    "maxDiskCount",
    "cmtConfig",
    "processingType",
    "transferType",
    "sourceSite",
    "currentPriority",
    "taskID",
    "coreCount",
    "jobsetID",
    "reqID",
    "nucleus",
    "maxWalltime",
    "resource_type",
    "ioIntensity",
    "ioIntensityUnit",
    "nSent",
)
#: Job-dict keys holding comma-separated lists, one item per file.
JOB_LIST_KEYS = (
    "inFiles",
    "dispatchDblock",
    "dispatchDBlockToken",
    "dispatchDBlockTokenForOut",
    "outFiles",
    "destinationDblock",
    "destinationDBlockToken",
    "prodDBlocks",
    "prodDBlockToken",
    "realDatasets",
    "realDatasetsIn",
    "fileDestinationSE",
    "GUID",
    "checksum",
    "fsize",
    "scopeIn",
    "scopeOut",
    "ddmEndPointIn",
    "ddmEndPointOut",
)


class ProtocolError(ValueError):
    """A reply that does not follow the PanDA wire format; the message names what is wrong."""


class Envelope(Record):
    """A decoded ``{"success", "message", "data"}`` reply."""

    success: bool
    message: str
    data: Any


def api_path(module: str, method: str, version: str = API_VERSION) -> str:
    """Path of a refactored-API method, e.g. ``/api/v1/pilot/update_job``."""
    return f"/api/{version}/{module}/{method}"


def legacy_path(method: str) -> str:
    """Path of a pre-1.0 method, e.g. ``/server/panda/getJob``."""
    return f"/server/panda/{method}"


def make_envelope(success: bool, message: str = "", data: Any = None) -> dict[str, Any]:
    """The reply dict every ``/api/v1`` method returns (``api/v1/common.py: generate_response``)."""
    return {"success": success, "message": message, "data": data}


def wants_json(content_type: str | None, accept: str | None) -> bool:
    """Whether the server answers in JSON rather than ``repr`` (``server/panda.py: json_app``)."""
    return content_type == "application/json" or accept == "application/json"


def serialise_envelope(envelope: Mapping[str, Any], as_json: bool) -> str:
    """Reply text: JSON, or the Python ``repr`` the real server sends when JSON was not asked for."""
    return json.dumps(envelope) if as_json else str(dict(envelope))


def parse_envelope(text: str | bytes) -> Envelope:
    """Decode a reply sent as JSON or as a Python ``repr``; raises ``ProtocolError`` naming the fault."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    stripped = text.strip()
    try:
        value = json.loads(stripped)
    except ValueError:
        import ast  # only for a reply in Python's repr

        try:
            value = ast.literal_eval(stripped)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise ProtocolError(f"reply is neither JSON nor a Python literal: {_excerpt(stripped)}") from exc
    if not isinstance(value, dict):
        raise ProtocolError(f"reply is a {type(value).__name__}, not an envelope dict: {_excerpt(stripped)}")
    missing = [key for key in ("success", "message", "data") if key not in value]
    if missing:
        raise ProtocolError(f"reply envelope lacks field {', '.join(missing)}: {_excerpt(stripped)}")
    if not isinstance(value["success"], bool):
        raise ProtocolError(f"reply field 'success' is {type(value['success']).__name__}, not bool")
    message = value["message"]
    if message is not None and not isinstance(message, str):
        raise ProtocolError(f"reply field 'message' is {type(message).__name__}, not str")
    return Envelope(success=value["success"], message=message or "", data=value["data"])


def encode_legacy_reply(data: Mapping[str, Any]) -> str:
    """Url-encode a legacy dispatcher reply (``Protocol.py: Response.encode``)."""
    return urlencode(data)


def parse_legacy_reply(text: str | bytes) -> dict[str, str]:
    """Decode a legacy ``key=value&...`` reply; raises ``ProtocolError`` when it has no ``StatusCode``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    fields = dict(parse_qsl(text.strip(), keep_blank_values=True))
    if "StatusCode" not in fields:
        raise ProtocolError(f"legacy reply lacks field StatusCode: {_excerpt(text)}")
    return fields


def parse_legacy_pickle(payload: bytes) -> Any:
    """Decode the pickled dict of legacy ``getJobStatisticsPerSite`` without running any code: only built-in
    containers and scalars; any class reference is refused. (``pickle`` is imported here, not by the pilot.)"""
    import io
    import pickle

    class PlainUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            raise ProtocolError(f"legacy reply pickles {module}.{name}; only plain data is accepted")

    try:
        return PlainUnpickler(io.BytesIO(payload)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ProtocolError(f"legacy reply is not a plain pickle: {exc}") from exc


def _excerpt(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
