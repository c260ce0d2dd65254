"""The HTTP server of the web view: routes, bearer token, limits, the MJPEG stream.

One thread per connection (at most web.max_connections); never blocks the service's main loop
and never applies a command itself: commands go through the service's inbox like MQTT ones.

Routes (JSON unless noted; errors are `{"reason", ...}`):
  GET    /                  the page (HTML, self-contained)
  GET    /stream.mjpeg      the preview, multipart/x-mixed-replace of JPEG parts
  GET    /snapshot.jpg      one preview frame (JPEG)
  GET    /api/status        the status report + broker + latency + live view numbers
  GET    /api/tracks        the last frame's tracks (?mask=rle|polygon|png|none, default none)
  HEAD   any GET path       what GET would answer, without the body
  POST   /api/tracks        start, body as on track/start -> 201 ack | 400 | 409 | 503
  DELETE /api/tracks        stop all -> 200 ack
  DELETE /api/tracks/{id}   stop one -> 200 ack | 400 | 404
Before the token: a Host header that is not the view's own name gets 421 (DNS rebinding), an
Origin header that is not the view's own gets 403 (another site's request; see guard.py).
With a token configured, every request needs `Authorization: Bearer <token>`; GET (and HEAD)
requests may carry it as `?token=` instead, because an <img> (the stream) cannot send a header
and a link to the page should work. Commands never take it from the URL, so a link cannot steer
the tracker.
The request line and headers are bounded (414, 431) before http.server parses them, and the
whole request (body included) must arrive within web.request_timeout_s of the connection.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import re
import select
import socket
import socketserver
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from siamedge import __version__, listener
from siamedge.config import WebSettings
from siamedge.errors import CommandError, ModelCallError
from siamedge.frontend import ServicePort
from siamedge.messaging.masks import JsonObject
from siamedge.messaging.protocol import (
    check_command_length,
    dumps,
    parse_start,
    parse_stop,
)
from siamedge.messaging.topics import CommandKind
from siamedge.web.api import (
    ack_document,
    error_document,
    parse_mask_encoding,
    reason_document,
    status_document,
    to_bytes,
    tracks_document,
)
from siamedge.web.auth import bearer_token, resolve_token, token_matches
from siamedge.web.commands import InboxFullError, WebInbox
from siamedge.web.guard import HostPolicy, host_refusal, is_loopback_name, origin_refusal
from siamedge.web.preview import Preview, PreviewHub

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

PAGE_PATH = "/"
STREAM_PATH = "/stream.mjpeg"
SNAPSHOT_PATH = "/snapshot.jpg"
STATUS_PATH = "/api/status"
TRACKS_PATH = "/api/tracks"
TRACK_PATH_PREFIX = TRACKS_PATH + "/"

BOUNDARY = "siamedge-frame"
JSON_TYPE = "application/json"
STREAM_RESEND_S = 2.0
"""A viewer with no new preview for this long gets the last one again: a new viewer of a
stalled source still sees its last picture."""
VIEWER_CHECK_S = 0.5
"""While no preview comes, a stream looks this often whether its viewer has gone: one that is
never written to would otherwise hold its viewer and connection slots until a frame comes."""
CLOSE_TIMEOUT_S = 2.0
"""How long close() waits for the connection threads."""
SERVE_POLL_S = 0.2
LISTEN_BACKLOG = 64
RETRY_AFTER_S = 2
REFUSAL_LOG_EVERY_S = 60.0
DRAIN_LIMIT_BYTES = 1024 * 1024
DRAIN_CHUNK_BYTES = 64 * 1024
DRAIN_TIMEOUT_S = 1.0
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'"
)
"""The page loads nothing from elsewhere (no CDN: the device may be offline)."""
MAX_REQUEST_LINE_BYTES = 8 * 1024
"""Longer request lines get 414: the API's URLs are short (a token in `?token=` included)."""
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADER_LINES = 64
"""More header bytes or lines get 431. A browser sends about 1 KiB in 20 lines; cookies of other
applications on the same host name count too, hence the room. (http.server alone would take
100 lines of 64 KiB each.)"""
_TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s'\"]*", re.IGNORECASE)
"""A `token=` query parameter inside text that may quote a request line."""
_QUIET_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
"""A client that went away or stalled: not worth a traceback."""
GET_LIKE = ("GET", "HEAD")
"""HEAD is answered as GET without the body (uptime monitors, `curl -I`)."""


