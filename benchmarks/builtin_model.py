"""builtin-ncc: session.run time per branch on the CPU, and tracking quality on synthetic clips.

Prints, side by side, the median / 90th percentile milliseconds of the init and the track
branch (onnxruntime CPU, one intra-op thread and the default), then the box IoU (mean, min) and
mask IoU (mean) of the real Tracker on synthetic clips of several sizes and seeds, started from
the truth box of frame 0.

    python benchmarks/builtin_model.py [--runs 300] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
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


def branch_times(threads: int, runs: int) -> dict[str, list[float]]:
    """Seconds per session.run of each branch on a synthetic crop pair."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(builtin_model_path()), options, providers=["CPUExecutionProvider"]
    )
    clip = SyntheticClip(SyntheticSettings())
    frame = clip.frame(0)
    x, y, w, h = clip.truth(0).box_xywh
    image = np.zeros((1, 3, 255, 255), np.float32)
    cx, cy = x + w // 2, y + h // 2
    image[0] = frame[cy - 127 : cy + 128, cx - 127 : cx + 128].transpose(2, 0, 1)
    feeds: dict[str, Any] = {
        c.IN_IMAGE: image,
        c.IN_CENTER: np.array([cx, cy], np.float32),
        c.IN_SIZE: np.array([w, h], np.float32),
        c.IN_SCALE: np.array(1.0),
        c.IN_FEATURES: np.zeros(session.get_inputs()[4].shape, np.float32),
        c.IN_FIRST_TIME: np.array(True),
    }
    times: dict[str, list[float]] = {}
    for branch, first in (("init", True), ("track", False)):
        feeds[c.IN_FIRST_TIME] = np.array(first)
        for _ in range(10):
            outputs = session.run(None, feeds)
        feeds[c.IN_FEATURES] = outputs[3]
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            session.run(None, feeds)
            samples.append(time.perf_counter() - started)
        times[branch] = samples
    return times


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
    args = parser.parse_args()

    print("session.run, ms      median    p90")
    for threads, label in ((1, "1 thread"), (0, "default")):
        for branch, samples in branch_times(threads, args.runs).items():
            p90 = float(np.percentile(samples, 90))
            print(
                f"  {branch:5s} {label:8s} {statistics.median(samples) * MS:7.2f} {p90 * MS:6.2f}"
            )

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
