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
    r"((?:^|[?&;])(?:token|access_token|password|passwd|pwd|key|api_key|apikey|auth)=)[^&;#]*",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """The URL with its password and secret query values (`token=`, `pwd=`, ...) replaced by
    ***, for logs, status and errors (cameras put credentials in either place)."""
    return _SECRET_QUERY.sub(rf"\1{REDACTED}", _without_password(url))


def _without_password(url: str) -> str:
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
