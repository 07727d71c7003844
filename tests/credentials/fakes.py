"""Credential files for tests: a fake JWT (unsigned, with a unique secret-looking value) and a short-lived
self-signed X.509 proxy made with ``cryptography``."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def make_token(path: Path, lifetime_s: float) -> str:
    """Write a JWT that expires in ``lifetime_s`` seconds to ``path`` (mode 0600); return its whole value."""
    exp = int(dt.datetime.now(dt.timezone.utc).timestamp() + lifetime_s)
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"sub": "pilot", "exp": exp, "jti": secrets.token_hex(8)}).encode())
    token = b".".join([header, claims, _b64(b"sEcReT-" + secrets.token_bytes(24))]).decode()
    path.write_text(token + "\n")
    path.chmod(0o600)
    return token


def _certificate(key: rsa.RSAPrivateKey, subject: str, not_after: dt.datetime,
                 issuer_key: rsa.RSAPrivateKey, issuer: str) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .sign(issuer_key, hashes.SHA256())
    )


def make_proxy(path: Path, lifetime_s: float, issuer_lifetime_s: float | None = None) -> dt.datetime:
    """Write a proxy file (certificate, key, then the issuing certificate) to ``path``, mode 0600: the first
    certificate expires in ``lifetime_s``, the issuer in ``issuer_lifetime_s`` (default: a day later). Returns the
    earliest expiry, to the second."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    issuer_key, key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    issuer_s = issuer_lifetime_s if issuer_lifetime_s is not None else lifetime_s + 86400
    issuer_after = now + dt.timedelta(seconds=issuer_s)
    issuer = _certificate(issuer_key, "Test User", issuer_after, issuer_key, "Test User")
    proxy = _certificate(key, "Test User proxy", now + dt.timedelta(seconds=lifetime_s), issuer_key, "Test User")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    path.write_bytes(proxy.public_bytes(serialization.Encoding.PEM) + key_pem
                     + issuer.public_bytes(serialization.Encoding.PEM))
    path.chmod(0o600)
    return min(now + dt.timedelta(seconds=lifetime_s), issuer_after)
