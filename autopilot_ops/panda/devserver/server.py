"""Assembly of the dev server: database, job store, HTTP listener, lost-heartbeat watcher; start and stop."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from autopilot_ops.panda.devserver.accesslog import AccessLog
from autopilot_ops.panda.devserver.api import Context
from autopilot_ops.panda.devserver.auth import Authenticator, open_authenticator
from autopilot_ops.panda.devserver.database import Database
from autopilot_ops.panda.devserver.httpd import DevHTTPServer, Settings
from autopilot_ops.panda.devserver.jobstore import JobStore
from autopilot_ops.panda.devserver.watcher import HeartbeatWatcher
from autopilot_ops.panda.protocol import DEFAULT_PORT

log = logging.getLogger("autopilot.panda.devserver")


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
        settings = Settings(Context(self.store), config.authenticator, files_dir, config.legacy, access_log)
        try:
            self.httpd = DevHTTPServer((config.host, config.port), settings)
        except OSError as exc:
            self.database.close()
            raise ServerError(f"cannot listen on {config.host}:{config.port}: {exc.strerror}") from exc
        self.watcher = HeartbeatWatcher(self.store, config.heartbeat_timeout) if config.heartbeat_timeout else None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.config.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="panda-devserver", daemon=True
        )
        self._thread.start()
        if self.watcher is not None:
            self.watcher.start()
        log.info(
            "PanDA dev server on %s: database %s, auth %s, files %s, legacy %s, heartbeat timeout %s",
            self.url,
            self.database.describe(),
            self.config.authenticator.describe(),
            self.httpd.settings.files_dir or "none",
            "on" if self.config.legacy else "off",
            f"{self.config.heartbeat_timeout:g} s" if self.config.heartbeat_timeout else "off",
        )

    def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, wait up to ``grace`` seconds for requests in flight, then close everything."""
        if self.watcher is not None:
            self.watcher.stop()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        if not self.httpd.wait_idle(grace):
            log.warning("stopping with requests still in flight after %g s", grace)
        self.httpd.server_close()
        self.database.close()
        log.info("PanDA dev server on %s stopped", self.url)
