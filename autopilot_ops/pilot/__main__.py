"""``python -m autopilot_ops.pilot run ...``: the pilot commands alone, without the rest of the CLI."""

from __future__ import annotations

import argparse
import sys

from autopilot_ops.cli import pilot as pilot_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="autopilot-pilot", description="The generic PanDA pilot.")
    commands = parser.add_subparsers(dest="command", required=True)
    pilot_cli.register(commands)
    args = parser.parse_args(["pilot", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except Exception as exc:
        from autopilot_ops.cli.common import CommandError  # late: it lives beside the database helpers

        if not isinstance(exc, CommandError):
            raise
        print(f"autopilot-pilot: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
