"""One HTTP(S) GET for a live stream: one deadline for the connection, the TLS handshake, the
request and the answer's head, Basic auth from the URL's credentials, then the body read piece
by piece, each read bounded.

Never follows redirects, never retries, and never puts a password or a `token=` in a message.
"""

from __future__ import annotations

import base64
import fcntl
import http.client
import io
import re
import socket
import ssl
import sys
import termios
import time
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from siamedge import __version__
from siamedge.errors import SourceError
from siamedge.sources.redact import redact_url, url_error
from siamedge.tls import ClientTls

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK_BYTES = 64 * 1024
"""The most one read takes off the socket: a part of a frame, never several frames of backlog."""
HTTP_SCHEMES = ("http", "https")
USER_AGENT = f"siamedge/{__version__}"
"""Query parameters that carry a secret (the web view's `?token=`, camera `pwd=`)."""
_LOST = (ConnectionError, ssl.SSLError)
_INT_BYTES = 4
"""FIONREAD answers a C int."""


def is_http_url(uri: str) -> bool:
    """True for an http:// or https:// URL (any case)."""
    scheme, sep, _ = uri.strip().partition("://")
    return bool(sep) and scheme.lower() in HTTP_SCHEMES


_NOT_IN_URLS = re.compile(r"[\x00-\x20\x7f]")
"""What http.client refuses in a host or a request target: spaces and control characters."""


def http_url_problem(url: str) -> str | None:
    """Why url cannot be requested as it is (no host, a bad port, a space or a control
    character, a host name that does not encode), never quoting its path or query (they may
    hold a token); None when it can. Does not look up the host."""
    try:
        # urlsplit itself refuses some URLs (an unclosed IPv6 bracket), .port a bad port.
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError as exc:
        return f"not a valid URL: {url_error(exc)}"
    if parts.scheme.lower() not in HTTP_SCHEMES or not host:
        return "not an http:// or https:// URL with a host"
    if _NOT_IN_URLS.search(host):
        return "a space or a control character in the host"
    if _NOT_IN_URLS.search(parts.path + parts.query):
        return "a space or a control character in the path or query (percent-encode it: %20)"
    try:
        host.encode("idna")
    except UnicodeError:
        return f"not a valid host name (an empty label, or one over 63 characters): {host!r}"
    return None


