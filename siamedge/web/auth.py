"""The web view's bearer token: read once from the configured file or variable, checked per request.

Never logs the token, and never compares it in a way whose duration depends on the guess.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from siamedge.config import WebSettings
from siamedge.errors import ConfigError

BEARER = "bearer"


def resolve_token(settings: WebSettings) -> str | None:
    """The token from `token_file` (surrounding whitespace dropped) or `token_env`; None when
    neither is set. ConfigError naming the key and the file or variable when it is missing,
    unreadable or empty."""
    if settings.token_file:
        path = Path(settings.token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"web.token_file: cannot read {path}: {exc.strerror or exc}"
            ) from None
        except UnicodeDecodeError:
            raise ConfigError(f"web.token_file: {path} is not UTF-8 text") from None
        if not token:
            raise ConfigError(f"web.token_file: {path} is empty")
        return token
    if settings.token_env:
        name = settings.token_env
        value = os.environ.get(name, "").strip()
        if not value:
            raise ConfigError(f"web.token_env: environment variable {name} is not set or empty")
        return value
    return None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, None for any other header."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        return None
    return token.strip()


def token_matches(expected: str, presented: str | None) -> bool:
    """Whether `presented` equals `expected`, in time independent of where they differ."""
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))
