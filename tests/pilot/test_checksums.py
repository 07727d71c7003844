"""Checksums in PanDA's spelling."""

from __future__ import annotations

import hashlib
import zlib

import pytest

from autopilot_ops.pilot import checksums


def test_file_checksums(tmp_path):
    path = tmp_path / "f"
    data = b"hello world\n" * 100_000
    path.write_bytes(data)
    assert checksums.adler32(path) == f"{zlib.adler32(data):08x}"
    assert checksums.md5(path) == hashlib.md5(data).hexdigest()
    assert checksums.sha256(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("ad:0A0B0C0D", ("adler32", "0a0b0c0d")),
        ("ad:b0c0d", ("adler32", "000b0c0d")),
        ("md5:00112233445566778899aabbccddeeff", ("md5", "00112233445566778899aabbccddeeff")),
        ("0a0b0c0d", ("adler32", "0a0b0c0d")),
        ("00112233445566778899aabbccddeeff", ("md5", "00112233445566778899aabbccddeeff")),
    ],
)
def test_parse(text, parsed):
    assert checksums.parse(text) == parsed


@pytest.mark.parametrize("text", ["sha1:abcd", "ad:xyz", "12345", ""])
def test_parse_rejects(text):
    with pytest.raises(checksums.ChecksumError):
        checksums.parse(text)
