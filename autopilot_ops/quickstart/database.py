"""The quick start's database: the configured DSN, or an embedded server under the project's state dir.

Airflow's metadata lives in a database ``airflow`` on the same server (LocalExecutor refuses SQLite).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from urllib.parse import quote

import psycopg2
import psycopg2.extensions

from autopilot_ops.config import EMBEDDED_PG_PORT, resolve_dsn, state_dir
from autopilot_ops.queues.loader import LoadResult, load_queues
from autopilot_ops.quickstart.settings import QuickstartError
from autopilot_ops.store.connection import Store, StoreError, redact
from autopilot_ops.store.embedded import EmbeddedPostgres, create_database_if_missing
from autopilot_ops.store.schema import apply_schema

AIRFLOW_DATABASE = "airflow"


def embedded_server() -> EmbeddedPostgres:
    return EmbeddedPostgres(state_dir() / "postgres", EMBEDDED_PG_PORT)


def uses_embedded_server() -> bool:
    return not os.environ.get("AUTOPILOT_DSN")


def demo_queue_files() -> list[str]:
    """The demo queues: three on the local back end, and one on Slurm when this machine's Slurm answers; or
    the file in ``AUTOPILOT_DEMO_QUEUES`` (its queues tagged ``demo`` get the demo jobs)."""
    chosen = os.environ.get("AUTOPILOT_DEMO_QUEUES", "").strip()
    if chosen:
        if not os.path.isfile(chosen):
            raise QuickstartError(f"AUTOPILOT_DEMO_QUEUES={chosen!r}: no such queue file")
        return [chosen]
    data = resources.files("autopilot_ops") / "data"
    files = [str(data / "demo-queues.yaml")]
    if slurm_answers():
        files.append(str(data / "demo-queues-slurm.yaml"))
    return files


def slurm_answers() -> bool:
    """Whether ``sbatch`` is installed and the controller answers ``sinfo``."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def bring_up_database() -> tuple[str, list[LoadResult]]:
    """Start the embedded server when no DSN is configured, apply the schema, and load the demo queues."""
    if uses_embedded_server():
        embedded_server().start()
    dsn = resolve_dsn()
    with Store(dsn) as store:
        apply_schema(store)
        return dsn, [load_queues(store, path, who="autopilot up") for path in demo_queue_files()]


def ensure_airflow_database(dsn: str) -> str:
    """Create the database ``airflow`` on ``dsn``'s server if missing; return its SQLAlchemy URL."""
    params = psycopg2.extensions.parse_dsn(dsn)
    try:
        create_database_if_missing(dsn, AIRFLOW_DATABASE)
    except psycopg2.OperationalError as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {redact(dsn)}: {exc}".strip()) from exc
    except psycopg2.Error as exc:
        raise StoreError(
            f"cannot create the database {AIRFLOW_DATABASE!r} for Airflow on {redact(dsn)}: {exc}".strip()
        ) from exc
    return sqlalchemy_url(params, AIRFLOW_DATABASE)


def sqlalchemy_url(params: dict[str, str], database: str) -> str:
    """``postgresql+psycopg2://`` URL for ``database`` on the server that libpq ``params`` describe."""
    auth = quote(params.get("user", ""), safe="")
    if params.get("password"):
        auth += ":" + quote(params["password"], safe="")
    host = params.get("host", "127.0.0.1")
    port = f":{params['port']}" if params.get("port") else ""
    prefix = f"{auth}@" if auth else ""
    if host.startswith("/"):  # a Unix socket directory goes in the query, as libpq's ``host`` parameter
        return f"postgresql+psycopg2://{prefix}{port}/{quote(database, safe='')}?host={quote(host, safe='')}"
    return f"postgresql+psycopg2://{prefix}{host}{port}/{quote(database, safe='')}"


def stop_database() -> bool:
    """Stop the embedded server if this project started one; return whether it was running."""
    server = embedded_server()
    if not server.is_running():
        return False
    server.stop()
    return True
