"""multipart/x-mixed-replace framing: the boundary from a Content-Type, then the parts of the
stream one at a time, with the time each began to arrive.

Never decodes a part, never touches a socket (bytes come from a callable) and never reads
further than the part asked for needs (plus what the last read brought along).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from siamedge.errors import SourceError

MJPEG_CONTENT_TYPE = "multipart/x-mixed-replace"
MAX_HEADER_BYTES = 16 * 1024
"""A part's header block (Content-Type, Content-Length, X-Timestamp, ...) is far smaller."""
MAX_JUNK_BYTES = 64 * 1024
"""Bytes tolerated between the end of one part and the next boundary line."""
JPEG_SOI = b"\xff\xd8"
BOUNDARY_LINE = "a boundary line"
_LINE_END = (b"\r", b"\n", b" ", b"\t")

Fill = Callable[[], bytes]
"""The next bytes of the stream: b"" at its end; raises SourceError when none come in time."""


@dataclass(frozen=True)
class Part:
    """One part: its body, its headers (lower-case names), when its first byte arrived (unix
    seconds, after the boundary line: some servers send that line right after the previous
    part, a frame interval early) and whether a Content-Length delimited it (else its end
    was known only when the next boundary line arrived, with the next part)."""

    body: bytes
    headers: dict[str, str]
    arrived_at: float
    has_length: bool


def media_type(content_type: str) -> str:
    """`Multipart/X-Mixed-Replace; boundary=x` -> `multipart/x-mixed-replace`."""
    return content_type.partition(";")[0].strip().lower()


