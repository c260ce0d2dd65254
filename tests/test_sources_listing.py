"""`siamedge sources` and siamedge.sources.v4l2: v4l2-ctl output parsed (the text a UVC camera
gives, as v4l-utils prints it, new and old layouts), devices listed in number order with clear
per-device errors, and a clear message, exit 0, where no camera exists (this machine)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from siamedge.cli import EX_FAILURE, main
from siamedge.sources.camera import DEV_DIR, list_video_devices
from siamedge.sources.v4l2 import (
    FrameSize,
    ListingMethod,
    PixelFormat,
    VideoDevice,
    device_report,
    list_devices,
    parse_card_name,
    parse_formats,
)

UVC_FPS = (30.0, 24.0, 20.0, 15.0, 10.0, 7.5, 5.0)
# `v4l2-ctl -d /dev/video0 --info --list-formats-ext` (v4l-utils 1.22) for a Logitech C920:
# raw YUYV reaches 30 fps only at 640x480, MJPG gives 1080p30.
C920_OUTPUT = """\
Driver Info:
\tDriver name      : uvcvideo
\tCard type        : HD Pro Webcam C920
\tBus info         : usb-0000:00:14.0-2
\tDriver version   : 6.1.99
\tCapabilities     : 0x84a00001
\t\tVideo Capture
\t\tMetadata Capture
\t\tStreaming
\t\tExtended Pix Format
\t\tDevice Capabilities
\tDevice Caps      : 0x04200001
\t\tVideo Capture
\t\tStreaming
\t\tExtended Pix Format
Media Driver Info:
\tDriver name      : uvcvideo
\tModel            : HD Pro Webcam C920
\tSerial           : 8B2A3C4F
\tBus info         : usb-0000:00:14.0-2
\tMedia version    : 6.1.99
\tHardware revision: 0x00000011 (17)
\tDriver version   : 6.1.99
Interface Info:
\tID               : 0x03000002
\tType             : V4L Video
Entity Info:
\tID               : 0x00000001 (1)
\tName             : HD Pro Webcam C920
\tFunction         : V4L2 I/O
\tFlags            : default
\tPad 0x01000007   : 0: Sink
\t  Link 0x0200001f: from remote pad 0x100000a of entity 'Processing 3' (Video Pixel \
Formatter): Data, Enabled, Immutable
ioctl: VIDIOC_ENUM_FMT
\tType: Video Capture

\t[0]: 'YUYV' (YUYV 4:2:2)
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\t\tInterval: Discrete 0.042s (24.000 fps)
\t\t\tInterval: Discrete 0.050s (20.000 fps)
\t\t\tInterval: Discrete 0.067s (15.000 fps)
\t\t\tInterval: Discrete 0.100s (10.000 fps)
\t\t\tInterval: Discrete 0.133s (7.500 fps)
\t\t\tInterval: Discrete 0.200s (5.000 fps)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.100s (10.000 fps)
\t\t\tInterval: Discrete 0.133s (7.500 fps)
\t\t\tInterval: Discrete 0.200s (5.000 fps)
\t\tSize: Discrete 1920x1080
\t\t\tInterval: Discrete 0.200s (5.000 fps)
\t[1]: 'MJPG' (Motion-JPEG, compressed)
\t\tSize: Discrete 1920x1080
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\t\tInterval: Discrete 0.042s (24.000 fps)
\t\t\tInterval: Discrete 0.050s (20.000 fps)
\t\t\tInterval: Discrete 0.067s (15.000 fps)
\t\t\tInterval: Discrete 0.100s (10.000 fps)
\t\t\tInterval: Discrete 0.133s (7.500 fps)
\t\t\tInterval: Discrete 0.200s (5.000 fps)
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\t\tInterval: Discrete 0.042s (24.000 fps)
\t\t\tInterval: Discrete 0.050s (20.000 fps)
\t\t\tInterval: Discrete 0.067s (15.000 fps)
\t\t\tInterval: Discrete 0.100s (10.000 fps)
\t\t\tInterval: Discrete 0.133s (7.500 fps)
\t\t\tInterval: Discrete 0.200s (5.000 fps)
"""
C920_FORMATS = (
    PixelFormat(
        "YUYV",
        "YUYV 4:2:2",
        (
            FrameSize(640, 480, UVC_FPS),
            FrameSize(1280, 720, (10.0, 7.5, 5.0)),
            FrameSize(1920, 1080, (5.0,)),
        ),
    ),
    PixelFormat(
        "MJPG",
        "Motion-JPEG, compressed",
        (FrameSize(1920, 1080, UVC_FPS), FrameSize(1280, 720, UVC_FPS)),
    ),
)
# The same kind of camera under v4l-utils 1.14 (Ubuntu 18.04, JetPack 4), `--list-formats-ext`.
OLD_LAYOUT_OUTPUT = """\
ioctl: VIDIOC_ENUM_FMT
\tIndex       : 0
\tType        : Video Capture
\tPixel Format: 'MJPG' (compressed)
\tName        : Motion-JPEG
\t\tSize: Discrete 1280x720
\t\t\tInterval: Discrete 0.033s (30.000 fps)
\t\t\tInterval: Discrete 0.067s (15.000 fps)

