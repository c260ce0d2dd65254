"""`siamedge track`: track boxes over a file, folder or synthetic clip, every frame in order.

All boxes start on the first frame and step together, one batched model call per frame.
Writes JSON lines (the MQTT result format) and an optional overlay video; never drops frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.arguments import positive_int
from siamedge.config import (
    MaskEncoding,
    ModelSettings,
    ProviderName,
    SourceSettings,
    TrackerSettings,
)
from siamedge.engine import Engine
from siamedge.errors import BoxError, SiamedgeError, SourceError
from siamedge.messaging.protocol import results_message
from siamedge.overlay import draw_track
from siamedge.providers import short_provider_names
from siamedge.sources.base import Frame, FrameSource
from siamedge.sources.factory import create_source, playback_fps
from siamedge.sources.file import probe_frame_count
from siamedge.sources.images import ImageFolderSource
from siamedge.sources.redact import redact_url
from siamedge.tracking.crop import CropScratch
from siamedge.tracking.geometry import BoxXYWH
from siamedge.tracking.result import TrackResult
from siamedge.tracking.tracker import StepOutcome, Tracker, TrackerParams, step_together

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0
OVERLAY_FOURCC = "mp4v"
DEFAULT_VIDEO_FPS = 30.0
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
"""--video names the overlay writer can open with OVERLAY_FOURCC (matched case-insensitively)."""
FRACTION_HINT = "; --box is in pixels (x,y,w,h), not fractions of the frame"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `siamedge track`."""
    parser.add_argument("--model", default="builtin", help="ONNX model file or `builtin`")
    parser.add_argument(
        "--source",
        required=True,
        help="video file, image folder, or `synthetic` (the built-in 1280x720 clip)",
    )
    parser.add_argument(
        "--box",
        required=True,
        action="append",
        type=parse_box,
        help="start box in the first frame, in pixels: x,y,w,h; one that starts with a minus "
        "needs an equals sign (--box=-10,-10,100,100); repeat for more targets "
        "(track ids 1, 2, ...)",
    )
    parser.add_argument("--out", type=Path, help="write one JSON line per frame here")
    parser.add_argument(
        "--video", type=Path, help="write an overlay video here (.mp4, .avi, .mkv or .mov)"
    )
    parser.add_argument("--frames", type=positive_int, help="stop after this many frames")
    parser.add_argument(
        "--providers",
        type=parse_providers,
        default="auto",
        help="execution providers, `auto` or a comma list of tensorrt,cuda,cpu",
    )
    parser.add_argument("--mask-encoding", default="rle", choices=["rle", "polygon", "png", "none"])


def run(args: argparse.Namespace) -> int:
    """`siamedge track`: exit status 0 when every frame was tracked."""
    job = TrackJob(
        model=ModelSettings(path=args.model, providers=args.providers),
        source=SourceSettings(uri=args.source, loop=False),
        boxes_xywh=tuple(args.box),
        tracker=TrackerSettings(),
        out=args.out,
        video=args.video,
        max_frames=args.frames,
        mask_encoding=args.mask_encoding,
    )
    if job.out is None and job.video is None:
        log.warning(
            "neither --out nor --video: the results are not kept (--out /dev/stdout prints "
            "them as JSON lines)"
        )
    run_track(job)
    return 0


