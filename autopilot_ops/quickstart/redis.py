"""The Celery broker of ``autopilot up --executor celery``: Debian's ``redis-server`` on loopback, on a port of its
own (``AUTOPILOT_REDIS_PORT``, not the machine's 6379), with a password made once and kept with its
configuration (mode 0600) in ``.autopilot/redis``; no persistence (Airflow's metadata database is the record)."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path
from urllib.parse import quote

from autopilot_ops.quickstart.processes import MARKER_VARIABLE, Service
from autopilot_ops.quickstart.readiness import check_alive
from autopilot_ops.quickstart.settings import QuickstartError, Settings, require_free_port

REDIS_SERVICE = "redis"
#: What to install when ``redis-server`` is missing (``scripts/redis-local.sh install`` does it).
INSTALL_HINT = "install Debian's redis-server (`apt-get install redis-server`, or `scripts/redis-local.sh install`)"


def redis_dir(settings: Settings) -> Path:
    return settings.home / "redis"


def password(settings: Settings) -> str:
    """The broker's password, made on first use and kept (mode 0600) in ``.autopilot/redis/password``."""
    path = redis_dir(settings) / "password"
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        kept = ""
    if kept:
        return kept
    made = secrets.token_urlsafe(24)
    _write_private(path, made + "\n")
    return made


def broker_url(settings: Settings) -> str:
    return f"redis://:{quote(password(settings), safe='')}@127.0.0.1:{settings.redis_port}/0"


def redis_service(settings: Settings) -> Service:
    """``redis-server`` with its configuration file (the password is in the file, not on the command line)."""
    server = shutil.which("redis-server") or "redis-server"
    conf = str(redis_dir(settings) / "redis.conf")
    return Service(REDIS_SERVICE, [server, conf], settings.services_dir, {MARKER_VARIABLE: str(settings.home)})


def start_redis(settings: Settings, timeout: float = 30.0) -> tuple[int, bool]:
    """Start the broker unless it runs; wait until it answers PING with the password. ``(pid, started now)``."""
    service = redis_service(settings)
    pid = service.pid()
    if pid is not None:
        return pid, False
    if shutil.which("redis-server") is None:
        raise QuickstartError(f"--executor celery needs a Redis broker, and redis-server is missing: {INSTALL_HINT}")
    require_free_port(settings.redis_port, "Redis (the Celery broker)", "AUTOPILOT_REDIS_PORT")
    _write_config(settings)
    pid = service.start()
    _wait_for_ping(settings, service, timeout)
    return pid, True


def _write_config(settings: Settings) -> None:
    directory = redis_dir(settings)
    _write_private(
        directory / "redis.conf",
        "\n".join(
            [
                "bind 127.0.0.1",
                "protected-mode yes",
                f"port {settings.redis_port}",
                f"requirepass {password(settings)}",
                "daemonize no",
                f"dir {directory}",
                'save ""',
                "appendonly no",
                "loglevel notice",
                "",
            ]
        ),
    )


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)


def _wait_for_ping(settings: Settings, service: Service, timeout: float) -> None:
    import redis

    client = redis.Redis(host="127.0.0.1", port=settings.redis_port, password=password(settings), socket_timeout=2)
    deadline = time.monotonic() + timeout
    while True:
        check_alive([service])
        try:
            if client.ping():
                return
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                raise QuickstartError(
                    f"Redis on 127.0.0.1:{settings.redis_port} did not answer within {timeout:.0f} s ({exc}); "
                    f"see {service.log_file}"
                ) from None
        time.sleep(0.2)
