"""Entry point of the ``autopilot`` command: one sub-command group per module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from autopilot_ops.errors import CommandError

#: Modules that each add commands with ``register(subparsers)``: those of ``autopilot_ops.cli``, and the
#: pilot's own (``autopilot_ops.pilot.commands``, which batch jobs also run alone).
COMMAND_MODULES = (
    "cli.db",
    "cli.queues",
    "cli.backends",
    "cli.up",
    "cli.devserver",
    "pilot.commands",
    "cli.scheduler",
    "cli.cycle",
)
#: The module that adds each top-level command, so that a run imports only what it uses.
MODULE_OF_COMMAND = {
    "db": "cli.db",
    "queues": "cli.queues",
    "backends": "cli.backends",
    "up": "cli.up",
    "down": "cli.up",
    "panda-devserver": "cli.devserver",
    "pilot": "pilot.commands",
    "scheduler": "cli.scheduler",
    "cycle": "cli.cycle",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` alone when it is known, else for every command (for help and errors)."""
    parser = argparse.ArgumentParser(prog="autopilot", description="AutoPilot: PanDA pilots and their schedulers.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = [MODULE_OF_COMMAND[command]] if command in MODULE_OF_COMMAND else COMMAND_MODULES
    for name in modules:
        importlib.import_module(f"autopilot_ops.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
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
