"""HTTP routing of the dev server: API methods, legacy methods, static files; one log line per request.

Follows ``pandaserver/server/panda.py: application``: ``/api/<version>/<module>/<method>`` (``latest`` is
``v1``) and ``/server/panda/<method>``; a method not offered is HTTP 403 ``ERROR : method X is forbidden``;
a bad token is HTTP 403 ``ERROR : Token authentication failed. ...``; a body that is not valid JSON is HTTP 500
``ERROR : received invalid JSON : ...``. Other paths are files under the static directory, if one is set.
"""

from __future__ import annotations

import gzip
import json
import logging
import mimetypes
import threading
import time
import traceback
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from autopilot_ops.panda.devserver import legacy
from autopilot_ops.panda.devserver.accesslog import AccessLog
from autopilot_ops.panda.devserver.api import REGISTRY, Context
from autopilot_ops.panda.devserver.auth import Authenticator, AuthError, Identity
from autopilot_ops.panda.devserver.calls import Request, invoke
from autopilot_ops.panda.devserver.http11 import (
    ConnectionHandler,
    HttpError,
    ThreadedServer,
    read_body,
    response_head,
)
from autopilot_ops.panda.devserver.http11 import Request as HttpRequest
from autopilot_ops.panda.protocol import API_VERSION, API_VERSION_ALIASES, serialise_envelope, wants_json

log = logging.getLogger("autopilot.panda.devserver")


@dataclass
class Settings:
    """What the request handler needs; shared by all connections."""

    context: Context
    authenticator: Authenticator
    files_dir: Path | None
    legacy: bool
    access_log: AccessLog | None


@dataclass
class Reply:
    """A response to send: a body, or a file streamed from disk."""

    status: int
    body: bytes
    content_type: str
    outcome: str = ""
    who: str = "-"
    file: Path | None = None


class Exchange:
    """One request and its connection; reads the body at most once."""

    def __init__(self, handler: ConnectionHandler, request: HttpRequest) -> None:
        self.handler = handler
        self.request = request
        self.headers = request.headers
        self._body: bytes | None = None

    def body(self) -> bytes:
        if self._body is None:
            self._body = read_body(self.request, self.handler.rfile, self.handler.wfile)
        return self._body

    def drain(self) -> None:
        """Consume an unread body so the next request on the connection starts where it should."""
        self.body()


class DevHTTPServer(ThreadedServer):
    """The dev server's listener; tracks requests in flight so shutdown can let them finish."""

    def __init__(self, address: tuple[str, int], settings: Settings) -> None:
        self.settings = settings
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, self.respond)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; false if some still are after ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def respond(self, handler: ConnectionHandler, request: HttpRequest) -> bool:
        """Answer one request; returns whether the connection stays open."""
        started = time.perf_counter()
        with self._idle:
            self._in_flight += 1
        exchange = Exchange(handler, request)
        keep_alive = request.keep_alive
        try:
            try:
                reply = _route(self.settings, exchange)
                exchange.drain()
            except HttpError as exc:
                reply = Reply(exc.status, exc.text.encode(), "text/plain", exc.text)
                keep_alive = keep_alive and not exc.close
                if keep_alive:
                    exchange.drain()
            except Exception as exc:  # a bug must not kill the connection thread silently
                log.error("unhandled error for %s %s\n%s", request.method, request.target, traceback.format_exc())
                reply = Reply(500, str(exc).encode(), "text/plain", f"error: {exc}")
                keep_alive = False
            size = _send(handler, request, reply, keep_alive)
        finally:
            with self._idle:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._idle.notify_all()
        if self.settings.access_log is not None:
            self.settings.access_log.write(
                handler.client_address[0], request.method, request.target, reply.status, size,
                (time.perf_counter() - started) * 1000, reply.who, reply.outcome,
            )
        return keep_alive


def _route(settings: Settings, exchange: Exchange) -> Reply:
    path = exchange.request.path
    if not (path.startswith("/api/") or path.startswith("/server/")):
        return _static(settings, exchange)
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
    identity = _identity(settings.authenticator, exchange)
    who = identity.dn if identity else "-"
    if legacy_method is not None:
        reply = _call_legacy(settings, exchange, legacy_method, identity)
        reply.who = who
        return reply
    assert endpoint is not None
    params, json_reply = _api_params(exchange)
    caller = Request(identity=identity, http_method=exchange.request.method)
    envelope = invoke(endpoint, settings.context, caller, params)
    outcome = f"{endpoint.module}.{endpoint.name} success={envelope['success']}"
    if envelope["message"]:
        outcome += f" message={envelope['message']!r}"
    return Reply(200, serialise_envelope(envelope, json_reply).encode(), "text/plain", outcome, who)


