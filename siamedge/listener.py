"""Binds a front end's HTTP server to its configured address and serves it from one thread,
and bounds how long a request may take to arrive.

Shared by the web view and the metrics endpoint; never handles a request itself.
"""

from __future__ import annotations

import io
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from siamedge.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

Server = TypeVar("Server", bound=socketserver.BaseServer)


def bind(make: Callable[[tuple[str, int]], Server], host: str, port: int, section: str) -> Server:
    """make((host, port)); ConfigError naming `section`.host/port when the address is taken."""
    try:
        return make((host, port))
    except OSError as exc:
        raise ConfigError(
            f"{section}.host/{section}.port: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None


def serve(server: socketserver.BaseServer, poll_s: float, name: str) -> threading.Thread:
    """Run server.serve_forever in a started daemon thread (stop: server.shutdown(), join)."""
    thread = threading.Thread(target=server.serve_forever, args=(poll_s,), name=name, daemon=True)
    thread.start()
    return thread


def url(host: str, port: int, path: str) -> str:
    """`http://host:port/path`, an IPv6 host in brackets."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


class DeadlineReader(io.RawIOBase):
    """The socket's bytes, every recv bounded by one deadline (time.monotonic()) instead of the
    socket's idle timeout: a client that trickles a byte at a time cannot stretch its request,
    and hold a connection slot, past the deadline. The socket's timeout (for writes) is kept."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        kept = self._sock.gettimeout()
        self._sock.settimeout(remaining)
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(kept)


def read_within(handler: socketserver.StreamRequestHandler, timeout_s: float) -> DeadlineReader:
    """From the handler's setup(), after StreamRequestHandler's: the whole request must arrive
    within timeout_s of now, not each byte (the socket's timeout, which bounds writes, becomes
    timeout_s). http.server closes a connection whose read times out."""
    handler.connection.settimeout(timeout_s)
    handler.rfile.close()  # the socket's own file: an open one would keep the socket open
    reader = DeadlineReader(handler.connection, time.monotonic() + timeout_s)
    handler.rfile = io.BufferedReader(reader)
    return reader
