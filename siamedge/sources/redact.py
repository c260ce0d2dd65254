"""Source URLs made safe to show: passwords and secret query values replaced by ***.

Never logs, prints or stores anything itself; every description, log line, status and error
that names a source URL goes through here.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

REDACTED = "***"
_USERINFO_PASSWORD = re.compile(r"(://[^/@:?#\s]*:)\S*@")
"""`scheme://user:` then anything up to the last `@`: a password written with `/`, `?` or `#`
unescaped (`admin:1234/x@cam`) ends the URL's host part early, so the parsed URL shows it as
a host, port and path. Over-hides the rare `@` in a path after a port (`cam:554/a@b`)."""
_SECRET_QUERY = re.compile(
    r"((?:^|[?&;])(?:token|access_token|password|passwd|passwort|pwd|pass|pw|loginpas|secret|"
    r"key|api_key|apikey|auth)=)[^&;#]*",
    re.IGNORECASE,
)
_LOOSE_USERINFO = re.compile(r"([^\s/@:]*:)[^\s@]*@")
"""`user:password@` in text that is no URL (`admin:pw@cam/x`, `rtsp:/admin:pw@cam`: a scheme
mistyped or forgotten): everything between the first `name:` and the last `@` is hidden."""
_QUOTED_PASSWORD = re.compile(r'((?:user|proxy)-pw=)"(?:[^"\\]|\\.)*"')
_UNQUOTED_PASSWORD = re.compile(r'((?:user|proxy)-pw=)(?!")\S+')
_URL = re.compile(
    r'"([A-Za-z][A-Za-z0-9+.-]*://(?:[^"\\]|\\.)*)"'  # a quoted value: up to its closing quote
    r'|[A-Za-z][A-Za-z0-9+.-]*://(?:[^\s"@]*@)?[^\s"!]+'  # `!` may sit in a password, before `@`
)
"""A URL in a pipeline: a quoted property value whole (its password may hold spaces and `!`),
else up to whitespace, a quote or the `!` that links elements, past a user part's `!`."""


def redact_url(url: str) -> str:
    """The URL with its password and secret query values (`token=`, `pwd=`, ...) replaced by
    ***, for logs, status and errors (cameras put credentials in either place)."""
    return _SECRET_QUERY.sub(rf"\1{REDACTED}", _without_password(url))


def url_error(exc: ValueError) -> str:
    """What urlsplit or `.port` refused in a URL, without quoting it: Python's messages quote the
    text it took for a port, which is the start of a password written with `/`, `?` or `#`
    unescaped (`rtsp://admin:pa/ss@cam` -> "Port could not be cast to integer value as 'pa'")."""
    text = str(exc)
    if text.startswith("Port could not be cast"):
        return (
            "the port is not a number (a password holding `/`, `?`, `#` or `@` must be "
            "percent-encoded: %2F, %3F, %23, %40)"
        )
    if text.startswith("Port out of range") or text == "Invalid IPv6 URL":
        return text
    return "it does not parse as a URL"


def _without_password(url: str) -> str:
    if "://" not in url:
        return _LOOSE_USERINFO.sub(rf"\1{REDACTED}@", url)
    try:
        parts = urlsplit(url)
        port_number = parts.port
    except ValueError:
        # Unparsable (bad port, bad IPv6 literal): hide whatever sits between `user:` and `@`.
        return _USERINFO_PASSWORD.sub(rf"\1{REDACTED}@", url)
    if "@" not in parts.netloc or "@" in parts.path:
        # No password, or one whose `/`, `?` or `#` ended the host part early (see above).
        return _USERINFO_PASSWORD.sub(rf"\1{REDACTED}@", url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{port_number}" if port_number is not None else ""
    netloc = f"{user}:{REDACTED}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def redact_pipeline(pipeline: str) -> str:
    """A GStreamer pipeline with user-pw and proxy-pw values and the passwords of URLs in it
    replaced by ***, for logs, status, errors and `siamedge run --print-pipeline`."""
    hidden = _QUOTED_PASSWORD.sub(rf'\1"{REDACTED}"', pipeline)
    hidden = _UNQUOTED_PASSWORD.sub(rf"\1{REDACTED}", hidden)
    return _URL.sub(_redacted_url, hidden)


def _redacted_url(match: re.Match[str]) -> str:
    quoted = match.group(1)
    return redact_url(match.group(0)) if quoted is None else f'"{redact_url(quoted)}"'
