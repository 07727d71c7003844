"""The data-mover interface, its errors, and loading movers through the ``autopilot.datamovers`` entry points."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from autopilot_ops.pilot.plugins import load_plugin

ENTRY_POINT_GROUP = "autopilot.datamovers"
#: This package's own movers (its ``setup.py`` entry points), found without reading installed metadata: a pilot
#: bundle has none, and ``importlib.metadata`` costs 25 ms at start. Other movers come from the entry points.
BUILTIN = {
    "file": "autopilot_ops.pilot.movers.file:FileMover",
    "http": "autopilot_ops.pilot.movers.http:HttpMover",
    "https": "autopilot_ops.pilot.movers.http:HttpMover",
    "s3": "autopilot_ops.pilot.movers.s3:S3Mover",
    "rucio": "autopilot_ops.pilot.movers.rucio:RucioMover",
}


class TransferError(Exception):
    """A copy between storage and the work dir failed; ``code`` is the pilot3 error code when the mover knows a
    more precise one than stage-in's or stage-out's default."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


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
    return load_plugin(ENTRY_POINT_GROUP, BUILTIN, name, UnknownMoverError, "data mover")


def load_mover(url: str, name: str | None = None, options: Mapping[str, str] | None = None) -> DataMover:
    """The mover named ``name`` (the queue's choice), else the one registered for the scheme of ``url``."""
    scheme = urlsplit(url).scheme or "file"
    return _mover_class(name or scheme)(options)
