"""Find back-end classes by kind, through the ``autopilot.backends`` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import Any

from autopilot_ops.backends.base import Backend

ENTRY_POINT_GROUP = "autopilot.backends"


class UnknownBackendKind(LookupError):
    """No installed back end serves this kind."""


@cache
def available_kinds() -> tuple[str, ...]:
    """Every back-end kind installed, from this package and from other VOs' packages."""
    return tuple(sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)))


def backend_class(kind: str) -> type[Backend]:
    """The class registered for ``kind``."""
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=kind):
        return ep.load()
    raise UnknownBackendKind(
        f"no back end of kind {kind!r} is installed (known: {', '.join(available_kinds()) or 'none'})"
    )


def create_backend(
    kind: str, name: str, parameters: dict[str, Any] | None = None, submit_host: str | None = None
) -> Backend:
    """An instance of the back end registered for ``kind``."""
    return backend_class(kind)(name, parameters, submit_host)
