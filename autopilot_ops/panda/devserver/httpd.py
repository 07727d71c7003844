"""HTTP: routing, request bodies, reply encoding, static files, and one log line per request.

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
import shutil
import socket
import threading
import time
import traceback
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from autopilot_ops.panda.devserver import legacy
from autopilot_ops.panda.devserver.api import REGISTRY, Context
from autopilot_ops.panda.devserver.auth import Authenticator, AuthError, Identity
from autopilot_ops.panda.devserver.calls import Request, invoke
from autopilot_ops.panda.protocol import API_VERSION, API_VERSION_ALIASES, serialise_envelope, wants_json

log = logging.getLogger("autopilot.panda.devserver")
#: Largest request body accepted (a big ``job/submit`` stays well below).
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass
class Settings:
    """What the request handler needs; shared by all connections."""

    context: Context
    authenticator: Authenticator
    files_dir: Path | None
    legacy: bool


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


class DevHTTPServer(ThreadingHTTPServer):
    """One thread per connection; tracks requests in flight so shutdown can let them finish."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], settings: Settings) -> None:
        self.settings = settings
        self._in_flight = 0
        self._idle = threading.Condition()
        super().__init__(address, DevRequestHandler)

    def request_started(self) -> None:
        with self._idle:
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; false if some still are after ``timeout`` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


class DevRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PandaDevServer"
    sys_version = ""
    #: Idle keep-alive connections are closed after this many seconds.
    timeout = 60
    #: Headers and body leave in one write, flushed by ``handle_one_request``.
    wbufsize = 64 * 1024
    server: DevHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Replaced by the single line ``_handle`` writes."""

    def log_message(self, format: str, *args: Any) -> None:
        log.warning("%s %s", self.client_address[0], format % args)

    # -- request --------------------------------------------------------------------------------------------
    def _handle(self) -> None:
        started = time.perf_counter()
        self.server.request_started()
        try:
            reply = self._route()
        except HttpError as exc:
            reply = Reply(exc.status, exc.text.encode(), "text/plain", exc.text)
        except Exception as exc:  # a bug must not kill the connection thread silently
            log.error("unhandled error for %s %s\n%s", self.command, self.path, traceback.format_exc())
            reply = Reply(500, str(exc).encode(), "text/plain", f"error: {exc}")
            self.close_connection = True
        size = 0
        try:
            size = self._send(reply)
        finally:
            self.server.request_finished()
            elapsed = (time.perf_counter() - started) * 1000
            log.info(
                '%s "%s %s" %d %dB %.1fms %s %s',
                self.client_address[0],
                self.command,
                self.path,
                reply.status,
                size,
                elapsed,
                reply.who,
                reply.outcome,
            )

    def _route(self) -> Reply:
        settings = self.server.settings
        path = urlsplit(self.path).path
        fields = path.split("/")
        if path.startswith("/api/") or path.startswith("/server/"):
            if path.startswith("/api/") and len(fields) == 5:
                version, module, method = API_VERSION_ALIASES.get(fields[2], fields[2]), fields[3], fields[4]
                endpoint = REGISTRY.find(module, method) if version == API_VERSION else None
                legacy_method = None
            elif path.startswith("/server/panda/") and len(fields) == 4:
                method, endpoint = fields[3], None
                legacy_method = method if settings.legacy and method in legacy.LEGACY_METHODS else None
            else:
                method, endpoint, legacy_method = "", None, None
            if endpoint is None and legacy_method is None:
                raise HttpError(403, f"ERROR : method {method} is forbidden")
            identity = self._identity(settings.authenticator)
            who = identity.dn if identity else "-"
            if legacy_method is not None:
                reply = self._call_legacy(legacy_method, identity)
                reply.who = who
                return reply
            assert endpoint is not None
            params, json_reply = self._api_params()
            request = Request(identity=identity, http_method=self.command, remote=self.client_address[0])
            envelope = invoke(endpoint, settings.context, request, params)
            body = serialise_envelope(envelope, json_reply).encode()
            outcome = f"{module}.{method} success={envelope['success']}"
            if envelope["message"]:
                outcome += f" message={envelope['message']!r}"
            return Reply(200, body, "text/plain", outcome, who)
        return self._static(path)

    def _identity(self, authenticator: Authenticator) -> Identity | None:
        try:
            return authenticator.authenticate(self.headers)
        except AuthError as exc:
            # server/panda.py: pre_validate_request refuses a failed token before reading the body.
            self._discard_body()
            raise HttpError(403, f"ERROR : Token authentication failed. {exc}") from exc

    def _api_params(self) -> tuple[dict[str, Any], bool]:
        content_type = self.headers.get("Content-Type")
        json_reply = wants_json(content_type, self.headers.get("Accept"))
        body = self._read_body()
        if content_type == "application/json" and self.command in ("POST", "PUT"):
            body = self._decompress(body)
            try:
                params = json.loads(body) if body else {}
            except ValueError as exc:
                raise HttpError(500, f"ERROR : received invalid JSON : {exc}") from exc
            if not isinstance(params, dict):
                raise HttpError(500, f"ERROR : the JSON body must be an object, got {type(params).__name__}")
            return params, json_reply
        if self.command in ("GET", "HEAD"):
            return _query_params(urlsplit(self.path).query), json_reply
        return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)), json_reply

    def _call_legacy(self, method: str, identity: Identity | None) -> Reply:
        body = self._read_body()
        if self.headers.get("Content-Type") == "application/json":
            # server/panda.py: parse_json_parameters_legacy always gunzips, and turns booleans into text.
            try:
                loaded = json.loads(gzip.decompress(body))
            except (OSError, EOFError, zlib.error, ValueError) as exc:
                raise HttpError(500, f"ERROR : received invalid JSON : {exc}") from exc
            if not isinstance(loaded, dict):
                raise HttpError(500, "ERROR : the JSON body must be an object")
            params = {key: str(value) if isinstance(value, bool) else value for key, value in loaded.items()}
        elif self.command in ("GET", "HEAD"):
            params = {
                key: value if isinstance(value, str) else value[0]
                for key, value in _query_params(urlsplit(self.path).query).items()
            }
        else:
            params = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        accept = self.headers.get("Accept") or ""
        reply = legacy.call(self.server.settings.context.store, method, identity, params, "application/json" in accept)
        return Reply(200, reply.body, reply.content_type, f"legacy {method}")

    # -- bodies ---------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length_text = self.headers.get("Content-Length") or "0"
        try:
            length = int(length_text)
        except ValueError as exc:
            raise HttpError(400, f"ERROR : bad Content-Length {length_text!r}") from exc
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            raise HttpError(413, f"ERROR : request body of {length} bytes is over the limit of {MAX_BODY_BYTES}")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise HttpError(400, f"ERROR : partial read from client. {length - len(body)} bytes remaining")
        return body

    def _read_chunked(self) -> bytes:
        chunks = []
        total = 0
        while True:
            line = self.rfile.readline(1024).strip()
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError as exc:
                self.close_connection = True
                raise HttpError(400, "ERROR : malformed chunked body") from exc
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.close_connection = True
                raise HttpError(413, f"ERROR : request body is over the limit of {MAX_BODY_BYTES} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(2)

    def _discard_body(self) -> None:
        try:
            self._read_body()
        except HttpError:
            self.close_connection = True

    def _decompress(self, body: bytes) -> bytes:
        if self.headers.get("Content-Encoding") != "gzip":
            return body
        try:
            return gzip.decompress(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise HttpError(500, f"ERROR : received invalid gzip body : {exc}") from exc

    # -- static files ---------------------------------------------------------------------------------------
    def _static(self, path: str) -> Reply:
        if self.command not in ("GET", "HEAD"):
            raise HttpError(405, f"ERROR : {self.command} is not allowed on {path}")
        root = self.server.settings.files_dir
        if root is None:
            raise HttpError(404, "not found")
        relative = unquote(path).lstrip("/")
        target = (root / relative).resolve()
        if not target.is_relative_to(root) or not target.is_file():
            raise HttpError(404, "not found")
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return Reply(200, b"", content_type, f"file {relative}", file=target)

    # -- reply ----------------------------------------------------------------------------------------------
    def _send(self, reply: Reply) -> int:
        """Send the reply; returns the size of its body."""
        size = reply.file.stat().st_size if reply.file is not None else len(reply.body)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(size))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return size
        if reply.file is not None:
            with reply.file.open("rb") as handle:
                shutil.copyfileobj(handle, self.wfile)
        else:
            self.wfile.write(reply.body)
        return size


def _query_params(query: str) -> dict[str, Any]:
    """``server/panda.py: parse_qsl_parameters``: a repeated key becomes a list."""
    collected: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        collected.setdefault(key, []).append(value)
    return {key: values[0] if len(values) == 1 else values for key, values in collected.items()}
