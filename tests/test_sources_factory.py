"""The factory: kind inference from the uri, the source each kind gets, playback rates."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.media import FOLDER_IMAGES, frame_number, write_video

from siamedge.cli import EX_CONFIG
from siamedge.config import SourceSettings, settings_from_mapping
from siamedge.errors import ConfigError, SourceError
from siamedge.sources.camera import CameraSource
from siamedge.sources.capture import SourceState
from siamedge.sources.factory import (
    FALLBACK_PLAYBACK_FPS,
    create_capture,
    create_source,
    infer_kind,
    playback_fps,
    with_camera_password,
)
from siamedge.sources.file import VideoFileSource
from siamedge.sources.gstreamer import GStreamerSource
from siamedge.sources.http_get import open_get
from siamedge.sources.images import ImageFolderSource
from siamedge.sources.redact import redact_url
from siamedge.sources.stream import StreamSource

WAIT_S = 5.0
RUN_TIMEOUT_S = 60.0


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("synthetic", "synthetic"),
        (" Synthetic ", "synthetic"),
        ("0", "camera"),
        ("12", "camera"),
        ("/dev/video3", "camera"),
        ("rtsp://admin:pw@10.0.0.2:554/stream1", "stream"),
        ("rtsp://user:pw@cam/path", "stream"),
        ("rtsp://[::1]:8554/live", "stream"),
        ("udp://@:5000", "stream"),  # listening: a port without a host
        ("srt://:9000?mode=listener", "stream"),
        ("udp://239.0.0.1:1234", "stream"),
        ("RTSPS://cam.local/live", "stream"),
        ("rtmp://server/app/key", "stream"),
        ("http://127.0.0.1:8080/video.mjpg", "stream"),
        ("http://127.0.0.1:8080/stream.mjpg", "stream"),
        ("https://example.org/clip.mp4", "stream"),
        ("videotestsrc ! videoconvert ! appsink", "gstreamer"),
        (
            "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1920,height=1080 ! "
            "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! appsink drop=true",
            "gstreamer",
        ),
        ("v4l2src device=/dev/video0 ! videoconvert ! appsink", "gstreamer"),
        ("not-yet-recorded.mp4", "file"),
        ("/data/clips/walk.MKV", "file"),
    ],
)
def test_infer_kind(uri: str, kind: str) -> None:
    assert infer_kind(uri) == kind


def test_existing_folder_is_images_and_existing_file_is_a_file(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.avi", 2).rename(tmp_path / "clip_without_suffix")

    assert infer_kind(str(tmp_path)) == "images"
    assert infer_kind(str(clip)) == "file"


@pytest.mark.parametrize("uri", ["no-such-thing", "", "   "])
def test_unknown_uri_is_an_error_naming_it(uri: str) -> None:
    with pytest.raises(SourceError, match=f"source uri '{uri.strip()}': cannot tell what it is"):
        infer_kind(uri)


def test_unsupported_scheme_is_an_error_naming_it() -> None:
    with pytest.raises(SourceError, match=r"'ftp://u:\*\*\*@host/x': unsupported URL scheme 'ftp'"):
        infer_kind("ftp://u:secret@host/x")


def test_each_kind_gets_its_source(tmp_path: Path, image_folder: Path, video_file: Path) -> None:
    def source_for(uri: str, **extra: object) -> object:
        return create_source(SourceSettings.model_validate({"uri": uri, **extra}))

    camera = source_for("/dev/video7", width=1280, height=720, fps=30, fourcc="MJPG")
    assert isinstance(camera, CameraSource)
    assert camera.description == "camera /dev/video7"
    assert isinstance(source_for("videotestsrc ! appsink"), GStreamerSource)
    assert isinstance(source_for("rtsp://cam/live"), StreamSource)
    assert isinstance(source_for(str(video_file)), VideoFileSource)
    assert isinstance(source_for(str(image_folder)), ImageFolderSource)


def test_explicit_kind_wins_over_inference(tmp_path: Path) -> None:
    settings = SourceSettings(kind="file", uri="0")
    source = create_source(settings)

    assert isinstance(source, VideoFileSource)
    with pytest.raises(SourceError, match="file 0: no such file"):
        source.open()


def test_loop_setting_reaches_the_source(image_folder: Path) -> None:
    once = create_source(SourceSettings(uri=str(image_folder), loop=False))
    once.open()
    numbers = []
    while (frame := once.read()) is not None:
        numbers.append(frame_number(frame.image))

    assert numbers == [0, 1, 2, 3, 4]


def test_playback_rates(tmp_path: Path, image_folder: Path) -> None:
    clip = write_video(tmp_path / "ten.avi", 2, fps=10.0)

    assert playback_fps(SourceSettings(uri="0", fps=30)) is None
    assert playback_fps(SourceSettings(uri="rtsp://cam/live")) is None
    assert playback_fps(SourceSettings(uri=str(image_folder))) == FALLBACK_PLAYBACK_FPS
    assert playback_fps(SourceSettings(uri=str(image_folder), fps=12.5)) == 12.5
    assert playback_fps(SourceSettings(uri="synthetic")) == FALLBACK_PLAYBACK_FPS
    assert playback_fps(SourceSettings(uri=str(clip))) == pytest.approx(10.0)
    assert playback_fps(SourceSettings(uri=str(clip), fps=5)) == 5
    assert playback_fps(SourceSettings(uri=str(tmp_path / "gone.mp4"))) == FALLBACK_PLAYBACK_FPS


def test_create_capture_runs_the_source(image_folder: Path) -> None:
    states: list[SourceState] = []
    settings = SourceSettings(uri=str(image_folder), fps=200.0, reopen_min_s=0.01)
    capture = create_capture(settings, on_state=lambda status: states.append(status.state))

    assert not capture.is_alive()
    capture.start()
    frame = capture.get(timeout=WAIT_S)
    assert capture.stop()

    assert frame is not None
    assert frame_number(frame.image) == frame.index % FOLDER_IMAGES  # looped folder, in order
    assert states[:2] == [SourceState.STARTING, SourceState.STREAMING]
    assert states[-1] is SourceState.STOPPED


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        (
            "http://",
            "no host in the URL: name the server to read from, e.g. http://192.168.1.20/stream",
        ),
        (
            "rtsp://",
            "no host in the URL: name the server to read from, e.g. rtsp://192.168.1.20/stream",
        ),
        (
            " RTSPS:///live ",
            "no host in the URL: name the server to read from, e.g. rtsps://192.168.1.20/stream",
        ),
        (
            "http://:8080/x",
            "no host in the URL: name the server to read from, e.g. http://192.168.1.20/stream",
        ),
        (
            "rtmp:///app/key",
            "no host in the URL: name the server to read from, e.g. rtmp://192.168.1.20/stream",
        ),
        (
            "udp://",
            "no host and no port in the URL: name a server, or a port to listen on, e.g. "
            "udp://192.168.1.20:5000 or udp://@:5000",
        ),
    ],
)
def test_a_stream_url_without_a_host_is_an_error_naming_it(uri: str, problem: str) -> None:
    # Accepted, these were reopened with backoff for ever: no retry can find a host.
    with pytest.raises(SourceError) as raised:
        infer_kind(uri)
    assert str(raised.value) == f"source uri {uri.strip()!r}: {problem}"


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        # http.client raised InvalidURL quoting the request target, token included
        (
            "http://cam/video.mjpg?token=s3cret now",
            "a space or a control character in the path or query (percent-encode it: %20)",
        ),
        ("http://cam era/video.mjpg", "a space or a control character in the host"),
        # the resolver's UnicodeError escaped as "unexpected UnicodeError" at every reopen
        (
            "https://cam..local/video.mjpg",
            "not a valid host name (an empty label, or one over 63 characters): 'cam..local'",
        ),
    ],
)
def test_an_http_url_that_cannot_be_requested_is_an_error_without_its_secret(
    uri: str, problem: str
) -> None:
    with pytest.raises(SourceError) as raised:
        infer_kind(uri)
    assert str(raised.value) == f"source uri {redact_url(uri)!r}: {problem}"
    assert "s3cret" not in str(raised.value)
    with pytest.raises(SourceError) as opening:  # and the reader itself, should one be made
        open_get(uri, timeout_s=1.0, accept="*/*", description="mjpeg cam")
    assert str(opening.value) == f"mjpeg cam: {problem}"


@pytest.mark.parametrize("kind", ["stream", "mjpeg"])
def test_an_explicit_stream_kind_needs_a_host_too(kind: str) -> None:
    with pytest.raises(SourceError, match=r"^source uri 'https://u:\*\*\*@/cam': no host in"):
        create_source(SourceSettings.model_validate({"kind": kind, "uri": "https://u:pw@/cam"}))


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        (
            "http://",
            "no host in the URL: name the server to read from, e.g. http://192.168.1.20/stream",
        ),
        ("rtsp://cam:99999/live", "not a valid URL: Port out of range 0-65535"),
    ],
)
def test_the_daemon_refuses_a_stream_url_it_cannot_read_with_exit_78(
    tmp_path: Path, uri: str, problem: str
) -> None:
    # A process of its own: the daemon installs signal handlers. The broker port is closed.
    # Both were retried for ever.
    config = tmp_path / "siamedge.yaml"
    config.write_text(f"source:\n  uri: {uri}\nmqtt:\n  port: 9\n", encoding="utf-8")

    done = subprocess.run(
        [sys.executable, "-m", "siamedge.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )

    assert done.returncode == EX_CONFIG, done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"siamedge: configuration error: {config}: source.uri: source uri {uri!r}: {problem}"
    )


def test_the_camera_password_comes_from_its_file_into_the_uri(tmp_path: Path) -> None:
    password_file = tmp_path / "camera-password"
    password_file.write_text("p@ss/w#rd:1 \n", encoding="utf-8")  # as an editor leaves it
    uri = "rtsp://admin@192.168.1.20:554/stream1"
    stream = SourceSettings(kind="stream", uri=uri, password_file=str(password_file))
    assert with_camera_password(stream).uri == (
        "rtsp://admin:p%40ss%2Fw%23rd%3A1%20@192.168.1.20:554/stream1"
    )
    assert "p%40ss" not in create_source(stream).description
    rtsp = create_source(SourceSettings(kind="rtsp", uri=uri, password_file=str(password_file)))
    assert isinstance(rtsp, GStreamerSource)
    assert 'user-id="admin" user-pw="p@ss/w#rd:1 "' in rtsp.pipeline
    assert "p@ss" not in rtsp.description


def test_the_camera_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIAMEDGE_TEST_CAMERA_PASSWORD", "s3cret")
    settings = SourceSettings(
        uri="http://viewer@cam.local/video.mjpg", password_env="SIAMEDGE_TEST_CAMERA_PASSWORD"
    )
    assert with_camera_password(settings).uri == "http://viewer:s3cret@cam.local/video.mjpg"
    assert settings.uri == "http://viewer@cam.local/video.mjpg"  # the settings stay as read


def test_an_unreadable_camera_password_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    settings = SourceSettings(uri="rtsp://admin@cam/x", password_file=str(missing))
    with pytest.raises(ConfigError, match=rf"^source.password_file: cannot read {missing}: "):
        create_source(settings)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"uri": "rtsp://cam/x", "password_file": "/p"},
            "source.password_file needs source.uri to be a camera URL naming the user",
        ),
        (
            {"uri": "rtsp://admin:0ldS3cret@cam/x", "password_file": "/p"},
            "source.password_file is set and source.uri holds a password too",
        ),
        (
            {"uri": "0", "kind": "camera", "password_env": "P"},
            "source.password_env needs source.uri to be a camera URL naming the user",
        ),
        (
            {"uri": "rtsp://admin@cam/x", "kind": "gstreamer", "password_file": "/p"},
            "source.password_file needs source.uri to be a camera URL",
        ),
        (
            {"uri": "rtsp://admin@cam/x", "password_file": "/p", "password_env": "P"},
            "set source.password_file or source.password_env, not both",
        ),
    ],
)
def test_a_camera_password_needs_a_url_naming_its_user(
    values: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as raised:
        settings_from_mapping({"source": values}, "test.yaml")
    assert "0ldS3cret" not in str(raised.value)
