"""Transformations: URL allow-list and sha256 pin, paths and names through the VO plugin."""

from __future__ import annotations

import hashlib
import os

import pytest

from autopilot_ops.pilot import errorcodes
from autopilot_ops.pilot.errorcodes import JobFailure
from autopilot_ops.pilot.transformation import prepare, url_allowed
from autopilot_ops.pilot.vo.base import load_vo
from autopilot_ops.pilot.vo.generic import GenericVO

SCRIPT = b"#!/bin/sh\necho hi\n"


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8765/trf/hello.sh", True),
        ("http://127.0.0.1:8765/trf", True),
        ("http://127.0.0.1:8765/trfx/hello.sh", False),
        ("http://127.0.0.1:87650/trf/hello.sh", False),
        ("http://127.0.0.1:8765@evil.example/trf/x", False),
        ("http://127.0.0.1:8765/trf/../etc/passwd", False),
        ("https://other.example/trf/hello.sh", False),
    ],
)
def test_url_allowed(url, allowed):
    assert url_allowed(url, ["http://127.0.0.1:8765/trf", "https://cdn.example/"]) is allowed


def test_vo_plugin_loaded_from_entry_point():
    assert isinstance(load_vo("generic"), GenericVO)


def test_url_download_with_pin(scripted_server, tmp_path):
    scripted_server.files["/trf/hello.sh"] = SCRIPT
    url = f"{scripted_server.url}/trf/hello.sh"
    digest = hashlib.sha256(SCRIPT).hexdigest()
    path = prepare(url, tmp_path, GenericVO(), [f"{scripted_server.url}/trf/"], {url: digest})
    assert path == tmp_path / "hello.sh" and path.read_bytes() == SCRIPT and os.access(path, os.X_OK)
    fragment = prepare(f"{url}#sha256={digest}", tmp_path, GenericVO(), [scripted_server.url], {})
    assert fragment.read_bytes() == SCRIPT


def test_url_with_wrong_pin_fails(scripted_server, tmp_path):
    scripted_server.files["/trf/hello.sh"] = SCRIPT
    url = f"{scripted_server.url}/trf/hello.sh"
    with pytest.raises(JobFailure) as caught:
        prepare(url, tmp_path, GenericVO(), [scripted_server.url], {url: "0" * 64})
    assert caught.value.code == errorcodes.TRFDOWNLOADFAILURE and "sha256" in caught.value.diag
    assert not (tmp_path / "hello.sh").exists()


def test_url_not_on_allow_list_fails_without_download(scripted_server, tmp_path):
    url = f"{scripted_server.url}/trf/hello.sh"
    with pytest.raises(JobFailure) as caught:
        prepare(url, tmp_path, GenericVO(), ["https://cdn.example/"], {})
    assert caught.value.code == errorcodes.TRFDOWNLOADFAILURE
    assert "not on the queue's allow-list" in caught.value.diag
    assert scripted_server.requests == []


def test_path_and_name_resolution(tmp_path, make_script):
    script = make_script("mytrf", "exit 0\n")
    vo = GenericVO({"trf_path": str(script.parent)})
    assert prepare(str(script), tmp_path, vo, [], {}) == script
    assert prepare("mytrf", tmp_path, vo, [], {}) == script
    for missing in ("no-such-trf", "relative/path.sh", str(tmp_path / "absent.sh")):
        with pytest.raises(JobFailure) as caught:
            prepare(missing, tmp_path, vo, [], {})
        assert caught.value.code == errorcodes.TRANSFORMNOTFOUND
