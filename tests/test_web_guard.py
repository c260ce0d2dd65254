"""The web view's Host and Origin rules on their own (pure functions of header values and
settings), and the `web.allowed_hosts` setting."""

from __future__ import annotations

import socket

import pytest

from siamedge.config import WebSettings, settings_from_mapping
from siamedge.errors import ConfigError
from siamedge.web.guard import HostPolicy, host_refusal, origin_refusal, split_host
from siamedge.web.server import redact_token

PORT = 8080


def policy(**web: object) -> HostPolicy:
    return HostPolicy.from_settings(WebSettings.model_validate(web), PORT)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("LocalHost:8080", ("localhost", 8080)),
        ("example.com", ("example.com", 80)),
        ("example.com.:81", ("example.com", 81)),
        ("[::1]:8080", ("::1", 8080)),
        ("[::1]", ("::1", 80)),
        ("::1", None),
        ("[::1", None),
        ("[nothost]:80", None),
        ("example.com:", None),
        ("example.com:http", None),
        ("example.com:0", None),
        ("example.com:65536", None),
        ("user@example.com", None),
        ("example.com/path", None),
        ("", None),
    ],
)
def test_split_host(value: str, expected: tuple[str, int] | None) -> None:
    assert split_host(value) == expected


def test_bound_to_loopback_only_loopback_names_with_the_port_are_its_own() -> None:
    rules = policy(host="127.0.0.1")
    for host in ("127.0.0.1:8080", "localhost:8080", "[::1]:8080", "127.0.0.2:8080", None):
        assert host_refusal(host, rules) is None, host
    for host in (
        "127.0.0.1",  # port 80
        "localhost:8081",
        "evil.example:8080",
        "localhost.evil.example:8080",
        "192.168.1.20:8080",
        socket.gethostname() + ":8080",
    ):
        reason = host_refusal(host, rules)
        assert reason is not None and "web.allowed_hosts" in reason and "8080" in reason, host
    assert "malformed" in (host_refusal("a:b:c", rules) or "")


def test_bound_to_the_network_addresses_and_the_machines_name_are_its_own() -> None:
    rules = policy(host="0.0.0.0")
    name = socket.gethostname().lower()
    for host in ("192.168.1.20:8080", "192.168.1.20", "[fe80::1]:8080", f"{name}:8080"):
        assert host_refusal(host, rules) is None, host
    assert host_refusal(f"{name}.local:8080", rules) is None
    assert host_refusal("evil.example:8080", rules) is not None
    assert host_refusal(f"{name}.evil.example:8080", rules) is not None


def test_allowed_hosts_with_and_without_a_port() -> None:
    rules = policy(host="127.0.0.1", allowed_hosts=["Cam.Example", "proxy.example:443"])
    assert host_refusal("cam.example", rules) is None
    assert host_refusal("cam.example:9999", rules) is None
    assert host_refusal("proxy.example:443", rules) is None
    assert host_refusal("proxy.example", rules) is not None  # port 80
    assert host_refusal("other.example", rules) is not None
    assert host_refusal("anything.example:1", policy(allowed_hosts=["*"])) is None


def test_an_origin_must_be_the_hosts_own() -> None:
    rules = policy(host="127.0.0.1")
    host = "127.0.0.1:8080"
    assert origin_refusal(None, host, rules) is None
    assert origin_refusal("http://127.0.0.1:8080", host, rules) is None
    # Behind a TLS proxy that passes the Host on: both omit the default port.
    assert origin_refusal("https://cam.example", "cam.example", rules) is None
    for origin in (
        "http://evil.example",
        "http://127.0.0.1:8081",
        "http://localhost:8080",  # another origin, though the same server
        "http://127.0.0.1",
        "null",
        "file://",
        "ws://127.0.0.1:8080",
        "http://127.0.0.1:8080/path",
        "http://user@127.0.0.1:8080",
        "http://[::1",  # urlsplit raises on it
        "http://[zz]:80",
    ):
        reason = origin_refusal(origin, host, rules)
        assert reason is not None and "cross-site" in reason, origin
    # Without a Host header (an HTTP/1.0 tool), the Origin must name this view.
    assert origin_refusal("http://localhost:8080", None, rules) is None
    assert origin_refusal("http://evil.example:8080", None, rules) is not None


@pytest.mark.parametrize("entry", ["http://cam.example", "cam.example/", "a b", "", "cam:port"])
def test_allowed_hosts_entries_are_checked(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"web\.allowed_hosts"):
        settings_from_mapping({"web": {"allowed_hosts": [entry]}}, "test.yaml")


def test_tokens_in_quoted_request_lines_are_masked() -> None:
    line = "Bad request syntax ('GET /x?mask=rle&token=s3cret&a=1 HTTP/1.1 extra')"
    masked = redact_token(line)
    assert "s3cret" not in masked
    assert "token=***&a=1" in masked
    assert redact_token("'GET /?TOKEN=abc'") == "'GET /?TOKEN=***'"
