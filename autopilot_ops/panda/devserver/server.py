"""Assembly of the dev server: database, job store, listening socket, uvicorn on a thread, lost-heartbeat
watcher, pilot streaming; start and stop."""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import uvicorn

from autopilot_ops.panda.devserver.accesslog import AccessLog
from autopilot_ops.panda.devserver.api import Context
from autopilot_ops.panda.devserver.asgi import DevApp
from autopilot_ops.panda.devserver.auth import Authenticator, open_authenticator
from autopilot_ops.panda.devserver.database import Database
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.panda.devserver.pilot_streaming import DEFAULT_PERIOD_S, PilotStreaming, PilotStreamingThread
from autopilot_ops.panda.devserver.routes import Settings
from autopilot_ops.panda.devserver.serving import HttpProtocol, Uvicorn
from autopilot_ops.panda.devserver.watcher import HeartbeatWatcher
from autopilot_ops.panda.protocol import DEFAULT_PORT

log = logging.getLogger("autopilot.panda.devserver")

SERVER_NAME = "PandaDevServer"
#: Idle keep-alive connections are closed after this many seconds.
KEEP_ALIVE_S = 60


@dataclass
class ServerConfig:
    """Everything ``autopilot panda-devserver`` can be told; ``port=0`` picks a free port."""

    db: str | Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    files_dir: Path | None = None
    authenticator: Authenticator = field(default_factory=open_authenticator)
    legacy: bool = False
    #: Seconds without an update after which a job fails; ``None`` turns the watcher off.
    heartbeat_timeout: float | None = None
    #: Where the one line per request goes (the CLI: stderr); ``None`` writes none.
    access_log: TextIO | None = None
    #: Seconds between pilot-streaming steps, as PanDA's daemon (only queues declared ucore/pull_ups are
    #: affected); ``None`` turns the step off (``PandaDevServer.pilot_streaming.run()`` still works).
    pilot_streaming_period: float | None = DEFAULT_PERIOD_S


class ServerError(RuntimeError):
    """The server could not start; the message names the cause (port, database, files directory)."""


class PandaDevServer:
    """A running dev server. ``start()`` serves on a thread; ``stop()`` lets requests in flight finish."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        files_dir = None
        if config.files_dir is not None:
            files_dir = Path(config.files_dir).resolve()
            if not files_dir.is_dir():
                raise ServerError(f"files directory {config.files_dir} does not exist or is not a directory")
        self.database = Database(config.db)
        self.store = JobStore(self.database)
        access_log = AccessLog(config.access_log) if config.access_log is not None else None
        self.context = Context(self.store)
        self.settings = Settings(self.context, config.authenticator, files_dir, config.legacy, access_log)
        try:
            self._socket = _listen(config.host, config.port)
        except OSError as exc:
            self.database.close()
            raise ServerError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from exc
        self._port: int = self._socket.getsockname()[1]
        self.watcher = HeartbeatWatcher(self.store, config.heartbeat_timeout) if config.heartbeat_timeout else None
        context = self.context
        self.pilot_streaming = PilotStreaming(self.store, context.factory, context.commands, context.queues)
        period = config.pilot_streaming_period
        self.streamer = PilotStreamingThread(self.pilot_streaming, period) if period else None
        self._uvicorn: Uvicorn | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> None:
        """Serve on a thread; returns once uvicorn accepts connections."""
        config = uvicorn.Config(
            DevApp(self.settings),
            http=HttpProtocol,
            loop="uvloop",
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            log_level="warning",
            access_log=False,
            headers=[("server", SERVER_NAME)],
            timeout_keep_alive=KEEP_ALIVE_S,
            proxy_headers=False,
        )
        server = Uvicorn(config)
        thread = threading.Thread(target=server.run, args=([self._socket],), name="panda-devserver", daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise ServerError(f"the HTTP server on {self.url} stopped while starting")
            time.sleep(0.001)
        self._uvicorn, self._thread = server, thread
        if self.watcher is not None:
            self.watcher.start()
        if self.streamer is not None:
            self.streamer.start()
        log.info(
            "PanDA dev server on %s: database %s, auth %s, files %s, legacy %s, heartbeat timeout %s,"
            " pilot streaming %s",
            self.url,
            self.database.describe(),
            self.config.authenticator.describe(),
            self.settings.files_dir or "none",
            "on" if self.config.legacy else "off",
            f"{self.config.heartbeat_timeout:g} s" if self.config.heartbeat_timeout else "off",
            f"every {self.streamer.period:g} s" if self.streamer else "off",
        )

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, wait up to ``grace`` seconds for requests in flight, then close everything."""
        if self.watcher is not None:
            self.watcher.stop()
        if self.streamer is not None:
            self.streamer.stop()
        if self._uvicorn is not None and self._thread is not None:
            self._uvicorn.exit(grace)
            self._thread.join()
            self._uvicorn = self._thread = None
        self._socket.close()
        self.database.close()
        log.info("PanDA dev server on %s stopped", self.url)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket; ``SO_REUSEADDR`` lets a restarted server take the port of a stopped one at once, and
    the connections it accepts inherit ``TCP_NODELAY`` (a reply goes out without waiting for an ACK)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock
