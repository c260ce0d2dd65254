"""`siamedge track`: track boxes over a file, folder or synthetic clip, every frame in order.

All boxes start on the first frame and step together, one batched model call per frame.
Writes JSON lines (the MQTT result format) and an optional overlay video; never drops frames.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.cli import positive_int
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
from siamedge.sources.base import Frame
from siamedge.sources.factory import create_source
from siamedge.tracking.crop import CropScratch
from siamedge.tracking.geometry import BoxXYWH
from siamedge.tracking.result import TrackResult
from siamedge.tracking.tracker import StepOutcome, Tracker, TrackerParams, step_together

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0
OVERLAY_FOURCC = "mp4v"
DEFAULT_VIDEO_FPS = 30.0


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
        help="start box in the first frame: x,y,w,h; repeat for more targets (track ids 1, 2, ...)",
    )
    parser.add_argument("--out", type=Path, help="write one JSON line per frame here")
    parser.add_argument("--video", type=Path, help="write an overlay video (mp4) here")
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
    """SiamedgeError naming the option when --out or --video cannot be written, or would
    overwrite the source (checked before the model loads: nothing is opened for writing yet)."""
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


def open_output(option: str, path: Path) -> IO[str]:
    """The JSON lines file, opened for writing (SiamedgeError naming the option)."""
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise SiamedgeError(f"{option} {path}: cannot write: {exc.strerror or exc}") from None


def frames_of(job: TrackJob) -> Iterator[Frame]:
    """Every frame of the job's source in order (at most max_frames)."""
    source = create_source(job.source)
    source.open()
    try:
        count = 0
        while job.max_frames is None or count < job.max_frames:
            frame = source.read()
            if frame is None:
                return
            yield frame
            count += 1
    finally:
        source.close()


class OverlayWriter:
    """Writes frames with the track drawn on them to a video file."""

    def __init__(self, path: Path, fps: float, frame_wh: tuple[int, int]) -> None:
        fourcc = cv2.VideoWriter.fourcc(*OVERLAY_FOURCC)
        self._writer = cv2.VideoWriter(str(path), fourcc, fps, frame_wh)
        if not self._writer.isOpened():
            raise SourceError(f"cannot write the overlay video {path} (codec {OVERLAY_FOURCC})")

    def write(self, image: NDArray[np.uint8]) -> None:
        self._writer.write(image)

    def close(self) -> None:
        self._writer.release()


def track_ids(count: int) -> list[str]:
    """The track ids of the job's boxes, in order: "1", "2", ..."""
    return [str(number) for number in range(1, count + 1)]


def run_track(job: TrackJob, progress: IO[str] | None = None) -> int:
    """Track the boxes over the source; returns the number of frames written.

    progress: where progress lines go (default: sys.stderr as it is at the call).
    """
    progress = progress or sys.stderr
    check_outputs(job)
    engine = Engine.load(job.model.path, job.model, max_batch=len(job.boxes_xywh))
    params = TrackerParams.from_settings(job.tracker, engine.contract)
    scratch = CropScratch()  # shared: the crops of a step are made one after another
    trackers = [Tracker(engine, params, scratch) for _ in job.boxes_xywh]
    ids = track_ids(len(trackers))
    with ExitStack() as stack:
        out: IO[str] | None = None
        writer: OverlayWriter | None = None
        started = last_report = time.monotonic()
        count = 0
        for frame in frames_of(job):
            if count == 0:
                results = _start(trackers, frame, job.boxes_xywh)
                # Opened once the source gave a frame: a failed start leaves files as they were.
                if job.out is not None:
                    out = stack.enter_context(open_output("--out", job.out))
            else:
                results = [_result(outcome) for outcome in step_together(trackers, frame.image)]
            if out is not None:
                message: dict[str, Any] = results_message(
                    frame.index,
                    frame.timestamp,
                    frame.size_wh,
                    list(zip(ids, results, strict=True)),
                    mask_encoding=job.mask_encoding,
                )
                out.write(json.dumps(message, separators=(",", ":")) + "\n")
            if job.video is not None:
                if writer is None:
                    fps = job.source.fps or DEFAULT_VIDEO_FPS
                    writer = OverlayWriter(job.video, fps, frame.size_wh)
                    stack.callback(writer.close)
                canvas = frame.image.copy()
                for slot, (track_id, result) in enumerate(zip(ids, results, strict=True)):
                    draw_track(canvas, track_id, result, slot)
                writer.write(canvas)
            count += 1
            now = time.monotonic()
            if now - last_report >= PROGRESS_INTERVAL_S:
                last_report = now
                line = f"frame {count} ({count / (now - started):.1f} fps)"
                progress.write(f"\r{line}" if progress.isatty() else f"{line}\n")
                progress.flush()
        if count == 0:
            raise SourceError(f"{job.source.uri}: the source gave no frames")
        elapsed = time.monotonic() - started
        start_of_line = "\r" if progress.isatty() else ""
        fps = count / elapsed
        progress.write(
            f"{start_of_line}tracked {count} frames in {elapsed:.1f} s ({fps:.1f} fps)\n"
        )
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
            raise BoxError(f"--box {number} (pixels of the first frame): {exc}") from None
    return results


def _result(outcome: StepOutcome | ValueError) -> TrackResult:
    if isinstance(outcome, ValueError):
        raise SourceError(f"cannot go on tracking: {outcome}")
    return outcome.result
