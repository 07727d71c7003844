"""uvicorn, fitted to the dev server: stopped at once from another thread, and one ``write`` per reply.

uvicorn's own ``Server`` looks at ``should_exit`` every 0.1 s and sleeps 0.1 s more before its graceful shutdown,
which tests that start and stop hundreds of dev servers pay for; ``Uvicorn.exit`` wakes it instead. uvicorn
writes a reply's head and body separately, i.e. two TCP segments; ``HttpProtocol`` sends them as one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
    """uvicorn's httptools protocol, writing each reply in one piece (``HeldWrites``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(HeldWrites(transport))  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()


class HeldWrites:
    """A transport that holds writes until ``flush`` (at the end of a reply), ``close`` or ``HELD_BYTES``;
    ``100 Continue`` goes out at once, since the client waits for it before sending the body."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: list[bytes] = []
        self._size = 0

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