def load_page() -> bytes:
    """The page's HTML (siamedge/web/page.html, shipped in the package)."""
    return resources.files("siamedge.web").joinpath("page.html").read_bytes()


def redact_token(text: str) -> str:
    """`text` with the value of every `token=` parameter replaced by `***`."""
    return _TOKEN_IN_TEXT.sub(r"\1***", text)


def peer_gone(sock: socket.socket) -> bool:
    """Whether the client closed or reset `sock`; never blocks. What it sent after its request
    is read and dropped: a viewer has nothing more to say, and the end of it is what counts."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        # Readable, so no wait. A half-close counts as gone too: no MJPEG client half-closes
        # and reads on (nginx's check of a proxied client's connection says the same).
        return not sock.recv(DRAIN_CHUNK_BYTES, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True


class _App:
    """What the request handlers share: settings, token, preview hub, inbox, the service."""

    def __init__(self, service: ServicePort, settings: WebSettings, token: str | None) -> None:
        self.service = service
        self.settings = settings
        self.token = token
        self.hub = PreviewHub(settings)
        self.inbox = WebInbox(settings.max_connections)
        self.page = load_page()


class _HttpServer(HTTPServer):
    """HTTPServer with one thread per connection, at most max_connections at once: beyond that
    a connection gets 503 at once and is closed (the accepting thread never waits)."""

    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], app: _App) -> None:
        self.app = app
        self._slots = threading.BoundedSemaphore(app.settings.max_connections)
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._refused = 0
        self._next_refusal_log = 0.0
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own server_bind asks DNS for the host's full name: an offline device
        # would wait for the resolver's timeout at start-up.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.host_policy = HostPolicy.from_settings(self.app.settings, self.server_port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse(request)
            return
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="web-client",
            daemon=True,
        )
        with self._lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except _QUIET_ERRORS as exc:
            log.debug("web client %s went away: %s", client_address, exc)
        except Exception:
            log.exception("web request from %s failed", client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._connections.pop(request, None)
            self._slots.release()

    def _refuse(self, request: socket.socket) -> None:
        body = to_bytes(
            reason_document(
                f"too many connections ({self.app.settings.max_connections}, "
                "web.max_connections); try again later"
            )
        )
        head = (
            "HTTP/1.0 503 Service Unavailable\r\n"
            f"Content-Type: {JSON_TYPE}\r\nContent-Length: {len(body)}\r\n"
            f"Retry-After: {RETRY_AFTER_S}\r\nConnection: close\r\n\r\n"
        )
        try:
            request.settimeout(SERVE_POLL_S)
            request.sendall(head.encode("ascii") + body)
        except OSError as exc:
            log.debug("web: refusing a connection failed: %s", exc)
        self._refused += 1
        now = time.monotonic()
        if now >= self._next_refusal_log:
            # At most one line a minute, however fast connections are refused.
            self._next_refusal_log = now + REFUSAL_LOG_EVERY_S
            log.warning(
                "web: %d connection(s) refused so far: web.max_connections (%d) are open",
                self._refused,
                self.app.settings.max_connections,
            )
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver calls this inside its own `except`.
        log.error("web request from %s failed: %r", client_address, sys.exc_info()[1])

    def close_connections(self, timeout_s: float) -> None:
        """Wake every connection thread (shut its socket down) and wait for them."""
        with self._lock:
            connections = list(self._connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):  # already closed by its own thread
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for _, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """One HTTP/1.0 request per connection: keep-alive connections would hold a slot each."""

    server: _HttpServer
    _reader: listener.DeadlineReader
    protocol_version = "HTTP/1.0"
    server_version = f"siamedge/{__version__}"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self._reader = listener.read_within(self, self.server.app.settings.request_timeout_s)

    # ---- logging: DEBUG, and never the query string (it may hold the token) -------------------

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(getattr(self, "path", "")).path or "-"
        log.debug("web %s %s %s -> %s", self.client_address[0], self.command, path, code)

    def log_message(self, format: str, *args: Any) -> None:
        # http.server quotes a malformed request line, query string and all.
        log.debug("web %s: %s", self.client_address[0], redact_token(format % args))

    # ---- reading the request: bounded before http.server parses it -----------------------------

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST_LINE_BYTES + 1)
            if not self.raw_requestline:
                self.close_connection = True
                return
            if len(self.raw_requestline) > MAX_REQUEST_LINE_BYTES:
                self._refuse_unparsed(
                    HTTPStatus.REQUEST_URI_TOO_LONG,
                    f"request line over {MAX_REQUEST_LINE_BYTES} bytes",
                )
                return
            head = self._read_head()
            if head is None:
                return
            # parse_request reads the headers from self.rfile: give it the block read above,
            # and keep the socket's file for the body.
            rfile, self.rfile = self.rfile, io.BytesIO(head)
            try:
                parsed = self.parse_request()
            finally:
                self.rfile = rfile
            if not parsed:
                return
            handler = getattr(self, f"do_{self.command}", None)
            if handler is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {self.command!r}")
                return
            handler()
            self.wfile.flush()
        except TimeoutError as exc:
            self.log_error("request timed out: %r", exc)
            self.close_connection = True

    def _read_head(self) -> bytes | None:
        """The header lines up to and including the empty one, or None after answering 431."""
        lines: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(MAX_HEADER_BYTES - size + 1)
            size += len(line)
            if size > MAX_HEADER_BYTES:
                reason = f"request headers over {MAX_HEADER_BYTES} bytes"
            elif len(lines) >= MAX_HEADER_LINES and line not in (b"\r\n", b"\n", b""):
                reason = f"more than {MAX_HEADER_LINES} header lines"
            else:
                lines.append(line)
                if line in (b"\r\n", b"\n", b""):
                    return b"".join(lines)
                continue
            self._refuse_unparsed(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, reason)
            return None

    def _refuse_unparsed(self, status: HTTPStatus, reason: str) -> None:
        """Answer a request that was not parsed, then drop what else it sends (see _drain)."""
        self.requestline = ""
        self.request_version = self.protocol_version
        self.command = ""
        self.close_connection = True
        log.debug("web %s: %d %s", self.client_address[0], status, reason)
        self._send_json(status, reason_document(reason))
        self.wfile.flush()
        self._drain(None)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's errors (bad request line, unknown method) as JSON like every other
        answer; its reason may quote the request line, so any token in it is masked."""
        status = HTTPStatus(code)
        reason = redact_token(message or status.phrase)
        self.log_error("code %d, message %s", code, reason)
        self.close_connection = True
        if not self.request_version.startswith("HTTP/1."):
            # A request line that was not understood leaves "HTTP/0.9": no status line at all.
            self.request_version = self.protocol_version
        self._send_json(status, reason_document(reason), {"Connection": "close"})

    # ---- dispatch -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._same_origin():
            return
        if not self._authorized(method, query):
            self._send_json(
                HTTPStatus.UNAUTHORIZED,
                reason_document("missing or wrong bearer token"),
                {"WWW-Authenticate": 'Bearer realm="siamedge"'},
            )
            return
        path = url.path
        routes = {
            PAGE_PATH: {"GET": self._page},
            STREAM_PATH: {"GET": self._stream},
            SNAPSHOT_PATH: {"GET": self._snapshot},
            STATUS_PATH: {"GET": self._status},
            TRACKS_PATH: {
                "GET": lambda: self._tracks(query),
                "POST": self._start,
                "DELETE": lambda: self._stop(None),
            },
        }
        if path.startswith(TRACK_PATH_PREFIX):
            track_id = unquote(path[len(TRACK_PATH_PREFIX) :])
            methods = {"DELETE": lambda: self._stop(track_id)}
        elif path in routes:
            methods = routes[path]
        else:
            self._send_json(HTTPStatus.NOT_FOUND, reason_document(f"no such path: {path}"))
            return
        handler = methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            allowed = ", ".join(sorted(methods) + (["HEAD"] if "GET" in methods else []))
            self._send_json(
                HTTPStatus.METHOD_NOT_ALLOWED,
                reason_document(f"{method} is not allowed on {path}; allowed: {allowed}"),
                {"Allow": allowed},
            )
            return
        handler()

    def _same_origin(self) -> bool:
        """Whether the Host and Origin headers are the view's own; else answers 421 or 403.
        Checked before the token, so a rebound or cross-site request learns nothing more."""
        policy = self.server.host_policy
        host = self.headers.get("Host")
        refusal = host_refusal(host, policy)
        if refusal is not None:
            self._send_json(HTTPStatus.MISDIRECTED_REQUEST, reason_document(refusal))
            return False
        refusal = origin_refusal(self.headers.get("Origin"), host, policy)
        if refusal is not None:
            self._send_json(HTTPStatus.FORBIDDEN, reason_document(refusal))
            return False
        return True

    def _authorized(self, method: str, query: dict[str, list[str]]) -> bool:
        expected = self.server.app.token
        if expected is None:
            return True
        presented = bearer_token(self.headers.get("Authorization"))
        if presented is None and method in GET_LIKE:
            presented = query.get("token", [None])[-1]
        return token_matches(expected, presented)

    # ---- responses ----------------------------------------------------------------------------

    def _send(
        self,
        status: HTTPStatus,
        content_type: str,
        body: bytes,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        # A page or stream opened with ?token= must not hand its address on to another site.
        self.send_header("Referrer-Policy", "no-referrer")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(
        self, status: HTTPStatus, document: JsonObject, headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, JSON_TYPE, to_bytes(document), headers)

    def _unavailable(self, reason: str) -> None:
        self._send_json(
            HTTPStatus.SERVICE_UNAVAILABLE,
            reason_document(reason),
            {"Retry-After": str(RETRY_AFTER_S)},
        )

    # ---- GET ----------------------------------------------------------------------------------

    def _page(self) -> None:
        self._send(
            HTTPStatus.OK,
            "text/html; charset=utf-8",
            self.server.app.page,
            {"Content-Security-Policy": CONTENT_SECURITY_POLICY},
        )

    def _status(self) -> None:
        app = self.server.app
        document = status_document(app.service.snapshot(), app.hub.stats())
        self._send_json(HTTPStatus.OK, document)

    def _tracks(self, query: dict[str, list[str]]) -> None:
        try:
            encoding = parse_mask_encoding(query.get("mask", [None])[-1])
        except CommandError as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, error_document(exc))
            return
        self._send_json(HTTPStatus.OK, tracks_document(self.server.app.hub.latest, encoding))

    def _snapshot(self) -> None:
        preview = self.server.app.hub.snapshot()
        if preview is None:
            self._unavailable("no frame has been processed yet")
            return
        self._send(
            HTTPStatus.OK, "image/jpeg", preview.jpeg, {"X-Frame-Index": str(preview.frame_index)}
        )

    def _stream(self) -> None:
        hub = self.server.app.hub
        if self.command == "HEAD" and not hub.full:
            self._send_stream_head()
            return
        if not hub.open_viewer():
            self._unavailable(
                f"{self.server.app.settings.max_streams} viewers are watching already "
                "(web.max_streams)"
            )
            return
        try:
            self._send_stream_head()
            self._stream_previews(hub)
        except _QUIET_ERRORS as exc:
            log.debug("web viewer %s left: %s", self.client_address[0], exc)
        except OSError as exc:
            # close() shuts the socket down under a blocked write (EBADF, ENOTCONN, EPIPE)
            if exc.errno not in (errno.EBADF, errno.ENOTCONN, errno.EPIPE):
                raise
        finally:
            hub.close_viewer()

    def _send_stream_head(self) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()

    def _stream_previews(self, hub: PreviewHub) -> None:
        """Write every new preview (the last one again after STREAM_RESEND_S without one) until
        the hub closes or the viewer goes; between previews, look for the viewer's leaving."""
        seq = 0
        resend_at = time.monotonic() + STREAM_RESEND_S
        while True:
            preview = hub.next_preview(seq, VIEWER_CHECK_S)
            if hub.closed:
                return
            if preview is None:
                if peer_gone(self.connection):
                    log.debug("web viewer %s left", self.client_address[0])
                    return
                preview = hub.current
                if preview is None or time.monotonic() < resend_at:
                    continue
            seq = preview.seq
            self._write_part(preview)
            resend_at = time.monotonic() + STREAM_RESEND_S

    def _write_part(self, preview: Preview) -> None:
        head = (
            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(preview.jpeg)}\r\n"
            f"X-Frame-Index: {preview.frame_index}\r\n\r\n"
        )
        self.wfile.write(b"".join((head.encode("ascii"), preview.jpeg, b"\r\n")))

    # ---- commands -----------------------------------------------------------------------------

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering why it was not read."""
        if self.headers.get("Transfer-Encoding"):
            self._send_json(
                HTTPStatus.LENGTH_REQUIRED,
                reason_document("send the body with a Content-Length; chunked bodies are refused"),
            )
            self._drain(None)
            return None
        lengths = {value.strip() for value in self.headers.get_all("Content-Length", [])}
        if not lengths:
            self._send_json(HTTPStatus.LENGTH_REQUIRED, reason_document("Content-Length missing"))
            return None
        if len(lengths) > 1:
            # Which one a proxy in front believed is unknown: guessing would smuggle requests.
            self._send_json(
                HTTPStatus.BAD_REQUEST,
                reason_document(
                    f"conflicting Content-Length headers: {', '.join(sorted(lengths))[:80]}"
                ),
            )
            self._drain(None)
            return None
        text = lengths.pop()
        try:
            length = int(text)
            if length < 0:
                raise ValueError(text)
        except ValueError:
            self._send_json(
                HTTPStatus.BAD_REQUEST, reason_document(f"bad Content-Length {text[:40]!r}")
            )
            self._drain(None)
            return None
        try:
            check_command_length(length)
        except CommandError as exc:
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error_document(exc))
            self._drain(length)
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self._send_json(
                HTTPStatus.BAD_REQUEST,
                reason_document(f"the body ended after {len(body)} of {length} bytes"),
            )
            return None
        return body

    def _drain(self, length: int | None) -> None:
        """Read and drop a body that was refused unread (at most DRAIN_LIMIT_BYTES): closing a
        socket with unread data resets it, and the client could lose the answer."""
        remaining = DRAIN_LIMIT_BYTES if length is None else min(length, DRAIN_LIMIT_BYTES)
        self._reader.deadline = time.monotonic() + DRAIN_TIMEOUT_S
        with contextlib.suppress(OSError):
            while remaining > 0:
                chunk = self.rfile.read1(min(remaining, DRAIN_CHUNK_BYTES))
                if not chunk:
                    break
                remaining -= len(chunk)

    def _start(self) -> None:
        body = self._read_body()
        if body is None:
            return
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != JSON_TYPE:
            # Also keeps other sites' plain form posts out: they cannot send this type.
            self._send_json(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                reason_document(f"send the command as {JSON_TYPE}; got {content_type[:60]!r}"),
            )
            return
        try:
            # The main loop validates again (the frame size may change): same code, same reasons.
            parse_start(body, self.server.app.hub.frame_wh)
        except CommandError as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, error_document(exc, body))
            return
        self._submit("start", body)

    def _stop(self, track_id: str | None) -> None:
        message: JsonObject = {"all": True} if track_id is None else {"track_id": track_id}
        payload = dumps(message)
        try:
            parse_stop(payload)
        except CommandError as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, error_document(exc, payload))
            return
        self._submit("stop", payload)

    def _submit(self, kind: CommandKind, payload: bytes) -> None:
        app = self.server.app
        status = app.service.snapshot().status
        if status is not None and status.provider == "none":
            self._unavailable(f"model {status.model}")
            return
        timeout_s = app.settings.command_timeout_s
        if kind == "start":
            age = app.hub.frame_age_s()
            if age is None or age > timeout_s:
                self._unavailable(
                    "no frame from the source"
                    + ("" if age is None else f" for {age:.1f} s")
                    + "; a start needs one (the command was not queued)"
                )
                return
        try:
            outcome = app.inbox.submit(kind, payload, timeout_s)
        except InboxFullError as exc:
            self._unavailable(str(exc))
            return
        if outcome is None:
            self._unavailable(
                f"the service did not answer within {timeout_s:g} s; the command may still be "
                "applied when frames arrive"
            )
            return
        if outcome.error is not None:
            code = HTTPStatus.CONFLICT
            if isinstance(outcome.error, ModelCallError):
                code = HTTPStatus.SERVICE_UNAVAILABLE  # the model failed, not the command
            elif kind == "stop" and b'"track_id"' in payload:
                code = HTTPStatus.NOT_FOUND  # an unknown id is the only way a valid stop fails
            self._send_json(code, error_document(outcome.error, payload))
            return
        document = ack_document(kind, outcome.track_id, outcome.request_id)
        if kind == "start":
            location = {"Location": f"{TRACK_PATH_PREFIX}{outcome.track_id}"}
            self._send_json(HTTPStatus.CREATED, document, location)
        else:
            self._send_json(HTTPStatus.OK, document)


class WebServer:
    """The web view of one service (a siamedge.frontend.FrontEnd): registers its frame listener
    and command inbox on it; start() listens, close() ends every stream and connection."""

    def __init__(self, service: ServicePort, settings: WebSettings) -> None:
        self._settings = settings
        self._app = _App(service, settings, resolve_token(settings))
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        service.add_frame_listener(self._app.hub.on_frame)
        service.add_inbox(self._app.inbox.drain)

    @property
    def url(self) -> str:
        """`http://host:port/` as bound (the port is known after start())."""
        host, port = self._settings.host, self._settings.port
        if self._http is not None:
            port = self._http.server_address[1]
        return listener.url(host, port, "/")

    def start(self) -> None:
        """Listen on web.host:web.port; ConfigError when that address cannot be had."""
        settings = self._settings
        self._http = listener.bind(
            lambda address: _HttpServer(address, self._app), settings.host, settings.port, "web"
        )
        self._thread = listener.serve(self._http, SERVE_POLL_S, "web-server")
        log.info("web view on %s%s", self.url, " (token required)" if self._app.token else "")
        if self._app.token is None and not is_loopback_name(settings.host.lower()):
            log.warning(
                "web view on %s has no token: anyone who can reach it can steer the tracker "
                "(set web.token_file or web.token_env)",
                settings.host,
            )

    def close(self) -> None:
        """Stop accepting, end the streams, wake waiting commands, join the threads."""
        http, self._http = self._http, None
        if http is None:
            return
        http.shutdown()
        self._app.inbox.close()
        self._app.hub.close()
        http.close_connections(CLOSE_TIMEOUT_S)
        http.server_close()
        if self._thread is not None:
            self._thread.join()
        log.info("web view closed")
