"""Binds a front end's HTTP server to its configured address and serves it from one thread.

Shared by the web view and the metrics endpoint; never handles a request itself.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Callable
from typing import TypeVar

from siamedge.errors import ConfigError

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
