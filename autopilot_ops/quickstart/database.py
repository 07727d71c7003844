"""The quick start's database: the configured DSN, or an embedded server under the project's state dir."""

from __future__ import annotations

import os
from importlib import resources

from autopilot_ops.config import EMBEDDED_PG_PORT, resolve_dsn, state_dir
from autopilot_ops.queues.loader import LoadResult, load_queues
from autopilot_ops.store.connection import Store
from autopilot_ops.store.embedded import EmbeddedPostgres
from autopilot_ops.store.schema import apply_schema


def embedded_server() -> EmbeddedPostgres:
    return EmbeddedPostgres(state_dir() / "postgres", EMBEDDED_PG_PORT)


def uses_embedded_server() -> bool:
    return not os.environ.get("AUTOPILOT_DSN")


def demo_queue_file() -> str:
    return str(resources.files("autopilot_ops") / "data" / "demo-queues.yaml")


def bring_up_database() -> tuple[str, LoadResult]:
    """Start the embedded server when no DSN is configured, apply the schema, and load the demo queues."""
    if uses_embedded_server():
        embedded_server().start()
    dsn = resolve_dsn()
    with Store(dsn) as store:
        apply_schema(store)
        return dsn, load_queues(store, demo_queue_file(), who="autopilot up")


def stop_database() -> bool:
    """Stop the embedded server if this project started one; return whether it was running."""
    server = embedded_server()
    if not server.is_running():
        return False
    server.stop()
    return True
