"""Video files: order, end, looping, played-once memory, truncation warnings, nominal fps, and
errors that name the file."""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures.media import (
    CLIP_FPS,
    CLIP_FRAMES,
    CLIP_SIZE_WH,
    MAX_FRAMES,
    frame_image,
    frame_number,
    write_video,
)
from fixtures.waiting import WAIT_S, wait_until

from siamedge.errors import SourceError
from siamedge.sources.base import Frame
from siamedge.sources.capture import CaptureThread, SourceState, SourceStatus
from siamedge.sources.file import VideoFileSource, looks_truncated, probe_fps

PLAYED_AGAIN = r"played to the end \(loop: false\); played again when it changes"
LONG_CLIP_FRAMES = 50
KEPT_FRACTION = 0.6
"""The share of a long clip's bytes kept when cutting it: frames are lost, the header stays."""
FAST_REOPEN_S = 0.005


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


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "siamedge.sources.file" and record.levelno >= logging.WARNING
    ]


def write_cut_video(path: Path) -> Path:
    """A LONG_CLIP_FRAMES MJPG .avi cut to KEPT_FRACTION of its bytes (a copy that broke off)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), CLIP_FPS, CLIP_SIZE_WH)
    assert writer.isOpened()
    for number in range(LONG_CLIP_FRAMES):
        writer.write(frame_image(number % MAX_FRAMES))
    writer.release()
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * KEPT_FRACTION)])
    return path


def test_a_file_played_once_is_not_played_again_until_it_changes(video_file: Path) -> None:
    source = VideoFileSource(video_file, loop=False)
    source.open()
    assert len(read_all(source, CLIP_FRAMES + 1)) == CLIP_FRAMES
    source.close()

    with pytest.raises(SourceError, match=rf"^file {video_file}: {PLAYED_AGAIN}$"):
        source.open()
    with pytest.raises(SourceError, match=PLAYED_AGAIN):
        source.open()
    # A fresh source (`siamedge track`) plays it as before.
    fresh = VideoFileSource(video_file, loop=False)
    fresh.open()
    assert len(read_all(fresh, CLIP_FRAMES + 1)) == CLIP_FRAMES
    fresh.close()

    write_video(video_file, 4)  # a new recording over it
    source.open()
    numbers = [frame_number(f.image) for f in read_all(source, CLIP_FRAMES)]
    source.close()
    assert numbers == [0, 1, 2, 3]
    with pytest.raises(SourceError, match=PLAYED_AGAIN):
        source.open()


def test_the_capture_thread_plays_a_file_without_loop_once(video_file: Path) -> None:
    errors: list[str] = []

    def on_state(status: SourceStatus) -> None:
        if status.state is SourceState.RETRYING and status.error is not None:
            errors.append(status.error)

    capture = CaptureThread(
        VideoFileSource(video_file, loop=False),
        reopen_min_s=FAST_REOPEN_S,
        reopen_max_s=FAST_REOPEN_S,
        on_state=on_state,
    )
    capture.start()
    wait_until(lambda: sum("played to the end" in e for e in errors) >= 2, "two refused replays")
    assert capture.stop()

    assert capture.stats().captured == CLIP_FRAMES
    assert errors[0] == f"file {video_file}: ended"


def test_a_file_touched_after_playing_plays_again(video_file: Path) -> None:
    source = VideoFileSource(video_file, loop=False)
    source.open()
    read_all(source, CLIP_FRAMES + 1)
    source.close()
    before = video_file.stat()
    os.utime(video_file, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    source.open()
    frames = read_all(source, CLIP_FRAMES + 1)
    source.close()

    assert [frame_number(f.image) for f in frames] == list(range(CLIP_FRAMES))
    assert frames[0].index == CLIP_FRAMES


def wait_for_a_later_ctime(than_ns: int, scratch: Path) -> None:
    """Until a file changed now gets a ctime after than_ns (file times are coarse, a few ms)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        scratch.write_bytes(b"")
        if scratch.stat().st_ctime_ns > than_ns:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the file system clock did not move")
        time.sleep(0.001)


