"""Reads a secret (broker or camera password, web token) from the file or environment variable
it names.

Never logs a secret; a missing, unreadable or empty one is a ConfigError naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from siamedge.errors import ConfigError

Cleaner = Callable[[str], str]


def _unchanged(text: str) -> str:
    return text


def drop_line_end(text: str) -> str:
    """A password file's text without its one trailing newline (as `echo` or an editor leave
    it); other whitespace belongs to the password."""
    return text.removesuffix("\n").removesuffix("\r")


def read_secret(
    file_key: str,
    path: str | None,
    env_key: str,
    variable: str | None,
    *,
    clean_file: Cleaner = _unchanged,
    clean_env: Cleaner = _unchanged,
) -> str | None:
    """The secret in `path` (else in environment variable `variable`), cleaned; None when
    neither is set. file_key / env_key name the settings in error messages."""
    if path:
        location = Path(path).expanduser()
        try:
            text = location.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"{file_key}: cannot read {location}: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file_key}: {location} is not UTF-8 text") from None
        secret = clean_file(text)
        if not secret:
            raise ConfigError(f"{file_key}: {location} is empty")
        return secret
    if variable:
        value = os.environ.get(variable)
        if value is None:
            raise ConfigError(f"{env_key}: environment variable {variable} is not set")
        secret = clean_env(value)
        if not secret:
            raise ConfigError(f"{env_key}: environment variable {variable} is empty")
        return secret
    return None
