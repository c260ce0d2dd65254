"""The clock stamp: exact round trip, through lossy codecs, and refusal of damaged stamps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from siamedge.sources.clock_stamp import STAMP_PX, Stamp, burn_stamp, read_stamp, stamped_frame

NOW_S = 1_795_000_000.123


def test_round_trip_keeps_the_millisecond_and_the_frame_number() -> None:
    image = stamped_frame(320, 240, NOW_S, 70_000)

    assert read_stamp(image) == Stamp(unix_s=1_795_000_000.123, index=70_000 % 65_536)


def test_grey_images_are_stamped_too() -> None:
    image = np.zeros((STAMP_PX, STAMP_PX), dtype=np.uint8)
    burn_stamp(image, NOW_S, 5)

    assert read_stamp(image) == Stamp(1_795_000_000.123, 5)


@pytest.mark.parametrize("quality", [30, 75])
def test_survives_jpeg(quality: int) -> None:
    image = stamped_frame(640, 480, NOW_S, 12)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)

    assert read_stamp(decoded) == Stamp(1_795_000_000.123, 12)


def test_survives_a_video_codec(tmp_path: Path) -> None:
    path = tmp_path / "stamped.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (320, 240))
    for index in range(5):
        writer.write(stamped_frame(320, 240, NOW_S + index / 25.0, index))
    writer.release()
    capture = cv2.VideoCapture(str(path))
    read = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        read.append(read_stamp(image))
    capture.release()

    assert read == [Stamp(round(NOW_S + index / 25.0, 3), index) for index in range(5)]


def test_an_unstamped_or_damaged_frame_reads_as_none() -> None:
    image = stamped_frame(320, 240, NOW_S, 3)
    damaged = image.copy()
    damaged[:16, :16] = 255 - damaged[:16, :16]  # flip the first bit

    assert read_stamp(np.full((240, 320, 3), 128, dtype=np.uint8)) is None
    assert read_stamp(damaged) is None
    assert read_stamp(image[:100, :100]) is None


def test_a_frame_too_small_for_a_stamp_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 128x128"):
        burn_stamp(np.zeros((100, 300, 3), dtype=np.uint8), NOW_S, 0)
