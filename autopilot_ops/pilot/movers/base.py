"""The data-mover interface, its errors, and loading movers through the ``autopilot.datamovers`` entry points."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlsplit

ENTRY_POINT_GROUP = "autopilot.datamovers"


class TransferError(Exception):
    """A copy between storage and the work dir failed."""


class MissingFileError(TransferError):
    """The source file does not exist in storage."""


class DataMover(abc.ABC):
    """Copies one file at a time between a storage URL and a local path.

    ``options`` come from the queue's configuration (credentials file paths, timeouts, ...).
    """

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.options = dict(options or {})

    @abc.abstractmethod
    def get(self, url: str, destination: Path) -> None:
        """Copy ``url`` to ``destination``; raise :class:`MissingFileError` if it does not exist."""

    @abc.abstractmethod
    def put(self, source: Path, url: str) -> None:
        """Copy the local file ``source`` to ``url``."""


class UnknownMoverError(LookupError):
    """No installed data mover serves this name or protocol."""


@cache
def _mover_class(name: str) -> type[DataMover]:
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        return ep.load()
    known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})
    raise UnknownMoverError(f"no data mover {name!r} is installed (known: {', '.join(known) or 'none'})")


def load_mover(url: str, name: str | None = None, options: Mapping[str, str] | None = None) -> DataMover:
    """The mover named ``name`` (the queue's choice), else the one registered for the scheme of ``url``."""
    scheme = urlsplit(url).scheme or "file"
    return _mover_class(name or scheme)(options)
