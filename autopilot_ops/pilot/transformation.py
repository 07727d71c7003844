"""Turn a job's ``transformation`` into an executable: a URL is downloaded (allow-list, optional sha256 pin);
a path or a name is resolved by the VO plugin.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit

from autopilot_ops.pilot import checksums, errorcodes
from autopilot_ops.pilot.errorcodes import JobFailure
from autopilot_ops.pilot.movers.base import TransferError, UnknownMoverError, load_mover
from autopilot_ops.pilot.vo.base import TransformationNotFound, VOPlugin

URL_SCHEMES = ("http", "https", "file")


def is_url(transformation: str) -> bool:
    return urlsplit(transformation).scheme in URL_SCHEMES


def url_allowed(url: str, prefixes: Iterable[str]) -> bool:
    """Whether ``url`` starts with an allowed prefix at a path boundary and has no ``..`` segment."""
    parts = urlsplit(url)
    if ".." in unquote(parts.path).split("/"):
        return False
    for prefix in prefixes:
        if prefix and url.startswith(prefix):
            rest = url[len(prefix) :]
            if prefix.endswith("/") or rest == "" or rest[0] in "/?":
                return True
    return False


def _pin(url: str, pins: Mapping[str, str]) -> tuple[str, str | None]:
    """Split a ``#sha256=<hex>`` fragment off ``url``; a configured pin for the URL wins."""
    base, _, fragment = url.partition("#")
    pinned = fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else None
    return base, (pins.get(base) or pinned or None)


def fetch(url: str, workdir: Path, prefixes: Iterable[str], pins: Mapping[str, str]) -> Path:
    """Download an allowed transformation URL into ``workdir``, check its pin, make it executable."""
    base, expected = _pin(url, pins)
    if not url_allowed(base, prefixes):
        raise JobFailure(
            errorcodes.TRFDOWNLOADFAILURE,
            f"transformation URL {base} is not on the queue's allow-list (use --allow-url-prefix)",
        )
    name = Path(unquote(urlsplit(base).path)).name or "transformation"
    target = workdir / name
    try:
        load_mover(base).get(base, target)
    except (TransferError, UnknownMoverError) as exc:
        raise JobFailure(errorcodes.TRFDOWNLOADFAILURE, f"transformation download failed: {exc}") from exc
    if expected is not None:
        actual = checksums.sha256(target)
        if actual != expected.lower():
            target.unlink()
            raise JobFailure(
                errorcodes.TRFDOWNLOADFAILURE, f"transformation {base} has sha256 {actual}, pinned {expected}"
            )
    os.chmod(target, 0o755)
    return target


def prepare(transformation: str, workdir: Path, vo: VOPlugin, prefixes: Iterable[str], pins: Mapping[str, str]) -> Path:
    """The executable to run for ``transformation``."""
    if is_url(transformation):
        return fetch(transformation, workdir, prefixes, pins)
    try:
        return vo.resolve_transformation(transformation)
    except TransformationNotFound as exc:
        raise JobFailure(errorcodes.TRANSFORMNOTFOUND, str(exc)) from exc
