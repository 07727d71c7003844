"""The dev server as a plain ASGI application, served by uvicorn (``server.py``).

Per request: read the body whole (at most ``MAX_BODY_BYTES``), run the routing (``routes.respond``), send the
reply, write one access-log line. The routing runs on the event loop itself: the SQLite database serialises
every transaction behind one lock, so a worker thread per request would only add a hand-over (it cost a third
of the jobs per second of ``bench/bench_devserver.py``) while requests still run one at a time.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from autopilot_ops.panda.devserver.routes import Call, Headers, Reply, Settings, respond

log = logging.getLogger("autopilot.panda.devserver")

#: Largest request body accepted (a big ``job/submit`` stays well below).
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Static files are sent in pieces of this size.
FILE_CHUNK_BYTES = 256 * 1024

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyTooLarge(Exception):
    """The request body is over ``MAX_BODY_BYTES``."""


class DevApp:
    """The ASGI callable (HTTP only: uvicorn runs it with lifespan and websockets off)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        method = scope["method"]
        raw_path = scope.get("raw_path")
        path = raw_path.decode("latin-1") if raw_path else scope["path"]
        query = scope["query_string"].decode("latin-1")
        close = False
        try:
            body = await _read_body(receive)
            if body is None:
                return  # the client went away
            headers = Headers({name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]})
            reply = respond(self.settings, Call(method, path, query, headers, body))
        except BodyTooLarge:
            text = f"ERROR : request body is over the limit of {MAX_BODY_BYTES} bytes"
            reply, close = Reply(413, text.encode(), "text/plain", text), True
        except Exception as exc:  # a bug answers 500 rather than dropping the connection silently
            log.error("unhandled error for %s %s\n%s", method, path, traceback.format_exc())
            reply, close = Reply(500, str(exc).encode(), "text/plain", f"error: {exc}"), True
        if reply.file is None:
            size = len(reply.body)
            await send(_start(reply, size, close))
            await send({"type": "http.response.body", "body": reply.body})
        else:
            size = await _send_file(send, method, reply, close)
        access_log = self.settings.access_log
        if access_log is not None:
            client = scope.get("client")
            access_log.write(
                client[0] if client else "-", method, f"{path}?{query}" if query else path, reply.status, size,
                (time.perf_counter() - started) * 1000, reply.who, reply.outcome,
            )


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body; ``None`` if the client disconnected first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLarge
        if not message.get("more_body"):
            return b"".join([*chunks, chunk]) if chunks else chunk
        chunks.append(chunk)


async def _send_file(send: Send, method: str, reply: Reply, close: bool) -> int:
    """Send a static file in pieces; returns its size."""
    assert reply.file is not None
    with reply.file.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        await send(_start(reply, size, close))
        if method != "HEAD":
            while chunk := handle.read(FILE_CHUNK_BYTES):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
    return size


def _start(reply: Reply, size: int, close: bool) -> dict[str, Any]:
    headers = [(b"content-type", reply.content_type.encode("latin-1")), (b"content-length", str(size).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return {"type": "http.response.start", "status": reply.status, "headers": headers}
