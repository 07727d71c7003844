"""A credential's remaining lifetime, read from its file: a JWT's exp, a proxy's earliest notAfter; a file that
cannot tell says why without showing its content."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from autopilot_ops.credentials.lifetime import CredentialUnusable, check, proxy_expiry, token_expiry
from autopilot_ops.credentials.model import Credential

from .fakes import make_proxy, make_token


def test_a_jwt_expires_at_its_exp_claim(tmp_path: Path) -> None:
    path = tmp_path / "token"
    make_token(path, 7200)
    left = (token_expiry(path) - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 7190 < left <= 7200


def test_a_proxy_expires_with_the_earliest_certificate_of_its_chain(tmp_path: Path) -> None:
    path = tmp_path / "proxy"
    expected = make_proxy(path, 3600)
    assert proxy_expiry(path) == expected
    earliest = make_proxy(path, 86400, issuer_lifetime_s=1800)  # the issuer ends first
    assert proxy_expiry(path) == earliest
    left = (earliest - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert 1790 < left <= 1800


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not-a-jwt-hush-hush", "holds no JWT"),
        (b"a.!!!hush!!!.c", "not base64url JSON"),
        (b"a.eyJzdWIiOiJodXNoIn0.c", "no numeric exp claim"),  # {"sub":"hush"}
    ],
)
def test_a_bad_token_is_named_without_its_content(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(content)
    with pytest.raises(CredentialUnusable, match=message) as raised:
        token_expiry(path)
    assert str(path) in str(raised.value) and "hush" not in str(raised.value)


def test_unreadable_files_are_reasons_not_exceptions(tmp_path: Path) -> None:
    missing = check(Credential("token", str(tmp_path / "gone"), "o"))
    assert missing.expires_at is None
    assert missing.error == f"token file {tmp_path / 'gone'} unreadable: No such file or directory"
    junk = tmp_path / "proxy"
    junk.write_text("-----BEGIN CERTIFICATE-----\nhush\n-----END CERTIFICATE-----\n")
    bad = check(Credential("proxy", str(junk)))
    assert bad.error == f"proxy file {junk} holds no PEM certificate"


def test_replacing_the_file_rotates_the_credential(tmp_path: Path) -> None:
    path = tmp_path / "token"
    credential = Credential("token", str(path), "o")
    make_token(path, 600)
    first = check(credential).expires_at
    make_token(path, 86400)
    second = check(credential).expires_at
    assert first is not None and second is not None and (second - first).total_seconds() > 80000
