"""The web view's bearer token: read once from the configured file or variable, checked per request.

Never logs the token, and never compares it in a way whose duration depends on the guess.
"""

from __future__ import annotations

import hmac

from siamedge.config import WebSettings
from siamedge.secret_files import read_secret

BEARER = "bearer"


def resolve_token(settings: WebSettings) -> str | None:
    """The token from `token_file` or `token_env`, surrounding whitespace dropped; None when
    neither is set. ConfigError naming the key and the file or variable when it is missing,
    unreadable or empty."""
    return read_secret(
        "web.token_file",
        settings.token_file,
        "web.token_env",
        settings.token_env,
        clean_file=str.strip,
        clean_env=str.strip,
    )


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
