"""``python -m autopilot_ops.pilot run ...``: the pilot commands alone, without the rest of the CLI."""

from __future__ import annotations

import argparse
import sys

from autopilot_ops.errors import CommandError
from autopilot_ops.pilot import commands


def main(argv: list[str] | None = None, *, bundle_command: bool = True) -> int:
    """Run ``pilot <argv>``; a pilot bundle runs it without the ``bundle`` command (it holds no builder)."""
    parser = argparse.ArgumentParser(prog="autopilot-pilot", description="The generic PanDA pilot.")
    subcommands = parser.add_subparsers(dest="command", required=True)
    commands.register(subcommands, bundle_command=bundle_command)
    args = parser.parse_args(["pilot", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"autopilot-pilot: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