def basic_authorization(url: str) -> str | None:
    """The `Authorization: Basic ...` value for the URL's user:password, None without a user."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")


class HttpBody:
    """The body of an answered GET (status 200) and its Content-Type; read it, then close it."""

    def __init__(
        self,
        connection: http.client.HTTPConnection,
        sock: socket.socket,
        response: http.client.HTTPResponse,
        description: str,
    ) -> None:
        self._connection = connection
        self._sock = sock
        self._response = response
        self._description = description

    @property
    def content_type(self) -> str:
        """The Content-Type header as sent, `` when there is none."""
        return self._response.getheader("Content-Type", "") or ""

    def read_some(self, timeout_s: float) -> bytes | None:
        """What arrives within timeout_s (at most CHUNK_BYTES): b"" once the server has closed
        the connection, None when nothing came in time; SourceError when the connection broke."""
        try:
            self._sock.settimeout(max(timeout_s, 0.001))
            return self._response.read1(CHUNK_BYTES)
        except TimeoutError:
            return None
        except http.client.IncompleteRead:
            return b""  # closed inside a chunk of a chunked answer: an end like any other
        except _LOST as exc:
            raise SourceError(f"{self._description}: connection lost: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise SourceError(f"{self._description}: reading failed: {exc}") from None

    def waiting_bytes(self) -> int:
        """Bytes that have arrived and wait to be read (0 where the system cannot tell)."""
        try:
            queued = fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, bytes(_INT_BYTES))
        except (OSError, ValueError):
            return 0
        decrypted = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        return int.from_bytes(queued, sys.byteorder, signed=True) + decrypted

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        self._response.close()
        self._connection.close()
        self._sock.close()


def open_get(
    url: str, *, timeout_s: float, accept: str, description: str, tls: ClientTls | None = None
) -> HttpBody:
    """GET url; the body once the server has answered 200 within timeout_s, else SourceError
    naming the description and the reason (refused, unknown host, no answer, HTTP status).
    An https server is verified with tls (None: against the system store).

    timeout_s bounds the whole open, from the connection to the last line of the answer's head:
    a socket timeout alone bounds each recv(), so a server that sent its head a byte at a time
    would keep the source opening for hours (http.client reads lines of up to 64 KiB)."""
    if (problem := http_url_problem(url)) is not None:
        raise SourceError(f"{description}: {problem}")
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme.lower() == "https"
    # Given, not left to http.client: it would read `::1` (a bracketed IPv6 host without a
    # port) as host `:` and port 1.
    port = parts.port or (http.client.HTTPS_PORT if https else http.client.HTTP_PORT)
    head = _HeadDeadline(timeout_s)
    connection: http.client.HTTPConnection
    if https:
        tls = tls or ClientTls.from_settings(None, "source.tls")
        connection = http.client.HTTPSConnection(host, port, context=tls.context)
    else:
        tls = None
        connection = http.client.HTTPConnection(host, port)
    # Connected here rather than by connection.connect(), which would give the TCP connect (to
    # each address of the host in turn) and then the TLS handshake a whole timeout each.
    # Kept: getresponse() drops the connection's reference to it when the answer ends with
    # the connection, and the per-read timeouts are set on it.
    sock = _connect(
        connection.host,
        connection.port,
        tls=tls,
        deadline=head.deadline,
        timeout_s=timeout_s,
        description=description,
    )
    connection.sock = sock
    connection.response_class = head.response_class()
    try:
        response = _request(
            connection, sock, url, accept=accept, head=head, tls=tls, description=description
        )
    except BaseException:
        head.close()
        connection.close()
        sock.close()
        raise
    head.done = True  # from here on each read of the body sets its own timeout
    body = HttpBody(connection, sock, response, description)
    if response.status != http.client.OK:
        reason = _status_failure(response)
        body.close()
        raise SourceError(f"{description}: {reason}")
    return body


def _connect(
    host: str,
    port: int,
    *,
    tls: ClientTls | None,
    deadline: float,
    timeout_s: float,
    description: str,
) -> socket.socket:
    """A socket connected to host:port (TLS-wrapped when tls is given) before the deadline, else
    SourceError with the reason. The name lookup is not bounded here (getaddrinfo has no
    timeout): the resolver's own timeouts bound it."""
    try:
        sock = _connect_tcp(host, port, deadline)
    except OSError as exc:
        raise SourceError(f"{description}: {_connect_failure(exc, timeout_s)}") from None
    if tls is None:
        return sock
    try:
        sock.settimeout(_time_left(deadline))
        return tls.context.wrap_socket(sock, server_hostname=host)
    except TimeoutError:
        sock.close()
        raise SourceError(f"{description}: no TLS handshake within {timeout_s:g} s") from None
    except ssl.SSLError as exc:
        sock.close()
        raise SourceError(f"{description}: TLS handshake failed: {tls.failure(exc)}") from None
    except OSError as exc:
        sock.close()
        raise SourceError(f"{description}: {_connect_failure(exc, timeout_s)}") from None


def _connect_tcp(host: str, port: int, deadline: float) -> socket.socket:
    """socket.create_connection, but the host's addresses share the time left to the deadline
    (create_connection gives each one the whole timeout); else the last address's error."""
    error = OSError(f"no address for {host}")
    for family, kind, protocol, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, protocol)
        try:
            sock.settimeout(_time_left(deadline))
            sock.connect(address)
        except TimeoutError:
            sock.close()
            raise  # the deadline has passed: no time for the next address
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error


