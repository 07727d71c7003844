"""File checksums as PanDA writes them: ``ad:<8 hex>`` for adler32, ``md5:<32 hex>`` for md5.

``hashlib`` is imported only for md5 and sha256: it loads OpenSSL (3.7 MB of the pilot's memory), and most jobs
need only adler32 (``zlib``).
"""

from __future__ import annotations

import zlib
from pathlib import Path

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A checksum string PanDA gave could not be read."""


def adler32(path: Path) -> str:
    """The adler32 of ``path`` as 8 lower-case hex digits."""
    value = 1
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def md5(path: Path) -> str:
    """The md5 of ``path`` as 32 lower-case hex digits."""
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    """The sha256 of ``path`` as 64 lower-case hex digits."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def parse(checksum: str) -> tuple[str, str]:
    """Split a PanDA checksum into ``(kind, hex)``; kind is ``adler32`` or ``md5``.

    PanDA sends ``ad:``/``md5:`` prefixed values (``Protocol.py`` takes ``checksum``, else ``md5sum``); a bare
    value is read by its length: 8 hex digits are adler32, 32 are md5.
    """
    text = checksum.strip().lower()
    kind, _, value = text.rpartition(":")
    if kind in ("ad", "adler32"):
        kind = "adler32"
    elif kind in ("md5", "md5sum"):
        kind = "md5"
    elif kind == "":
        kind = {8: "adler32", 32: "md5"}.get(len(value), "")
    if kind not in ("adler32", "md5") or not value or any(c not in "0123456789abcdef" for c in value):
        raise ChecksumError(f"unknown checksum {checksum!r} (expected ad:<hex> or md5:<hex>)")
    if kind == "adler32":
        value = value.rjust(8, "0")
    return kind, value


def compute(kind: str, path: Path) -> str:
    """The ``kind`` (``adler32`` or ``md5``) checksum of ``path``."""
    return adler32(path) if kind == "adler32" else md5(path)
