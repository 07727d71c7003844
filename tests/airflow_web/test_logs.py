"""The log endpoint serves files under the log root and nothing else."""

from __future__ import annotations

import http.client
import os
from urllib.parse import urlsplit

import pytest


@pytest.fixture
def files(log_root, tmp_path):
    (log_root / "Q_A").mkdir()
    (log_root / "Q_A" / "1-0.out").write_text("pilot 1-0 says hello\n<script>alert(1)</script>\n")
    (tmp_path / "secret.txt").write_text("outside the log root")
    (log_root / "Q_A" / "escape.out").symlink_to(tmp_path / "secret.txt")
    (log_root / "Q_A" / "outside-dir").symlink_to(tmp_path, target_is_directory=True)
    (log_root / "Q_A" / "alias.out").symlink_to(log_root / "Q_A" / "1-0.out")
    return tmp_path


def test_a_log_file_is_served_as_plain_text(client, files, bearer):
    reply = client.get("/logs/Q_A/1-0.out", headers=bearer("viewer"))
    assert reply.status_code == 200
    assert reply.text.startswith("pilot 1-0 says hello")
    assert reply.headers["content-type"].startswith("text/plain")
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert client.get("/logs/Q_A/1-0.out?tail=6", headers=bearer("viewer")).text == "ript>\n"


def test_a_symlink_that_stays_inside_the_root_is_followed(client, files, bearer):
    assert client.get("/logs/Q_A/alias.out", headers=bearer("viewer")).text.startswith("pilot 1-0")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/logs/%2e%2e/secret.txt", 400),
        ("/logs/Q_A/%2E%2E/%2E%2E/secret.txt", 400),
        ("/logs/Q_A/..%2f..%2fsecret.txt", 400),
        ("/logs/%2Fetc%2Fpasswd", 400),
        ("/logs//etc/passwd", 400),
        ("/logs/Q_A/%00x", 400),
        ("/logs/Q_A/escape.out", 403),
        ("/logs/Q_A/outside-dir/secret.txt", 403),
        ("/logs/Q_A/missing.out", 404),
        ("/logs/Q_A", 404),
    ],
)
def test_paths_leaving_the_root_are_refused(client, files, bearer, path, status):
    reply = client.get(path, headers=bearer("viewer"))
    assert reply.status_code == status, reply.text
    assert "outside the log root" not in reply.text or status == 403
    assert "root:" not in reply.text


@pytest.mark.parametrize("raw", ["/autopilot/logs/../secret.txt", "/autopilot/logs/Q_A/../../secret.txt",
                                 "/autopilot/logs/Q_A/%2e%2e/%2e%2e/secret.txt",
                                 "/autopilot/logs/Q_A/./1-0.out"])
def test_raw_dot_segments_sent_over_the_wire_are_refused(live_url, files, bearer, raw):
    """http.client sends the path as written, with no client-side normalisation of ``..``."""
    url = urlsplit(live_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        path = raw.removeprefix("/autopilot")  # the server is the mounted app itself
        conn.request("GET", path, headers=bearer("viewer"))
        reply = conn.getresponse()
        body = reply.read().decode()
    finally:
        conn.close()
    assert reply.status == 400, body
    assert "outside the log root" not in body


def test_no_log_root_configured_gives_404(client, files, bearer):
    client.app.state.settings = type(client.app.state.settings)(log_root=None)
    reply = client.get("/logs/Q_A/1-0.out", headers=bearer("viewer"))
    assert reply.status_code == 404 and "log_root" in reply.text


def test_unreadable_file_is_refused_not_crashed(client, files, bearer, log_root):
    target = log_root / "Q_A" / "1-0.out"
    os.chmod(target, 0)
    try:
        reply = client.get("/logs/Q_A/1-0.out", headers=bearer("viewer"))
    finally:
        os.chmod(target, 0o644)
    if os.geteuid() == 0:
        assert reply.status_code == 200  # root reads anything
    else:
        assert reply.status_code == 403
