"""Small network helpers shared by the PanDA client, the pilot, the Airflow hook and the dev server: the loopback
test, the proxy a URL goes through, and a keep-alive HTTP/1.1 client on the standard library's sockets.

The HTTP client is small on purpose: the pilot runs from a zipapp on bare worker nodes, where ``requests`` is
not installed, and ``http.client`` imports ``email`` and ``ssl`` (8 MB and 20 ms at start) even for plain http.
Here ``ssl`` is imported only for an https URL. It speaks what PanDA servers, data servers and forward proxies
use: ``Content-Length`` and chunked bodies, keep-alive (one idle connection kept per host and proxy, dropped if
the server closed it meanwhile), an https proxy through ``CONNECT`` and an http proxy with absolute URLs, both
from ``https_proxy``/``http_proxy`` and ``no_proxy``. It follows no redirects and asks for no compression.
"""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from autopilot_ops.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

#: The most of one status or header line, and the most header lines, a reply may have.
MAX_LINE = 65536
MAX_HEADERS = 200
_SEND_CHUNK = 1 << 20
_IPV6_LOOPBACK = bytes(15) + b"\x01"


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if not host:
        return False
    if host == "localhost":
        return True
    for family in (socket.AF_INET, socket.AF_INET6):  # not ipaddress: 1 MB of the pilot's memory
        try:
            packed = socket.inet_pton(family, host.strip("[]"))
        except OSError:
            continue
        return packed[0] == 127 if family == socket.AF_INET else packed == _IPV6_LOOPBACK
    return False


class ConnectError(OSError):
    """The connection (or its TLS handshake, or the proxy's tunnel) could not be made: nothing was sent."""


class ReplyError(OSError):
    """The server's reply is not HTTP/1.x, or was cut short."""


class Proxy(Record):
    """A forward proxy: where to connect, and the ``Proxy-Authorization`` value for its user, if any."""

    host: str
    port: int
    authorization: str | None = None


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated names, ``.domain`` suffixes, addresses, or ``*``) covers ``host``."""
    for entry in (part.strip().lower() for part in no_proxy.split(",")):
        if entry == "*":
            return True
        entry = entry.split(":")[0].lstrip(".")  # a port in the entry is ignored, as curl does
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def proxy_for(scheme: str, host: str, environ: Mapping[str, str]) -> Proxy | None:
    """The proxy ``<scheme>_proxy`` names for ``host`` (lower case first, as curl), unless ``no_proxy`` covers it
    or it is the loopback; raises ``ValueError`` naming the variable when its value is not an http proxy URL."""
    host = host.lower()
    no_proxy = environ.get("no_proxy", environ.get("NO_PROXY", ""))
    if is_loopback(host) or _bypassed(host, no_proxy):
        return None
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
        value = environ.get(name, "").strip()
        if value:
            break
    else:
        return None
    parts = urlsplit(value if "://" in value else f"http://{value}")
    try:
        port = parts.port or 80
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or not port:
        raise ValueError(f"{name}={value!r} is not an http://host[:port] proxy URL")
    authorization = None
    if parts.username is not None:
        import base64  # only for a proxy with a user

        user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(user.encode()).decode()
    return Proxy(parts.hostname, port, authorization)


class TLSSettings(Record):
    """``ca``: a CA file or directory (the system store when unset); ``cert``: a client certificate, or an X.509
    proxy holding its key, with ``key`` beside it otherwise."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def context(self) -> Any:
        """An ``ssl.SSLContext`` that verifies servers with ``ca`` and presents ``cert``."""
        import ssl  # only for https: loading OpenSSL costs 6 MB and 10 ms

        if self.ca and os.path.isdir(self.ca):
            context = ssl.create_default_context(capath=self.ca)
        else:
            context = ssl.create_default_context(cafile=self.ca or None)
        if self.cert:
            context.load_cert_chain(self.cert, self.key or self.cert)
        return context


