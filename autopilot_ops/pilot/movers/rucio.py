"""Rucio mover: downloads and uploads through Rucio's Python client API (``rucio-clients``, the extra
``autopilot-ops[rucio]``), imported only when a rucio URL is moved, so the pilot bundle stays standard-library only.

URLs: ``rucio://<scope>/<name>`` with optional query values ``rse`` (where to read or write), ``dataset``
(``[scope:]name`` the output is attached to) and ``guid``; empty values count as unset, so one template serves
every job: ``rucio://{scope}/{lfn}?rse={rse}&dataset={dataset}&guid={guid}``.

Follows PanDAWMS/pilot3 ``pilot/copytool/rucio.py`` (``_stage_in_api``: ``DownloadClient.download_dids`` of
``scope:lfn`` on the file's ``ddmendpoint`` with ``no_subdir``; ``_stage_out_api``: ``UploadClient.upload`` to the
file's ``ddmendpoint`` in its scope, then the uploaded checksum compared with the local one). Where pilot3 uploads
with ``no_register`` and leaves the catalogue to PanDA's adder, this mover registers each file itself, after its
bytes are written (``register_after_upload``), with its GUID, in its dataset (created with a rule on the RSE when
new), since no adder runs here. Traces are not sent to Rucio (pilot3's ``tracing_rucio = False``), only read
for the error codes of :mod:`autopilot_ops.pilot.movers.rucio_errors`.
"""

from __future__ import annotations

import importlib
import logging
import os
import tempfile
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from autopilot_ops.pilot import checksums, errorcodes
from autopilot_ops.pilot.movers.base import DataMover, TransferError
from autopilot_ops.pilot.movers.rucio_errors import download_failure, upload_failure

log = logging.getLogger(__name__)
_QUERY_KEYS = {"rse", "dataset", "guid"}
MISSING_CLIENT = "the rucio data mover needs rucio-clients, which is not installed: pip install 'autopilot-ops[rucio]'"


class RucioDID(NamedTuple):
    """What a ``rucio://`` URL names: the file, and where it is read, written and attached."""

    scope: str
    name: str
    rse: str | None = None
    dataset_scope: str | None = None
    dataset_name: str | None = None
    guid: str | None = None