def parse_boundary(content_type: str) -> bytes:
    """The boundary of a multipart Content-Type, quotes and leading `--` removed (servers differ
    on whether the parameter includes the dashes of the boundary line); SourceError without one."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "boundary":
            boundary = value.strip().strip('"').lstrip("-").strip()
            if boundary:
                return boundary.encode("latin-1")
    raise SourceError(f"Content-Type {content_type!r} names no boundary")


class PartReader:
    """Reads the parts of a multipart body from `fill`; next_part() returns the next one.

    Tolerates blank lines and junk before a boundary line, boundary lines with extra dashes,
    any part headers, and parts without Content-Length (the body then ends at the next
    boundary line). Raises SourceError when the stream ends, ends inside a part, or a part
    exceeds max_part_bytes.
    """

    def __init__(
        self, fill: Fill, boundary: bytes, *, max_part_bytes: int, description: str
    ) -> None:
        self._fill = fill
        self._description = description
        self._core = boundary.lstrip(b"-")
        self._max_part_bytes = max_part_bytes
        self._buffer = bytearray()
        self._offset = 0
        """Stream offset of _buffer[0]."""
        self._arrivals: deque[tuple[int, float]] = deque()
        """(stream offset just past a read's bytes, unix time the read returned), oldest first."""
        self._delimiter: bytes | None = None
        """The boundary line exactly as this server writes it (dashes included), once seen."""

    @property
    def buffered_bytes(self) -> int:
        """Bytes read from the stream that no part returned so far holds."""
        return len(self._buffer)

    def next_part(self) -> Part:
        """The next part; SourceError naming what went wrong when there is none."""
        self._skip_to_boundary_line()
        while len(self._buffer) < len(JPEG_SOI):
            if not self._more():
                raise self._error("the server ended the stream (after a boundary line)")
        arrived_at = self._arrival_of(self._offset)
        headers = {} if self._buffer.startswith(JPEG_SOI) else self._headers()
        length = _content_length(headers)
        body = self._body_of_length(length) if length is not None else self._body_to_boundary()
        return Part(body, headers, arrived_at, has_length=length is not None)

    # ---- framing ------------------------------------------------------------------------------

    def _skip_to_boundary_line(self) -> None:
        skipped = 0
        while True:
            line = self._line(MAX_JUNK_BYTES - skipped, BOUNDARY_LINE)
            skipped += len(line)
            stripped = line.strip()
            if not stripped.startswith(b"--"):
                continue  # blank lines (extra CRLFs) and junk a server left after a part
            core = stripped.lstrip(b"-")
            if core == self._core:
                self._delimiter = stripped
                return
            if core == self._core + b"--":
                raise self._error("the server ended the stream (closing boundary)")

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        budget = MAX_HEADER_BYTES
        while True:
            line = self._line(budget, "a part's headers")
            budget -= len(line)
            if not line.strip():
                return headers
            name, sep, value = line.decode("latin-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()

    def _body_of_length(self, length: int) -> bytes:
        if length > self._max_part_bytes:
            raise self._error(
                f"a part of {length} bytes (Content-Length) exceeds the limit of "
                f"{self._max_part_bytes} bytes"
            )
        while len(self._buffer) < length:
            if not self._more():
                raise self._error(
                    "the server closed the connection in the middle of a part "
                    f"(got {len(self._buffer)} of {length} bytes)"
                )
        return self._take(length)

    def _body_to_boundary(self) -> bytes:
        marker = b"\n" + (self._delimiter or b"--" + self._core)
        searched = 0
        ended = False
        while True:
            end = self._buffer.find(marker, searched)
            if end >= 0:
                after = end + len(marker)
                verdict = _ends_boundary_line(bytes(self._buffer[after : after + 2]))
                if verdict or (verdict is None and ended):
                    body = self._take(end)
                    return body.removesuffix(b"\r")  # the CRLF before a boundary is its own
                if verdict is False:
                    searched = end + 1  # the marker's bytes inside the body: no boundary line
                    continue
            else:
                searched = max(0, len(self._buffer) - len(marker) + 1)
            if ended:
                raise self._error(
                    "the server closed the connection in the middle of a part "
                    f"(got {len(self._buffer)} bytes, no Content-Length)"
                )
            if len(self._buffer) > self._max_part_bytes:
                raise self._error(
                    f"no boundary line within {self._max_part_bytes} bytes of a part without "
                    "Content-Length (a part over the limit, or the wrong boundary)"
                )
            ended = not self._more()

    def _error(self, reason: str) -> SourceError:
        return SourceError(f"{self._description}: {reason}")

    # ---- buffer -------------------------------------------------------------------------------

    def _line(self, budget: int, what: str) -> bytes:
        """The next line, its newline included, if it ends within budget bytes."""
        searched = 0
        while True:
            end = self._buffer.find(b"\n", searched)
            if 0 <= end < budget:
                return self._take(end + 1)
            searched = len(self._buffer)
            if searched >= budget:
                raise self._error(
                    f"no end of {what} within {budget} bytes (not an MJPEG stream, or the "
                    "server's boundary differs from its Content-Type)"
                )
            if not self._more():
                if what == BOUNDARY_LINE and not self._buffer:
                    raise self._error("the server ended the stream")
                raise self._error(f"the server closed the connection in the middle of {what}")

    def _more(self) -> bool:
        """Append the next read to the buffer; False at the end of the stream."""
        data = self._fill()
        if not data:
            return False
        self._buffer += data
        self._arrivals.append((self._offset + len(self._buffer), time.time()))
        return True

    def _take(self, count: int) -> bytes:
        taken = bytes(self._buffer[:count])
        del self._buffer[:count]
        self._offset += count
        while self._arrivals and self._arrivals[0][0] <= self._offset:
            self._arrivals.popleft()
        return taken

    def _arrival_of(self, offset: int) -> float:
        """When the byte at stream offset `offset` (one in the buffer) arrived."""
        for end, arrived_at in self._arrivals:
            if offset < end:
                return arrived_at
        raise AssertionError(f"byte {offset} is not in the buffer")


def _ends_boundary_line(after: bytes) -> bool | None:
    """Whether the (up to) two bytes after a boundary found in a body make it a boundary line
    (a line end, or the `--` of the closing one); None when too few bytes arrived to tell."""
    if after[:1] in _LINE_END or after == b"--":
        return True
    if after in (b"", b"-"):
        return None
    return False


def _content_length(headers: dict[str, str]) -> int | None:
    """The part's Content-Length; None when absent or not a number (the body is then scanned)."""
    text = headers.get("content-length", "").strip()
    return int(text) if text.isascii() and text.isdigit() else None
