"""The standard-library HTTP transport under the PanDA client: keep-alive, chunked bodies, TLS with a CA bundle
and an X.509 client certificate, proxies (CONNECT tunnels, no_proxy), and the payload's /proc memory reading."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from autopilot_ops.netutil import ConnectError, HttpClient, Proxy, proxy_for
from autopilot_ops.panda.client import PandaAuth, PandaClient, RetryPolicy
from autopilot_ops.panda.errors import PandaCommunicationError
from autopilot_ops.pilot.procfs import tree_rss_kb

ONE_TRY = RetryPolicy(attempts=1)
OK = b'{"success": true, "message": "", "data": {"StatusCode": 0, "command": "NULL"}}'


class Handler(BaseHTTPRequestHandler):
    """Answers ``OK``; ``/chunked`` in chunks; ``/close`` with ``Connection: close``. Records peers and certs."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, object, str]] = []

    def log_message(self, *_args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        peer = self.connection.getpeername()[1]
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        self.seen.append((self.path, peer, (cert or {}).get("subject", "")))
        self.send_response(200)
        if self.path == "/chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (OK[:10], OK[10:]):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/close":
            self.send_header("Connection", "close")
            self.close_connection = True
        self.send_header("Content-Length", str(len(OK)))
        self.end_headers()
        self.wfile.write(OK)

    do_GET = do_POST


def serve(context: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, int]:
    class Recording(Handler):
        seen: list[tuple[str, object, str]] = []

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    if context is not None:
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return httpd, httpd.server_address[1]


@pytest.fixture
def plain() -> Iterator[tuple[type[Handler], str]]:
    httpd, port = serve()
    yield httpd.RequestHandlerClass, f"http://127.0.0.1:{port}"
    httpd.shutdown()
    httpd.server_close()


def test_one_connection_is_kept_alive_and_chunked_bodies_are_read(plain):
    handler, url = plain
    with PandaClient(url, retry=ONE_TRY) as client:
        for path in ("/a", "/chunked", "/b"):
            reply = client._send("POST", path, json_body={"x": 1})
            assert reply.content == OK
    assert [path for path, _, _ in handler.seen] == ["/a", "/chunked", "/b"]
    assert len({peer for _, peer, _ in handler.seen}) == 1  # one TCP connection for all three


def test_a_connection_the_server_closed_is_replaced(plain):
    handler, url = plain
    with PandaClient(url, retry=ONE_TRY) as client:
        client._send("POST", "/close")
        time.sleep(0.05)
        client._send("POST", "/after")
    assert len({peer for _, peer, _ in handler.seen}) == 2


# --- TLS ---


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and panda.example, and a client proxy (certificate + key)."""
    root = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Test CA", cwd=root)
    (root / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:panda.example\n")
    for name, extra in (("server", ["-extfile", "san.cnf"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=root)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", *extra, cwd=root)
    (root / "proxy.pem").write_text((root / "client.pem").read_text() + (root / "client.key").read_text())
    return root


@pytest.fixture
def tls_server(pki) -> Iterator[tuple[type[Handler], int]]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_OPTIONAL
    httpd, port = serve(context)
    yield httpd.RequestHandlerClass, port
    httpd.shutdown()
    httpd.server_close()


def test_https_with_a_ca_bundle_and_an_x509_proxy_as_client_certificate(pki, tls_server):
    handler, port = tls_server
    auth = PandaAuth(cert=str(pki / "proxy.pem"), ca_bundle=str(pki / "ca.pem"), token="t0ken")
    with PandaClient(f"https://127.0.0.1:{port}", auth=auth, retry=ONE_TRY) as client:
        assert client.update_job(13, "running").command is None
    assert handler.seen[0][2] == ((("commonName", "client"),),)


def test_https_with_a_ca_directory(pki, tls_server, tmp_path):
    _, port = tls_server
    capath = tmp_path / "certificates"
    capath.mkdir()
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(pki / "ca.pem")], capture_output=True, text=True, check=True
    ).stdout.strip()
    (capath / f"{subject_hash}.0").write_bytes((pki / "ca.pem").read_bytes())
    with PandaClient(f"https://127.0.0.1:{port}", auth=PandaAuth(ca_bundle=str(capath)), retry=ONE_TRY) as client:
        assert client.update_job(13, "running").command is None


def test_an_unknown_server_certificate_is_a_connect_error(tls_server):
    _, port = tls_server
    with pytest.raises(PandaCommunicationError, match=r"TLS with 127\.0\.0\.1"):
        PandaClient(f"https://127.0.0.1:{port}", retry=ONE_TRY).update_job(13, "running")


# --- proxies ---


class ConnectProxy:
    """A CONNECT proxy that tunnels every target to 127.0.0.1:``port`` and records the targets asked for."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.targets: list[str] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(1)
            self.targets.append(head.split(b" ")[1].decode())
            upstream = socket.create_connection(("127.0.0.1", self.port))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            sink.close()

    def close(self) -> None:
        self.sock.close()


def test_https_goes_through_the_https_proxy_tunnel(pki, tls_server, monkeypatch):
    handler, port = tls_server
    proxy = ConnectProxy(port)
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.address}")
    monkeypatch.setenv("no_proxy", "other.example")
    try:
        auth = PandaAuth(ca_bundle=str(pki / "ca.pem"))
        with PandaClient(f"https://panda.example:{port}", auth=auth, retry=ONE_TRY) as client:
            assert client.update_job(13, "running").command is None
            assert client.update_job(13, "running").command is None
    finally:
        proxy.close()
    assert proxy.targets == [f"panda.example:{port}"]  # one tunnel, kept alive
    assert len(handler.seen) == 2