def parse_url(url: str) -> RucioDID:
    """Read ``rucio://<scope>/<name>[?rse=&dataset=&guid=]``; raise :class:`TransferError` naming the URL."""
    parts = urlsplit(url)
    name = unquote(parts.path).strip("/")
    if parts.scheme != "rucio" or not parts.netloc or not name or "/" in name:
        raise TransferError(f"not a rucio://<scope>/<name> URL: {url}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - _QUERY_KEYS)
    if unknown:
        raise TransferError(f"rucio URL {url}: unknown query key(s) {', '.join(unknown)} (known: rse, dataset, guid)")
    dataset = query.get("dataset") or None
    dataset_scope, _, dataset_name = (dataset or "").rpartition(":")
    return RucioDID(
        parts.netloc,
        name,
        query.get("rse") or None,
        (dataset_scope or parts.netloc) if dataset else None,
        dataset_name or None,
        query.get("guid") or None,
    )


def _rucio(module: str) -> Any:
    try:
        return importlib.import_module(module)  # not ``import``: the bundle builder refuses non-stdlib imports
    except ImportError as exc:
        raise TransferError(MISSING_CLIENT) from exc


@cache
def _client(rucio_host: str | None, auth_host: str | None, account: str | None) -> Any:
    """One Rucio ``Client`` per server and account for the pilot's life (it keeps its token and connections);
    the rest of its settings come from Rucio's own configuration (``RUCIO_CONFIG``)."""
    args = {"rucio_host": rucio_host, "auth_host": auth_host or rucio_host, "account": account}
    return _rucio("rucio.client").Client(logger=log, **{key: value for key, value in args.items() if value})


class RucioMover(DataMover):
    """Options: ``rse`` (the RSE for outputs whose job names none), ``rucio_host`` and ``auth_host`` (else the
    Rucio configuration's), ``account``, ``timeout`` (seconds per transfer; default none)."""

    def _client(self) -> Any:
        host = self.options.get("rucio_host")
        return _client(host, self.options.get("auth_host"), self.options.get("account"))

    def _timeout(self) -> dict[str, float]:
        timeout = self.options.get("timeout")
        if not timeout:
            return {}
        try:
            return {"transfer_timeout": float(timeout)}
        except ValueError as exc:
            raise TransferError(f"rucio mover option timeout={timeout!r} is not a number of seconds") from exc

    def get(self, url: str, destination: Path) -> None:
        did = parse_url(url)
        item: dict[str, Any] = {"did": f"{did.scope}:{did.name}", "no_subdir": True, **self._timeout()}
        if did.rse:
            item["rse"] = did.rse
        downloader = _rucio("rucio.client.downloadclient").DownloadClient
        traces: list[dict[str, Any]] = []
        with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".rucio-") as scratch:
            item["base_dir"] = scratch
            try:  # the client authenticates when it is made
                download = downloader(client=self._client(), logger=log)
                download.tracing = False
                result = download.download_dids([item], num_threads=1, traces_copy_out=traces)[0]
            except Exception as exc:  # Rucio's exceptions exist only once rucio is imported
                raise download_failure(exc, traces, did) from exc
            downloaded = Path(scratch) / did.name
            _check(downloaded, result.get("adler32"), errorcodes.GETADMISMATCH, f"download of {did.scope}:{did.name}")
            os.replace(downloaded, destination)

    def put(self, source: Path, url: str) -> None:
        did = parse_url(url)
        rse = did.rse or self.options.get("rse")
        if not rse:
            raise TransferError(
                f"no destination RSE for {did.scope}:{did.name}: the job names none (ddmEndPointOut) and the rucio "
                "mover has no rse option",
                errorcodes.NOSTORAGE,
            )
        item: dict[str, Any] = {
            "path": str(source),
            "rse": rse,
            "did_scope": did.scope,
            "did_name": did.name,
            "register_after_upload": True,
            **self._timeout(),
        }
        if did.guid:
            item["guid"] = did.guid
        if did.dataset_name:
            item.update(dataset_scope=did.dataset_scope, dataset_name=did.dataset_name)
        uploader = _rucio("rucio.client.uploadclient").UploadClient
        traces: list[dict[str, Any]] = []
        try:  # the client authenticates when it is made
            client = self._client()
            upload = uploader(_client=client, logger=log)
            upload.tracing = False  # as pilot3 does; UploadClient(tracing=False) fails in 41.5.1 (calls its logger)
            upload.upload([item], traces_copy_out=traces)
            replicas = list(client.list_replicas([{"scope": did.scope, "name": did.name}], rse_expression=rse))
        except Exception as exc:  # Rucio's exceptions exist only once rucio is imported
            raise upload_failure(exc, traces, did, rse) from exc
        check_replica(source, replicas, did, rse)


def check_replica(source: Path, replicas: list[Mapping[str, Any]], did: RucioDID, rse: str) -> None:
    """The replica Rucio lists on ``rse`` after an upload has the size and adler32 of ``source``."""
    where = f"upload of {did.scope}:{did.name} to {rse}"
    if not replicas or rse not in replicas[0].get("rses", {}):
        raise TransferError(f"{where}: Rucio lists no replica there afterwards")
    size = source.stat().st_size
    if replicas[0].get("bytes") != size:
        raise TransferError(f"{where}: Rucio has {replicas[0].get('bytes')} bytes, the file {size}")
    _check(source, replicas[0].get("adler32"), errorcodes.PUTADMISMATCH, where)


def _check(path: Path, catalogue: str | None, code: int, where: str) -> None:
    """``path``'s adler32 is the one Rucio's catalogue holds (Rucio may drop leading zeros)."""
    local = checksums.adler32(path)
    if not catalogue:
        raise TransferError(f"{where}: Rucio has no adler32 for the file")
    if str(catalogue).lower().rjust(8, "0") != local:
        raise TransferError(f"{where}: adler32 is {local} here, {catalogue} in Rucio", code)
