"""``autopilot up [--foreground]`` and ``autopilot down``: the run command's services, started and stopped.

Ports and paths come from the environment: ``AUTOPILOT_HOME`` (default ``./.autopilot``),
``AUTOPILOT_PANDA_PORT`` (25080), ``AUTOPILOT_AIRFLOW_PORT`` (8080), ``AUTOPILOT_EMBEDDED_PG_PORT`` (55432),
``AUTOPILOT_DSN`` (an existing PostgreSQL instead of the embedded one), ``AUTOPILOT_DEMO_JOBS`` (12),
``AUTOPILOT_DEMO_QUEUES`` (a queue file instead of the demo queues; its queues tagged ``demo`` get the jobs);
with ``--executor celery``: ``AUTOPILOT_REDIS_PORT`` (26379); with ``celery`` or ``edge``:
``AUTOPILOT_WORKER_QUEUES``.
"""

from __future__ import annotations

import argparse
import sys

from autopilot_ops.errors import CommandError
from autopilot_ops.quickstart.settings import EXECUTORS, QuickstartError, Settings
from autopilot_ops.quickstart.stack import down, started_services, stay_in_foreground, up
from autopilot_ops.store.connection import StoreError
from autopilot_ops.store.embedded import EmbeddedPostgresError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "up",
        help="start AutoPilot on this machine with its embedded defaults, and run the demo",
        description="Start PostgreSQL, the PanDA dev server with demo jobs, and Airflow with the demo scheduler; "
        "show progress until the demo jobs are done. Services that already run are reused.",
        epilog="Environment: AUTOPILOT_HOME (default ./.autopilot), AUTOPILOT_PANDA_PORT (25080), "
        "AUTOPILOT_AIRFLOW_PORT (8080), AUTOPILOT_EMBEDDED_PG_PORT (55432), AUTOPILOT_DSN (an existing "
        "PostgreSQL instead of the embedded one), AUTOPILOT_DEMO_JOBS (12), AUTOPILOT_DEMO_QUEUES (a queue file "
        "instead of the demo queues).",
    )
    parser.add_argument(
        "--foreground", action="store_true", help="stay attached after the demo; Ctrl-C stops every service"
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        help="Airflow's executor: local (LocalExecutor, the default; AUTOPILOT_EXECUTOR), celery "
        "(CeleryExecutor with a Redis broker on AUTOPILOT_REDIS_PORT, 26379, and two Celery workers) or edge "
        "(EdgeExecutor, two Edge workers pulling tasks from the API server); the second worker also serves the "
        "worker queues in AUTOPILOT_WORKER_QUEUES",
    )
    parser.set_defaults(func=up_command)
    stop = subparsers.add_parser("down", help="stop what `autopilot up` started")
    stop.set_defaults(func=down_command)


def up_command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_environment(args.executor)
        up(settings)
        if args.foreground:
            stay_in_foreground(settings)
    except (QuickstartError, EmbeddedPostgresError, StoreError) as exc:
        raise CommandError(f"{exc}{_still_running_hint()}") from None
    except KeyboardInterrupt:
        print(f"interrupted{_still_running_hint()}", file=sys.stderr)
        return 130
    return 0


def _still_running_hint() -> str:
    """A note on what keeps running after ``up`` stopped early, or nothing if nothing runs."""
    try:
        running = started_services(Settings.from_environment())
    except QuickstartError:  # the settings themselves are wrong: nothing was started
        return ""
    if not running:
        return ""
    return f"\n(still running: {', '.join(running)}; `autopilot down` or `make stop` stops them)"


def down_command(args: argparse.Namespace) -> int:
    try:
        down(Settings.from_environment())
    except (QuickstartError, EmbeddedPostgresError) as exc:
        raise CommandError(str(exc)) from None
    return 0
