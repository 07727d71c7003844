"""Find back-end classes by kind, through the ``autopilot.backends`` entry-point group."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from autopilot_ops.backends.base import Backend

ENTRY_POINT_GROUP = "autopilot.backends"


class UnknownBackendKind(LookupError):
    """No installed back end serves this kind."""


class UnusableBackend(ValueError):
    """A back end named by a queue that cannot be used: unregistered, disabled, or badly configured."""


#: Builds the back end of a registry row (``backends`` table); the Airflow operators' one also reads the
#: Airflow connection a row names (``airflow/hooks/backend.py``).
BackendFactory = Callable[[str, Mapping[str, Any]], Backend]


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


def backend_from_row(name: str, row: Mapping[str, Any]) -> Backend:
    """The back end of a ``backends`` row: ``kind``, ``parameters`` and ``submit_host``."""
    return create_backend(row["kind"], name, dict(row["parameters"] or {}), row["submit_host"])


def usable_backend(
    name: str | None, row: Mapping[str, Any] | None, factory: BackendFactory = backend_from_row
) -> Backend:
    """The back end ``name`` of registry row ``row``; raises :class:`UnusableBackend` saying why it cannot be used."""
    if not name:
        raise UnusableBackend("the queue names no back end")
    if row is None:
        raise UnusableBackend(f"back end {name!r} is not registered")
    if not row["enabled"]:
        raise UnusableBackend(f"back end {name!r} is disabled")
    try:
        return factory(name, row)
    except Exception as exc:  # unknown kind, or parameters the back end refuses
        raise UnusableBackend(f"back end {name!r}: {type(exc).__name__}: {exc}") from exc