def _time_left(deadline: float) -> float:
    """Seconds to the deadline; TimeoutError once it has passed (a timeout of 0 would make the
    socket non-blocking instead)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the deadline has passed")
    return left


class _HeadDeadline:
    """The deadline of an open, kept by the reader that http.client reads the answer's head
    through: each recv() may wait only for the time left, so the head ends there however slowly
    it trickles in. Once `done`, the reads wait as long as the socket's own timeout says."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.done = False
        self.received_bytes = 0
        """What came of the head: 0 tells a silent server from a slow one."""
        self._reader: io.BufferedReader | None = None

    def response_class(self) -> type[http.client.HTTPResponse]:
        """An HTTPResponse that reads through this deadline (http.client makes the response
        itself, from the class in connection.response_class)."""
        head = self

        class DeadlineResponse(http.client.HTTPResponse):
            def __init__(
                self,
                sock: socket.socket,
                debuglevel: int = 0,
                method: str | None = None,
                url: str | None = None,
            ) -> None:
                super().__init__(sock, debuglevel, method, url)
                self.fp = head.wrap(self.fp, sock)

        return DeadlineResponse

    def wrap(self, reader: io.BufferedReader, sock: socket.socket) -> io.BufferedReader:
        """The socket's reader, read through this deadline. detach() keeps the socket's own raw
        reader, with the reference it holds on the socket (which keeps the socket open after
        getresponse() has closed the connection's)."""
        self._reader = io.BufferedReader(_DeadlineReader(reader.detach(), sock, self))
        return self._reader

    def close(self) -> None:
        """Close the reader of a response that failed (else it holds the socket open until the
        exception's traceback goes)."""
        if self._reader is not None:
            self._reader.close()


class _DeadlineReader(io.RawIOBase):
    """A socket's raw reader whose reads end at the open's deadline until the head is in."""

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, head: _HeadDeadline) -> None:
        super().__init__()
        self._raw = raw
        self._sock = sock
        self._head = head

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int | None:
        if self._head.done:
            return self._raw.readinto(buffer)
        self._sock.settimeout(_time_left(self._head.deadline))
        count = self._raw.readinto(buffer)
        self._head.received_bytes += count or 0
        return count

    def close(self) -> None:
        self._raw.close()
        super().close()


def _request(
    connection: http.client.HTTPConnection,
    sock: socket.socket,
    url: str,
    *,
    accept: str,
    head: _HeadDeadline,
    tls: ClientTls | None,
    description: str,
) -> http.client.HTTPResponse:
    split = urlsplit(url)
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    headers = {"Accept": accept, "User-Agent": USER_AGENT, "Connection": "close"}
    authorization = basic_authorization(url)
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        # sendall() keeps to one timeout as a whole (Python 3.5+); the head's reads keep to
        # the deadline through the response class's reader.
        sock.settimeout(_time_left(head.deadline))
        connection.request("GET", target, headers=headers)
        return connection.getresponse()
    except TimeoutError:
        raise SourceError(f"{description}: {_late_answer(head)}") from None
    except (ssl.SSLError, ConnectionResetError) as exc:
        if tls is None:  # a plain http connection reset
            raise SourceError(f"{description}: no valid HTTP answer: {exc!r}") from None
        # TLS 1.3: the server's refusal of the client comes here
        raise SourceError(f"{description}: TLS: {tls.failure(exc)}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise SourceError(f"{description}: no valid HTTP answer: {exc!r}") from None


def _late_answer(head: _HeadDeadline) -> str:
    timeout_s = head.timeout_s
    if head.received_bytes == 0:
        return f"no HTTP answer within {timeout_s:g} s"
    return (
        f"no complete HTTP answer within {timeout_s:g} s (the head of the answer came too "
        f"slowly: {head.received_bytes} bytes by then)"
    )


def _connect_failure(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no connection within {timeout_s:g} s (host down or unreachable)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return f"cannot connect: {exc}"


def _status_failure(response: http.client.HTTPResponse) -> str:
    status = f"HTTP {response.status} {response.reason}".rstrip()
    if response.status == http.client.UNAUTHORIZED:
        challenge = (response.getheader("WWW-Authenticate") or "").strip()
        if challenge and not challenge.lower().startswith("basic"):
            scheme = challenge.split()[0]
            return (
                f"{status}: the server asks for {scheme} authentication; only Basic "
                "(user:password in the URL) is supported here, try source.kind: stream (FFmpeg)"
            )
        return f"{status}: credentials missing or wrong (give them as http://user:password@host/)"
    if 300 <= response.status < 400:
        location = response.getheader("Location")
        where = f" to {redact_url(location)}" if location else ""
        return f"{status}: redirected{where}; use that URL"
    return status
