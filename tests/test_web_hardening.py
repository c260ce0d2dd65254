"""The web view against other sites and hostile clients, with real HTTP requests to a real
Service: DNS rebinding (Host), cross-site requests (Origin, content type), the token kept out
of logs and URLs, and bounded request lines and headers (raw sockets for malformed requests)."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fixtures.mjpeg import MjpegReader
from fixtures.web import HOST, RunningService

from siamedge.web.server import MAX_HEADER_BYTES, MAX_HEADER_LINES, MAX_REQUEST_LINE_BYTES

StartService = Callable[..., RunningService]
RAW_TIMEOUT_S = 10.0
TOKEN = "s3cret-token-7f3a"


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def raw_request(port: int, data: bytes) -> RawReply:
    """Send `data` as is on a new connection and read one answer (by its Content-Length)."""
    with (
        socket.create_connection((HOST, port), timeout=RAW_TIMEOUT_S) as sock,
        sock.makefile("rb") as reader,
    ):
        sock.sendall(data)
        status = int(reader.readline().split()[1])
        headers: dict[str, str] = {}
        while (line := reader.readline().decode("latin-1").strip()) != "":
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = reader.read(int(headers.get("content-length", "0")))
        return RawReply(status, headers, body)


def _start_body(running: RunningService) -> bytes:
    frame = running.tracks()["frame"]
    return json.dumps({"box": running.truth_box(frame), "track_id": "t1"}).encode()


def _no_track_started(running: RunningService) -> None:
    """A start sent now shows from the next frame; none shows after two more frames."""
    first = running.tracks()["frame"]
    while (now := running.tracks())["frame"] < first + 2:
        pass
    assert now["tracks"] == []


def test_a_foreign_host_gets_421_before_anything_else(web_service: StartService) -> None:
    running = web_service(token=TOKEN, web={"token_env": "SIAMEDGE_TEST_HARDEN_TOKEN"})
    port = running.port
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    body = _start_body(running)
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1", f"localhost:{port + 1}"):
        for method, path, payload in [
            ("GET", "/", None),
            ("GET", "/api/status", None),
            ("GET", "/snapshot.jpg", None),
            ("POST", "/api/tracks", body),
            ("DELETE", "/api/tracks", None),
        ]:
            # A rebound page's request: the attacker's name in Host, even with a token.
            reply = running.request(method, path, payload, {**auth, "Host": host})
            assert reply.status == 421, (host, method, path)
            reason = reply.json()["reason"]
            assert "DNS rebinding" in reason and "web.allowed_hosts" in reason
    stream = MjpegReader(HOST, port, f"/stream.mjpeg?token={TOKEN}")
    assert stream.status == 200  # the fixture's reader sends 127.0.0.1:port
    stream.close()
    _no_track_started(running)
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        reply = running.request("GET", "/api/status", headers={**auth, "Host": host})
        assert reply.status == 200, host
    # HTTP/1.0 without a Host header is no browser's request: answered.
    reply = raw_request(port, f"GET /api/status?token={TOKEN} HTTP/1.0\r\n\r\n".encode())
    assert reply.status == 200


@pytest.fixture(autouse=True)
def _token_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIAMEDGE_TEST_HARDEN_TOKEN", TOKEN)


def test_allowed_hosts_add_names(web_service: StartService) -> None:
    running = web_service(web={"allowed_hosts": ["cam.example", "proxy.example:8443"]})
    assert running.request("GET", "/api/status", headers={"Host": "cam.example"}).status == 200
    reply = running.request("GET", "/api/status", headers={"Host": "proxy.example:8443"})
    assert reply.status == 200
    reply = running.request("GET", "/api/status", headers={"Host": "proxy.example:8444"})
    assert reply.status == 421


def test_another_sites_requests_get_403_and_steer_nothing(web_service: StartService) -> None:
    running = web_service()
    own = f"http://{HOST}:{running.port}"
    body = _start_body(running)
    for origin in ("http://evil.example", "null", f"http://localhost:{running.port}"):
        reply = running.post_json("/api/tracks", body, {"Origin": origin})
        assert reply.status == 403, origin
        assert "cross-site requests are refused" in reply.json()["reason"]
        assert running.request("DELETE", "/api/tracks", headers={"Origin": origin}).status == 403
        assert running.request("GET", "/api/status", headers={"Origin": origin}).status == 403
    # What a form on another site can send (no preflight) is refused for its type, too.
    for content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
    ):
        reply = running.request("POST", "/api/tracks", body, {"Content-Type": content_type})
        assert reply.status == 415, content_type
        assert "application/json" in reply.json()["reason"]
    _no_track_started(running)
    # The page's own requests: the browser sends its origin on POST and DELETE.
    reply = running.post_json("/api/tracks", body, {"Origin": own})
    assert reply.status == 201, reply.body
    stop = running.request("DELETE", "/api/tracks/t1", headers={"Origin": own})
    assert stop.status == 200, stop.body
    typed = running.request(
        "POST", "/api/tracks", body, {"Content-Type": "application/json; charset=utf-8"}
    )
    assert typed.status == 201, typed.body


def test_the_token_never_reaches_logs_urls_or_answers(
    web_service: StartService, caplog: pytest.LogCaptureFixture
) -> None:
    running = web_service(token=TOKEN, web={"token_env": "SIAMEDGE_TEST_HARDEN_TOKEN"})
    caplog.set_level(logging.DEBUG, logger="siamedge")
    port = running.port
    host = f"Host: {HOST}:{port}\r\n"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    replies = [
        running.request("GET", f"/?token={TOKEN}"),
        running.request("GET", f"/api/status?token={TOKEN}"),
        running.request("GET", f"/api/tracks?mask=bad&token={TOKEN}"),
        running.request("GET", f"/no-such-path?token={TOKEN}"),
        running.request("GET", f"/api/status?token={TOKEN}", headers={"Host": "evil.example"}),
        running.request("PUT", f"/api/tracks?token={TOKEN}"),
        running.post_json("/api/tracks", _start_body(running), bearer),
        running.post_json(f"/api/tracks?token={TOKEN}", b"{}"),
        running.request("DELETE", "/api/tracks/t1", headers=bearer),
        # http.server quotes malformed request lines in its error messages.
        raw_request(port, f"GET /?token={TOKEN} extra HTTP/1.0\r\n{host}\r\n".encode()),
        raw_request(port, f"GET /?token={TOKEN} HTTP/9.9\r\n{host}\r\n".encode()),
    ]
    statuses = [reply.status for reply in replies]
    assert statuses == [200, 200, 400, 404, 421, 501, 201, 401, 200, 400, 505], statuses
    for reply in replies:
        assert not 300 <= reply.status < 400  # no redirects at all
        assert TOKEN not in json.dumps(reply.headers), reply.headers
        assert reply.headers.get("referrer-policy") == "no-referrer"
        if not reply.headers.get("content-type", "").startswith(("text/html", "image/")):
            assert TOKEN.encode() not in reply.body, reply.body
    assert replies[6].headers["location"] == "/api/tracks/t1"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "web 127.0.0.1" in logged  # the requests were logged, at DEBUG
    assert TOKEN not in logged
    assert "token=***" in logged  # the quoted request line, masked


def test_request_lines_and_headers_are_bounded(web_service: StartService) -> None:
    running = web_service()
    port = running.port
    host = f"Host: {HOST}:{port}\r\n"
    long_path = "/api/status?pad=" + "x" * MAX_REQUEST_LINE_BYTES
    reply = raw_request(port, f"GET {long_path} HTTP/1.0\r\n{host}\r\n".encode())
    assert reply.status == 414
    assert f"request line over {MAX_REQUEST_LINE_BYTES} bytes" in reply.json()["reason"]

    many = "".join(f"X-Filler-{n}: 1\r\n" for n in range(MAX_HEADER_LINES))
    reply = raw_request(port, f"GET /api/status HTTP/1.0\r\n{host}{many}\r\n".encode())
    assert reply.status == 431
    assert f"more than {MAX_HEADER_LINES} header lines" in reply.json()["reason"]

    big = "X-Big: " + "y" * MAX_HEADER_BYTES + "\r\n"
    reply = raw_request(port, f"GET /api/status HTTP/1.0\r\n{host}{big}\r\n".encode())
    assert reply.status == 431
    assert f"request headers over {MAX_HEADER_BYTES} bytes" in reply.json()["reason"]

    # Within the limits: answered, and a POST's body is still read after its headers.
    fits = "".join(f"X-Filler-{n}: 1\r\n" for n in range(MAX_HEADER_LINES - 1))
    reply = raw_request(port, f"GET /api/status HTTP/1.0\r\n{fits}\r\n".encode())
    assert reply.status == 200
    body = _start_body(running)
    post = (
        f"POST /api/tracks HTTP/1.0\r\n{host}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reply = raw_request(port, post)
    assert reply.status == 201, reply.body


TRICKLE_TIMEOUT_S = 1.0
TRICKLE_EVERY_S = 0.1


def _trickle(port: int, head: bytes, data: bytes) -> tuple[bytes, float]:
    """Send `head` at once, then `data` a byte every TRICKLE_EVERY_S, until the server closes
    the connection: (what it answered, seconds from connecting to its close)."""
    with socket.create_connection((HOST, port), timeout=RAW_TIMEOUT_S) as sock:
        started = time.monotonic()
        sock.sendall(head)
        sock.settimeout(TRICKLE_EVERY_S)
        answer = b""
        for byte in data:
            try:
                sock.sendall(bytes([byte]))
                chunk = sock.recv(4096)
            except TimeoutError:
                continue  # still open, nothing said: the next byte
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
        return answer, time.monotonic() - started


def test_a_request_must_arrive_within_request_timeout_s(web_service: StartService) -> None:
    running = web_service(web={"request_timeout_s": TRICKLE_TIMEOUT_S})
    port = running.port
    host = f"Host: {HOST}:{port}\r\n"
    # Each byte comes well within the timeout, the whole request never does: dropped unanswered.
    pad = "X-Pad: " + "p" * 60 + "\r\n"
    request = f"GET /api/status HTTP/1.0\r\n{host}{pad}\r\n".encode()
    answer, elapsed = _trickle(port, b"", request)
    assert answer == b""
    # dropped at the deadline, long before the trickle would have finished (not a speed bound)
    assert TRICKLE_TIMEOUT_S - TRICKLE_EVERY_S <= elapsed < len(request) * TRICKLE_EVERY_S / 2
    # The body counts too: a head at once and a body a byte at a time is dropped the same way.
    body = _start_body(running) + b" " * 40
    head = (
        f"POST /api/tracks HTTP/1.0\r\n{host}Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer, elapsed = _trickle(port, head, body)
    assert answer == b""
    assert elapsed < len(body) * TRICKLE_EVERY_S / 2
    _no_track_started(running)
    # A request that arrives in time is answered.
    assert raw_request(port, f"GET /api/status HTTP/1.0\r\n{host}\r\n".encode()).status == 200


def _raw_answer(port: int, data: bytes) -> tuple[bytes, bytes]:
    """Send `data` on a new connection: (status line and headers, everything after them)."""
    with socket.create_connection((HOST, port), timeout=RAW_TIMEOUT_S) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    return head, rest


def test_head_is_answered_like_get_without_a_body(web_service: StartService) -> None:
    running = web_service()
    port = running.port
    for path, content_type in [
        ("/", "text/html"),
        ("/api/status", "application/json"),
        ("/api/tracks?mask=rle", "application/json"),
        ("/snapshot.jpg", "image/jpeg"),
        ("/stream.mjpeg", "multipart/x-mixed-replace"),
    ]:
        head, rest = _raw_answer(
            port, f"HEAD {path} HTTP/1.0\r\nHost: {HOST}:{port}\r\n\r\n".encode()
        )
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].split()[1] == "200", (path, lines[0])
        headers = {
            n.strip().lower(): v.strip() for n, _, v in (x.partition(":") for x in lines[1:])
        }
        assert headers["content-type"].startswith(content_type), path
        assert rest == b"", path  # headers only, the connection closed
        if path != "/stream.mjpeg":
            assert int(headers["content-length"]) > 0, path  # the length a GET would get
    assert running.status()["view"]["viewers"] == 0  # a HEAD of the stream watched nothing
    not_found = running.request("HEAD", "/nothing-here")
    assert not_found.status == 404
    assert not_found.body == b""
    only_delete = running.request("HEAD", "/api/tracks/t1")
    assert only_delete.status == 405
    assert only_delete.headers["allow"] == "DELETE"
    # With a token, HEAD is a GET: it may carry the token in the URL, and needs one.
    token_running = web_service(token=TOKEN, web={"token_env": "SIAMEDGE_TEST_HARDEN_TOKEN"})
    assert token_running.request("HEAD", "/api/status").status == 401
    assert token_running.request("HEAD", f"/snapshot.jpg?token={TOKEN}").status == 200


def test_conflicting_content_lengths_get_400(web_service: StartService) -> None:
    running = web_service()
    port = running.port
    body = _start_body(running)
    head = f"POST /api/tracks HTTP/1.0\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
    for lengths in [(len(body), len(body) + 4), (len(body) + 4, len(body))]:
        fields = "".join(f"Content-Length: {n}\r\n" for n in lengths)
        reply = raw_request(port, f"{head}{fields}\r\n".encode() + body + b"    ")
        assert reply.status == 400, (lengths, reply.body)
        assert "Content-Length" in reply.json()["reason"]
    _no_track_started(running)
    # The same length twice is one length (RFC 9110): accepted.
    fields = f"Content-Length: {len(body)}\r\n" * 2
    reply = raw_request(port, f"{head}{fields}\r\n".encode() + body)
    assert reply.status == 201, reply.body
