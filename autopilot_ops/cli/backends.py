"""``autopilot backends add | list | remove``: the registry of submission back ends."""

from __future__ import annotations

import argparse
import getpass
import json

from autopilot_ops.backends.registry import available_kinds
from autopilot_ops.cli.common import add_dsn_argument, open_store, print_table
from autopilot_ops.errors import CommandError
from autopilot_ops.queues.errors import FieldError
from autopilot_ops.queues.model import WORKER_QUEUE_NAME_MAX
from autopilot_ops.queues.names import BACKEND_NAME_MAX, check_name
from autopilot_ops.store.backends import BackendInUse, list_backends, remove_backend, upsert_backend
from autopilot_ops.store.events import record_event


def register(subparsers: argparse._SubParsersAction) -> None:
    backends = subparsers.add_parser("backends", help="the registry of submission back ends")
    commands = backends.add_subparsers(dest="backends_command", required=True)

    add = commands.add_parser("add", help="add or update a back end")
    add.add_argument("name")
    add.add_argument("--kind", required=True, help="back-end kind (installed: see `autopilot backends kinds`)")
    add.add_argument("--submit-host")
    add.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter (VALUE is parsed as JSON when it can be); repeatable",
    )
    add.add_argument("--owner", default=getpass.getuser())
    add.add_argument(
        "--worker-queue", help="the Airflow worker queue its queues' cycle tasks run on (default: 'default')"
    )
    add.add_argument("--disabled", action="store_true")
    add_dsn_argument(add)
    add.set_defaults(func=add_command)

    listing = commands.add_parser("list", help="list back ends")
    add_dsn_argument(listing)
    listing.set_defaults(func=list_command)

    remove = commands.add_parser("remove", help="remove a back end no queue uses")
    remove.add_argument("name")
    add_dsn_argument(remove)
    remove.set_defaults(func=remove_command)

    kinds = commands.add_parser("kinds", help="back-end kinds installed (entry points autopilot.backends)")
    kinds.set_defaults(func=lambda args: print("\n".join(available_kinds())) or 0)


def parse_params(pairs: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--param {pair!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def add_command(args: argparse.Namespace) -> int:
    try:
        check_name(args.name, BACKEND_NAME_MAX)
    except FieldError as exc:
        raise CommandError(f"NAME {args.name!r}: {exc}") from None
    if args.worker_queue is not None:
        try:
            check_name(args.worker_queue, WORKER_QUEUE_NAME_MAX)
        except FieldError as exc:
            raise CommandError(f"--worker-queue {args.worker_queue!r}: {exc}") from None
    if args.kind not in available_kinds():
        raise CommandError(
            f"--kind: no back end of kind {args.kind!r} is installed (known: {', '.join(available_kinds())})"
        )
    params = parse_params(args.param)
    with open_store(args) as store, store.transaction() as cur:
        new = upsert_backend(
            cur, args.name, args.kind, args.submit_host, params, not args.disabled, args.owner, args.worker_queue
        )
        record_event(
            cur,
            args.owner,
            "backend-added" if new else "backend-updated",
            details={"name": args.name, "kind": args.kind},
        )
    print(f"back end {args.name!r} ({args.kind}) {'added' if new else 'updated'}")
    return 0


def list_command(args: argparse.Namespace) -> int:
    with open_store(args) as store, store.transaction() as cur:
        rows = list_backends(cur)
    print_table(rows, ("name", "kind", "submit_host", "worker_queue", "enabled", "owner", "parameters"))
    return 0


def remove_command(args: argparse.Namespace) -> int:
    with open_store(args) as store, store.transaction() as cur:
        try:
            removed = remove_backend(cur, args.name)
        except BackendInUse as exc:
            raise CommandError(str(exc)) from None
        if not removed:
            raise CommandError(f"no back end named {args.name!r}")
        record_event(cur, getpass.getuser(), "backend-removed", details={"name": args.name})
    print(f"back end {args.name!r} removed")
    return 0