class _Connection:
    """One socket, its buffered reader, and the key of the pool it goes back to."""

    def __init__(self, sock: socket.socket, key: tuple[Any, ...]) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.key = key

    def closed_by_peer(self) -> bool:
        """Whether an idle connection has something to read: the server closed it (or broke the protocol)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class Response:
    """A reply's ``status``, ``reason`` and ``headers`` (lower-case names), and its body through :meth:`read`.
    The connection goes back to its client's pool once the body is read to its end, else it is closed."""

    def __init__(
        self, connection: _Connection, status: int, reason: str, headers: dict[str, str], method: str, pool: HttpClient
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self._connection: _Connection | None = connection
        self._pool = pool
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self._chunk_left = 0
        self._keep = "close" not in headers.get("connection", "").lower()
        if method == "HEAD" or status in (204, 304):
            self._left: int | None = 0
        elif self._chunked:
            self._left = None
        elif "content-length" in headers:
            try:
                self._left = int(headers["content-length"])
            except ValueError:
                self.close()
                length = headers["content-length"]
                raise ReplyError(f"reply header Content-Length is not a number: {length!r}") from None
        else:  # the body ends when the server closes the connection
            self._left = None
            self._keep = False
        if self._left == 0:
            self._done()

    def read(self, amount: int = -1) -> bytes:
        """Up to ``amount`` bytes of the body as they arrive (all of it when negative); ``b""`` at its end."""
        if amount < 0:
            return b"".join(iter(lambda: self.read(_SEND_CHUNK), b""))
        if self._connection is None or amount == 0:
            return b""
        if self._chunked:
            return self._read_chunked(amount)
        if self._left is None:
            data = self._connection.reader.read1(amount)
            if not data:
                self._done()
            return data
        data = self._connection.reader.read1(min(amount, self._left))
        if not data:
            self.close()
            raise ReplyError(f"reply body cut short: {self._left} bytes missing")
        self._left -= len(data)
        if self._left == 0:
            self._done()
        return data

    def _read_chunked(self, amount: int) -> bytes:
        assert self._connection is not None
        reader = self._connection.reader
        if self._chunk_left == 0:
            line = reader.readline(MAX_LINE)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close()
                raise ReplyError(f"reply has a bad chunk size line {line[:80]!r}") from None
            if size == 0:
                while reader.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                    continue  # trailers
                self._done()
                return b""
            self._chunk_left = size
        data = reader.read1(min(amount, self._chunk_left))
        if not data:
            self.close()
            raise ReplyError("reply body cut short inside a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            reader.readline(MAX_LINE)  # the CRLF after the chunk
        return data

    def _done(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            if self._keep:
                self._pool._release(connection)
            else:
                connection.close()

    def close(self) -> None:
        """Drop the connection unless the body was read to its end."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class HttpClient:
    """Keep-alive HTTP/1.1 over ``socket`` (and ``ssl`` for https), safe to share between threads.

    ``headers`` go with every request; ``environ`` gives the proxy variables (``os.environ`` by default).
    """

    def __init__(
        self,
        *,
        tls: TLSSettings | None = None,
        headers: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.tls = tls or TLSSettings()
        self.headers = dict(headers or {})
        self.environ = os.environ if environ is None else environ
        self._context: Any = None
        self._idle: dict[tuple[Any, ...], list[_Connection]] = {}
        self._lock = threading.Lock()

    def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes | BinaryIO | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Response:
        """Send one request and read the reply's head; ``timeout`` bounds connecting and each read. Raises
        ``ConnectError`` when nothing was sent, ``ValueError`` for a URL or proxy setting it cannot use, and
        another ``OSError`` (``socket.timeout``, a reset, ``ReplyError``) when the request may have arrived."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"URL {url!r} is not an http(s)://host URL")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        proxy = proxy_for(parts.scheme, host, self.environ)
        connection = self._connection((parts.scheme, host, port, proxy), timeout)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if proxy is not None and parts.scheme == "http":
            target = f"http://{parts.netloc.rpartition('@')[2]}{target}"
        head = {"Host": _host_header(host, parts.port), **self.headers, **(headers or {})}
        if proxy is not None and proxy.authorization and parts.scheme == "http":
            head["Proxy-Authorization"] = proxy.authorization
        if body is not None:
            head["Content-Length"] = str(len(body) if isinstance(body, bytes) else os.fstat(body.fileno()).st_size)
        try:
            self._send(connection, method, target, head, body)
            return self._read_head(connection, method)
        except BaseException:
            connection.close()
            raise

    def _send(
        self, connection: _Connection, method: str, target: str, head: Mapping[str, str], body: bytes | BinaryIO | None
    ) -> None:
        lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in head.items()), "", ""]
        data = "\r\n".join(lines).encode("latin-1")
        if isinstance(body, bytes):
            connection.sock.sendall(data + body)
            return
        connection.sock.sendall(data)
        if body is not None:
            while chunk := body.read(_SEND_CHUNK):
                connection.sock.sendall(chunk)

    def _read_head(self, connection: _Connection, method: str) -> Response:
        while True:
            line = connection.reader.readline(MAX_LINE)
            if not line:
                raise ReplyError("the server closed the connection without a reply")
            version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise ReplyError(f"reply is not HTTP/1.x: {line[:80]!r}")
            headers = self._read_headers(connection)
            if not 100 <= int(code) < 200:
                break
        if version == "HTTP/1.0" and "keep-alive" not in headers.get("connection", "").lower():
            headers["connection"] = "close"
        return Response(connection, int(code), reason, headers, method, self)

    @staticmethod
    def _read_headers(connection: _Connection) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS):
            line = connection.reader.readline(MAX_LINE)
            if line in (b"\r\n", b"\n"):
                return headers
            if not line:
                raise ReplyError("the server closed the connection inside the reply's headers")
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ReplyError(f"reply header line has no colon: {line[:80]!r}")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        raise ReplyError(f"reply has more than {MAX_HEADERS} header lines")

    # --- connections ---

    def _connection(self, key: tuple[Any, ...], timeout: float) -> _Connection:
        """An idle connection of ``key`` that the server has not closed, else a new one."""
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                connection = idle.pop()
                if not connection.closed_by_peer():
                    connection.sock.settimeout(timeout)
                    return connection
                connection.close()
        return self._connect(key, timeout)

    def _connect(self, key: tuple[Any, ...], timeout: float) -> _Connection:
        scheme, host, port, proxy = key
        address = (proxy.host, proxy.port) if proxy is not None else (host, port)
        try:
            sock = socket.create_connection(address, timeout=timeout)
        except OSError as exc:
            raise ConnectError(f"cannot connect to {address[0]}:{address[1]}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if proxy is not None and scheme == "https":
                self._tunnel(sock, host, port, proxy)
            if scheme == "https":
                if self._context is None:
                    self._context = self.tls.context()
                sock = self._context.wrap_socket(sock, server_hostname=host)
        except ConnectError:
            sock.close()
            raise
        except OSError as exc:  # ssl.SSLError included
            sock.close()
            raise ConnectError(f"TLS with {host}:{port} failed: {exc}") from exc
        return _Connection(sock, key)

    @staticmethod
    def _tunnel(sock: socket.socket, host: str, port: int, proxy: Proxy) -> None:
        """Ask ``proxy`` for a tunnel to ``host:port`` (``CONNECT``); raises ``ConnectError`` when refused."""
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
        if proxy.authorization:
            lines.append(f"Proxy-Authorization: {proxy.authorization}")
        try:
            sock.sendall(("\r\n".join([*lines, "", ""])).encode("latin-1"))
            reply = b""
            while b"\r\n\r\n" not in reply:  # read byte by byte: nothing of the tunnel may be buffered here
                byte = sock.recv(1)
                if not byte or len(reply) > MAX_LINE:
                    break
                reply += byte
        except OSError as exc:
            raise ConnectError(f"proxy {proxy.host}:{proxy.port} failed: {exc}") from exc
        status = reply.split(b"\r\n", 1)[0].decode("latin-1")
        if status.split(" ")[1:2] != ["200"]:
            raise ConnectError(f"proxy {proxy.host}:{proxy.port} refused CONNECT {target}: {status or 'no reply'}")

    def _release(self, connection: _Connection) -> None:
        with self._lock:
            self._idle.setdefault(connection.key, []).append(connection)

    def close(self) -> None:
        """Close the idle connections."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


def _host_header(host: str, port: int | None) -> str:
    name = f"[{host}]" if ":" in host else host
    return f"{name}:{port}" if port else name
