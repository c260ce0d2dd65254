"""Which Host and Origin a request to the web view may carry: the defence against DNS rebinding
and cross-site requests. Pure functions of header values and settings; never reads a socket.

DNS rebinding makes a browser send an attacker's page's requests to the device under the
attacker's host name, so the Host header is the tell; another site's request carries its own
Origin. A request with no Host header is no browser's (browsers always send one) and passes.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from siamedge.config import ANY_HOST, WebSettings

HTTP_DEFAULT_PORT = 80
ORIGIN_SCHEMES = {"http": 80, "https": 443}
"""https: the view may sit behind a TLS reverse proxy that passes the Host header on."""
LOCALHOST = "localhost"
MDNS_SUFFIX = ".local"


def split_host(value: str, default_port: int = HTTP_DEFAULT_PORT) -> tuple[str, int] | None:
    """`(name, port)` of a Host header or an allowed_hosts entry: lower case, brackets and a
    trailing dot dropped, the port `default_port` when absent; None when malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    elif value.count(":") > 1:
        return None  # a bare IPv6 address: a Host header must bracket it
    else:
        name, _, port_text = value.partition(":")
        if ":" not in value:
            port_text = ""
        elif not port_text:
            return None
    name = name.removesuffix(".")
    if not name or any(char in name for char in "/\\@?#% \t"):
        return None
    if not port_text:
        return name, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return name, int(port_text)


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def is_loopback_name(name: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1)."""
    address = _ip(name)
    return name == LOCALHOST if address is None else address.is_loopback


@dataclass(frozen=True)
class HostPolicy:
    """The Host names the view answers to.

    port: the port it listens on. loopback: bound to a loopback address, so only loopback
    names with that port are its own (besides `names`). names: web.allowed_hosts, each with a
    port or None for any port. device_names: the machine's host name and its mDNS name.
    """

    port: int
    loopback: bool
    names: frozenset[tuple[str, int | None]]
    any_host: bool = False
    device_names: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: WebSettings, port: int) -> HostPolicy:
        """The policy of a view listening on `settings.host` at `port` (the bound one)."""
        names: set[tuple[str, int | None]] = set()
        for entry in settings.allowed_hosts:
            if entry == ANY_HOST:
                continue
            parsed = split_host(entry, default_port=0)
            if parsed is None:  # checked in config; kept total for direct callers
                continue
            name, entry_port = parsed
            names.add((name, entry_port or None))
        loopback = is_loopback_name(settings.host.lower())
        device: set[str] = set()
        if not loopback:
            hostname = socket.gethostname().lower()  # no resolver involved
            device = {hostname, hostname + MDNS_SUFFIX} if hostname else set()
        return cls(
            port=port,
            loopback=loopback,
            names=frozenset(names),
            any_host=ANY_HOST in settings.allowed_hosts,
            device_names=frozenset(device),
        )

    def allows(self, name: str, port: int) -> bool:
        """Whether a request for `name:port` is addressed to this view."""
        if self.any_host or (name, port) in self.names or (name, None) in self.names:
            return True
        if self.loopback:
            return is_loopback_name(name) and port == self.port
        # Bound to a network address: an address literal cannot be a rebinding attack (the
        # browser's origin is then the address itself), and a port may be forwarded.
        return _ip(name) is not None or name == LOCALHOST or name in self.device_names


def host_refusal(host: str | None, policy: HostPolicy) -> str | None:
    """Why a request with this Host header is not for this view, or None when it is."""
    if host is None:
        return None
    parsed = split_host(host)
    if parsed is None:
        return f"malformed Host header {host[:80]!r}"
    if policy.allows(*parsed):
        return None
    if policy.loopback:
        own = f"localhost or a loopback address with port {policy.port}"
    else:
        own = "an address, this machine's name"
    return (
        f"Host {host[:80]!r} is not this server's name (expected {own}, or a name in "
        "web.allowed_hosts); refused against DNS rebinding"
    )


def origin_refusal(origin: str | None, host: str | None, policy: HostPolicy) -> str | None:
    """Why a request with this Origin header comes from another site, or None when it has no
    Origin or the view's own (scheme http/https, the same host and port as the Host header)."""
    if origin is None:
        return None
    refusal = f"Origin {origin[:120]!r} is not this server's; cross-site requests are refused"
    try:
        parts = urlsplit(origin.strip().lower())
    except ValueError:  # an unclosed IPv6 bracket: no site at all
        return refusal
    default_port = ORIGIN_SCHEMES.get(parts.scheme)
    if default_port is None or not parts.netloc or parts.path or parts.query:
        return refusal  # `null` (a sandboxed frame, a file) is no site's either
    target = split_host(parts.netloc, default_port)
    if target is None:
        return refusal
    if host is None:
        if policy.allows(*target):
            return None
    else:
        # The port is compared as the browser wrote it: Host omits a default port as Origin does.
        own = split_host(host, default_port)
        if own is not None and own == target:
            return None
    return refusal
