"""Data movers, loaded through their entry points; HTTP against a real loopback server."""

from __future__ import annotations

import importlib.util

import pytest

from autopilot_ops.pilot.movers.base import MissingFileError, TransferError, UnknownMoverError, load_mover
from autopilot_ops.pilot.movers.file import FileMover
from autopilot_ops.pilot.movers.http import HttpMover
from autopilot_ops.pilot.movers.rucio import RucioMover
from autopilot_ops.pilot.movers.s3 import S3Mover


def test_entry_points_pick_mover_by_scheme_or_name():
    assert isinstance(load_mover("file:///x"), FileMover)
    assert isinstance(load_mover("/plain/path"), FileMover)
    assert isinstance(load_mover("https://h/x"), HttpMover)
    assert isinstance(load_mover("s3://b/k"), S3Mover)
    assert isinstance(load_mover("https://h/x", name="rucio"), RucioMover)
    with pytest.raises(UnknownMoverError, match="no data mover 'gsiftp'"):
        load_mover("gsiftp://h/x")


def test_file_mover_copy_symlink_and_missing(tmp_path):
    source = tmp_path / "src.dat"
    source.write_bytes(b"data")
    FileMover().get(source.as_uri(), tmp_path / "copy.dat")
    assert (tmp_path / "copy.dat").read_bytes() == b"data" and not (tmp_path / "copy.dat").is_symlink()
    FileMover({"symlink": "true"}).get(str(source), tmp_path / "link.dat")
    assert (tmp_path / "link.dat").is_symlink()
    with pytest.raises(MissingFileError):
        FileMover().get((tmp_path / "absent").as_uri(), tmp_path / "x")
    target = tmp_path / "store" / "scope" / "out.dat"
    FileMover().put(source, target.as_uri())
    assert target.read_bytes() == b"data"
    with pytest.raises(TransferError, match="remote host"):
        FileMover().get("file://otherhost/x", tmp_path / "y")


def test_http_mover_get_put_and_404(scripted_server, tmp_path):
    scripted_server.files["/data/in.dat"] = b"x" * 300_000
    mover = HttpMover({"timeout": "5"})
    mover.get(f"{scripted_server.url}/data/in.dat", tmp_path / "in.dat")
    assert (tmp_path / "in.dat").read_bytes() == b"x" * 300_000
    with pytest.raises(MissingFileError, match="404"):
        mover.get(f"{scripted_server.url}/data/absent.dat", tmp_path / "absent.dat")
    assert not (tmp_path / "absent.dat").exists() and not list(tmp_path.glob(".*part"))
    mover.put(tmp_path / "in.dat", f"{scripted_server.url}/upload/out.dat")
    assert scripted_server.files["/upload/out.dat"] == b"x" * 300_000


def test_s3_mover_without_boto3_says_so(tmp_path):
    if importlib.util.find_spec("boto3") is not None:
        pytest.skip("boto3 is installed here")
    with pytest.raises(TransferError, match="needs boto3"):
        S3Mover().get("s3://bucket/key", tmp_path / "k")


def test_builtin_plugins_are_the_packages_entry_points():
    """The pilot finds its own movers and VO without importlib.metadata; the tables match setup.py's."""
    from importlib.metadata import entry_points

    from autopilot_ops.pilot.movers import base as movers
    from autopilot_ops.pilot.vo import base as vo

    for module in (movers, vo):
        installed = {ep.name: ep.value for ep in entry_points(group=module.ENTRY_POINT_GROUP)}
        assert {name: installed.get(name) for name in module.BUILTIN} == module.BUILTIN


def test_http_mover_follows_redirects(tmp_path):
    """Storage front ends redirect to their pools: GET follows any redirect, PUT a 307 with its body again."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stored: dict[str, bytes] = {"/pool/in.dat": b"payload input"}

    class Redirecting(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def _reply(self, status: int, body: bytes = b"", location: str | None = None) -> None:
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/door/"):
                return self._reply(302, location=self.path.replace("/door/", "/pool/"))
            self._reply(200, stored[self.path]) if self.path in stored else self._reply(404)

        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path.startswith("/door/"):
                return self._reply(307, location=self.path.replace("/door/", "/pool/"))
            stored[self.path] = body
            self._reply(201)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        HttpMover().get(f"{base}/door/in.dat", tmp_path / "in.dat")
        assert (tmp_path / "in.dat").read_bytes() == b"payload input"
        (tmp_path / "out.dat").write_bytes(b"payload output")
        HttpMover().put(tmp_path / "out.dat", f"{base}/door/out.dat")
        assert stored["/pool/out.dat"] == b"payload output"
        with pytest.raises(MissingFileError):
            HttpMover().get(f"{base}/door/missing.dat", tmp_path / "missing.dat")
    finally:
        httpd.shutdown()
        httpd.server_close()
