"""``autopilot db init | upgrade | status``."""

from __future__ import annotations

import argparse

from autopilot_ops.cli.common import add_dsn_argument, open_store
from autopilot_ops.store.connection import redact
from autopilot_ops.store.schema import latest_version, schema_status, upgrade


def register(subparsers: argparse._SubParsersAction) -> None:
    db = subparsers.add_parser("db", help="create, upgrade and inspect AutoPilot's PostgreSQL schema")
    commands = db.add_subparsers(dest="db_command", required=True)
    init = commands.add_parser("init", help="create the schema (an upgrade from nothing; safe to repeat)")
    add_dsn_argument(init)
    init.set_defaults(func=upgrade_command)
    up = commands.add_parser("upgrade", help="apply the schema migrations the database lacks")
    up.add_argument("--to", type=int, metavar="VERSION", help="stop at this version (default: the newest)")
    add_dsn_argument(up)
    up.set_defaults(func=upgrade_command)
    status = commands.add_parser("status", help="schema version, pending migrations and row counts")
    add_dsn_argument(status)
    status.set_defaults(func=status_command)


def upgrade_command(args: argparse.Namespace) -> int:
    target = getattr(args, "to", None)
    if target is not None and not 1 <= target <= latest_version():
        print(f"autopilot db upgrade: --to {target}: versions run from 1 to {latest_version()}")
        return 2
    with open_store(args) as store:
        applied = upgrade(store, target=target)
        version = schema_status(store).version
        done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
        print(f"schema version {version} in {redact(store.dsn)} ({done})")
    return 0


def status_command(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        status = schema_status(store)
        print(f"database: {redact(store.dsn)}")
        if status.version is None:
            print("schema: not initialised (run `autopilot db init`)")
            return 1
        print(f"schema version: {status.version} (newest {status.latest})")
        if status.pending:
            print(f"  {status.pending} migration(s) pending: run `autopilot db upgrade`")
        for table, count in status.row_counts.items():
            print(f"  {table:<13} {count:>8} rows")
    return 1 if status.pending else 0
