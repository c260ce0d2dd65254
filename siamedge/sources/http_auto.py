"""An http(s) URL under `source.kind: auto`: the answer's Content-Type picks the reader on
each open; multipart/x-mixed-replace -> the MJPEG reader (mjpeg.py), on the same connection;
anything else (a video file, HLS, ...) -> FFmpeg (stream.py), which opens its own.

Never decodes anything itself and never keeps the probing connection for FFmpeg.
"""

from __future__ import annotations

import logging

from siamedge.config import FFMPEG_CA_HINT
from siamedge.errors import SourceError
from siamedge.sources.base import Frame, FrameSource
from siamedge.sources.http_get import open_get
from siamedge.sources.mjpeg import ACCEPT, MjpegSource, is_mjpeg
from siamedge.sources.mjpeg_parts import media_type
from siamedge.sources.redact import redact_url
from siamedge.sources.stream import StreamSource
from siamedge.tls import ClientTls

log = logging.getLogger(__name__)

WEB_PAGE_TYPES = ("text/html", "application/xhtml+xml")
FFMPEG_TLS_NOTE = f" (FFmpeg does its own TLS, without source.tls: {FFMPEG_CA_HINT})"


class HttpAutoSource:
    """An http(s) stream read by the reader its Content-Type calls for, decided on open().

    The probe waits up to open_timeout_s, and FFmpeg as long again for a non-MJPEG answer.
    """

    def __init__(
        self,
        url: str,
        *,
        open_timeout_s: float,
        read_timeout_s: float,
        tls: ClientTls | None = None,
    ) -> None:
        self._url = url
        self._tls = tls
        self._description = f"stream {redact_url(url)}"
        self._open_timeout_s = open_timeout_s
        self._mjpeg = MjpegSource(
            url, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s, tls=tls
        )
        self._ffmpeg = StreamSource(
            url, open_timeout_s=open_timeout_s, read_timeout_s=read_timeout_s
        )
        self._active: FrameSource | None = None

    @property
    def description(self) -> str:
        """`stream <url>` with secrets redacted, for logs and status."""
        return self._description

    @property
    def reader(self) -> FrameSource | None:
        """The reader the last open() chose (MjpegSource or StreamSource); None before."""
        return self._active

    def open(self) -> None:
        """GET the URL and open the reader its Content-Type calls for; SourceError otherwise."""
        self.close()
        body = open_get(
            self._url,
            timeout_s=self._open_timeout_s,
            accept=ACCEPT,
            description=self.description,
            tls=self._tls,
        )
        content_type = body.content_type
        if is_mjpeg(content_type):
            self._mjpeg.attach(body)
            self._active = self._mjpeg
            return
        body.close()
        if media_type(content_type) in WEB_PAGE_TYPES:
            raise SourceError(
                f"{self.description}: answered a web page ({content_type}), not video: "
                "use the camera's stream URL"
            )
        log.info(
            "%s: Content-Type %r is not MJPEG; opening it with FFmpeg%s",
            self.description,
            content_type,
            FFMPEG_TLS_NOTE if self._tls is not None else "",
        )
        self._ffmpeg.open()
        self._active = self._ffmpeg

    def read(self) -> Frame | None:
        """The chosen reader's next frame."""
        if self._active is None:
            raise SourceError(f"{self.description}: read() before open()")
        return self._active.read()

    def close(self) -> None:
        """Close the chosen reader; safe to call twice."""
        active, self._active = self._active, None
        if active is not None:
            active.close()
