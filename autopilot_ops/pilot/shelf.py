"""The pilot bundles this installation keeps, by version: where the plugin serves them from and where the
scheduler reads the sha256 its pilots check.

This installation's own version (``current``) is built into the directory when missing; other versions are
there only if a site put them there (``autopilot pilot bundle -o DIR`` of that release), so a queue can pin one
(``schedconfig.pilot_version``). The build is reproducible: a scheduler and the plugin that build the same
version separately get the same sha256.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autopilot_ops import __version__
from autopilot_ops.config import state_dir

#: The alias of this installation's own version.
CURRENT = "current"
#: A version as a file name may carry it: no path separator, no leading dot.
VERSION_PATTERN = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")


class BundleNotFound(LookupError):
    """No bundle of the asked version on this server."""


@dataclass(frozen=True)
class StoredBundle:
    """A bundle file in the bundle directory, with its version and sha256."""

    version: str
    path: Path
    sha256: str


def default_bundle_dir() -> Path:
    """Where the bundles are kept without ``[autopilot] pilot_bundle_dir``."""
    return state_dir() / "pilot-bundles"


def bundle_file_name(version: str) -> str:
    return f"autopilot-pilot-{version}.pyz"


class BundleShelf:
    """The bundle directory: finds a version's bundle, building this installation's own when it is missing."""

    def __init__(self, directory: Path, build: Callable[[Path], object] | None = None,
                 current_version: str = __version__) -> None:
        self.directory = directory
        self.current_version = current_version
        self._build = build
        self._lock = threading.Lock()
        self._sums: dict[tuple[Path, int, int], str] = {}

    def get(self, version: str) -> StoredBundle:
        """The bundle of ``version`` (``current``: this installation's); ``BundleNotFound`` if there is none."""
        if version == CURRENT:
            version = self.current_version
        if not VERSION_PATTERN.fullmatch(version):
            raise ValueError(f"pilot bundle version {version!r} is not a version name")
        path = self.directory / bundle_file_name(version)
        if not path.is_file():
            if version != self.current_version:
                raise BundleNotFound(f"no pilot bundle {version} on this server (it has: {self.describe()})")
            self._build_current(path)
        return StoredBundle(version, path, self._sha256(path))

    def versions(self) -> list[str]:
        prefix, suffix = "autopilot-pilot-", ".pyz"
        if not self.directory.is_dir():
            return []
        return sorted(p.name[len(prefix):-len(suffix)] for p in self.directory.glob(f"{prefix}*{suffix}"))

    def describe(self) -> str:
        found = self.versions()
        return ", ".join(found) if found else f"none yet; {CURRENT} is {self.current_version}, built on request"

    def _build_current(self, path: Path) -> None:
        with self._lock:  # one build at a time; the builder writes its file whole (rename)
            if path.is_file():
                return
            build = self._build or _default_build
            self.directory.mkdir(parents=True, exist_ok=True)
            build(self.directory)
            if not path.is_file():
                raise RuntimeError(f"building the pilot bundle into {self.directory} made no {path.name}")

    def _sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._sums:
            digest = hashlib.sha256()
            with path.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            self._sums[key] = digest.hexdigest()
        return self._sums[key]


def _default_build(directory: Path) -> None:
    from autopilot_ops.pilot.bundle import build_bundle

    build_bundle(directory)
