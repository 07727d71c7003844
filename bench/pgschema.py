"""A store on a fresh schema of the benchmark database, dropped afterwards (shared by the bench scripts)."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg2

from autopilot_ops.store.connection import Store
from autopilot_ops.store.schema import apply_schema

#: The benchmark database: ``$AUTOPILOT_BENCH_DSN``, else the local test server.
DSN = os.environ.get("AUTOPILOT_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def fresh_store() -> Iterator[Store]:
    """A store whose ``search_path`` is a new schema holding AutoPilot's tables."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(DSN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        with Store(f"{DSN}{'&' if '?' in DSN else '?'}options=-csearch_path%3D{schema}") as store:
            apply_schema(store)
            yield store
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