def parse_providers(text: str) -> Literal["auto"] | list[ProviderName]:
    """`auto` or a comma list of tensorrt,cuda,cpu (argparse type: ArgumentTypeError)."""
    if text == "auto":
        return "auto"
    try:
        return cast(list[ProviderName], short_provider_names(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_box(text: str) -> BoxXYWH:
    """`x,y,w,h` -> a tuple of 4 floats (argparse type: raises ArgumentTypeError)."""
    parts = text.replace(" ", "").split(",")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"box must be x,y,w,h (4 numbers), got {text!r}")
    return values[0], values[1], values[2], values[3]


@dataclass(frozen=True)
class TrackJob:
    """What `siamedge track` was asked to do."""

    model: ModelSettings
    source: SourceSettings
    boxes_xywh: tuple[BoxXYWH, ...]
    tracker: TrackerSettings
    out: Path | None
    video: Path | None
    max_frames: int | None
    mask_encoding: MaskEncoding


def check_outputs(job: TrackJob) -> None:
    """SiamedgeError naming the option when --out or --video cannot be written, would overwrite
    the source or each other, or --video is no video name (checked before the model loads:
    nothing is opened for writing yet)."""
    source = Path(job.source.uri).resolve() if Path(job.source.uri).exists() else None
    for option, path in (("--out", job.out), ("--video", job.video)):
        if path is None:
            continue
        target = path.resolve()
        if target.is_dir():
            raise SiamedgeError(f"{option} {path} is a folder; give a file name")
        if not target.parent.is_dir():
            raise SiamedgeError(f"{option} {path}: the folder {path.parent} does not exist")
        if source is not None and (target == source or source in target.parents):
            raise SiamedgeError(f"{option} {path} would overwrite the source {job.source.uri}")
        if not writable(target):
            raise SiamedgeError(f"{option} {path}: cannot write: permission denied")
    if job.video is not None:
        if job.video.suffix.lower() not in VIDEO_SUFFIXES:
            names = ", ".join(VIDEO_SUFFIXES[:-1]) + f" or {VIDEO_SUFFIXES[-1]}"
            raise SiamedgeError(
                f"--video {job.video}: the overlay video's name must end in {names}"
            )
        if job.out is not None and same_file(job.out, job.video):
            raise SiamedgeError(f"--out and --video both name {job.out}; give two files")


def writable(target: Path) -> bool:
    """Whether this process may write the file, or create it when it does not exist."""
    if target.exists():
        return os.access(target, os.W_OK)
    return os.access(target.parent, os.W_OK | os.X_OK)


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file (the same path, through a link, or a hard link)."""
    if first.resolve() == second.resolve():
        return True
    return first.exists() and second.exists() and first.samefile(second)


def open_output(option: str, path: Path) -> IO[str]:
    """The JSON lines file, opened for writing (SiamedgeError naming the option)."""
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise SiamedgeError(f"{option} {path}: cannot write: {exc.strerror or exc}") from None


def frames_of(source: FrameSource, max_frames: int | None) -> Iterator[Frame]:
    """Every frame of the source in order (at most max_frames); opens and closes it."""
    source.open()
    try:
        count = 0
        while max_frames is None or count < max_frames:
            frame = source.read()
            if frame is None:
                return
            yield frame
            count += 1
    finally:
        source.close()


def frame_file(source: FrameSource, frame: Frame) -> Path | None:
    """The image file the frame was read from, when the source is a folder of images."""
    if isinstance(source, ImageFolderSource):
        files = source.files
        if 0 <= frame.index < len(files):
            return files[frame.index]
    return None


def check_frame_size(source: FrameSource, frame: Frame, first_wh: tuple[int, int]) -> None:
    """SourceError naming the frame (and its file) when its size is not the first frame's."""
    if frame.size_wh == first_wh:
        return
    path = frame_file(source, frame)
    name = f"frame {frame.index}" + ("" if path is None else f" ({path})")
    (width, height), (first_width, first_height) = frame.size_wh, first_wh
    raise SourceError(
        f"{name} is {width}x{height} px, the first frame {first_width}x{first_height} px: "
        "all frames of a track must have one size (resize them, or track each size on its own)"
    )


class JsonLinesFile:
    """The --out file, one JSON object a line; SiamedgeError naming it when a write fails (a
    full disk may show only when the buffer is flushed at close)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file = open_output("--out", path)

    def write(self, message: dict[str, Any]) -> None:
        try:
            self._file.write(json.dumps(message, separators=(",", ":")) + "\n")
        except BrokenPipeError:
            raise  # `--out /dev/stdout | head -1`: the reader is done, not a failure
        except OSError as exc:
            raise self._failed(exc) from None

    def close(self) -> None:
        """Flush and close (the file is closed even when the flush fails); safe to call twice."""
        try:
            self._file.close()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> SiamedgeError:
        return SiamedgeError(f"--out {self._path}: cannot write: {exc.strerror or exc}")


class OverlayWriter:
    """Writes frames with the track drawn on them to a video file; SiamedgeError at close when
    the file does not hold them all (OpenCV's writer drops a failed write with only a warning:
    a full disk left an mp4 without its index, which nothing can play, and exit status 0)."""

    def __init__(self, path: Path, fps: float, frame_wh: tuple[int, int]) -> None:
        fourcc = cv2.VideoWriter.fourcc(*OVERLAY_FOURCC)
        self._path = path
        self._written = 0
        self._closed = False
        self._writer = cv2.VideoWriter(str(path), fourcc, fps, frame_wh)
        if not self._writer.isOpened():
            raise SourceError(f"cannot write the overlay video {path} (codec {OVERLAY_FOURCC})")

    def write(self, image: NDArray[np.uint8]) -> None:
        self._writer.write(image)
        self._written += 1

    def close(self) -> None:
        """Finish the file and check that it reads back whole; safe to call twice."""
        self._writer.release()
        if self._closed:
            return
        self._closed = True
        stored = probe_frame_count(self._path)
        if stored < self._written:
            raise SiamedgeError(
                f"--video {self._path}: cannot write: the file holds {stored} of the "
                f"{self._written} frames written (is the disk full?)"
            )


class TrackOutputs:
    """The --out JSON lines and --video overlay of a run, opened on its first frame."""

    def __init__(self, job: TrackJob, ids: list[str], frame_wh: tuple[int, int]) -> None:
        """The overlay opens first: a --video that cannot be written fails before --out (an
        earlier run's results, maybe) is truncated."""
        self._ids = ids
        self._mask_encoding = job.mask_encoding
        self._video: OverlayWriter | None = None
        self._out: JsonLinesFile | None = None
        with ExitStack() as opened:
            if job.video is not None:
                # The source's own rate: a 10 fps file's overlay plays at 10 fps, not 30.
                fps = playback_fps(job.source) or DEFAULT_VIDEO_FPS
                self._video = opened.enter_context(closing(OverlayWriter(job.video, fps, frame_wh)))
            if job.out is not None:
                self._out = opened.enter_context(closing(JsonLinesFile(job.out)))
            self._files = opened.pop_all()

    def write(self, frame: Frame, results: list[TrackResult]) -> None:
        """One frame's results: a JSON line and an overlay frame."""
        tracks = list(zip(self._ids, results, strict=True))
        if self._out is not None:
            self._out.write(
                results_message(
                    frame.index,
                    frame.timestamp,
                    frame.size_wh,
                    tracks,
                    mask_encoding=self._mask_encoding,
                )
            )
        if self._video is not None:
            canvas = frame.image.copy()
            for slot, (track_id, result) in enumerate(tracks):
                draw_track(canvas, track_id, result, slot)
            self._video.write(canvas)

    def close(self) -> None:
        """Close both files (SiamedgeError naming --out when its last lines cannot be written)."""
        self._files.close()


def track_ids(count: int) -> list[str]:
    """The track ids of the job's boxes, in order: "1", "2", ..."""
    return [str(number) for number in range(1, count + 1)]


def show_progress(stream: IO[str] | None, line: str, *, last: bool = False) -> None:
    """A progress line: rewritten in place on a terminal, one line each elsewhere, nothing when
    the stream is None (stderr closed: `2>&-`). last: the summary, which stays on its line."""
    if stream is None:
        return
    if stream.isatty():
        stream.write(f"\r{line}\n" if last else f"\r{line}")
    else:
        stream.write(f"{line}\n")
    stream.flush()


def run_track(job: TrackJob, progress: IO[str] | None = None) -> int:
    """Track the boxes over the source; returns the number of frames written.

    progress: where progress lines go (default: sys.stderr as it is at the call, none when it
    is closed); the summary comes once the outputs are closed.
    """
    stream = progress if progress is not None else sys.stderr
    check_outputs(job)
    engine = Engine.load(job.model.path, job.model, max_batch=len(job.boxes_xywh))
    params = TrackerParams.from_settings(job.tracker, engine.contract)
    scratch = CropScratch()  # shared: the crops of a step are made one after another
    trackers = [Tracker(engine, params, scratch) for _ in job.boxes_xywh]
    ids = track_ids(len(trackers))
    source = create_source(job.source)
    with ExitStack() as stack:
        outputs: TrackOutputs | None = None
        first_wh = (0, 0)
        started = last_report = time.monotonic()
        count = 0
        for frame in frames_of(source, job.max_frames):
            if outputs is None:
                results = _start(trackers, frame, job.boxes_xywh)
                first_wh = frame.size_wh
                # Opened once the targets started: a failed start leaves files as they were.
                outputs = stack.enter_context(closing(TrackOutputs(job, ids, first_wh)))
            else:
                check_frame_size(source, frame, first_wh)
                outcomes = step_together(trackers, frame.image)
                results = [_result(frame, outcome) for outcome in outcomes]
            outputs.write(frame, results)
            count += 1
            now = time.monotonic()
            if now - last_report >= PROGRESS_INTERVAL_S:
                last_report = now
                show_progress(stream, f"frame {count} ({count / (now - started):.1f} fps)")
        if count == 0:
            raise SourceError(f"{redact_url(job.source.uri)}: the source gave no frames")
        elapsed = time.monotonic() - started
    fps = count / elapsed
    show_progress(stream, f"tracked {count} frames in {elapsed:.1f} s ({fps:.1f} fps)", last=True)
    return count


def _start(
    trackers: list[Tracker], frame: Frame, boxes_xywh: tuple[BoxXYWH, ...]
) -> list[TrackResult]:
    """Start every tracker on the first frame; BoxError naming the --box that cannot start."""
    results = []
    for number, (tracker, box) in enumerate(zip(trackers, boxes_xywh, strict=True), start=1):
        try:
            results.append(tracker.start(frame.image, box))
        except BoxError as exc:
            hint = FRACTION_HINT if all(0.0 <= value <= 1.0 for value in box) else ""
            raise BoxError(f"--box {number} (pixels of the first frame): {exc}{hint}") from None
    return results


def _result(frame: Frame, outcome: StepOutcome | ValueError) -> TrackResult:
    if isinstance(outcome, ValueError):
        raise SourceError(f"frame {frame.index}: cannot go on tracking: {outcome}")
    return outcome.result
