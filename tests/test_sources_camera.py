"""Cameras: errors that name the device and list the devices present; FOURCC conversions."""

from __future__ import annotations

from pathlib import Path

import pytest

from siamedge.errors import SourceError
from siamedge.sources.camera import CameraSource, list_video_devices
from siamedge.sources.videocapture import fourcc_code, fourcc_text


def fake_dev_dir(tmp_path: Path, names: list[str]) -> Path:
    dev = tmp_path / "dev"
    dev.mkdir()
    for name in names:
        (dev / name).write_bytes(b"")
    return dev


def test_missing_index_names_the_device_and_lists_present_ones(tmp_path: Path) -> None:
    dev = fake_dev_dir(tmp_path, ["video10", "video2", "video0", "videoX", "null"])
    source = CameraSource("97", dev_dir=dev)

    with pytest.raises(SourceError) as caught:
        source.open()
    message = str(caught.value)
    assert "camera '97'" in message
    assert f"{dev / 'video97'} does not exist" in message
    assert f"present: {dev / 'video0'}, {dev / 'video2'}, {dev / 'video10'}" in message


def test_missing_index_on_the_real_dev_names_it() -> None:
    present = list_video_devices()
    if str(Path("/dev/video97")) in present:
        pytest.fail("this machine really has /dev/video97; pick another index for the test")

    with pytest.raises(SourceError, match=r"camera '97': /dev/video97 does not exist"):
        CameraSource("97").open()


def test_missing_path_says_no_devices_when_there_are_none(tmp_path: Path) -> None:
    dev = fake_dev_dir(tmp_path, [])

    with pytest.raises(SourceError, match=r"does not exist; no .*video\* devices are present"):
        CameraSource(str(dev / "video3"), dev_dir=dev).open()


def test_a_node_that_is_a_file_or_folder_is_named_as_such(tmp_path: Path) -> None:
    # It said "busy, not a capture device, or no permission": three guesses for one fact.
    dev = fake_dev_dir(tmp_path, ["video0"])
    (dev / "video1").mkdir()
    source = CameraSource("0", dev_dir=dev)

    with pytest.raises(SourceError, match=r"video0 is a regular file, not a video device; "):
        source.open()
    assert source.mode is None
    source.close()
    with pytest.raises(SourceError, match=r"video1 is a folder, not a video device; "):
        CameraSource("1", dev_dir=dev).open()


def test_a_character_device_that_is_not_a_camera_cannot_be_opened() -> None:
    source = CameraSource("/dev/null")

    with pytest.raises(SourceError, match=r"/dev/null exists but cannot be opened \(busy, not a"):
        source.open()
    source.close()


def test_device_text_must_be_an_index_or_a_path() -> None:
    with pytest.raises(SourceError, match="camera 'webcam'"):
        CameraSource("webcam")


def test_description_names_the_node(tmp_path: Path) -> None:
    assert CameraSource("2", dev_dir=tmp_path).description == f"camera {tmp_path / 'video2'}"
    assert CameraSource("/dev/video5").description == "camera /dev/video5"


def test_fourcc_round_trip() -> None:
    assert fourcc_text(float(fourcc_code("MJPG"))) == "MJPG"
    assert fourcc_text(float(fourcc_code("YUYV"))) == "YUYV"
    assert fourcc_text(0.0) == ""


def test_bad_fourcc_is_rejected() -> None:
    with pytest.raises(SourceError, match="FOURCC must be 4 characters, got 'MJPEG'"):
        CameraSource("0", fourcc="MJPEG")
