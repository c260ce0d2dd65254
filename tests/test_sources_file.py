"""Video files: order, end, looping, nominal fps, and errors that name the file."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from fixtures.media import CLIP_FPS, CLIP_FRAMES, CLIP_SIZE_WH, frame_number, write_video

from siamedge.errors import SourceError
from siamedge.sources.base import Frame
from siamedge.sources.file import VideoFileSource, probe_fps


def read_all(source: VideoFileSource, limit: int) -> list[Frame]:
    frames = []
    for _ in range(limit):
        frame = source.read()
        if frame is None:
            break
        frames.append(frame)
    return frames


def test_reads_every_frame_in_order_then_none(video_file: Path) -> None:
    source = VideoFileSource(video_file, loop=False)
    source.open()
    frames = read_all(source, CLIP_FRAMES + 5)
    source.close()

    assert [frame_number(f.image) for f in frames] == list(range(CLIP_FRAMES))
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))
    assert all(f.size_wh == CLIP_SIZE_WH and f.image.shape[2] == 3 for f in frames)
    assert all(b.timestamp >= a.timestamp for a, b in itertools.pairwise(frames))
    assert source.nominal_fps == pytest.approx(CLIP_FPS)


def test_frames_own_their_buffers(video_file: Path) -> None:
    source = VideoFileSource(video_file, loop=False)
    source.open()
    first, second = source.read(), source.read()
    source.close()

    assert first is not None and second is not None
    assert not np.shares_memory(first.image, second.image)
    assert frame_number(first.image) == 0 and frame_number(second.image) == 1


def test_loop_starts_again_and_indices_keep_counting(video_file: Path) -> None:
    source = VideoFileSource(video_file, loop=True)
    source.open()
    frames = read_all(source, 2 * CLIP_FRAMES + 3)
    source.close()

    numbers = [frame_number(f.image) for f in frames]
    assert numbers == [*range(CLIP_FRAMES), *range(CLIP_FRAMES), 0, 1, 2]
    assert [f.index for f in frames] == list(range(2 * CLIP_FRAMES + 3))


def test_loop_works_for_mp4(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", 4, fourcc="mp4v")
    source = VideoFileSource(path, loop=True)
    source.open()
    numbers = [frame_number(f.image) for f in read_all(source, 9)]
    source.close()

    assert numbers == [0, 1, 2, 3, 0, 1, 2, 3, 0]


def test_reopen_after_close_starts_at_the_first_frame(video_file: Path) -> None:
    source = VideoFileSource(video_file, loop=False)
    source.open()
    read_all(source, 3)
    source.close()
    source.close()
    source.open()
    frame = source.read()
    source.close()

    assert frame is not None
    assert frame_number(frame.image) == 0
    assert frame.index == 3


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    source = VideoFileSource(missing, loop=True)

    with pytest.raises(SourceError, match=r"nope\.mp4: no such file"):
        source.open()
    assert probe_fps(missing) is None


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a regular file"):
        VideoFileSource(tmp_path, loop=False).open()


def test_garbage_file_is_an_error_not_an_empty_video(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(b"this is not a video" * 100)
    source = VideoFileSource(garbage, loop=False)

    with pytest.raises(SourceError, match=r"garbage\.avi"):
        source.open()
        source.read()
    source.close()


def test_read_before_open_is_an_error(video_file: Path) -> None:
    with pytest.raises(SourceError, match=r"read\(\) before open\(\)"):
        VideoFileSource(video_file, loop=False).read()


def test_probe_fps_reads_the_container_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "ten.avi", 3, fps=10.0)

    assert probe_fps(path) == pytest.approx(10.0)
