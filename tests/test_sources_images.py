"""Image folders: name order, looping and relisting, going on after a bad file, played-once
memory, and errors naming the folder or the bad file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures.media import FOLDER_IMAGES, frame_image, frame_number, write_images
from fixtures.waiting import wait_until

from siamedge.errors import SourceError
from siamedge.sources.base import Frame
from siamedge.sources.capture import CaptureThread, SourceState, SourceStatus
from siamedge.sources.images import ImageFolderSource, position_after

FAST_REOPEN_S = 0.005
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


def test_unreadable_image_names_the_file(image_folder: Path) -> None:
    (image_folder / "frame_002.png").write_bytes(b"definitely not a PNG")
    source = ImageFolderSource(image_folder, loop=False)
    source.open()

    assert [frame_number(f.image) for f in read_n(source, 2) if f is not None] == [0, 1]
    with pytest.raises(SourceError, match=r"cannot read image .*frame_002\.png"):
        source.read()


def test_image_deleted_after_listing_names_the_file(image_folder: Path) -> None:
    source = ImageFolderSource(image_folder, loop=False)
    source.open()
    (image_folder / "frame_000.png").unlink()

    with pytest.raises(SourceError, match=r"frame_000\.png"):
        source.read()


def test_read_before_open_is_an_error(image_folder: Path) -> None:
    with pytest.raises(SourceError, match=r"read\(\) before open\(\)"):
        ImageFolderSource(image_folder, loop=False).read()


def corrupt(path: Path) -> None:
    path.write_bytes(b"definitely not a PNG")


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


def test_position_after_finds_the_next_name_even_when_the_name_is_gone() -> None:
    files = [Path(name) for name in ("a.png", "c.png", "d.png")]

    assert position_after(files, "a.png") == 1
    assert position_after(files, "b.png") == 1
    assert position_after(files, "d.png") == 3
    assert position_after(files, "0.png") == 0


def test_a_reopen_after_an_unreadable_image_goes_on_after_it(image_folder: Path) -> None:
    corrupt(image_folder / "frame_002.png")
    source = ImageFolderSource(image_folder, loop=False)

    first, error = play_pass(source, 10)
    assert first == [0, 1]
    assert error is not None and error.endswith("frame_002.png (missing or corrupt)")
    assert play_pass(source, 10) == ([3, 4], None)


def test_a_looped_folder_goes_on_after_an_unreadable_image_and_meets_it_again(
    image_folder: Path,
) -> None:
    corrupt(image_folder / "frame_002.png")
    source = ImageFolderSource(image_folder, loop=True)

    assert play_pass(source, 10)[0] == [0, 1]
    second, error = play_pass(source, 10)
    assert second == [3, 4, 0, 1]
    assert error is not None and "frame_002.png" in error


def test_a_reopen_resumes_by_name_in_the_new_listing(image_folder: Path) -> None:
    corrupt(image_folder / "frame_002.png")
    source = ImageFolderSource(image_folder, loop=False)
    play_pass(source, 10)
    # Between the failure and the reopen the bad file goes and files appear on both sides.
    (image_folder / "frame_002.png").unlink()
    write_images(image_folder, [1], suffix=".jpg")  # frame_001.jpg: before the bad one
    write_images(image_folder, [6])

    assert play_pass(source, 10) == ([3, 4, 6], None)


def test_an_unreadable_last_image_ends_the_pass_on_the_reopen(image_folder: Path) -> None:
    corrupt(image_folder / "frame_004.png")
    source = ImageFolderSource(image_folder, loop=False)

    assert play_pass(source, 10)[0] == [0, 1, 2, 3]
    assert play_pass(source, 10) == ([], None)


class NumbersRead:
    """A FrameSource that passes an ImageFolderSource through and keeps each frame's number."""

    def __init__(self, source: ImageFolderSource) -> None:
        self._source = source
        self._lock = threading.Lock()
        self._numbers: list[int] = []

    @property
    def description(self) -> str:
        return self._source.description

    @property
    def numbers(self) -> list[int]:
        with self._lock:
            return list(self._numbers)

    def open(self) -> None:
        self._source.open()

    def read(self) -> Frame | None:
        frame = self._source.read()
        if frame is not None:
            with self._lock:
                self._numbers.append(frame_number(frame.image))
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
    assert "frame_002.png" in errors[0]
    assert errors[1].endswith(": ended")


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
