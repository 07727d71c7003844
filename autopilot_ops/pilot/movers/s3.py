"""S3 mover (``s3://bucket/key``), through boto3, which is an optional extra."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autopilot_ops.pilot.movers.base import DataMover, MissingFileError, TransferError


def _bucket_key(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key:
        raise TransferError(f"not an s3://bucket/key URL: {url}")
    return parts.netloc, key


class S3Mover(DataMover):
    """Options: ``endpoint_url``, ``region``, ``profile`` (boto3 reads credentials its usual way)."""

    def _client(self) -> Any:
        try:
            boto3 = importlib.import_module("boto3")
        except ImportError as exc:
            raise TransferError("the s3 data mover needs boto3, which is not installed (pip install boto3)") from exc
        session = boto3.session.Session(profile_name=self.options.get("profile"))
        return session.client(
            "s3", endpoint_url=self.options.get("endpoint_url"), region_name=self.options.get("region")
        )

    def get(self, url: str, destination: Path) -> None:
        bucket, key = _bucket_key(url)
        client = self._client()
        try:
            client.download_file(bucket, key, str(destination))
        except Exception as exc:  # botocore's errors are not importable without boto3
            if "404" in str(exc) or "NoSuchKey" in str(exc) or "Not Found" in str(exc):
                raise MissingFileError(f"input {url} does not exist") from exc
            raise TransferError(f"download {url} failed: {exc}") from exc

    def put(self, source: Path, url: str) -> None:
        bucket, key = _bucket_key(url)
        client = self._client()
        try:
            client.upload_file(str(source), bucket, key)
        except Exception as exc:  # botocore's errors are not importable without boto3
            raise TransferError(f"upload {source} -> {url} failed: {exc}") from exc
