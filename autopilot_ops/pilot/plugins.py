"""Finding a pilot plugin (data mover, VO) by name: this package's own first, then the installed entry points."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def load_plugin(group: str, builtin: Mapping[str, str], name: str, unknown: type[LookupError], what: str) -> Any:
    """The object ``builtin[name]`` names (``module:attribute``), else the entry point ``name`` of ``group``;
    raises ``unknown`` naming the ``what`` and the known names when neither exists."""
    if name in builtin:
        module, _, attribute = builtin[name].partition(":")
        return getattr(importlib.import_module(module), attribute)
    from importlib.metadata import entry_points  # 25 ms, only for a plugin of another package

    for ep in entry_points(group=group, name=name):
        return ep.load()
    known = sorted({*builtin, *(ep.name for ep in entry_points(group=group))})
    raise unknown(f"no {what} {name!r} is installed (known: {', '.join(known) or 'none'})")
