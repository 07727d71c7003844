"""How long a credential file has left: a token's ``exp`` claim, a proxy's earliest ``notAfter``.

Files are read at each check (each cycle), so replacing a file rotates the credential. A token's payload is
decoded without verification (the standard library only: the scheduler reads its own file, PanDA verifies it).
A proxy is parsed with ``cryptography`` (installed with Airflow), which reads every certificate of the chain in
one call; the standard library's ``ssl`` can decode only one certificate, through a private helper, and
``openssl`` would cost a process per queue and cycle. No message here ever holds a file's content.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from autopilot_ops.credentials.model import TOKEN, Credential


class CredentialUnusable(Exception):
    """A credential file that cannot be read, or holds no expiry; the message names the file, never its content."""


@dataclass(frozen=True)
class Lifetime:
    """When a credential expires, or why that cannot be told."""

    credential: Credential
    expires_at: dt.datetime | None = None
    error: str | None = None


def check(credential: Credential) -> Lifetime:
    """The credential's expiry, read from its file now."""
    try:
        reader = token_expiry if credential.kind == TOKEN else proxy_expiry
        return Lifetime(credential, expires_at=reader(Path(credential.path)))
    except CredentialUnusable as exc:
        return Lifetime(credential, error=str(exc))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CredentialUnusable(f"{what} file {path} unreadable: {exc.strerror or type(exc).__name__}") from None


def token_expiry(path: Path) -> dt.datetime:
    """The ``exp`` claim of the JWT in ``path`` (its payload part, base64url JSON), as an aware UTC time."""
    parts = _read(path, "token").strip().split(b".")
    if len(parts) != 3:
        raise CredentialUnusable(f"token file {path} holds no JWT (expected three dot-separated parts)")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        raise CredentialUnusable(f"token file {path}: the JWT's payload is not base64url JSON") from None
    expiry = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(expiry, bool) or not isinstance(expiry, (int, float)):
        raise CredentialUnusable(f"token file {path}: the JWT has no numeric exp claim")
    try:
        return dt.datetime.fromtimestamp(expiry, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise CredentialUnusable(f"token file {path}: the JWT's exp claim is out of range") from None


def proxy_expiry(path: Path) -> dt.datetime:
    """The earliest ``notAfter`` of the certificates in the proxy file ``path`` (its chain included)."""
    data = _read(path, "proxy")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CredentialUnusable(f"proxy file {path} holds no PEM certificate") from None
    return min(certificate.not_valid_after_utc for certificate in certificates)

