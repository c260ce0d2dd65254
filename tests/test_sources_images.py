"""Image folders: name order, looping, and errors naming the folder or the bad file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures.media import FOLDER_IMAGES, frame_image, frame_number, write_images

from siamedge.errors import SourceError
from siamedge.sources.base import Frame
from siamedge.sources.images import ImageFolderSource


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
