"""Entry point of the ``autopilot`` command: one sub-command group per module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from autopilot_ops.cli.common import CommandError

#: Modules under ``autopilot_ops.cli`` that each add commands with ``register(subparsers)``.
COMMAND_MODULES = ("db", "queues", "backends", "up", "devserver", "pilot", "scheduler")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autopilot", description="AutoPilot: PanDA pilots and their schedulers.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"autopilot_ops.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"autopilot: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
