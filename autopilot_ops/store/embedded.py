"""A throwaway PostgreSQL server from the machine's ``initdb``/``pg_ctl``, for the quick start and the tests.

As root, the server runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path


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


@dataclass
class EmbeddedPostgres:
    """A server whose data, socket and log live under ``data_dir``."""

    data_dir: Path
    port: int
    database: str = "autopilot"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def _run(self, step: str, argv: list[str]) -> None:
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
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
        if os.geteuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.data_dir, postgres.pw_uid, postgres.pw_gid)
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
            options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
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
