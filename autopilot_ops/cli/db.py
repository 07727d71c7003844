"""``autopilot db init | status``."""

from __future__ import annotations

import argparse

from autopilot_ops.cli.common import add_dsn_argument, open_store
from autopilot_ops.store.connection import redact
from autopilot_ops.store.schema import apply_schema, schema_status


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="create and inspect AutoPilot's PostgreSQL schema")
    commands = db.add_subparsers(dest="db_command", required=True)
    init = commands.add_parser("init", help="apply sql/tables.sql (safe to repeat)")
    add_dsn_argument(init)
    init.set_defaults(func=init_command)
    status = commands.add_parser("status", help="schema version and row counts")
    add_dsn_argument(status)
    status.set_defaults(func=status_command)


def init_command(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        version = apply_schema(store)
        print(f"schema version {version} applied to {redact(store.dsn)}")
    return 0


def status_command(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        status = schema_status(store)
        print(f"database: {redact(store.dsn)}")
        if status.version is None:
            print("schema: not initialised (run `autopilot db init`)")
            return 1
        print(f"schema version: {status.version}")
        for table, count in status.row_counts.items():
            print(f"  {table:<13} {count:>8} rows")
    return 0
