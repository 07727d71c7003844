"""Credentials as a queue file, a back end's ``parameters`` and ``schedconfig.credentials`` hold them: by job type
(prodSourceLabel, ``*`` for any), a PanDA token file with its ``origin`` or an X.509 proxy file; paths only.

The stored form is ``{"<job type>": {"kind": "token", "path": "/abs", "origin": "...", "pass_to_payload": false}}``.
Which one a submission carries (:func:`resolve`): the queue's own setting before the back end's, and within each
the job type's before ``*``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOKEN = "token"
PROXY = "proxy"
KINDS = (TOKEN, PROXY)
ANY_JOB_TYPE = "*"
#: The key of a back end's ``parameters`` that holds its credentials.
BACKEND_PARAMETER = "credentials"
_FIELDS = frozenset({"kind", "path", "origin", "pass_to_payload"})


class CredentialError(ValueError):
    """A credential setting that breaks its rules; the message names the job type and the field."""


@dataclass(frozen=True)
class Credential:
    """One credential file a pilot carries; ``pass_to_payload`` lets the payload see it too."""

    kind: str
    path: str
    origin: str | None = None
    pass_to_payload: bool = False

    def describe(self) -> str:
        """``token /etc/panda/token``: for reasons and logs (a path, never the value)."""
        return f"{self.kind} {self.path}"

    def as_json(self) -> dict[str, Any]:
        stored: dict[str, Any] = {"kind": self.kind, "path": self.path}
        if self.origin is not None:
            stored["origin"] = self.origin
        stored["pass_to_payload"] = self.pass_to_payload
        return stored


def parse_credentials(value: Any) -> dict[str, Credential]:
    """Credentials by job type; raises ``CredentialError`` naming the job type and the field that is wrong."""
    if not isinstance(value, Mapping):
        raise CredentialError(f"must be an object of job types ('*' for any), got {type(value).__name__}")
    parsed = {}
    for job_type, entry in value.items():
        if not isinstance(job_type, str) or not job_type.strip() or job_type != job_type.strip():
            raise CredentialError(f"job type {job_type!r} must be a prodSourceLabel or '*'")
        try:
            parsed[job_type] = _credential(entry)
        except CredentialError as exc:
            raise CredentialError(f"job type {job_type!r}: {exc}") from None
    return parsed


def credentials_field(value: Any) -> dict[str, dict[str, Any]]:
    """The ``credentials`` field of a queue, checked and in its stored form."""
    return {job_type: credential.as_json() for job_type, credential in parse_credentials(value).items()}


def _credential(entry: Any) -> Credential:
    if not isinstance(entry, Mapping):
        raise CredentialError(f"must be an object with kind and path, got {type(entry).__name__}")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        expected = ", ".join(sorted(_FIELDS))
        raise CredentialError(f"field {unknown[0]!r} is not a credential field (expected: {expected})")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise CredentialError(f"field 'kind': unknown kind {kind!r} (expected one of: {', '.join(KINDS)})")
    path = entry.get("path")
    if not isinstance(path, str) or not path.strip():
        raise CredentialError(f"field 'path': must be the path of the {kind} file, got {path!r}")
    if not os.path.isabs(path) or any(c in path for c in "\n\r\0"):
        raise CredentialError(f"field 'path': {path!r} must be an absolute path on one line")
    origin = entry.get("origin")
    if kind == TOKEN and (not isinstance(origin, str) or not origin.strip()):
        raise CredentialError("field 'origin': a token needs the origin PanDA's pilot sends (its Origin header)")
    if kind == PROXY and origin is not None:
        raise CredentialError("field 'origin': only a token has an origin")
    passing = entry.get("pass_to_payload", False)
    if not isinstance(passing, bool):
        raise CredentialError(f"field 'pass_to_payload': must be true or false, got {passing!r}")
    return Credential(kind, os.path.normpath(path), origin.strip() if origin else None, passing)


def with_checked_credentials(parameters: dict[str, Any]) -> dict[str, Any]:
    """A back end's ``parameters`` with its credentials checked and in their stored form."""
    if BACKEND_PARAMETER not in parameters:
        return parameters
    try:
        return {**parameters, BACKEND_PARAMETER: credentials_field(parameters[BACKEND_PARAMETER])}
    except CredentialError as exc:
        raise CredentialError(f"{BACKEND_PARAMETER}: {exc}") from None


def backend_credentials(parameters: Mapping[str, Any] | None, backend: str) -> dict[str, Credential]:
    """The credentials in a back end's ``parameters``; a bad entry raises ``CredentialError`` naming the back end."""
    value = (parameters or {}).get(BACKEND_PARAMETER)
    if value is None:
        return {}
    try:
        return parse_credentials(value)
    except CredentialError as exc:
        raise CredentialError(f"back end {backend!r}: parameter {BACKEND_PARAMETER!r}: {exc}") from None


def resolve(
    queue: Mapping[str, Credential], backend: Mapping[str, Credential], job_type: str
) -> Credential | None:
    """The credential of a ``job_type`` submission: the queue's before the back end's, the job type's before ``*``."""
    for level in (queue, backend):
        for key in (job_type, ANY_JOB_TYPE):
            if key in level:
                return level[key]
    return None
