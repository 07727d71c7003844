"""Map a requested log path onto a file under the log root, refusing anything that could leave it."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class LogPathError(Exception):
    """The path is refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def resolve_log_file(root: Path, requested: str) -> Path:
    """The real path of ``requested`` (relative to ``root``), if it is a regular file inside ``root``.

    Refused: absolute paths, ``.`` or ``..`` segments (after URL decoding, which the web framework has
    already done), backslashes and NUL bytes (400); anything whose real path, symlinks resolved, is outside
    the real ``root`` (403); missing files and non-files (404).
    """
    if not requested or "\x00" in requested or "\\" in requested:
        raise LogPathError(400, "log path is empty or has a NUL byte or backslash")
    pure = PurePosixPath(requested)
    if pure.is_absolute():
        raise LogPathError(400, "log path must be relative to the log root")
    if any(part in ("..", ".") for part in requested.split("/")):
        raise LogPathError(400, "log path must not contain '.' or '..' segments")
    real_root = root.resolve(strict=True)
    candidate = real_root.joinpath(*pure.parts)
    try:
        real = candidate.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise LogPathError(404, f"no log file {requested}") from None
    except (RuntimeError, OSError) as exc:  # symlink loop, permission denied
        raise LogPathError(403, f"log path {requested} cannot be resolved: {exc.strerror or exc}") from None
    if not real.is_relative_to(real_root):
        raise LogPathError(403, f"log path {requested} leads outside the log root")
    if not real.is_file():
        raise LogPathError(404, f"{requested} is not a log file")
    return real


def relative_log_path(root: Path | None, path: str | None) -> str | None:
    """``path`` relative to ``root`` when it lies inside it (for links), else None."""
    if root is None or not path:
        return None
    try:
        relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        return None
    return relative.as_posix()


def open_log(path: Path) -> int:
    """A read-only descriptor for an already resolved path; ``O_NOFOLLOW`` refuses a symlink swapped in."""
    return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
