"""Network streams (rtsp://, rtmp://, http(s)://, ...) through OpenCV's FFmpeg backend.

Never waits without a bound (open and read timeouts) and never logs a URL's password.

RTSP goes over UDP by default in FFmpeg; behind NAT or on lossy links set
`OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;tcp` in the service environment.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import cv2

from siamedge.errors import SourceError
from siamedge.sources.videocapture import VideoCaptureSource, log_opened, open_video_capture

log = logging.getLogger(__name__)

MS_PER_S = 1000
REDACTED = "***"


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***, for logs, status and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    netloc = f"{user}:{REDACTED}@{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


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

    open_timeout_s / read_timeout_s: seconds before opening or one read counts as failed.
    """

    def __init__(self, url: str, *, open_timeout_s: float, read_timeout_s: float) -> None:
        super().__init__(f"stream {redact_url(url)}")
        self._url = url
        self._open_timeout_s = open_timeout_s
        self._params = timeout_params(open_timeout_s, read_timeout_s)

    def _open_capture(self) -> cv2.VideoCapture:
        try:
            capture = open_video_capture(self._url, cv2.CAP_FFMPEG, self._params, self.description)
        except SourceError:
            raise SourceError(
                f"{self.description}: cannot open it within {self._open_timeout_s:g} s "
                "(host unreachable, connection refused, wrong path or credentials, or no video)"
            ) from None
        log_opened(capture, self.description)
        return capture
