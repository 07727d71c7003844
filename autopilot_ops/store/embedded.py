"""A throwaway PostgreSQL server from the machine's ``initdb``/``pg_ctl``, for the quick start and the tests.

A plain user runs the server as itself, with its cluster in ``data_dir``, wherever that is. As root, the server
runs as the ``postgres`` user (PostgreSQL refuses to run as root); when ``postgres`` cannot enter ``data_dir``'s
parent (a clone under ``/root``, an ``AUTOPILOT_HOME`` in ``mktemp -d``: 0700 directories), the cluster lives in
``RELOCATED_ROOT/<name>-<hash of data_dir>`` instead, a place ``postgres`` owns. A cluster found in either place
stays there.
"""

from __future__ import annotations

import glob
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: Where root keeps the clusters of state dirs the ``postgres`` user cannot reach.
RELOCATED_ROOT = Path("/var/lib/autopilot/postgres")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be set up or started; the message names the failing step."""


def find_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: ``$PG_BINDIR``, ``PATH``, or Debian's layout."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    raise EmbeddedPostgresError(
        "no PostgreSQL server binaries found (initdb, pg_ctl); install postgresql, or set AUTOPILOT_DSN "
        "to an existing server"
    )


def _version_key(path: str) -> int:
    part = Path(path).parent.name
    return int(part) if part.isdigit() else 0


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _postgres_can_enter(directory: Path) -> bool:
    """Whether the ``postgres`` user can pass through ``directory`` (modes, ACLs and all its parents)."""
    probe = ["runuser", "-u", "postgres", "--", "test", "-x", str(directory)]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@dataclass
class EmbeddedPostgres:
    """A server for the state dir ``data_dir``; its data and log live in ``cluster_dir``. It listens on
    127.0.0.1 only, with no Unix socket (a deep clone path would pass the socket path's length limit)."""

    data_dir: Path
    port: int
    database: str = "autopilot"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def relocated_dir(self) -> Path:
        """Root's place for this state dir's cluster when ``postgres`` cannot reach ``data_dir``."""
        resolved = self.data_dir.resolve()
        digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
        return RELOCATED_ROOT / f"{resolved.name}-{digest}"

    @property
    def cluster_dir(self) -> Path:
        """``data_dir``, unless root's server user cannot reach it (then ``relocated_dir``)."""
        if os.geteuid() != 0 or (self.data_dir / "pgdata" / "PG_VERSION").exists():
            return self.data_dir
        if (self.relocated_dir / "pgdata" / "PG_VERSION").exists():
            return self.relocated_dir
        parent = self.data_dir.resolve().parent
        while not parent.exists():
            parent = parent.parent
        return self.data_dir if _postgres_can_enter(parent) else self.relocated_dir

    @property
    def log_file(self) -> Path:
        return self.cluster_dir / "server.log"

    @property
    def pgdata(self) -> Path:
        return self.cluster_dir / "pgdata"

    def _run(self, step: str, argv: list[str]) -> None:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        # cwd "/": the server user may not be allowed into the caller's working directory.
        result = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-2000:]
            log_tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise EmbeddedPostgresError(f"embedded PostgreSQL: {step} failed: {detail}\n{log_tail}".rstrip())

    def is_running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists() and not port_is_free(self.port)

    def start(self) -> None:
        """Create the cluster if needed, start it, and create the database; safe to repeat."""
        bindir = find_bindir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster = self.cluster_dir
        cluster.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(cluster, postgres.pw_uid, postgres.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            self._run(
                "initdb",
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
            )
        if not self.is_running():
            if not port_is_free(self.port):
                raise EmbeddedPostgresError(
                    f"port {self.port} is taken by another program; set AUTOPILOT_EMBEDDED_PG_PORT to a free port, "
                    "or AUTOPILOT_DSN to an existing server"
                )
            options = f"-p {self.port} -c unix_socket_directories='' -c listen_addresses=127.0.0.1 -c fsync=off"
            self._run(
                "pg_ctl start",
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.log_file),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            )
        self._create_database()

    def _create_database(self) -> None:
        create_database_if_missing(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", self.database)

    def stop(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self._run(
                "pg_ctl stop", [str(find_bindir() / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"]
            )

    def remove(self) -> None:
        """Stop the server and delete its cluster, wherever it lives, and ``data_dir``."""
        self.stop()
        shutil.rmtree(self.cluster_dir, ignore_errors=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def create_database_if_missing(dsn: str, name: str) -> None:
    """Create the database ``name`` on the server ``dsn`` reaches, unless it exists (psycopg2 errors propagate)."""
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()
