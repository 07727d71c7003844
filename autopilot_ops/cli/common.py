"""Pieces shared by the ``autopilot`` commands: the database option and table output."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from autopilot_ops.config import resolve_dsn
from autopilot_ops.errors import CommandError

if TYPE_CHECKING:
    from autopilot_ops.store.connection import Store


def add_dsn_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dsn",
        help="PostgreSQL libpq URL (default: $AUTOPILOT_DSN, else the embedded database of `autopilot up`)",
    )


def open_store(args: argparse.Namespace) -> Store:
    from autopilot_ops.store.connection import Store, StoreError  # not on the pilot's import path

    store = Store(resolve_dsn(args.dsn))
    try:
        store.connection()
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    return store


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Rows as aligned text columns."""
    cells = [[_cell(row.get(name)) for name in columns] for row in rows]
    widths = [max([len(name), *(len(r[i]) for r in cells)]) for i, name in enumerate(columns)]
    print("  ".join(name.upper().ljust(w) for name, w in zip(columns, widths)).rstrip())
    for r in cells:
        print("  ".join(value.ljust(w) for value, w in zip(r, widths)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else "-"
    return str(value)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))
