"""Rucio mover: runs ``rucio download``/``rucio upload`` from rucio-clients, when installed.

URLs: ``rucio://<scope>/<name>`` to download, ``rucio://<RSE>/<scope>`` to upload (the file keeps its name).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from autopilot_ops.pilot.movers.base import DataMover, MissingFileError, TransferError


def _two_parts(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    second = parts.path.strip("/")
    if parts.scheme != "rucio" or not parts.netloc or not second or "/" in second:
        raise TransferError(f"not a rucio://<a>/<b> URL: {url}")
    return parts.netloc, second


class RucioMover(DataMover):
    """Options: ``rucio`` (the command, default ``rucio`` on PATH), ``timeout`` (s)."""

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = self.options.get("rucio", "rucio")
        if shutil.which(command) is None:
            raise TransferError(f"the rucio data mover needs the {command!r} command (rucio-clients)")
        try:
            return subprocess.run(
                [command, *args], capture_output=True, text=True, timeout=float(self.options.get("timeout", 3600))
            )
        except subprocess.TimeoutExpired as exc:
            raise TransferError(f"rucio {args[0]} timed out after {exc.timeout} s") from exc

    def get(self, url: str, destination: Path) -> None:
        scope, name = _two_parts(url)
        with tempfile.TemporaryDirectory(dir=destination.parent) as scratch:
            result = self._run("download", "--no-subdir", "--dir", scratch, f"{scope}:{name}")
            downloaded = Path(scratch) / name
            if result.returncode != 0 or not downloaded.is_file():
                detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
                if "not found" in detail[0].lower() or "no replica" in detail[0].lower():
                    raise MissingFileError(f"input {scope}:{name} not found: {detail[0]}")
                raise TransferError(f"rucio download {scope}:{name} failed: {detail[0]}")
            os.replace(downloaded, destination)

    def put(self, source: Path, url: str) -> None:
        rse, scope = _two_parts(url)
        result = self._run("upload", "--rse", rse, "--scope", scope, str(source))
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise TransferError(f"rucio upload {source} to {rse} failed: {detail[0]}")
