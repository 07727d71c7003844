"""``autopilot queues load | list | show | set-status``."""

from __future__ import annotations

import argparse
import sys

from autopilot_ops.cli.common import add_dsn_argument, open_store, print_json, print_table
from autopilot_ops.errors import CommandError
from autopilot_ops.queues.errors import QueueFileError
from autopilot_ops.queues.loader import load_queues
from autopilot_ops.queues.model import STATUSES
from autopilot_ops.queues.plan import DEFAULT_MAX_PRUNE_SHARE
from autopilot_ops.store.events import record_event
from autopilot_ops.store.queues import get_queue, list_queues, set_queue_status


def register(subparsers: argparse._SubParsersAction) -> None:
    queues = subparsers.add_parser("queues", help="PanDA queue definitions (schedconfig)")
    commands = queues.add_subparsers(dest="queues_command", required=True)

    load = commands.add_parser("load", help="load a CRIC-style or short-format queue file, all or nothing")
    load.add_argument("location", metavar="PATH|URL")
    load.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    load.add_argument("--prune", action="store_true", help="remove queues absent from the file")
    load.add_argument(
        "--max-prune-share",
        type=share,
        default=DEFAULT_MAX_PRUNE_SHARE,
        metavar="FRACTION",
        help=f"refuse a prune that removes more than this share of the queues (default {DEFAULT_MAX_PRUNE_SHARE})",
    )
    load.add_argument(
        "--force", action="store_true", help="prune past --max-prune-share, or every queue (never on an empty file)"
    )
    load.add_argument("--default-backend", help="back end for queues whose definition names none")
    add_dsn_argument(load)
    load.set_defaults(func=load_command)

    listing = commands.add_parser("list", help="list queues")
    listing.add_argument("--tag")
    listing.add_argument("--site")
    listing.add_argument("--json", action="store_true")
    add_dsn_argument(listing)
    listing.set_defaults(func=list_command)

    show = commands.add_parser("show", help="every field of one queue")
    show.add_argument("queue")
    add_dsn_argument(show)
    show.set_defaults(func=show_command)

    status = commands.add_parser("set-status", help="set a queue online, offline, test or brokeroff")
    status.add_argument("queue")
    status.add_argument("status", choices=STATUSES)
    add_dsn_argument(status)
    status.set_defaults(func=set_status_command)


def share(value: str) -> float:
    """``--max-prune-share``: a fraction between 0 and 1."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {value!r}") from None
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {value!r}")
    return number


def load_command(args: argparse.Namespace) -> int:
    with open_store(args) as store:
        try:
            result = load_queues(
                store,
                args.location,
                dry_run=args.dry_run,
                prune=args.prune,
                force=args.force,
                max_prune_share=args.max_prune_share,
                default_backend=args.default_backend,
            )
        except QueueFileError as exc:
            for problem in exc.problems:
                print(f"autopilot: error: {problem}", file=sys.stderr)
            print(f"autopilot: nothing was written ({len(exc.problems)} problem(s))", file=sys.stderr)
            return 1
    if args.dry_run:
        for line in result.plan.lines():
            print(line)
        print(f"dry run: would be {result.plan.summary()}")
        if result.refusal:
            print(f"autopilot: error: {result.source}: refused: {result.refusal}", file=sys.stderr)
            return 1
    else:
        print(f"{result.source}: {result.plan.summary()}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    with open_store(args) as store, store.transaction() as cur:
        rows = list_queues(cur, tag=args.tag, site=args.site)
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ("panda_queue", "site", "status", "tags", "backend", "corecount", "cycle_period"))
    return 0


def show_command(args: argparse.Namespace) -> int:
    with open_store(args) as store, store.transaction() as cur:
        row = get_queue(cur, args.queue)
    if row is None:
        raise CommandError(f"no queue named {args.queue!r}")
    print_json(row)
    return 0


def set_status_command(args: argparse.Namespace) -> int:
    with open_store(args) as store, store.transaction() as cur:
        previous = set_queue_status(cur, args.queue, args.status)
        if previous is None:
            raise CommandError(f"no queue named {args.queue!r}")
        record_event(
            cur,
            "autopilot queues set-status",
            "queue-status",
            queue=args.queue,
            details={"from": previous, "to": args.status},
        )
    print(f"{args.queue}: {previous} -> {args.status}")
    return 0