\tIndex       : 1
\tType        : Video Capture
\tPixel Format: 'YUYV'
\tName        : YUYV 4:2:2
\t\tSize: Discrete 640x480
\t\t\tInterval: Discrete 0.033s (30.000 fps)

"""
# A driver with size and rate ranges (v4l2loopback, many CSI bridges), v4l-utils 1.22.
STEPWISE_OUTPUT = """\
ioctl: VIDIOC_ENUM_FMT
\tType: Video Capture

\t[0]: 'UYVY' (UYVY 4:2:2)
\t\tSize: Stepwise 16x16 - 1920x1080 with step 2/2
\t\t\tInterval: Continuous 0.033s - 1.000s (1.000-30.000 fps)
\t[1]: 'GREY' (8-bit Greyscale)
\t\tSize: Continuous 1x1 - 640x480
"""
# The second node a UVC camera creates (metadata): no capture formats.
METADATA_NODE_OUTPUT = "ioctl: VIDIOC_ENUM_FMT\n\tType: Video Capture\n\n"


def test_parse_a_uvc_cameras_formats() -> None:
    assert parse_formats(C920_OUTPUT) == C920_FORMATS
    assert parse_card_name(C920_OUTPUT) == "HD Pro Webcam C920"


def test_parse_the_old_v4l_utils_layout() -> None:
    assert parse_formats(OLD_LAYOUT_OUTPUT) == (
        PixelFormat("MJPG", "Motion-JPEG, compressed", (FrameSize(1280, 720, (30.0, 15.0)),)),
        PixelFormat("YUYV", "YUYV 4:2:2", (FrameSize(640, 480, (30.0,)),)),
    )
    assert parse_card_name(OLD_LAYOUT_OUTPUT) is None


def test_parse_size_and_rate_ranges() -> None:
    formats = parse_formats(STEPWISE_OUTPUT)

    assert [str(size) for size in formats[0].sizes] == [
        "Stepwise 16x16 - 1920x1080 with step 2/2: Continuous 0.033s - 1.000s (1.000-30.000 fps)"
    ]
    assert [str(size) for size in formats[1].sizes] == ["Continuous 1x1 - 640x480"]


def test_a_metadata_node_has_no_formats() -> None:
    assert parse_formats(METADATA_NODE_OUTPUT) == ()
    assert parse_formats("") == ()


def test_device_report_lines() -> None:
    device = VideoDevice("/dev/video0", "HD Pro Webcam C920", C920_FORMATS, "v4l2-ctl")

    lines = device_report(device)

    assert lines[:3] == [
        "/dev/video0: HD Pro Webcam C920 (by v4l2-ctl)",
        "  YUYV (YUYV 4:2:2)",
        "    640x480: 30, 24, 20, 15, 10, 7.5, 5 fps",
    ]
    assert "  MJPG (Motion-JPEG, compressed)" in lines
    assert "    1920x1080: 30, 24, 20, 15, 10, 7.5, 5 fps" in lines
    assert device_report(VideoDevice("/dev/video1", None, (), "v4l2-ctl")) == [
        "/dev/video1: (by v4l2-ctl)",
        "  no capture formats (e.g. the metadata node of a USB camera)",
    ]


def test_no_camera_on_this_machine_is_a_clear_message_and_exit_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if list_video_devices(DEV_DIR):
        pytest.skip("this machine has /dev/video* devices; the empty case is tested with --dev-dir")

    assert main(["sources"]) == 0
    assert capsys.readouterr().out == (
        "no /dev/video* devices: no camera is connected (or visible here)\n"
    )


@pytest.mark.parametrize("probe", ["auto", "opencv"])
def test_an_empty_device_folder_is_a_clear_message_and_exit_0(
    probe: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sources", "--dev-dir", str(tmp_path), "--probe", probe]) == 0
    assert capsys.readouterr().out == (
        f"no {tmp_path}/video* devices: no camera is connected (or visible here)\n"
    )


def test_a_device_folder_that_is_not_there_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nothing"
    assert main(["sources", "--dev-dir", str(missing)]) == 1
    assert capsys.readouterr().err == f"siamedge: error: --dev-dir {missing} is not a folder\n"


@pytest.fixture
def not_devices(tmp_path: Path) -> Path:
    """video0, video2, video10 as plain files (and videoX, not a device name)."""
    for name in ("video10", "video0", "videoX", "video2"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


@pytest.mark.parametrize("method", ["v4l2-ctl", "opencv"])
def test_nodes_that_are_no_cameras_are_listed_in_order_with_the_reason(
    method: ListingMethod, not_devices: Path
) -> None:
    if method == "v4l2-ctl" and shutil.which("v4l2-ctl") is None:
        pytest.skip("v4l2-ctl is not installed (apt install v4l-utils; scripts/test.sh does)")

    devices = list_devices(not_devices, method)

    assert [device.path for device in devices] == [
        str(not_devices / name) for name in ("video0", "video2", "video10")
    ]
    for device in devices:
        assert device.method == method and device.formats == ()
        assert device.error, device


def test_v4l2_ctl_output_is_parsed_per_device(
    not_devices: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A v4l2-ctl that answers for /.../video0 as the C920 does and for the others as the
    # metadata node does, so the listing runs its real subprocess call and parser end to end.
    bin_dir = tmp_path_factory.mktemp("bin")
    samples = tmp_path_factory.mktemp("samples")
    (samples / "video0").write_text(C920_OUTPUT, encoding="utf-8")
    fake = bin_dir / "v4l2-ctl"
    fake.write_text(
        "#!/bin/sh\n"
        '[ "$1" = -d ] || exit 2\n'
        f'if [ "$2" = "{not_devices}/video0" ]; then cat "{samples}/video0"; '
        f"else printf '{METADATA_NODE_OUTPUT.encode('unicode_escape').decode()}'; fi\n",
        encoding="utf-8",
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    assert main(["sources", "--dev-dir", str(not_devices)]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{not_devices}/video0: HD Pro Webcam C920 (by v4l2-ctl)"
    assert "    1920x1080: 30, 24, 20, 15, 10, 7.5, 5 fps" in out
    assert out[-5:-1] == [
        f"{not_devices}/video2: (by v4l2-ctl)",
        "  no capture formats (e.g. the metadata node of a USB camera)",
        f"{not_devices}/video10: (by v4l2-ctl)",
        "  no capture formats (e.g. the metadata node of a USB camera)",
    ]
    assert out[-1].startswith("set source.uri to the device")


def test_asking_for_v4l2_ctl_where_it_is_missing_names_the_package(
    not_devices: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("empty-bin")))

    assert main(["sources", "--dev-dir", str(not_devices), "--probe", "v4l2-ctl"]) == EX_FAILURE
    assert "apt install v4l-utils" in capsys.readouterr().err
