"""Settings -> the right FrameSource (inferring the kind from the uri) and its capture thread.

Never opens anything: sources are opened by their user (the capture thread or `siamedge track`).
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from siamedge.config import SourceKind, SourceSettings
from siamedge.errors import SourceError
from siamedge.secret_files import drop_line_end, read_secret
from siamedge.sources.base import FrameSource
from siamedge.sources.camera import CameraSource
from siamedge.sources.capture import CaptureThread, StateCallback
from siamedge.sources.file import VideoFileSource, probe_fps
from siamedge.sources.gstreamer import PIPELINE_SEPARATOR, GStreamerSource, ends_in_appsink
from siamedge.sources.http_auto import HttpAutoSource
from siamedge.sources.http_get import HTTP_SCHEMES, http_url_problem, is_http_url
from siamedge.sources.images import ImageFolderSource
from siamedge.sources.mjpeg import MjpegSource
from siamedge.sources.presets import preset_pipeline
from siamedge.sources.redact import redact_pipeline, redact_url, url_error
from siamedge.sources.stream import StreamSource
from siamedge.tls import ClientTls

log = logging.getLogger(__name__)

ConcreteKind = Literal[
    "camera", "gstreamer", "stream", "mjpeg", "file", "images", "synthetic", "csi", "rtsp"
]

SYNTHETIC_URI = "synthetic"
CAMERA_PATH_PREFIX = "/dev/video"
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
HOST_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https")
"""Stream URLs read from a server: without a host they fail at every reopen, for ever. The other
stream schemes (udp, tcp, srt) also listen, on a port alone (`udp://@:5000`, `srt://:9000`)."""
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".h264")
"""A uri ending like this names a video file even before the file exists (it is retried)."""
FALLBACK_PLAYBACK_FPS = 30.0
"""Playback rate of image folders, synthetic clips and files without a rate (see config `fps`)."""
LIVE_KINDS: tuple[ConcreteKind, ...] = ("camera", "gstreamer", "stream", "mjpeg", "csi", "rtsp")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def infer_kind(uri: str) -> ConcreteKind:
    """The source kind a uri names; SourceError naming the uri when it fits none.

    `synthetic`; a digit string or /dev/video* -> camera; rtsp://, rtmp://, http(s):// and other
    stream URLs -> stream; an existing folder -> images; an existing file, or a name ending in a
    video suffix -> file; a gst-launch pipeline (with `!`, or ending in appsink) -> gstreamer.
    An http(s) `stream` is read as MJPEG when it answers multipart/x-mixed-replace (create_source).
    A stream URL with nothing to read from (no host) is an error too (check_stream_url).
    """
    text = uri.strip()
    if text.lower() == SYNTHETIC_URI:
        return "synthetic"
    if text.isdigit() or text.startswith(CAMERA_PATH_PREFIX):
        return "camera"
    scheme = _SCHEME.match(text)
    if scheme:
        if scheme.group(1).lower() in STREAM_SCHEMES:
            check_stream_url(text)
            return "stream"
        raise SourceError(
            f"source uri {redact_url(text)!r}: unsupported URL scheme {scheme.group(1)!r} "
            f"(known: {', '.join(STREAM_SCHEMES)})"
        )
    path = Path(text).expanduser()
    if text and path.is_dir():
        return "images"
    if text and path.is_file():
        return "file"
    if PIPELINE_SEPARATOR in text or ends_in_appsink(text):
        return "gstreamer"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "file"
    raise SourceError(
        f"source uri {redact_url(text)!r}: cannot tell what it is: not `synthetic`, a camera "
        "index or /dev/video*, a stream URL, a GStreamer pipeline, or an existing file or folder; "
        "fix the uri or set source.kind"
    )


def check_stream_url(uri: str) -> None:
    """SourceError naming the uri (password hidden) when a URL of STREAM_SCHEMES names nothing
    to read from (no host for HOST_SCHEMES, neither host nor port for the others) or does not
    parse (an unclosed IPv6 bracket, a port out of range): no retry can mend it."""
    text = uri.strip()
    scheme = text.partition("://")[0].lower()
    if scheme not in STREAM_SCHEMES:
        return
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise SourceError(
            f"source uri {redact_url(text)!r}: not a valid URL: {url_error(exc)}"
        ) from None
    if parts.hostname:
        if scheme in HTTP_SCHEMES and (problem := http_url_problem(text)) is not None:
            raise SourceError(f"source uri {redact_url(text)!r}: {problem}")
        return
    if scheme in HOST_SCHEMES:
        raise SourceError(
            f"source uri {redact_url(text)!r}: no host in the URL: name the server to read "
            f"from, e.g. {scheme}://192.168.1.20/stream"
        )
    if port is None:
        raise SourceError(
            f"source uri {redact_url(text)!r}: no host and no port in the URL: name a server, "
            f"or a port to listen on, e.g. {scheme}://192.168.1.20:5000 or {scheme}://@:5000"
        )


def resolve_kind(settings: SourceSettings) -> ConcreteKind:
    """settings.kind, or the kind inferred from settings.uri when it is `auto`; SourceError
    when the uri names no source of the kind that can be read."""
    kind: SourceKind = settings.kind
    if kind == "auto":
        return infer_kind(settings.uri)
    if kind in ("stream", "mjpeg"):
        check_stream_url(settings.uri)
    return kind


def create_source(settings: SourceSettings) -> FrameSource:
    """The FrameSource the settings describe, not opened yet (ConfigError naming
    source.password_file or source.password_env when that password cannot be read)."""
    settings = with_camera_password(settings)
    kind = resolve_kind(settings)
    uri = settings.uri.strip()
    if kind == "camera":
        return CameraSource(
            uri,
            width=settings.width,
            height=settings.height,
            fps=settings.fps,
            fourcc=settings.fourcc,
        )
    if kind == "gstreamer":
        return GStreamerSource(uri)
    if kind in ("csi", "rtsp"):
        pipeline = preset_pipeline(kind, settings)
        return GStreamerSource(pipeline, description=f"{kind} `{redact_pipeline(pipeline)}`")
    if kind == "mjpeg":
        return MjpegSource(
            uri,
            open_timeout_s=settings.open_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            tls=_camera_tls(settings),
        )
    if kind == "stream" and settings.kind == "auto" and is_http_url(uri):
        # MJPEG (multipart/x-mixed-replace) is read directly, anything else by FFmpeg.
        return HttpAutoSource(
            uri,
            open_timeout_s=settings.open_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            tls=_camera_tls(settings),
        )
    if kind == "stream":
        return StreamSource(
            uri, open_timeout_s=settings.open_timeout_s, read_timeout_s=settings.read_timeout_s
        )
    if kind == "file":
        return VideoFileSource(Path(uri).expanduser(), loop=settings.loop)
    if kind == "images":
        return ImageFolderSource(Path(uri).expanduser(), loop=settings.loop)
    # Imported here: the synthetic clip is its own module and only needed for demos and tests.
    from siamedge.sources.synthetic import SyntheticSource  # noqa: PLC0415

    return SyntheticSource(settings.synthetic, loop=settings.loop)


def with_camera_password(settings: SourceSettings) -> SourceSettings:
    """The settings with source.password_file's (or password_env's) password put into the
    uri's user part, percent-encoded; unchanged when neither is set."""
    password = read_secret(
        "source.password_file",
        settings.password_file,
        "source.password_env",
        settings.password_env,
        clean_file=drop_line_end,
    )
    if password is None:
        return settings
    parts = urlsplit(settings.uri.strip())  # a URL naming a user: SourceSettings checked it
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return settings.model_copy(update={"uri": urlunsplit(parts._replace(netloc=netloc))})


