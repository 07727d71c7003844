"""``autopilot up`` and ``autopilot down``: the run command's services, started and stopped."""

from __future__ import annotations

import argparse

from autopilot_ops.cli.common import CommandError
from autopilot_ops.quickstart.database import bring_up_database, stop_database
from autopilot_ops.store.connection import StoreError, redact
from autopilot_ops.store.embedded import EmbeddedPostgresError


def register(subparsers: argparse._SubParsersAction) -> None:
    up = subparsers.add_parser("up", help="start AutoPilot on this machine with its embedded defaults")
    up.set_defaults(func=up_command)
    down = subparsers.add_parser("down", help="stop what `autopilot up` started")
    down.set_defaults(func=down_command)


def up_command(args: argparse.Namespace) -> int:
    try:
        dsn, loaded = bring_up_database()
    except (EmbeddedPostgresError, StoreError) as exc:
        raise CommandError(f"database: {exc}") from None
    print(f"database ready: {redact(dsn)}")
    print(f"demo queues: {loaded.plan.summary()}")
    return 0


def down_command(args: argparse.Namespace) -> int:
    try:
        stopped = stop_database()
    except EmbeddedPostgresError as exc:
        raise CommandError(str(exc)) from None
    print("embedded database stopped" if stopped else "embedded database was not running")
    return 0
