"""Network streams over loopback: an HTTP-served clip, refused and silent servers, redaction."""

from __future__ import annotations

import socket

import pytest
from fixtures.media import CLIP_FRAMES, frame_number

from siamedge.errors import SourceError
from siamedge.sources.redact import redact_url
from siamedge.sources.stream import StreamSource, timeout_params

SHORT_TIMEOUT_S = 0.3
"""For connections that must fail: refused or silent servers."""
LOCAL_TIMEOUT_S = 5.0
"""For the loopback server that answers (generous: a loaded machine must not fail it)."""
POLL_S = 0.02


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stream(url: str, timeout_s: float = SHORT_TIMEOUT_S) -> StreamSource:
    return StreamSource(url, open_timeout_s=timeout_s, read_timeout_s=timeout_s)


def test_reads_a_clip_over_http_then_reports_the_end_as_lost(
    video_file_url: str,
) -> None:
    source = stream(video_file_url, LOCAL_TIMEOUT_S)
    source.open()
    frames = [source.read() for _ in range(CLIP_FRAMES)]

    assert [frame_number(f.image) for f in frames if f is not None] == list(range(CLIP_FRAMES))
    with pytest.raises(SourceError, match=r"stream http://127\.0\.0\.1:\d+/clip\.avi: no frame"):
        source.read()
    source.close()


def test_refused_connection_names_the_url_and_is_told_from_a_timeout() -> None:
    # A refusal within milliseconds was reported as "cannot open it within 10 s".
    url = f"rtsp://127.0.0.1:{free_port()}/live"

    with pytest.raises(
        SourceError,
        match=rf"stream {url}: cannot open it: failed after \d+\.\d s \(connection refused,",
    ):
        stream(url, timeout_s=30.0).open()


def test_silent_server_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/live"

        with pytest.raises(SourceError, match=r"cannot open it within 0.3 s \(host down"):
            stream(url).open()


def test_password_never_appears_in_description_or_errors() -> None:
    url = f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/live"
    source = stream(url)

    assert source.description.startswith("stream rtsp://admin:***@127.0.0.1:")
    with pytest.raises(SourceError) as caught:
        source.open()
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://u:p@cam.local:554/s?x=1", "rtsp://u:***@cam.local:554/s?x=1"),
        ("rtsp://cam.local/s", "rtsp://cam.local/s"),
        ("http://u@cam.local/s", "http://u@cam.local/s"),
        ("rtsp://u:p@[::1]:8554/s", "rtsp://u:***@[::1]:8554/s"),
        # Cameras that take credentials in the query (and the web view's token).
        (
            "rtsp://cam/live?user=admin&password=s3cret&channel=1",
            "rtsp://cam/live?user=admin&password=***&channel=1",
        ),
        ("http://cam/stream.mjpeg?token=abc", "http://cam/stream.mjpeg?token=***"),
        # Passwords with `/`, `?`, `#` or `@` unescaped: the parsed host part ends early.
        ("rtsp://admin:1234/56@cam/live", "rtsp://admin:***@cam/live"),
        ("rtsp://admin:pa/ss@cam:554/live", "rtsp://admin:***@cam:554/live"),
        ("rtsp://admin:p?w@cam/live", "rtsp://admin:***@cam/live"),
        ("rtsp://admin:p#w@cam/live", "rtsp://admin:***@cam/live"),
        ("rtsp://admin:p@w/x@cam/live", "rtsp://admin:***@cam/live"),
        ("rtsp://cam:554/live", "rtsp://cam:554/live"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_timeouts_become_millisecond_open_params() -> None:
    import cv2

    assert timeout_params(1.5, 0.25) == [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        1500,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        250,
    ]
