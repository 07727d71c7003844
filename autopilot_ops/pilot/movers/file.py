"""POSIX mover: ``file://`` URLs or plain paths, copied or (for inputs, when asked) symlinked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

from autopilot_ops.pilot.movers.base import DataMover, MissingFileError, TransferError


def local_path(url: str) -> Path:
    """The filesystem path of a ``file://`` URL or a plain path."""
    parts = urlsplit(url)
    if parts.scheme not in ("", "file"):
        raise TransferError(f"not a file URL: {url}")
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        raise TransferError(f"file URL {url} names a remote host {parts.netloc!r}")
    return Path(unquote(parts.path) if parts.scheme else url)


class FileMover(DataMover):
    """Copies files on a shared filesystem; option ``symlink=true`` links inputs instead of copying."""

    def get(self, url: str, destination: Path) -> None:
        source = local_path(url)
        if not source.is_file():
            raise MissingFileError(f"input {source} does not exist")
        try:
            if self.options.get("symlink", "").lower() in ("1", "true", "yes"):
                os.symlink(source.resolve(), destination)
            else:
                shutil.copyfile(source, destination)
        except OSError as exc:
            raise TransferError(f"copy {source} -> {destination} failed: {exc}") from exc

    def put(self, source: Path, url: str) -> None:
        target = local_path(url)
        partial = target.with_name(f".{target.name}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, partial)
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise TransferError(f"copy {source} -> {target} failed: {exc}") from exc
