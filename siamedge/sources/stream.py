"""Network streams (rtsp://, rtmp://, http(s)://, ...) through OpenCV's FFmpeg backend.

Never waits without a bound (open and read timeouts) and never logs a URL's password.

OpenCV asks FFmpeg for RTSP over TCP unless `OPENCV_FFMPEG_CAPTURE_OPTIONS` is set in the
service environment; that variable replaces OpenCV's options, so `rtsp_transport;udp` picks UDP
(lower latency on a clean link, damaged frames on a lossy one) and any other option list should
name `rtsp_transport;tcp` itself to keep TCP. Opening an RTSP stream takes about 1.4 s of
FFmpeg's stream analysis (whose frames then come out at once); with
`rtsp_transport;tcp|analyzeduration;300000` the test server's H.264 opened in 0.4 s, so a lost
camera is back sooner.

Why a read that outlasts read_timeout_s fails even when it brings a frame: OpenCV's read timeout
(an FFmpeg interrupt callback, restarted by every read) ends a silent read after read_timeout_s,
but FFmpeg's decoder still holds the last one or two frames it was sent (frame threading), and
each further read hands out one of those after another full timeout. A frozen server was thus
reported only after three timeouts over TCP (6 s with read_timeout_s 2), two over UDP. A read
that took read_timeout_s is the silence itself, so it fails at once.
"""

from __future__ import annotations

import logging
import time

import cv2

from siamedge.config import FFMPEG_CA_HINT
from siamedge.errors import SourceError
from siamedge.sources.base import Frame
from siamedge.sources.redact import redact_url
from siamedge.sources.videocapture import VideoCaptureSource, log_opened, open_video_capture

log = logging.getLogger(__name__)

TIMED_OUT_FRACTION = 0.9
"""An open that failed after this fraction of open_timeout_s ran into the timeout."""

MS_PER_S = 1000


def timeout_params(open_timeout_s: float, read_timeout_s: float) -> list[int]:
    """OpenCV open parameters for the timeouts this OpenCV knows (older ones lack them)."""
    params: list[int] = []
    for name, seconds in (
        ("CAP_PROP_OPEN_TIMEOUT_MSEC", open_timeout_s),
        ("CAP_PROP_READ_TIMEOUT_MSEC", read_timeout_s),
    ):
        prop = getattr(cv2, name, None)
        if prop is not None:
            params += [int(prop), round(seconds * MS_PER_S)]
    return params


class StreamSource(VideoCaptureSource):
    """A live network stream; a stream that stops delivering raises SourceError (reopen it).

    open_timeout_s / read_timeout_s: seconds before opening or one read counts as failed; a
    read that took read_timeout_s or longer fails (SourceError saying `stalled`) even when the
    backend then gave a frame: that frame is stale (see the module docstring).
    """

    def __init__(self, url: str, *, open_timeout_s: float, read_timeout_s: float) -> None:
        super().__init__(f"stream {redact_url(url)}")
        self._url = url
        self._open_timeout_s = open_timeout_s
        self._read_timeout_s = read_timeout_s
        self._params = timeout_params(open_timeout_s, read_timeout_s)

    @property
    def read_timeout_s(self) -> float:
        """Seconds without a frame before a read fails."""
        return self._read_timeout_s

    def read(self) -> Frame | None:
        """The next frame; SourceError when the stream is lost or stalled for read_timeout_s."""
        started = time.monotonic()
        frame = super().read()
        waited_s = time.monotonic() - started
        if waited_s >= self._read_timeout_s:
            raise SourceError(
                f"{self.description}: stalled: no data for {waited_s:.1f} s "
                f"(read_timeout_s {self._read_timeout_s:g}; connection open, server silent)"
            )
        return frame

    def _open_capture(self) -> cv2.VideoCapture:
        started = time.monotonic()
        try:
            capture = open_video_capture(self._url, cv2.CAP_FFMPEG, self._params, self.description)
        except SourceError:
            raise SourceError(
                f"{self.description}: {self._open_failure(time.monotonic() - started)}"
            ) from None
        log_opened(capture, self.description)
        return capture

    def _open_failure(self, waited_s: float) -> str:
        """Why an open failed, told by how long it took: FFmpeg says nothing more."""
        if waited_s >= TIMED_OUT_FRACTION * self._open_timeout_s:
            return (
                f"cannot open it within {self._open_timeout_s:g} s "
                "(host down or unreachable, or a server that does not answer)"
            )
        https = self._url.strip().lower().startswith("https://")
        certificate = f", or a certificate FFmpeg does not trust: {FFMPEG_CA_HINT}" if https else ""
        return (
            f"cannot open it: failed after {waited_s:.1f} s "
            f"(connection refused, wrong path or credentials, or no video{certificate})"
        )
