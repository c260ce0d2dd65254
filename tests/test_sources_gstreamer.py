"""GStreamer: the pipeline check, and a clear error when this OpenCV has no GStreamer."""

from __future__ import annotations

import re

import cv2
import pytest

from siamedge.errors import SourceError
from siamedge.sources.gstreamer import GStreamerSource, ends_in_appsink, gstreamer_available

TEST_PIPELINE = (
    "videotestsrc num-buffers=3 ! video/x-raw,width=64,height=48 ! videoconvert ! appsink"
)


def test_availability_agrees_with_the_build_information() -> None:
    built = re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()) is not None
    assert gstreamer_available() == (built or cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER))


def test_pipeline_opens_or_the_error_explains_the_missing_gstreamer() -> None:
    source = GStreamerSource(TEST_PIPELINE)
    if gstreamer_available():
        source.open()
        frame = source.read()
        source.close()
        assert frame is not None and frame.size_wh == (64, 48)
        return
    with pytest.raises(SourceError) as caught:
        source.open()
    message = str(caught.value)
    assert "videotestsrc" in message
    assert "built without GStreamer" in message
    assert cv2.__version__ in message
    assert "python3-opencv" in message
    assert "--system-site-packages" in message
    assert "pip uninstall opencv-python-headless" in message


@pytest.mark.parametrize(
    ("pipeline", "expected"),
    [
        ("videotestsrc ! appsink", True),
        ("v4l2src ! videoconvert ! appsink drop=true max-buffers=1 ", True),
        ("videotestsrc ! autovideosink", False),
        ("videotestsrc ! appsink ! fakesink", False),
        ("", False),
    ],
)
def test_ends_in_appsink(pipeline: str, expected: bool) -> None:
    assert ends_in_appsink(pipeline) is expected


def test_pipeline_without_appsink_is_rejected_when_the_source_is_made() -> None:
    # At open() it was retried for ever; made at start-up, it stops the daemon (exit 78).
    with pytest.raises(SourceError, match=r"`videotestsrc ! autovideosink`: .*end in `appsink`"):
        GStreamerSource("videotestsrc ! autovideosink")


def test_whitespace_of_yaml_folded_pipelines_is_normalised() -> None:
    source = GStreamerSource("videotestsrc !\n   videoconvert !\n appsink\n")

    assert source.pipeline == "videotestsrc ! videoconvert ! appsink"
