"""Shared pytest configuration: fixture plugins and paths to ../shared."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "fixtures.paths",
    "fixtures.toy_models",
    "fixtures.mosquitto",
    "fixtures.notify_socket",
    "fixtures.netlab",
    "fixtures.media",
    "fixtures.export_models",
    "fixtures.daemon",
    "fixtures.web",
    "fixtures.browser",
    "fixtures.mjpeg_server",
    "fixtures.rtsp",
]


def pytest_configure(config: pytest.Config) -> None:
    """Give SIGINT back its default when the suite runs as a shell's background job (`cmd &`
    starts it ignored, and the children inherit that): the Ctrl-C tests send it to commands
    that must see what a terminal gives them."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder."""
    return Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """Commands install a root log handler on the stderr of their test; take it away after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
