"""Read a queue file from a path or an http(s) URL and decode it as JSON or YAML."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from autopilot_ops.queues.errors import Problem, QueueFileError

MAX_BYTES = 256 * 1024 * 1024
URL_SCHEMES = ("http", "https")


def read_source(location: str, timeout: float = 30.0) -> tuple[str, str]:
    """The text at ``location`` (a path or an http(s) URL) and a format hint (``json``, ``yaml`` or ``""``)."""
    scheme = urlsplit(location).scheme.lower()
    if scheme in URL_SCHEMES:
        return _read_url(location, timeout), _format_hint(urlsplit(location).path)
    if "://" in location:
        raise QueueFileError(
            [Problem(location, None, None, f"unsupported URL scheme {scheme!r} (use a path, http or https)")]
        )
    path = Path(location)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise QueueFileError([Problem(location, None, None, f"cannot read: {exc.strerror or exc}")]) from None
    return _decode(data, location), _format_hint(path.name)


def _read_url(url: str, timeout: float) -> str:
    request = urllib.request.Request(url, headers={"Accept": "application/json, application/yaml, */*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise QueueFileError([Problem(url, None, None, f"HTTP {exc.code} {exc.reason}")]) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise QueueFileError([Problem(url, None, None, f"cannot fetch: {reason}")]) from None
    if len(data) > MAX_BYTES:
        raise QueueFileError([Problem(url, None, None, f"larger than {MAX_BYTES} bytes")])
    return _decode(data, url)


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QueueFileError([Problem(source, None, None, f"not UTF-8 text (byte {exc.start})")]) from None


def _format_hint(name: str) -> str:
    lowered = name.lower()
    if lowered.endswith(".json"):
        return "json"
    if lowered.endswith((".yaml", ".yml")):
        return "yaml"
    return ""


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def decode_document(text: str, source: str, hint: str = "") -> Any:
    """Parse ``text`` as JSON (``hint='json'``, or when it looks like JSON) or YAML; errors name the file."""
    looks_json = hint == "json" or (hint == "" and text.lstrip()[:1] in ("{", "["))
    if looks_json:
        try:
            return json.loads(text, object_pairs_hook=_reject_duplicates)
        except _DuplicateKey as dup:
            raise QueueFileError([Problem(source, dup.key, None, "duplicate queue (key appears twice)")]) from None
        except json.JSONDecodeError as exc:
            raise QueueFileError(
                [Problem(source, None, None, f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}")]
            ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except _DuplicateKey as dup:
        raise QueueFileError([Problem(source, None, dup.key, "key appears twice")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise QueueFileError([Problem(source, None, None, f"not valid YAML: {where}{problem}")]) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a mapping key given twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(str(key))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
