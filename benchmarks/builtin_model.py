"""builtin-ncc: session.run time per branch and per batch size on the CPU, and tracking quality
on synthetic clips.

Prints, side by side, the median / 90th percentile milliseconds of the init and the track
branch for one target (onnxruntime CPU, one intra-op thread and the default); then the track
step's session.run for batches of 1, 4 and 8 targets (median per call and per target; the
batch sizes take turns run by run, so a busy machine slows them alike); then the box IoU (mean,
min) and mask IoU (mean) of the real Tracker on synthetic clips of several sizes and seeds,
started from the truth box of frame 0.

    python benchmarks/builtin_model.py [--runs 300] [--seeds 0 1 2] [--model PATH] [--no-clips]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from siamedge import contract as c
from siamedge.config import ModelSettings, SyntheticSettings, TrackerSettings
from siamedge.engine import Engine
from siamedge.models import builtin_model_path
from siamedge.sources.synthetic import SyntheticClip
from siamedge.tracking.tracker import Tracker, TrackerParams

MS = 1000.0
SIZES = ((1280, 720, 300), (640, 480, 300), (1920, 1080, 300))
BATCHES = (1, 4, 8)
WARMUP_RUNS = 10
THREADS = ((1, "1 thread"), (0, "default"))
SEARCH = 255
HALF = SEARCH // 2
# Row n of a batch searches around the object moved by n * ROW_SHIFT px, so rows differ.
ROW_SHIFT = 5


def open_session(model: Path, threads: int) -> Any:
    """onnxruntime CPU session; threads 0 is onnxruntime's default."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def batch_feeds(session: Any, batch: int) -> dict[str, Any]:
    """Init-step feeds for `batch` targets: crops [N, 3, 255, 255] around the synthetic object."""
    clip = SyntheticClip(SyntheticSettings())
    frame = clip.frame(0)
    x, y, w, h = clip.truth(0).box_xywh
    images, centres = [], []
    for row in range(batch):
        cx, cy = x + w // 2 + ROW_SHIFT * row, y + h // 2 - ROW_SHIFT * row
        crop = frame[cy - HALF : cy + HALF + 1, cx - HALF : cx + HALF + 1]
        images.append(crop.transpose(2, 0, 1))
        centres.append((cx, cy))
    features_shape = [batch, *session.get_inputs()[4].shape[1:]]
    return {
        c.IN_IMAGE: np.stack(images).astype(np.float32),
        c.IN_CENTER: np.array(centres, np.float32),
        c.IN_SIZE: np.tile(np.array([w, h], np.float32), (batch, 1)),
        c.IN_SCALE: np.ones(batch),
        c.IN_FEATURES: np.zeros(features_shape, np.float32),
        c.IN_FIRST_TIME: np.array(True),
    }


def track_feeds(session: Any, batch: int) -> dict[str, Any]:
    """Track-step feeds for `batch` targets, with the templates of an init step."""
    feeds = batch_feeds(session, batch)
    names = [output.name for output in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, feeds), strict=True))
    return {**feeds, c.IN_FEATURES: outputs[c.OUT_FEATURES], c.IN_FIRST_TIME: np.array(False)}


def timed(session: Any, feeds: dict[str, Any]) -> float:
    """Seconds of one session.run."""
    started = time.perf_counter()
    session.run(None, feeds)
    return time.perf_counter() - started


def branch_times(model: Path, threads: int, runs: int) -> dict[str, list[float]]:
    """Seconds per session.run of each branch for one target."""
    session = open_session(model, threads)
    init = batch_feeds(session, 1)
    times: dict[str, list[float]] = {}
    for branch, feeds in (("init", init), ("track", track_feeds(session, 1))):
        for _ in range(WARMUP_RUNS):
            session.run(None, feeds)
        times[branch] = [timed(session, feeds) for _ in range(runs)]
    return times


def batch_times(model: Path, threads: int, runs: int) -> dict[int, list[float]]:
    """Seconds per track-step session.run by batch size; the sizes take turns run by run."""
    session = open_session(model, threads)
    feeds = {batch: track_feeds(session, batch) for batch in BATCHES}
    for batch_feed in feeds.values():
        for _ in range(WARMUP_RUNS):
            session.run(None, batch_feed)
    times: dict[int, list[float]] = {batch: [] for batch in BATCHES}
    for run in range(runs):
        order = BATCHES[run % len(BATCHES) :] + BATCHES[: run % len(BATCHES)]
        for batch in order:
            times[batch].append(timed(session, feeds[batch]))
    return times


def print_batch_times(model: Path, runs: int) -> None:
    """The track step's session.run by batch size: ms per call and per target, side by side."""
    header = "".join(f"{f'batch {batch}':>10s}" for batch in BATCHES)
    print(f"\ntrack step session.run, median ms {header}")
    for threads, label in THREADS:
        times = batch_times(model, threads, runs)
        medians = {batch: statistics.median(samples) * MS for batch, samples in times.items()}
        per_call = "".join(f"{medians[batch]:10.2f}" for batch in BATCHES)
        per_target = "".join(f"{medians[batch] / batch:10.2f}" for batch in BATCHES)
        print(f"  {label:8s} per call              {per_call}")
        print(f"  {label:8s} per target            {per_target}")


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def track_clip(engine: Engine, settings: SyntheticSettings) -> tuple[float, float, float, float]:
    """(box IoU mean, box IoU min, mask IoU mean, seconds) over the clip."""
    clip = SyntheticClip(settings)
    tracker = Tracker(engine, TrackerParams.from_settings(TrackerSettings(), engine.contract))
    tracker.start(clip.frame(0), clip.truth(0).box_xywh)
    boxes, masks = [], []
    started = time.perf_counter()
    for index in range(1, len(clip)):
        result = tracker.step(clip.frame(index)).result
        truth = clip.truth(index)
        boxes.append(box_iou(result.bbox_xywh, truth.box_xywh))
        full = result.mask.to_full() if result.mask else np.zeros_like(truth.mask)
        masks.append(np.count_nonzero(full & truth.mask) / np.count_nonzero(full | truth.mask))
    elapsed = time.perf_counter() - started
    return float(np.mean(boxes)), float(np.min(boxes)), float(np.mean(masks)), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--model", type=Path, default=None, help="timings of this file (default: the builtin)"
    )
    parser.add_argument("--no-clips", action="store_true", help="timings only")
    args = parser.parse_args()
    model: Path = args.model or builtin_model_path()

    print("session.run, one target, ms  median    p90")
    for threads, label in THREADS:
        for branch, samples in branch_times(model, threads, args.runs).items():
            p90 = float(np.percentile(samples, 90))
            print(
                f"  {branch:5s} {label:8s}           "
                f"{statistics.median(samples) * MS:7.2f} {p90 * MS:6.2f}"
            )
    print_batch_times(model, args.runs)
    if args.no_clips:
        return

    engine = Engine.load("builtin", ModelSettings(providers=["cpu"], intra_op_threads=1))
    print("\nclip                seed  box IoU mean   min  mask IoU mean  seconds")
    for width, height, frames in SIZES:
        for seed in args.seeds:
            settings = SyntheticSettings(width=width, height=height, frames=frames, seed=seed)
            mean, low, mask, seconds = track_clip(engine, settings)
            clip = f"{width}x{height} x{frames}"
            print(f"  {clip:18s}{seed:4d}  {mean:12.3f} {low:5.3f} {mask:14.3f} {seconds:8.1f}")


if __name__ == "__main__":
    main()
