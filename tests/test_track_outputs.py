"""`siamedge track` and its output files: a failed start leaves them as they were, a failed
write is named and not reported as success; the box option's and the frame-size errors' hints;
a closed stderr."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import pytest
from fixtures.media import frame_image, write_video

from siamedge import offline
from siamedge.cli import main
from siamedge.config import (
    ModelSettings,
    SourceSettings,
    SyntheticSettings,
    TrackerSettings,
)
from siamedge.errors import SiamedgeError, SourceError
from siamedge.offline import TrackJob, check_outputs, run_track
from siamedge.sources.synthetic import SyntheticClip

EARLIER = "earlier results\n"
VIDEO_NAMES = "must end in .mp4, .avi, .mkv or .mov"
DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full here")


def synthetic_box() -> str:
    x, y, w, h = SyntheticClip(SyntheticSettings()).truth(0).box_xywh
    return f"{x},{y},{w},{h}"


def track(*args: str) -> int:
    """`siamedge track --source synthetic` with the synthetic target's box on the CPU."""
    options = ("--source", "synthetic", "--box", synthetic_box(), "--providers", "cpu")
    return main(["track", *options, *args])


def synthetic_job(out: Path | None = None, video: Path | None = None) -> TrackJob:
    """What `siamedge track --source synthetic --frames 3` with the synthetic box asks for."""
    x, y, w, h = (float(value) for value in synthetic_box().split(","))
    return TrackJob(
        model=ModelSettings(path="builtin", providers=["cpu"]),
        source=SourceSettings(uri="synthetic", loop=False),
        boxes_xywh=((x, y, w, h),),
        tracker=TrackerSettings(),
        out=out,
        video=video,
        max_frames=3,
        mask_encoding="rle",
    )


@pytest.mark.parametrize(
    ("out_name", "video_name", "message"),
    [
        ("r.jsonl", "bad.txt", f"--video bad.txt: the overlay video's name {VIDEO_NAMES}"),
        ("r.jsonl", str(DEV_FULL), f"--video {DEV_FULL}: the overlay video's name {VIDEO_NAMES}"),
        ("r.jsonl", "r.jsonl", VIDEO_NAMES),
        ("r.mp4", "r.mp4", "--out and --video both name"),
    ],
    ids=["not a video name", "a device", "the out file", "one file"],
)
def test_a_video_it_cannot_write_leaves_an_earlier_out_as_it_was(
    tmp_path: Path,
    out_name: str,
    video_name: str,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path(out_name).write_text(EARLIER)
    assert track("--frames", "2", "--out", out_name, "--video", video_name) == 1
    assert message in capsys.readouterr().err
    assert Path(out_name).read_text() == EARLIER


def test_a_video_that_fails_to_open_fails_before_out_is_truncated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args: object) -> None:
        raise SourceError("cannot write the overlay video (refused)")

    monkeypatch.setattr(offline, "OverlayWriter", refuse)
    out = tmp_path / "r.jsonl"
    out.write_text(EARLIER)
    assert track("--frames", "2", "--out", str(out), "--video", str(tmp_path / "o.mp4")) == 1
    assert "cannot write the overlay video (refused)" in capsys.readouterr().err
    assert out.read_text() == EARLIER


def test_an_out_it_may_not_write_is_named_before_anything_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.jsonl"
    out.write_text(EARLIER)
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root may write anything
    with pytest.raises(SiamedgeError, match=f"--out {out}: cannot write: permission denied"):
        check_outputs(synthetic_job(out=out))