def test_a_file_moved_away_and_back_plays_again(video_file: Path, tmp_path: Path) -> None:
    source = VideoFileSource(video_file, loop=False)
    source.open()
    read_all(source, CLIP_FRAMES + 1)
    source.close()
    wait_for_a_later_ctime(video_file.stat().st_ctime_ns, tmp_path / "scratch")
    kept = tmp_path / "kept.avi"
    video_file.rename(kept)  # mv keeps the inode, mtime and size
    kept.rename(video_file)
    source.open()
    frames = read_all(source, CLIP_FRAMES + 1)
    source.close()

    assert [frame_number(f.image) for f in frames] == list(range(CLIP_FRAMES))


def test_a_looped_file_is_never_refused(video_file: Path) -> None:
    source = VideoFileSource(video_file, loop=True)
    source.open()
    read_all(source, CLIP_FRAMES + 2)
    source.close()
    source.open()
    frame = source.read()
    source.close()

    assert frame is not None and frame_number(frame.image) == 0


def test_looks_truncated_below_nine_tenths_of_a_declared_count() -> None:
    assert looks_truncated(30, 50)
    assert looks_truncated(44, 50)
    assert not looks_truncated(45, 50)
    assert not looks_truncated(50, 50)
    assert not looks_truncated(60, 50)
    assert not looks_truncated(3, 0)  # no declared count: nothing to compare with


def test_a_cut_file_warns_with_the_frames_read_and_the_declared_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_cut_video(tmp_path / "cut.avi")
    caplog.set_level(logging.INFO, logger="siamedge.sources.file")
    source = VideoFileSource(path, loop=False)
    source.open()
    frames = read_all(source, LONG_CLIP_FRAMES + 1)
    asked_again = source.read()
    source.close()

    read = len(frames)
    assert 0 < read < 0.9 * LONG_CLIP_FRAMES
    assert [frame_number(f.image) for f in frames] == [n % MAX_FRAMES for n in range(read)]
    assert asked_again is None
    assert warnings_of(caplog) == [
        f"file {path}: ended at frame {read} of {LONG_CLIP_FRAMES}: truncated or corrupt?"
    ]


def test_a_looped_cut_file_warns_once_and_goes_on_looping(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_cut_video(tmp_path / "cut.avi")
    once = VideoFileSource(path, loop=False)
    once.open()
    one_pass = [frame_number(f.image) for f in read_all(once, LONG_CLIP_FRAMES)]
    once.close()
    caplog.clear()  # that pass's own warning; the looping source is another object
    caplog.set_level(logging.INFO, logger="siamedge.sources.file")
    source = VideoFileSource(path, loop=True)
    source.open()
    frames = read_all(source, 3 * len(one_pass) + 1)
    source.close()

    assert [frame_number(f.image) for f in frames] == [*one_pass, *one_pass, *one_pass, 0]
    assert warnings_of(caplog) == [
        f"file {path}: ended at frame {len(one_pass)} of {LONG_CLIP_FRAMES}: truncated or corrupt?"
    ]


def test_a_whole_file_ends_without_a_warning(
    video_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="siamedge.sources.file")
    source = VideoFileSource(video_file, loop=True)
    source.open()
    read_all(source, 2 * CLIP_FRAMES + 1)
    source.close()

    assert warnings_of(caplog) == []
    opened = [r.getMessage() for r in caplog.records if " opened: " in r.getMessage()]
    assert opened == [f"file {video_file} opened: 64x48, {CLIP_FRAMES} frames, 25 fps"]


def test_a_raw_stream_without_a_frame_count_logs_unknown_frames(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "raw.mjpeg"
    with path.open("wb") as raw:
        for number in range(3):
            ok, jpeg = cv2.imencode(".jpg", frame_image(number))
            assert ok
            raw.write(jpeg.tobytes())
    caplog.set_level(logging.INFO, logger="siamedge.sources.file")
    source = VideoFileSource(path, loop=False)
    source.open()
    numbers = [frame_number(f.image) for f in read_all(source, 10)]
    source.close()

    assert numbers == [0, 1, 2]
    opened = [r.getMessage() for r in caplog.records if " opened: " in r.getMessage()]
    assert len(opened) == 1
    assert opened[0].startswith(f"file {path} opened: 64x48, unknown frames, ")
    assert warnings_of(caplog) == []
