"""HTTP routing of the dev server: API methods, legacy methods, static files; no I/O (``asgi.py`` does that).

Follows ``pandaserver/server/panda.py: application``: ``/api/<version>/<module>/<method>`` (``latest`` is
``v1``) and ``/server/panda/<method>``; a method not offered is HTTP 403 ``ERROR : method X is forbidden``;
a bad token is HTTP 403 ``ERROR : Token authentication failed. ...``; a body that is not valid JSON is HTTP 500
``ERROR : received invalid JSON : ...``; a ``Content-Encoding: gzip`` body is unzipped first. Other paths are
files under the static directory, if one is set.
"""

from __future__ import annotations

import gzip
import json
import mimetypes
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from autopilot_ops.panda.devserver import (
    harvester_api,  # noqa: F401 - registers the /api/v1/harvester methods
    legacy,
)
from autopilot_ops.panda.devserver.accesslog import AccessLog
from autopilot_ops.panda.devserver.api import REGISTRY, Context
from autopilot_ops.panda.devserver.auth import Authenticator, AuthError, Identity
from autopilot_ops.panda.devserver.calls import Request, invoke
from autopilot_ops.panda.protocol import API_VERSION, API_VERSION_ALIASES, serialise_envelope, wants_json


@dataclass
class Settings:
    """What the routing needs; shared by all requests."""

    context: Context
    authenticator: Authenticator
    files_dir: Path | None
    legacy: bool
    access_log: AccessLog | None


class Headers(dict):
    """Request headers, stored under lower-case names; ``get`` ignores case."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


@dataclass
class Call:
    """One request, its body read whole."""

    method: str
    path: str
    query: str
    headers: Headers
    body: bytes


@dataclass
class Reply:
    """A response to send: a body, or a file streamed from disk."""

    status: int
    body: bytes
    content_type: str
    outcome: str = ""
    who: str = "-"
    file: Path | None = None


class HttpError(Exception):
    """Ends a request with this status and plain-text body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def respond(settings: Settings, call: Call) -> Reply:
    """The reply to one request; a refusal (``HttpError``) becomes a plain-text reply."""
    try:
        return _route(settings, call)
    except HttpError as exc:
        return Reply(exc.status, exc.text.encode(), "text/plain", exc.text)


def _route(settings: Settings, call: Call) -> Reply:
    path = call.path
    if not (path.startswith("/api/") or path.startswith("/server/")):
        return _static(settings, call)
    fields = path.split("/")
    endpoint = legacy_method = None
    method = ""
    if path.startswith("/api/") and len(fields) == 5:
        version, module, method = API_VERSION_ALIASES.get(fields[2], fields[2]), fields[3], fields[4]
        endpoint = REGISTRY.find(module, method) if version == API_VERSION else None
    elif path.startswith("/server/panda/") and len(fields) == 4:
        method = fields[3]
        legacy_method = method if settings.legacy and method in legacy.LEGACY_METHODS else None
    if endpoint is None and legacy_method is None:
        raise HttpError(403, f"ERROR : method {method} is forbidden")
    identity = _identity(settings.authenticator, call)
    who = identity.dn if identity else "-"
    if legacy_method is not None:
        reply = _call_legacy(settings, call, legacy_method, identity)
        reply.who = who
        return reply
    assert endpoint is not None
    params, json_reply = _api_params(call)
    caller = Request(identity=identity, http_method=call.method)
    envelope = invoke(endpoint, settings.context, caller, params)
    outcome = f"{endpoint.module}.{endpoint.name} success={envelope['success']}"
    if envelope["message"]:
        outcome += f" message={envelope['message']!r}"
    return Reply(200, serialise_envelope(envelope, json_reply).encode(), "text/plain", outcome, who)


def _identity(authenticator: Authenticator, call: Call) -> Identity | None:
    try:
        return authenticator.authenticate(call.headers)
    except AuthError as exc:
        # server/panda.py: pre_validate_request refuses a failed token before running anything.
        raise HttpError(403, f"ERROR : Token authentication failed. {exc}") from exc


def _api_params(call: Call) -> tuple[dict[str, Any], bool]:
    content_type = call.headers.get("Content-Type")
    json_reply = wants_json(content_type, call.headers.get("Accept"))
    if content_type == "application/json" and call.method in ("POST", "PUT"):
        body = _decompress(call)
        try:
            params = json.loads(body)
        except ValueError as exc:
            raise HttpError(500, f"ERROR : received invalid JSON : {exc}") from exc
        if not isinstance(params, dict):
            raise HttpError(500, f"ERROR : the JSON body must be an object, got {type(params).__name__}")
        return params, json_reply
    if call.method in ("GET", "HEAD"):
        return _query_params(call.query), json_reply
    # server/panda.py parses other bodies as a form; each field keeps its first value.
    fields: dict[str, Any] = {}
    for key, value in parse_qsl(call.body.decode("utf-8", errors="replace"), keep_blank_values=True):
        fields.setdefault(key, value)
    return fields, json_reply


def _call_legacy(settings: Settings, call: Call, method: str, identity: Identity | None) -> Reply:
    if call.headers.get("Content-Type") == "application/json":
        # server/panda.py: parse_json_parameters_legacy always gunzips, and turns booleans into text.
        try:
            loaded = json.loads(gzip.decompress(call.body))
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            raise HttpError(500, f"ERROR : received invalid JSON : {exc}") from exc
        if not isinstance(loaded, dict):
            raise HttpError(500, "ERROR : the JSON body must be an object")
        params = {key: str(value) if isinstance(value, bool) else value for key, value in loaded.items()}
    elif call.method in ("GET", "HEAD"):
        params = {
            key: value if isinstance(value, str) else value[0] for key, value in _query_params(call.query).items()
        }
    else:
        params = dict(parse_qsl(call.body.decode("utf-8", errors="replace"), keep_blank_values=True))
    accept_json = "application/json" in (call.headers.get("Accept") or "")
    reply = legacy.call(settings.context.store, method, identity, params, accept_json)
    return Reply(200, reply.body, reply.content_type, f"legacy {method}")


def _decompress(call: Call) -> bytes:
    if call.headers.get("Content-Encoding") != "gzip":
        return call.body
    try:
        return gzip.decompress(call.body)
    except (OSError, EOFError, zlib.error) as exc:
        raise HttpError(500, f"ERROR : received invalid gzip body : {exc}") from exc


def _static(settings: Settings, call: Call) -> Reply:
    if call.method not in ("GET", "HEAD"):
        raise HttpError(405, f"ERROR : {call.method} is not allowed on {call.path}")
    root = settings.files_dir
    if root is None:
        raise HttpError(404, "not found")
    relative = unquote(call.path).lstrip("/")
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HttpError(404, "not found")
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return Reply(200, b"", content_type, f"file {relative}", file=target)


def _query_params(query: str) -> dict[str, Any]:
    """``server/panda.py: parse_qsl_parameters``: a repeated key becomes a list."""
    if not query:
        return {}
    collected: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        collected.setdefault(key, []).append(value)
    return {key: values[0] if len(values) == 1 else values for key, values in collected.items()}