@needs_dev_full
@pytest.mark.parametrize("frames", ["2", "40"])  # fails at close / already at a write
def test_a_failed_write_names_out_and_is_no_success(
    frames: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert track("--frames", frames, "--out", str(DEV_FULL)) == 1
    err = capsys.readouterr().err
    assert f"--out {DEV_FULL}: cannot write: No space left on device" in err
    assert "tracked" not in err


def test_the_summary_comes_after_the_outputs_are_complete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.jsonl"
    assert track("--frames", "3", "--out", str(out)) == 0
    assert "tracked 3 frames in" in capsys.readouterr().err
    assert [json.loads(line)["frame"] for line in out.read_text().splitlines()] == [0, 1, 2]


def test_a_track_that_keeps_nothing_says_so(caplog: pytest.LogCaptureFixture) -> None:
    status = main(["track", "--source", "synthetic", "--frames", "2", "--box", "330,403,179,119"])
    assert status == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "neither --out nor --video: the results are not kept (--out /dev/stdout prints them "
        "as JSON lines)"
    ]


def test_box_help_shows_how_to_give_a_negative_box(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["track", "--help"])
    assert exit_info.value.code == 0
    assert "(--box=-10,-10,100,100)" in " ".join(capsys.readouterr().out.split())
    status = main(["track", "--source", "synthetic", "--frames", "2", "--box=-10,-10,100,100"])
    assert status == 0


@pytest.mark.parametrize(("box", "hinted"), [("0.1,0.2,0.3,0.4", True), ("10,10,0.5,0.5", False)])
def test_a_box_in_fractions_gets_a_pixels_hint(
    box: str, hinted: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["track", "--source", "synthetic", "--frames", "2", "--box", box]) == 1
    err = capsys.readouterr().err
    assert "smaller than 1x1 px" in err
    assert ("--box is in pixels (x,y,w,h), not fractions of the frame" in err) is hinted


def test_a_frame_of_another_size_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for number, size_wh in enumerate([(64, 48), (64, 48), (40, 30), (64, 48)]):
        assert cv2.imwrite(str(folder / f"f{number}.png"), frame_image(number, size_wh))
    status = main(["track", "--source", str(folder), "--box", "16,12,32,24"])
    assert status == 1
    err = capsys.readouterr().err
    assert f"frame 2 ({folder / 'f2.png'}) is 40x30 px, the first frame 64x48 px" in err
    assert "all frames of a track must have one size" in err
    assert "restart the target" not in err


def test_a_closed_stderr_means_no_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)  # what Python gives a process started with 2>&-
    monkeypatch.setattr(offline, "PROGRESS_INTERVAL_S", 0.0)  # a progress line every frame
    out = tmp_path / "r.jsonl"
    assert run_track(synthetic_job(out=out)) == 3
    assert len(out.read_text().splitlines()) == 3


def test_the_overlay_plays_at_the_source_files_rate(tmp_path: Path) -> None:
    source = write_video(tmp_path / "clip10.avi", frames=6, fps=10.0)
    overlay = tmp_path / "overlay.mp4"
    args = ["track", "--source", str(source), "--box", "10,10,20,20", "--providers", "cpu"]
    assert main([*args, "--video", str(overlay)]) == 0
    capture = cv2.VideoCapture(str(overlay))
    try:
        assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    finally:
        capture.release()


_VIDEO_WRITER = cv2.VideoWriter


class _WriterThatRunsOutOfSpace:
    """cv2.VideoWriter whose writes fail silently after the first two frames, as OpenCV's
    FFmpeg writer does on a full disk (one warning, nothing raised)."""

    fourcc = staticmethod(_VIDEO_WRITER.fourcc)

    def __init__(self, *args: Any) -> None:
        self._writer = _VIDEO_WRITER(*args)
        self._frames = 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return bool(self._writer.isOpened())

    def write(self, image: Any) -> None:
        self._frames += 1
        if self._frames <= 2:
            self._writer.write(image)

    def release(self) -> None:
        self._writer.release()


def test_an_overlay_that_lost_frames_is_named_and_no_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = tmp_path / "overlay.mp4"
    monkeypatch.setattr(offline.cv2, "VideoWriter", _WriterThatRunsOutOfSpace)
    assert track("--frames", "5", "--video", str(overlay)) == 1
    assert capsys.readouterr().err.endswith(
        f"siamedge: error: --video {overlay}: cannot write: the file holds 2 of the 5 frames "
        "written (is the disk full?)\n"
    )
