"""Opening an HTTP(S) source keeps to one deadline, open_timeout_s, from the connection to the
end of the answer's head, against real servers on loopback that answer slowly or not at all.

A socket timeout bounds each recv() only: a head trickled a byte at a time kept a camera source
`starting` for hours. These servers are raw sockets, so that they can misbehave byte by byte.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from siamedge.cli import EX_FAILURE
from siamedge.config import SourceSettings
from siamedge.errors import SourceError
from siamedge.sources.factory import create_source
from siamedge.sources.http_get import HttpBody, open_get
from siamedge.sources.mjpeg import MjpegSource

HOST = "127.0.0.1"
OPEN_TIMEOUT_S = 1.0
"""The bound under test."""
SLACK_S = 10.0
"""How much later than its timeout a failure may be reported on a loaded machine."""
TRICKLE_INTERVAL_S = 0.5
TRICKLE_BYTES = 120
"""One header byte every TRICKLE_INTERVAL_S for a minute: far past the open's deadline."""
WAIT_S = 20.0
DESCRIPTION = "deadline test"
ACCEPT = "multipart/x-mixed-replace, */*"

Handler = Callable[[socket.socket, threading.Event], bool]
"""Serves one connection until the stop event; True when it saw the client close its end."""


class RawServer:
    """Accepts connections on a loopback port, one thread each, and runs `handler(connection,
    stop)` in them; close() stops the handlers, joins the threads and closes every socket."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.stop = threading.Event()
        self.client_closed = threading.Event()
        """Set by handlers that saw the client close its end."""
        self._listener = socket.create_server((HOST, 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="raw-server", daemon=True)
        self._acceptor.start()

    def url(self, scheme: str = "http", path: str = "/stream") -> str:
        return f"{scheme}://{HOST}:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                if self._handler(connection, self.stop):
                    self.client_closed.set()
            except OSError:
                self.client_closed.set()  # reset or broken pipe: the client went away

    def close(self) -> None:
        self.stop.set()
        self._acceptor.join(WAIT_S)
        for thread in self._threads:
            thread.join(WAIT_S)
        self._listener.close()
        assert not self._acceptor.is_alive()
        assert not any(thread.is_alive() for thread in self._threads)


@pytest.fixture
def raw_server() -> Iterator[Callable[[Handler], RawServer]]:
    servers: list[RawServer] = []

    def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def read_request(connection: socket.socket, stop: threading.Event) -> bool:
    """Read up to the end of the request's head; False when the client closed or stop was set
    first."""
    received = b""
    while b"\r\n\r\n" not in received:
        if not wait_readable(connection, stop):
            return False
        data = connection.recv(4096)
        if not data:
            return False
        received += data
    return True


def wait_readable(
    connection: socket.socket, stop: threading.Event, timeout_s: float = WAIT_S
) -> bool:
    """Wait until the connection has something to read (or an end); False when stop was set or
    timeout_s passed first."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        if select.select([connection], [], [], 0.05)[0]:
            return True
    return False


def closed_by_client(connection: socket.socket, stop: threading.Event, wait_s: float) -> bool:
    """Read and drop what the client sends for up to wait_s; True once it has closed its end."""
    deadline = time.monotonic() + wait_s
    while wait_readable(connection, stop, deadline - time.monotonic()):
        if connection.recv(4096) == b"":
            return True
    return False


def trickled_head(connection: socket.socket, stop: threading.Event) -> bool:
    """A status line at once, then a header one byte every TRICKLE_INTERVAL_S, for a minute."""
    if not read_request(connection, stop):
        return False
    connection.sendall(b"HTTP/1.0 200 OK\r\n")
    for byte in b"X-Slow: " + b"a" * TRICKLE_BYTES:
        if closed_by_client(connection, stop, TRICKLE_INTERVAL_S):
            return True
        if stop.is_set():
            return False
        connection.sendall(bytes([byte]))
    return False


def silent(connection: socket.socket, stop: threading.Event) -> bool:
    """Never send a byte (not even the TLS handshake's); True when the client goes."""
    return closed_by_client(connection, stop, WAIT_S * 3)


def _open_get(url: str) -> None:
    open_get(url, timeout_s=OPEN_TIMEOUT_S, accept=ACCEPT, description=DESCRIPTION).close()


def _open_mjpeg(url: str) -> None:
    source = MjpegSource(url, open_timeout_s=OPEN_TIMEOUT_S, read_timeout_s=5)
    try:
        source.open()
    finally:
        source.close()


def _open_auto(url: str) -> None:
    source = create_source(SourceSettings(uri=url, open_timeout_s=OPEN_TIMEOUT_S))
    try:
        source.open()
    finally:
        source.close()


