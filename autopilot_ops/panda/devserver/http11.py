"""A small HTTP/1.1 server engine: keep-alive, ``Content-Length`` and chunked bodies, ``Expect: 100-continue``.

The dev server's routing sits on top (``httpd.py``). It replaces ``http.server.BaseHTTPRequestHandler``,
whose header parsing (through ``email.parser``) alone cost more than the whole of a dispatch.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import BinaryIO
from urllib.parse import urlsplit

MAX_LINE = 65536
MAX_HEADERS = 100
#: Largest request body accepted (a big ``job/submit`` stays well below).
MAX_BODY_BYTES = 64 * 1024 * 1024
SERVER_NAME = "PandaDevServer"


class HttpError(Exception):
    """Ends a request with this status and plain-text body."""

    def __init__(self, status: int, text: str, close: bool = False) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.close = close


class Headers(dict):
    """Request headers; names are matched without regard to case."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


@dataclass
class Request:
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Headers
    keep_alive: bool


def read_request(rfile: BinaryIO) -> Request | None:
    """Read a request line and headers; ``None`` when the client closed the connection between requests."""
    line = rfile.readline(MAX_LINE + 1)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(MAX_LINE + 1)  # RFC 9112: ignore empty lines before a request
    if not line:
        return None
    if len(line) > MAX_LINE:
        raise HttpError(414, "ERROR : request line too long", close=True)
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, f"ERROR : bad request line {line[:100]!r}", close=True)
    method, target, version = parts
    headers = Headers()
    for _ in range(MAX_HEADERS + 1):
        raw = rfile.readline(MAX_LINE + 1)
        if raw in (b"\r\n", b"\n", b""):
            break
        if len(raw) > MAX_LINE:
            raise HttpError(431, "ERROR : header line too long", close=True)
        name, colon, value = raw.decode("latin-1").partition(":")
        if not colon or not name.strip():
            raise HttpError(400, f"ERROR : bad header line {raw[:100]!r}", close=True)
        headers[name.strip().lower()] = value.strip()
    else:
        raise HttpError(431, "ERROR : too many headers", close=True)
    connection = (headers.get("Connection") or "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if target.startswith("/"):
        path, _, query = target.partition("?")
        path = path.partition("#")[0]
    else:  # absolute form, as sent to proxies
        split = urlsplit(target)
        path, query = split.path or "/", split.query
    return Request(method, target, path, query, version, headers, keep_alive)


def read_body(request: Request, rfile: BinaryIO, wfile: BinaryIO) -> bytes:
    """The request body, after answering ``Expect: 100-continue``."""
    chunked = (request.headers.get("Transfer-Encoding") or "").lower() == "chunked"
    length_text = request.headers.get("Content-Length")
    if not chunked and not length_text:
        return b""
    if (request.headers.get("Expect") or "").lower() == "100-continue":
        wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        wfile.flush()
    if chunked:
        return _read_chunked(rfile)
    try:
        length = int(length_text or "0")
    except ValueError as exc:
        raise HttpError(400, f"ERROR : bad Content-Length {length_text!r}", close=True) from exc
    if length < 0 or length > MAX_BODY_BYTES:
        raise HttpError(413, f"ERROR : request body of {length} bytes is over the limit", close=True)
    body = rfile.read(length)
    if len(body) != length:
        raise HttpError(400, f"ERROR : partial read from client. {length - len(body)} bytes remaining", close=True)
    return body


def _read_chunked(rfile: BinaryIO) -> bytes:
    chunks = []
    total = 0
    while True:
        line = rfile.readline(MAX_LINE + 1).strip()
        try:
            size = int(line.split(b";")[0], 16)
        except ValueError as exc:
            raise HttpError(400, "ERROR : malformed chunked body", close=True) from exc
        if size == 0:
            while rfile.readline(MAX_LINE + 1).strip():
                pass  # trailer fields
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise HttpError(413, "ERROR : request body is over the limit", close=True)
        chunks.append(rfile.read(size))
        rfile.readline(MAX_LINE + 1)


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header value, computed once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


_PHRASES = {status.value: status.phrase for status in HTTPStatus}


def response_head(status: int, content_type: str, length: int, close: bool) -> bytes:
    phrase = _PHRASES.get(status, "")
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nServer: {SERVER_NAME}\r\nDate: {http_date()}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode("latin-1")


class ConnectionHandler(socketserver.StreamRequestHandler):
    """Serves the requests of one connection in turn; ``respond`` (set by the server) answers each one."""

    #: Idle keep-alive connections are closed after this many seconds.
    timeout = 60
    server: ThreadedServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        while True:
            try:
                request = read_request(self.rfile)
            except HttpError as exc:
                self._send_error(exc)
                return
            except (TimeoutError, ConnectionError):
                return
            if request is None:
                return
            try:
                keep_alive = self.server.respond(self, request)
            except (TimeoutError, ConnectionError, BrokenPipeError):
                return
            if not keep_alive:
                return

    def _send_error(self, exc: HttpError) -> None:
        body = exc.text.encode()
        with contextlib.suppress(OSError):
            self.wfile.write(response_head(exc.status, "text/plain", len(body), close=True) + body)


class ThreadedServer(socketserver.ThreadingTCPServer):
    """One thread per connection; ``respond(handler, request) -> keep_alive`` is the application."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], respond: Callable[[ConnectionHandler, Request], bool]) -> None:
        self.respond = respond
        super().__init__(address, ConnectionHandler)
