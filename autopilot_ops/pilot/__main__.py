"""``python -m autopilot_ops.pilot run ...``: the pilot commands alone, without the rest of the CLI."""

from __future__ import annotations

import argparse
import sys

from autopilot_ops.errors import CommandError
from autopilot_ops.pilot import commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autopilot-pilot", description="The generic PanDA pilot.")
    subcommands = parser.add_subparsers(dest="command", required=True)
    commands.register(subcommands)
    args = parser.parse_args(["pilot", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"autopilot-pilot: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