@pytest.mark.parametrize(
    "opener", [_open_get, _open_mjpeg, _open_auto], ids=["get", "mjpeg", "auto"]
)
def test_a_head_trickled_a_byte_at_a_time_fails_at_the_open_timeout(
    raw_server: Callable[[Handler], RawServer], opener: Callable[[str], None]
) -> None:
    server = raw_server(trickled_head)
    started = time.monotonic()
    with pytest.raises(
        SourceError,
        match=r"no complete HTTP answer within 1 s \(the head of the answer came too slowly: "
        r"\d+ bytes by then\)",
    ):
        opener(server.url())
    # a bound on the wait, not a speed: the trickle alone would last a minute
    assert time.monotonic() - started < OPEN_TIMEOUT_S + SLACK_S
    # and the connection it gave up on is closed, not left to the garbage collector
    assert server.client_closed.wait(WAIT_S)


def test_https_to_a_server_that_never_answers_the_handshake_fails_at_the_open_timeout(
    raw_server: Callable[[Handler], RawServer],
) -> None:
    server = raw_server(silent)
    started = time.monotonic()
    with pytest.raises(SourceError, match=r"deadline test: no TLS handshake within 1 s$"):
        _open_get(server.url("https"))
    assert time.monotonic() - started < OPEN_TIMEOUT_S + SLACK_S
    assert server.client_closed.wait(WAIT_S)


def test_a_head_in_pieces_within_the_timeout_opens_and_the_body_may_come_after_it(
    raw_server: Callable[[Handler], RawServer],
) -> None:
    """The deadline is the open's: the body's reads, later, wait as long as they are told."""
    body_wanted = threading.Event()

    def pieces_then_late_body(connection: socket.socket, stop: threading.Event) -> bool:
        if not read_request(connection, stop):
            return False
        for piece in (b"HTTP/1.0 200 OK\r\n", b"Content-Type: text/plain\r\n", b"\r\n"):
            connection.sendall(piece)
            time.sleep(0.05)
        if body_wanted.wait(WAIT_S):
            connection.sendall(b"late body")
        return False

    server = raw_server(pieces_then_late_body)
    body: HttpBody = open_get(
        server.url(), timeout_s=OPEN_TIMEOUT_S, accept=ACCEPT, description=DESCRIPTION
    )
    try:
        assert body.content_type == "text/plain"
        time.sleep(OPEN_TIMEOUT_S + 0.2)  # past the open's deadline
        body_wanted.set()
        received = b""
        while len(received) < len(b"late body"):
            data = body.read_some(WAIT_S)
            assert data, "the body ended or stalled"
            received += data
        assert received == b"late body"
    finally:
        body.close()


def test_a_redirect_is_refused_with_its_location_redacted(
    raw_server: Callable[[Handler], RawServer],
) -> None:
    def redirect(connection: socket.socket, stop: threading.Event) -> bool:
        if read_request(connection, stop):
            connection.sendall(
                b"HTTP/1.0 302 Found\r\nLocation: http://u:pw@cam/video?token=abc\r\n\r\n"
            )
        return False

    server = raw_server(redirect)
    with pytest.raises(
        SourceError,
        match=r"HTTP 302 Found: redirected to http://u:\*\*\*@cam/video\?token=\*\*\*; use that",
    ):
        _open_get(server.url())


# --- URLs that do not parse -----------------------------------------------------------------

MALFORMED_URLS = [
    # urlsplit() itself refuses an unclosed IPv6 bracket: it escaped as a ValueError traceback.
    ("http://[::1", "auto", "source uri 'http://[::1': not a valid URL: Invalid IPv6 URL"),
    ("http://[::1/x", "mjpeg", "source uri 'http://[::1/x': not a valid URL: Invalid IPv6 URL"),
    (
        "https://u:s3cret@[::1/x?token=abc",
        "auto",
        "source uri 'https://u:***@[::1/x?token=***': not a valid URL: Invalid IPv6 URL",
    ),
    # .port refuses this one.
    ("http://cam:99999/x", "auto", "source uri 'http://cam:99999/x': not a valid URL: Port out"),
]


@pytest.mark.parametrize(
    ("url", "kind", "message"),
    MALFORMED_URLS,
    ids=["ipv6-auto", "ipv6-mjpeg", "ipv6-secrets", "bad-port"],
)
def test_a_url_that_does_not_parse_is_a_source_error_naming_it(
    url: str, kind: str, message: str
) -> None:
    # Refused when the source is made (the daemon: exit 78), not at every reopen for ever.
    with pytest.raises(SourceError) as caught:
        create_source(SourceSettings.model_validate({"uri": url, "kind": kind}))
    assert str(caught.value).startswith(message)
    assert "s3cret" not in str(caught.value)


TRACK_MALFORMED = ("--source", "http://[::1", "--box", "1,1,50,50")


def test_track_on_a_url_that_does_not_parse_exits_with_the_error_and_no_traceback(
    repo_root: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "siamedge.cli", "track", *TRACK_MALFORMED],
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(repo_root)},
        timeout=120,
        check=False,
    )
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr
    assert "siamedge: error: source uri 'http://[::1': not a valid URL: Invalid IPv6 URL" in stderr
    assert done.returncode == EX_FAILURE, stderr