def test_proxy_choice():
    env = {"https_proxy": "http://user:pw@squid:3128", "no_proxy": ".cern.ch, localhost", "HTTP_PROXY": "squid"}
    assert proxy_for("https", "pandaserver.example.org", env) == Proxy("squid", 3128, "Basic dXNlcjpwdw==")
    assert proxy_for("https", "pandaserver.cern.ch", env) is None
    assert proxy_for("https", "cern.ch", env) is None
    assert proxy_for("http", "se.example.org", env) == Proxy("squid", 80)
    assert proxy_for("https", "127.0.0.1", env) is None
    assert proxy_for("https", "a.example", {"no_proxy": "*", "https_proxy": "http://squid:3128"}) is None
    with pytest.raises(ValueError, match="https_proxy='socks5://squid:1080' is not an http://host"):
        proxy_for("https", "a.example", {"https_proxy": "socks5://squid:1080"})


def test_a_bad_proxy_setting_is_named(monkeypatch):
    monkeypatch.setenv("https_proxy", "socks5://squid:1080")
    with pytest.raises(PandaCommunicationError, match="https_proxy='socks5://squid:1080'"):
        PandaClient("https://panda.example", retry=ONE_TRY).update_job(13, "running")


def test_a_refused_connection_raises_connect_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        HttpClient().request("GET", f"http://127.0.0.1:{port}/")


# --- /proc ---


def test_tree_rss_matches_psutil():
    child = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        leader = psutil.Process(child.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and [p.name() for p in leader.children(recursive=True)] != ["sleep"] * 2:
            time.sleep(0.01)
        expected = sum(p.memory_info().rss for p in [leader, *leader.children(recursive=True)]) // 1024
        assert abs(tree_rss_kb(child.pid) - expected) <= 16
        assert tree_rss_kb(child.pid) > 0
    finally:
        for process in psutil.Process(child.pid).children(recursive=True):
            process.kill()
        child.kill()
        child.wait()
    assert tree_rss_kb(child.pid) == 0


def test_loopback_names_and_addresses():
    from autopilot_ops.netutil import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "0:0:0:0:0:0:0:1", "localhost"))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "::2", "panda.example", "", None, "128.0.0.1"))
