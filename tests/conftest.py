"""Shared pytest configuration: fixture plugins and paths to ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = [
    "fixtures.paths",
    "fixtures.toy_models",
    "fixtures.mosquitto",
    "fixtures.notify_socket",
    "fixtures.media",
]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder."""
    return Path(__file__).resolve().parent.parent
