"""Image folders: name order, looping and relisting, skipping a bad file (logged once) without a
reopen, played-once memory, and errors naming the folder or the bad file."""

from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures.media import FOLDER_IMAGES, frame_image, frame_number, write_images
from fixtures.waiting import wait_until

from siamedge.config import SourceSettings
from siamedge.errors import SourceError
from siamedge.sources.base import Frame
from siamedge.sources.capture import CaptureThread, SourceState, SourceStatus
from siamedge.sources.images import ImageFolderSource

FAST_REOPEN_S = 0.005
UNREADABLE = "cannot read image"
PLAYED_AGAIN = r"played to the end \(loop: false\); played again when it changes"


def read_n(source: ImageFolderSource, count: int) -> list[Frame | None]:
    return [source.read() for _ in range(count)]


def test_plays_images_in_name_order_then_none(tmp_path: Path) -> None:
    folder = tmp_path / "shuffled"
    write_images(folder, [3, 0, 2])
    write_images(folder, [1], suffix=".JPG")
    (folder / "notes.txt").write_text("not an image")
    source = ImageFolderSource(folder, loop=False)
    source.open()
    names = [path.name for path in source.files]
    frames = read_n(source, 5)
    source.close()

    assert names == ["frame_000.png", "frame_001.JPG", "frame_002.png", "frame_003.png"]
    assert frames[4] is None
    real = [f for f in frames if f is not None]
    assert [frame_number(f.image) for f in real] == [0, 1, 2, 3]
    assert [f.index for f in real] == [0, 1, 2, 3]
    assert all(f.image.dtype == np.uint8 and f.image.shape == (48, 64, 3) for f in real)


def test_unpadded_frame_numbers_play_in_frame_order(tmp_path: Path) -> None:
    folder = tmp_path / "unpadded"  # what `ffmpeg -i clip.mp4 frames/%d.png` writes
    folder.mkdir()
    for number in range(12):
        assert cv2.imwrite(str(folder / f"{number}.png"), frame_image(number))
    source = ImageFolderSource(folder, loop=False)
    source.open()
    names = [path.name for path in source.files]
    frames = read_n(source, 12)
    source.close()

    assert names[:4] == ["0.png", "1.png", "2.png", "3.png"]
    assert [frame_number(f.image) for f in frames if f is not None] == list(range(12))


def test_listing_is_by_file_name(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=False)
    source.open()

    assert [path.name for path in source.files] == [
        f"frame_{n:03d}.png" for n in range(FOLDER_IMAGES)
    ]


def test_loop_wraps_and_indices_keep_counting(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=True)
    source.open()
    frames = read_n(source, FOLDER_IMAGES + 2)

    assert [frame_number(f.image) for f in frames if f is not None] == [0, 1, 2, 3, 4, 0, 1]
    assert [f.index for f in frames if f is not None] == list(range(FOLDER_IMAGES + 2))


def test_grey_png_becomes_three_channel_bgr(tmp_path: Path) -> None:
    folder = tmp_path / "grey"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), frame_image(2)[:, :, 0])
    source = ImageFolderSource(folder, loop=False)
    source.open()
    frame = source.read()

    assert frame is not None
    assert frame.image.shape == (48, 64, 3)
    assert frame_number(frame.image) == 2


def test_empty_folder_names_the_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here")

    with pytest.raises(SourceError, match=r"empty: no images \(\.jpg"):
        ImageFolderSource(empty, loop=True).open()


def test_missing_folder_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="absent: no such folder"):
        ImageFolderSource(tmp_path / "absent", loop=True).open()


def test_a_file_is_not_a_folder(tmp_path: Path) -> None:
    path = tmp_path / "file.png"
    path.write_bytes(b"x")

    with pytest.raises(SourceError, match=r"file\.png: not a folder"):
        ImageFolderSource(path, loop=True).open()


def warnings_about(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The warnings the folder source logged about the image `name` being unreadable."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "siamedge.sources.images"
        and record.levelno == logging.WARNING
        and UNREADABLE in record.getMessage()
        and name in record.getMessage()
    ]


