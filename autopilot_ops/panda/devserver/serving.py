"""uvicorn, fitted to the dev server: stopped at once from another thread, and a lean path per request.

uvicorn's own ``Server`` looks at ``should_exit`` every 0.1 s and sleeps 0.1 s more before its graceful shutdown,
which tests that start and stop hundreds of dev servers pay for; ``Uvicorn.exit`` wakes it instead.
``HttpProtocol`` saves uvicorn's work per request that the dev server does not need (see its docstring).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import urllib.parse
from collections.abc import Coroutine, Generator
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

log = logging.getLogger("autopilot.panda.devserver")

#: Bytes held back at most before they are written (a static file goes out in pieces of this size or more).
HELD_BYTES = 64 * 1024


class Uvicorn(uvicorn.Server):
    """A ``uvicorn.Server`` that ``exit(grace)`` stops promptly from any thread."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._woken = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._grace = 0.0

    def exit(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish for up to ``grace`` seconds, then cancel them."""
        self._grace = grace
        self.should_exit = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._woken.set)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):  # a tick each 0.1 s; every tenth renews the Date header
            counter = (counter + 1) % 10
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._woken.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()  # closes an idle connection, or a busy one once its reply is sent
        deadline = time.monotonic() + self._grace
        while (state.connections or state.tasks) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        if state.tasks:
            log.warning("stopping with requests still in flight after %g s", self._grace)
            for task in state.tasks:
                task.cancel()
        await self.lifespan.shutdown()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with less work per request:

    - a request runs at once, once the data received so far is parsed, rather than in a task of its own; a task
      takes over only if it must wait (a body still coming, a slow reader);
    - each reply goes out in one write (``HeldWrites``): uvicorn writes the head and the body separately, i.e.
      two TCP segments;
    - one keep-alive timer per connection, moved on lazily, instead of a new timer for every reply.
    """

    _parsing = False
    _arrived: tuple[RequestResponseCycle, Any] | None = None
    #: ``loop.time()`` at the end of the last reply while no data came since; ``None`` while busy.
    _idle_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeldWrites(transport))  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def data_received(self, data: bytes) -> None:
        self._parsing = True
        try:
            super().data_received(data)
        finally:
            self._parsing = False
            arrived, self._arrived = self._arrived, None
        if arrived is not None:
            self._run(*arrived)

    def on_headers_complete(self) -> None:
        """uvicorn's, less what the dev server's configuration rules out (a root path, a concurrency limit,
        WebSocket upgrades), and with a ``Cycle``."""
        parser = self.parser
        scope = self.scope
        scope["method"] = parser.get_method().decode("ascii")
        http_version = parser.get_http_version()
        if http_version != "1.1":
            scope["http_version"] = http_version
        url = httptools.parse_url(self.url)
        path = url.path.decode("ascii")
        scope["path"] = urllib.parse.unquote(path) if "%" in path else path
        scope["raw_path"] = url.path
        scope["query_string"] = url.query or b""
        existing = self.cycle
        self.cycle = Cycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        if existing is None or existing.response_complete:
            self._start_asgi_task(self.cycle, self.app)
        else:  # pipelined: waits for the reply before it
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, self.app))

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if self._parsing and self._arrived is None:
            self._arrived = (cycle, app)  # run by data_received once this data is parsed
        else:
            super()._start_asgi_task(cycle, app)

    def _run(self, cycle: RequestResponseCycle, app: Any) -> None:
        """Run the request's app as far as it goes without waiting; a task carries it on if it must wait."""
        coroutine = cycle.run_asgi(app)
        try:
            awaited = coroutine.send(None)
        except StopIteration:
            return
        task = self.loop.create_task(_carry_on(coroutine, awaited))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # data came in: the timer, when it fires, finds the connection busy

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def timeout_keep_alive_handler(self) -> None:
        """Close the connection once idle for ``timeout_keep_alive`` seconds since its last reply."""
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # busy: the next reply arms the timer again
        left = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)
        elif not self.transport.is_closing():
            self.transport.close()


class Cycle(RequestResponseCycle):
    """uvicorn's request-response cycle, writing a reply's head without checking its header names and values
    (the dev server's are lower case and well-formed); anything else goes uvicorn's way."""

    async def send(self, message: Any) -> None:
        if self.response_started or self.disconnected or self.flow.write_paused:
            await super().send(message)
            return
        if message["type"] != "http.response.start":
            raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message['type']}'.")
        self.response_started = True
        self.waiting_for_100_continue = False
        content = [STATUS_LINE[message["status"]]]
        closing = not self.keep_alive
        for name, value in (*self.default_headers, *message.get("headers", ())):
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value)
                self.chunked_encoding = False
            elif name == b"connection" and value == b"close":
                self.keep_alive, closing = False, False
            content += (name, b": ", value, b"\r\n")
        if self.chunked_encoding is None:
            raise RuntimeError("the dev server sends a content-length with every reply")
        content.append(b"connection: close\r\n\r\n" if closing else b"\r\n")
        self.transport.write(b"".join(content))


async def _carry_on(coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
    await _Suspended(coroutine, awaited)


class _Suspended:
    """A coroutine started outside any task and now waiting for ``awaited``, as an awaitable that resumes it."""

    def __init__(self, coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
        self._coroutine = coroutine
        self._awaited = awaited

    def __await__(self) -> Generator[Any, Any, None]:
        coroutine, awaited = self._coroutine, self._awaited
        while True:
            try:
                sent = yield awaited
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # a cancellation, thrown into the task
                step, value = coroutine.throw, exc
            else:
                step, value = coroutine.send, sent
            try:
                awaited = step(value)
            except StopIteration:
                return


class HeldWrites:
    """A transport that holds writes until ``flush`` (at the end of a reply), ``close`` or ``HELD_BYTES``;
    ``100 Continue`` goes out at once, since the client waits for it before sending the body."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] = []
        self._size = 0
        self.is_closing = transport.is_closing

    def write(self, data: bytes) -> None:
        self._held.append(data)
        self._size += len(data)
        if self._size >= HELD_BYTES or data.startswith(b"HTTP/1.1 100 "):
            self.flush()

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            self._size = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
