"""MJPEG over HTTP (multipart/x-mixed-replace: ESP32-CAM, mjpg-streamer, IP cameras, the web
view's /stream.mjpeg): http_get.py fetches, mjpeg_parts.py frames, mjpeg_decode.py decodes.

Never waits without a bound (open and read timeouts), never reads ahead of the part it decodes
(the capture thread keeps the newest frame), and never logs a password or a `token=`.

Chosen by `source.kind: mjpeg`, or by `kind: auto` for an http(s) URL that answers
multipart/x-mixed-replace (see http_auto.py). A frame's timestamp is the time the first bytes
of its part arrived, before decoding: the closest to the camera a plain MJPEG stream allows.
A part that does not decode (a truncated JPEG, no end-of-image marker, not a JPEG) is skipped,
counted and logged; read() fails only when no part decodes within read_timeout_s. A part is not
decoded either when the bytes of a newer one have already arrived: a decoder slower than the
camera then drops frames instead of falling further and further behind.
"""

from __future__ import annotations

import logging
import time

from siamedge.errors import SourceError
from siamedge.sources.base import Frame
from siamedge.sources.http_get import HttpBody, is_http_url, open_get
from siamedge.sources.mjpeg_decode import decode_jpeg
from siamedge.sources.mjpeg_parts import (
    MJPEG_CONTENT_TYPE,
    Part,
    PartReader,
    media_type,
    parse_boundary,
)
from siamedge.sources.redact import redact_url
from siamedge.tls import ClientTls

log = logging.getLogger(__name__)

MAX_PART_BYTES = 16 * 1024 * 1024
"""A part larger than this is an error: a 4K JPEG is a few MiB."""
SKIP_LOG_EVERY_S = 10.0
"""Skipped parts are logged at most this often (with the count), so a broken camera at 30 fps
does not flood the journal."""
ACCEPT = f"{MJPEG_CONTENT_TYPE}, image/jpeg;q=0.9, */*;q=0.1"


def is_mjpeg(content_type: str) -> bool:
    """True when a Content-Type header announces an MJPEG stream."""
    return media_type(content_type) == MJPEG_CONTENT_TYPE