def _identity(authenticator: Authenticator, exchange: Exchange) -> Identity | None:
    try:
        return authenticator.authenticate(exchange.headers)
    except AuthError as exc:
        # server/panda.py: pre_validate_request refuses a failed token before running anything.
        raise HttpError(403, f"ERROR : Token authentication failed. {exc}") from exc


def _api_params(exchange: Exchange) -> tuple[dict[str, Any], bool]:
    content_type = exchange.headers.get("Content-Type")
    json_reply = wants_json(content_type, exchange.headers.get("Accept"))
    method = exchange.request.method
    if content_type == "application/json" and method in ("POST", "PUT"):
        body = _decompress(exchange, exchange.body())
        try:
            params = json.loads(body)
        except ValueError as exc:
            raise HttpError(500, f"ERROR : received invalid JSON : {exc}") from exc
        if not isinstance(params, dict):
            raise HttpError(500, f"ERROR : the JSON body must be an object, got {type(params).__name__}")
        return params, json_reply
    if method in ("GET", "HEAD"):
        return _query_params(exchange.request.query), json_reply
    # server/panda.py parses other bodies as a form; each field keeps its first value.
    fields: dict[str, Any] = {}
    for key, value in parse_qsl(exchange.body().decode("utf-8", errors="replace"), keep_blank_values=True):
        fields.setdefault(key, value)
    return fields, json_reply


def _call_legacy(settings: Settings, exchange: Exchange, method: str, identity: Identity | None) -> Reply:
    body = exchange.body()
    if exchange.headers.get("Content-Type") == "application/json":
        # server/panda.py: parse_json_parameters_legacy always gunzips, and turns booleans into text.
        try:
            loaded = json.loads(gzip.decompress(body))
        except (OSError, EOFError, zlib.error, ValueError) as exc:
            raise HttpError(500, f"ERROR : received invalid JSON : {exc}") from exc
        if not isinstance(loaded, dict):
            raise HttpError(500, "ERROR : the JSON body must be an object")
        params = {key: str(value) if isinstance(value, bool) else value for key, value in loaded.items()}
    elif exchange.request.method in ("GET", "HEAD"):
        params = {
            key: value if isinstance(value, str) else value[0]
            for key, value in _query_params(exchange.request.query).items()
        }
    else:
        params = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
    accept_json = "application/json" in (exchange.headers.get("Accept") or "")
    reply = legacy.call(settings.context.store, method, identity, params, accept_json)
    return Reply(200, reply.body, reply.content_type, f"legacy {method}")


def _decompress(exchange: Exchange, body: bytes) -> bytes:
    if exchange.headers.get("Content-Encoding") != "gzip":
        return body
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error) as exc:
        raise HttpError(500, f"ERROR : received invalid gzip body : {exc}") from exc


def _static(settings: Settings, exchange: Exchange) -> Reply:
    method, path = exchange.request.method, exchange.request.path
    if method not in ("GET", "HEAD"):
        raise HttpError(405, f"ERROR : {method} is not allowed on {path}")
    root = settings.files_dir
    if root is None:
        raise HttpError(404, "not found")
    relative = unquote(path).lstrip("/")
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HttpError(404, "not found")
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return Reply(200, b"", content_type, f"file {relative}", file=target)


def _send(handler: ConnectionHandler, request: HttpRequest, reply: Reply, keep_alive: bool) -> int:
    """Send the reply in one write (a file follows its head); returns the size of its body."""
    if reply.file is not None:
        with reply.file.open("rb") as handle:
            size = reply.file.stat().st_size
            handler.wfile.write(response_head(reply.status, reply.content_type, size, not keep_alive))
            if request.method != "HEAD":
                handler.connection.sendfile(handle)
        return size
    head = response_head(reply.status, reply.content_type, len(reply.body), not keep_alive)
    handler.wfile.write(head if request.method == "HEAD" else head + reply.body)
    return len(reply.body)


def _query_params(query: str) -> dict[str, Any]:
    """``server/panda.py: parse_qsl_parameters``: a repeated key becomes a list."""
    if not query:
        return {}
    collected: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        collected.setdefault(key, []).append(value)
    return {key: values[0] if len(values) == 1 else values for key, values in collected.items()}
