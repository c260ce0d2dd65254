"""One HTTP(S) GET for a live stream: a bounded wait for the connection and the answer's head,
Basic auth from the URL's credentials, then the body read piece by piece, each read bounded.

Never follows redirects, never retries, and never puts a password or a `token=` in a message.
"""

from __future__ import annotations

import base64
import fcntl
import http.client
import socket
import ssl
import sys
import termios
import time
from urllib.parse import unquote, urlsplit

from siamedge import __version__
from siamedge.errors import SourceError
from siamedge.sources.redact import redact_url

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


def open_get(url: str, *, timeout_s: float, accept: str, description: str) -> HttpBody:
    """GET url; the body once the server has answered 200 within timeout_s, else SourceError
    naming the description and the reason (refused, unknown host, no answer, HTTP status)."""
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise SourceError(f"{description}: not a valid URL: {exc}") from None
    if parts.scheme.lower() not in HTTP_SCHEMES or not host:
        raise SourceError(f"{description}: not an http:// or https:// URL with a host")
    deadline = time.monotonic() + timeout_s
    connection: http.client.HTTPConnection
    if parts.scheme.lower() == "https":
        connection = http.client.HTTPSConnection(
            host, port, timeout=timeout_s, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout_s)
    try:
        connection.connect()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        raise SourceError(f"{description}: {_connect_failure(exc, timeout_s)}") from None
    # Kept: getresponse() drops the connection's reference to it when the answer ends with
    # the connection, and the per-read timeouts are set on it.
    sock = connection.sock
    try:
        response = _request(
            connection,
            sock,
            url,
            accept=accept,
            deadline=deadline,
            timeout_s=timeout_s,
            description=description,
        )
    except BaseException:
        connection.close()
        sock.close()
        raise
    body = HttpBody(connection, sock, response, description)
    if response.status != http.client.OK:
        reason = _status_failure(response)
        body.close()
        raise SourceError(f"{description}: {reason}")
    return body


def _request(
    connection: http.client.HTTPConnection,
    sock: socket.socket,
    url: str,
    *,
    accept: str,
    deadline: float,
    timeout_s: float,
    description: str,
) -> http.client.HTTPResponse:
    split = urlsplit(url)
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    headers = {"Accept": accept, "User-Agent": USER_AGENT, "Connection": "close"}
    authorization = basic_authorization(url)
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        connection.request("GET", target, headers=headers)
        return connection.getresponse()
    except TimeoutError:
        raise SourceError(f"{description}: no HTTP answer within {timeout_s:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise SourceError(f"{description}: no valid HTTP answer: {exc!r}") from None


def _connect_failure(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no connection within {timeout_s:g} s (host down or unreachable)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listens on that port)"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
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