def test_an_unreadable_image_is_skipped_and_logged_naming_the_file(
    image_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (image_folder / "frame_002.png").write_bytes(b"definitely not a PNG")
    source = ImageFolderSource(image_folder, loop=False)
    source.open()
    frames = read_n(source, 5)

    assert frames[4] is None
    real = [f for f in frames if f is not None]
    assert [frame_number(f.image) for f in real] == [0, 1, 3, 4]
    # The skipped image keeps its index, so `track` output lines up with the file names.
    assert [f.index for f in real] == [0, 1, 3, 4]
    assert len(warnings_about(caplog, f"{image_folder / 'frame_002.png'}")) == 1


def test_image_deleted_after_listing_is_skipped_and_logged(
    image_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = ImageFolderSource(image_folder, loop=False)
    source.open()
    (image_folder / "frame_000.png").unlink()
    frame = source.read()

    assert frame is not None and frame_number(frame.image) == 1
    assert len(warnings_about(caplog, "frame_000.png")) == 1


def test_read_before_open_is_an_error(image_folder: Path) -> None:
    with pytest.raises(SourceError, match=r"read\(\) before open\(\)"):
        ImageFolderSource(image_folder, loop=False).read()


def corrupt(path: Path) -> None:
    path.write_bytes(b"definitely not a PNG")


def numbers_of(frames: list[Frame | None]) -> list[int]:
    return [frame_number(f.image) for f in frames if f is not None]


def play_pass(source: ImageFolderSource, limit: int) -> tuple[list[int], str | None]:
    """open(), read until the end or an error (as the capture thread does), close().

    Returns the frame numbers read and the error message that ended the pass (None: it ended).
    """
    numbers: list[int] = []
    source.open()
    try:
        for _ in range(limit):
            frame = source.read()
            if frame is None:
                return numbers, None
            numbers.append(frame_number(frame.image))
    except SourceError as exc:
        return numbers, str(exc)
    finally:
        source.close()
    return numbers, None


@pytest.mark.parametrize(
    ("bad", "lap"),
    [(0, [1, 2, 3, 4]), (2, [0, 1, 3, 4]), (4, [0, 1, 2, 3])],
    ids=["first", "middle", "last"],
)
def test_a_looped_folder_skips_an_unreadable_image_on_every_lap_and_logs_it_once(
    image_folder: Path, caplog: pytest.LogCaptureFixture, bad: int, lap: list[int]
) -> None:
    corrupt(image_folder / f"frame_{bad:03d}.png")
    source = ImageFolderSource(image_folder, loop=True)
    laps = 4

    numbers, error = play_pass(source, laps * len(lap))
    assert error is None
    assert numbers == lap * laps
    assert len(warnings_about(caplog, f"frame_{bad:03d}.png")) == 1


def test_an_unreadable_last_image_ends_a_single_pass(image_folder: Path) -> None:
    corrupt(image_folder / "frame_004.png")
    source = ImageFolderSource(image_folder, loop=False)

    assert play_pass(source, 10) == ([0, 1, 2, 3], None)
    with pytest.raises(SourceError, match=PLAYED_AGAIN):
        source.open()


def test_a_skipped_image_plays_once_fixed_and_is_logged_again_when_it_breaks_again(
    image_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = image_folder / "frame_002.png"
    corrupt(bad)
    source = ImageFolderSource(image_folder, loop=True)
    source.open()
    numbers = numbers_of(read_n(source, 8))  # two laps
    write_images(image_folder, [2])
    numbers += numbers_of(read_n(source, 5))
    bad.write_bytes(b"broken again, and longer than before")
    numbers += numbers_of(read_n(source, 8))

    assert numbers == [0, 1, 3, 4] * 2 + [0, 1, 2, 3, 4] + [0, 1, 3, 4] * 2
    assert len(warnings_about(caplog, "frame_002.png")) == 2


@pytest.mark.parametrize("loop", [True, False])
def test_a_folder_with_no_readable_image_is_an_error_after_one_try_of_each(
    image_folder: Path, caplog: pytest.LogCaptureFixture, loop: bool
) -> None:
    for path in image_folder.iterdir():
        corrupt(path)
    source = ImageFolderSource(image_folder, loop=loop)

    for _ in range(3):  # as the capture thread reopens it
        numbers, error = play_pass(source, 10)
        assert numbers == []
        assert error == (
            f"images {image_folder}: none of its {FOLDER_IMAGES} images can be read "
            "(missing or corrupt; the last tried: frame_004.png)"
        )
    assert [len(warnings_about(caplog, f"frame_{n:03d}.png")) for n in range(FOLDER_IMAGES)] == [
        1
    ] * FOLDER_IMAGES


def test_the_only_readable_image_going_away_is_an_error_not_a_spin(image_folder: Path) -> None:
    for number in range(1, FOLDER_IMAGES):
        corrupt(image_folder / f"frame_{number:03d}.png")
    source = ImageFolderSource(image_folder, loop=True)
    source.open()
    assert numbers_of(read_n(source, 3)) == [0, 0, 0]
    (image_folder / "frame_000.png").unlink()

    with pytest.raises(SourceError, match=r"none of its 4 images can be read"):
        source.read()


class NumbersRead:
    """A FrameSource that passes an ImageFolderSource through and keeps each frame's number and
    capture time (the consumer may miss frames: the capture thread keeps only the newest)."""

    def __init__(self, source: ImageFolderSource) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._numbers: list[int] = []
        self._times: list[float] = []

    @property
    def description(self) -> str:
        return self._source.description

    @property
    def numbers(self) -> list[int]:
        with self._lock:
            return list(self._numbers)

    @property
    def times(self) -> list[float]:
        """Monotonic capture time of each frame in `numbers`."""
        with self._lock:
            return list(self._times)

    def open(self) -> None:
        self._source.open()

    def read(self) -> Frame | None:
        frame = self._source.read()
        if frame is not None:
            with self._lock:
                self._numbers.append(frame_number(frame.image))
                self._times.append(frame.monotonic)
        return frame

    def close(self) -> None:
        self._source.close()


def test_the_capture_thread_plays_a_folder_with_a_bad_image_once(image_folder: Path) -> None:
    corrupt(image_folder / "frame_002.png")
    reads = NumbersRead(ImageFolderSource(image_folder, loop=False))
    errors: list[str] = []

    def on_state(status: SourceStatus) -> None:
        if status.state is SourceState.RETRYING and status.error is not None:
            errors.append(status.error)

    capture = CaptureThread(
        reads, reopen_min_s=FAST_REOPEN_S, reopen_max_s=FAST_REOPEN_S, on_state=on_state
    )
    capture.start()
    wait_until(lambda: sum("played to the end" in e for e in errors) >= 2, "two refused replays")
    assert capture.stop()

    assert reads.numbers == [0, 1, 3, 4]
    assert errors[0].endswith(": ended")  # the bad image is no failure of the source


LAP_IMAGES = 10
LAP_FPS = 100.0
MAX_GAP_S = 0.25
"""25 frame periods at LAP_FPS: generous for a loaded machine, and half the default
reopen_min_s, the shortest pause a reopen of the folder costs."""


def test_a_short_looping_folder_with_a_bad_image_plays_every_lap_without_a_pause(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Each lap reopened the folder at the bad image, and a lap is shorter than the capture
    # thread's stable-stream time, so the backoff never reset: the pause grew 0.5, 1, 2 ... 30 s.
    folder = tmp_path / "short"
    write_images(folder, list(range(LAP_IMAGES)))
    corrupt(folder / "frame_005.png")
    lap = [n for n in range(LAP_IMAGES) if n != 5]
    laps = 6
    defaults = SourceSettings()
    reads = NumbersRead(ImageFolderSource(folder, loop=True))
    recorder: list[SourceStatus] = []
    capture = CaptureThread(
        reads,
        reopen_min_s=defaults.reopen_min_s,
        reopen_max_s=defaults.reopen_max_s,
        pace_fps=LAP_FPS,
        on_state=recorder.append,
    )
    frames = laps * len(lap)
    with capture:
        # A reopen ends the wait at once: no need to sit out the growing backoff to fail.
        wait_until(
            lambda: (
                len(reads.numbers) >= frames
                or SourceState.RETRYING in [status.state for status in recorder]
            ),
            f"{laps} laps",
        )

    assert SourceState.RETRYING not in [status.state for status in recorder]
    assert reads.numbers[:frames] == lap * laps
    gaps_s = [b - a for a, b in itertools.pairwise(reads.times[:frames])]
    assert max(gaps_s) < MAX_GAP_S
    assert len(warnings_about(caplog, "frame_005.png")) == 1


def test_the_capture_thread_backs_off_on_a_folder_with_no_readable_image(
    image_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for path in image_folder.iterdir():
        corrupt(path)
    caplog.set_level(logging.DEBUG, logger="siamedge.sources.capture")
    errors: list[SourceStatus] = []
    capture = CaptureThread(
        ImageFolderSource(image_folder, loop=True),
        reopen_min_s=FAST_REOPEN_S,
        reopen_max_s=4 * FAST_REOPEN_S,
        pace_fps=LAP_FPS,
        on_state=lambda status: errors.append(status) if status.error else None,
    )
    with capture:
        wait_until(lambda: len(errors) >= 5, "five failed attempts")
        assert capture.get(timeout=0.0) is None

    assert [status.failures for status in errors[:5]] == [1, 2, 3, 4, 5]
    assert {status.error for status in errors} == {
        f"images {image_folder}: none of its {FOLDER_IMAGES} images can be read "
        "(missing or corrupt; the last tried: frame_004.png)"
    }
    delays = [
        float(record.getMessage().split("reopening in ")[1].split(" s")[0])
        for record in caplog.records
        if "reopening in" in record.getMessage()
    ]
    assert delays[:5] == pytest.approx([FAST_REOPEN_S * 2**n for n in (0, 1, 2, 2, 2)])
    # Each image warned about once, not once per attempt.
    assert sum(UNREADABLE in record.getMessage() for record in caplog.records) == FOLDER_IMAGES


def test_loop_plays_images_added_while_running(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=True)
    source.open()
    numbers = [frame_number(f.image) for f in read_n(source, 3) if f is not None]
    write_images(image_folder, [7])
    write_images(image_folder, [0], suffix=".jpg")  # frame_000.jpg: before them all
    numbers += [frame_number(f.image) for f in read_n(source, 9) if f is not None]

    assert numbers == [0, 1, 2, 3, 4, 0, 0, 1, 2, 3, 4, 7]


def test_loop_lists_the_folder_again_at_each_wrap(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=True)
    source.open()
    numbers = [frame_number(f.image) for f in read_n(source, 3) if f is not None]
    (image_folder / "frame_000.png").unlink()
    write_images(image_folder, [7])
    numbers += [frame_number(f.image) for f in read_n(source, 8) if f is not None]

    assert numbers == [0, 1, 2, 3, 4, 1, 2, 3, 4, 7, 1]
    assert [path.name for path in source.files] == [
        "frame_001.png",
        "frame_002.png",
        "frame_003.png",
        "frame_004.png",
        "frame_007.png",
    ]


def test_a_folder_emptied_before_the_wrap_is_an_error_naming_it(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=True)
    source.open()
    read_n(source, FOLDER_IMAGES)
    for path in image_folder.iterdir():
        path.unlink()

    with pytest.raises(SourceError, match=r"frames: no images \(\.jpg"):
        source.read()


def test_a_folder_gone_before_the_wrap_is_an_error_naming_it(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=True)
    source.open()
    read_n(source, FOLDER_IMAGES)
    for path in image_folder.iterdir():
        path.unlink()
    image_folder.rmdir()

    with pytest.raises(SourceError, match="frames: no such folder"):
        source.read()


def test_a_folder_played_once_is_not_played_again_until_it_changes(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=False)
    assert play_pass(source, 10) == (list(range(FOLDER_IMAGES)), None)

    with pytest.raises(SourceError, match=rf"^images {image_folder}: {PLAYED_AGAIN}$"):
        source.open()
    with pytest.raises(SourceError, match=PLAYED_AGAIN):
        source.open()
    # A fresh source (`siamedge track`) plays it as before.
    assert play_pass(ImageFolderSource(image_folder, loop=False), 10)[0] == [0, 1, 2, 3, 4]

    write_images(image_folder, [5])
    assert play_pass(source, 10) == ([0, 1, 2, 3, 4, 5], None)
    with pytest.raises(SourceError, match=PLAYED_AGAIN):
        source.open()


def test_a_folder_that_was_gone_plays_again_when_it_is_back(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=False)
    play_pass(source, 10)
    kept = image_folder.with_name("kept")
    image_folder.rename(kept)
    with pytest.raises(SourceError, match="frames: no such folder"):
        source.open()
    kept.rename(image_folder)

    assert play_pass(source, 10) == ([0, 1, 2, 3, 4], None)


def test_an_image_rewritten_in_place_plays_the_folder_again(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=False)
    play_pass(source, 10)
    path = image_folder / "frame_001.png"
    before = path.stat()
    write_images(image_folder, [1])  # the same bytes, so only the time tells
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))

    assert play_pass(source, 10) == ([0, 1, 2, 3, 4], None)


def test_a_folder_closed_before_its_end_plays_from_the_start(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=False)
    source.open()
    read_n(source, 2)
    source.close()

    assert play_pass(source, 10) == ([0, 1, 2, 3, 4], None)


def test_a_looped_folder_is_never_refused(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=True)
    source.open()
    read_n(source, 2 * FOLDER_IMAGES)
    source.close()

    assert play_pass(source, 3) == ([0, 1, 2], None)