class MjpegSource:
    """A live MJPEG stream over HTTP(S); a lost, ended or stalled stream raises SourceError.

    url: http(s)://[user:password@]host[:port]/path[?query]; the credentials go out as Basic
        auth. open_timeout_s: connecting and the answer's head. read_timeout_s: read() fails
        when no decodable frame arrives within it (no bytes at all: "stalled"). tls: how an
        https camera is verified (None: against the system store).
    Frame indices keep counting across close()/open().
    """

    def __init__(
        self,
        url: str,
        *,
        open_timeout_s: float,
        read_timeout_s: float,
        max_part_bytes: int = MAX_PART_BYTES,
        tls: ClientTls | None = None,
    ) -> None:
        if not is_http_url(url):
            raise SourceError(
                f"source uri {redact_url(url)!r}: an MJPEG stream needs an http:// or https:// URL"
            )
        self._url = url
        self._description = f"mjpeg {redact_url(url)}"
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_part_bytes = max_part_bytes
        self._tls = tls
        self._body: HttpBody | None = None
        self._parts: PartReader | None = None
        self._next_index = 0
        self._skipped = 0
        self._stale = 0
        self._skipped_since_frame = 0
        self._last_skip_reason = ""
        self._last_skip_log = -SKIP_LOG_EVERY_S
        self._deadline = 0.0
        self._last_data_at = 0.0

    @property
    def description(self) -> str:
        """`mjpeg <url>` with secrets redacted, for logs and status."""
        return self._description

    @property
    def skipped_parts(self) -> int:
        """Parts that did not decode (truncated, not a JPEG), since this object was made."""
        return self._skipped

    @property
    def stale_parts(self) -> int:
        """Parts left undecoded because a newer one had already arrived, since this was made."""
        return self._stale

    def open(self) -> None:
        """Connect and check the answer is an MJPEG stream; SourceError with the reason."""
        self.close()
        body = open_get(
            self._url,
            timeout_s=self._open_timeout_s,
            accept=ACCEPT,
            description=self.description,
            tls=self._tls,
        )
        self.attach(body)

    def attach(self, body: HttpBody) -> None:
        """Read frames from a GET already answered (http_auto.py probes the Content-Type with
        it: a camera that serves one client at a time would refuse a second connection).
        Takes ownership of body: closes it on a refusal and in close()."""
        self.close()
        content_type = body.content_type
        try:
            if not is_mjpeg(content_type):
                raise SourceError(
                    f"{self.description}: answered Content-Type {content_type!r}, not "
                    f"{MJPEG_CONTENT_TYPE} (not an MJPEG stream: check the URL, or use "
                    "source.kind: stream for other video)"
                )
            try:
                boundary = parse_boundary(content_type)
            except SourceError as exc:
                raise SourceError(f"{self.description}: {exc}") from None
        except SourceError:
            body.close()
            raise
        self._body = body
        self._parts = PartReader(
            self._fill,
            boundary,
            max_part_bytes=self._max_part_bytes,
            description=self.description,
        )
        self._skipped_since_frame = 0
        self._last_data_at = time.monotonic()
        log.info("%s: MJPEG stream, boundary %r", self.description, boundary.decode("latin-1"))

    def read(self) -> Frame:
        """The next frame that decodes; SourceError when the stream ends, breaks or stalls."""
        if self._parts is None:
            raise SourceError(f"{self.description}: read() before open()")
        self._deadline = time.monotonic() + self._read_timeout_s
        while True:
            part = self._parts.next_part()
            if self._newer_part_arrived(part):
                self._stale += 1
                continue
            image, problem = decode_jpeg(part.body)
            if image is not None:
                self._skipped_since_frame = 0
                frame = Frame(image=image, index=self._next_index, timestamp=part.arrived_at)
                self._next_index += 1
                return frame
            self._skip(problem)

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        body, self._body, self._parts = self._body, None, None
        if body is not None:
            body.close()

    def _newer_part_arrived(self, part: Part) -> bool:
        """True when a newer part that could be read whole waits behind this one: more bytes
        than this part's body (parts of one stream are of similar size), twice as many for
        parts without Content-Length (the next one ends only with the boundary after it)."""
        assert self._body is not None and self._parts is not None
        waiting = self._parts.buffered_bytes + self._body.waiting_bytes()
        return waiting > len(part.body) * (1 if part.has_length else 2)

    def _fill(self) -> bytes:
        """The next bytes for the part reader, within the deadline of this read()."""
        assert self._body is not None, "the part reader outlived its connection"
        remaining = self._deadline - time.monotonic()
        data = None if remaining <= 0 else self._body.read_some(remaining)
        if data is None:
            raise SourceError(self._timeout_reason())
        self._last_data_at = time.monotonic()
        return data

    def _timeout_reason(self) -> str:
        limit = f"{self._read_timeout_s:g} s"
        if self._skipped_since_frame:
            return (
                f"{self.description}: no part decoded within {limit}: "
                f"{self._skipped_since_frame} skipped, the last: {self._last_skip_reason}"
            )
        silent_s = time.monotonic() - self._last_data_at
        if silent_s >= self._read_timeout_s / 2:
            return f"{self.description}: no data for {silent_s:.2g} s (the stream stalled)"
        return f"{self.description}: no whole frame within {limit} (data arrives too slowly)"

    def _skip(self, problem: str) -> None:
        self._skipped += 1
        self._skipped_since_frame += 1
        self._last_skip_reason = problem
        now = time.monotonic()
        if now - self._last_skip_log >= SKIP_LOG_EVERY_S:
            self._last_skip_log = now
            log.warning(
                "%s: skipped a part: %s (%d skipped so far)",
                self.description,
                problem,
                self._skipped,
            )