def _camera_tls(settings: SourceSettings) -> ClientTls | None:
    """source.tls as a client context (ConfigError naming the file it cannot load); None when
    not set (an https camera is then verified against the system store)."""
    return None if settings.tls is None else ClientTls.from_settings(settings.tls, "source.tls")


def playback_fps(settings: SourceSettings) -> float | None:
    """The real-time rate to pace a finite source at; None for live sources (no pacing).

    settings.fps when set; else a file's own rate (read from the file now), else 30.
    """
    kind = resolve_kind(settings)
    if kind in LIVE_KINDS:
        return None
    if settings.fps is not None:
        return settings.fps
    if kind == "file":
        fps = probe_fps(Path(settings.uri.strip()).expanduser())
        if fps is not None:
            return fps
        log.warning(
            "file %s: frame rate unknown (missing file or none recorded); playing at %g fps",
            settings.uri,
            FALLBACK_PLAYBACK_FPS,
        )
    return FALLBACK_PLAYBACK_FPS


def create_capture(
    settings: SourceSettings,
    *,
    stop_event: threading.Event | None = None,
    on_state: StateCallback | None = None,
) -> CaptureThread:
    """The source of the settings inside a CaptureThread (paced, with the settings' backoff).

    Not started: call start(), then get(timeout) in the consumer loop, and stop() at the end.
    """
    return CaptureThread(
        create_source(settings),
        reopen_min_s=settings.reopen_min_s,
        reopen_max_s=settings.reopen_max_s,
        pace_fps=playback_fps(settings),
        stall_timeout_s=settings.read_timeout_s,
        stop_event=stop_event,
        on_state=on_state,
    )
