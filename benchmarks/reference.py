"""Per-frame time of the original SiamMask step in PyTorch against siamedge's step on onnxruntime.

On the tennis frames (854x480) and the same frames upscaled to 1920x1080, each tracker runs free
from the reference init box and the median time per frame is printed side by side:
  (a) PyTorch reference: the exported network's PyTorch module driven the way tools/test.py
      drives it (whole-frame padding copy when the crop leaves the frame, the unused mask head,
      numpy decoding, refine, mask warped onto a frame-sized array, contours over the frame);
  (b) siamedge: Tracker.step with the exported model on onnxruntime's CPU provider (O(crop)
      crop, windowed mask warp);
  (c) session.run alone, inside (b);
and the ratios b/a and b/c. Both use the same number of threads.

    python benchmarks/reference.py [--frames 30] [--threads 1] [--model m.onnx --checkpoint c.pth]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from benchmark_extras import EXPORT, needs
from numpy.typing import NDArray
from shared_reference import REFERENCE, TENNIS_BOXES_XYWH, seed0_checkpoint
from timed_session import timed

from siamedge.config import ModelSettings, TrackerSettings
from siamedge.engine import Engine
from siamedge.export.spec import HyperParameters
from siamedge.tracking.tracker import Tracker, TrackerParams

with needs(EXPORT):
    import torch
    from original_tracker import OriginalTracker

    from siamedge.export.builder import ExportOptions
    from siamedge.export.checkpoint import load_network
    from siamedge.export.exporter import export_checkpoint
    from siamedge.export.network import SiamMaskVOT

SIZES = ((854, 480), (1920, 1080))
MS = 1000.0


def frames_at(size_wh: tuple[int, int], count: int) -> list[NDArray[np.uint8]]:
    """The first `count` tennis frames resized (bilinear) to size_wh."""
    frames = []
    for index in range(count):
        frame = cv2.imread(str(REFERENCE / "tennis" / f"{index:05d}.jpg"))
        if frame.shape[1::-1] != size_wh:
            frame = cv2.resize(frame, size_wh)
        frames.append(frame)
    return frames


def measure(
    model: Path, net: SiamMaskVOT, size_wh: tuple[int, int], count: int, threads: int
) -> dict[str, float]:
    frames = frames_at(size_wh, count)
    factor = size_wh[0] / 854
    box = tuple(v * factor for v in TENNIS_BOXES_XYWH[0])

    engine = Engine.load(str(model), ModelSettings(providers=["cpu"], intra_op_threads=threads))
    session = timed(engine)
    tracker = Tracker(engine, TrackerParams.from_settings(TrackerSettings(), engine.contract))
    tracker.start(frames[0], box)
    original = OriginalTracker(net, HyperParameters())
    original.start(frames[0], box)
    steps, runs, reference, networks, apart = [], [], [], [], 0.0
    for frame in frames[1:]:
        started = time.perf_counter()
        result = tracker.step(frame).result
        steps.append(time.perf_counter() - started)
        runs.append(session.last_s)
        started = time.perf_counter()
        original.step(frame)
        reference.append(time.perf_counter() - started)
        networks.append(original.network_s)
        apart = max(apart, float(np.abs(np.subtract(result.center_xy, original.pos)).max()))
    return {
        "a": statistics.median(reference) * MS,
        "a_net": statistics.median(networks) * MS,
        "b": statistics.median(steps) * MS,
        "c": statistics.median(runs) * MS,
        "apart": apart,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per size (incl. init)")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime threads")
    parser.add_argument("--checkpoint", type=Path, help="default: the seed-0 stand-in")
    parser.add_argument("--model", type=Path, help="default: export the checkpoint")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.checkpoint or seed0_checkpoint(Path(folder))
        model = args.model or Path(folder) / "siammask_vot.onnx"
        if args.model is None:
            export_checkpoint(checkpoint, model, ExportOptions(), validate=False)
        net = load_network(checkpoint)
        rows = [(size, measure(model, net, size, args.frames, args.threads)) for size in SIZES]
    print(
        f"median ms per frame over {args.frames - 1} tracked frames, CPU, "
        f"{args.threads} thread(s), torch {torch.__version__}"
    )
    header = (
        f"{'frame':>10} | {'(a) PyTorch ref':>15} {'(b) siamedge':>12} {'(c) run':>8} | "
        f"{'b/a':>5} {'b/c':>5} | {'a: network':>10} {'a-network':>9} {'b-c':>6} | "
        f"{'max centre a vs b':>17}"
    )
    print(header)
    print("-" * len(header))
    for (width, height), t in rows:
        print(
            f"{width:>5}x{height:<4} | {t['a']:15.1f} {t['b']:12.1f} {t['c']:8.1f} | "
            f"{t['b'] / t['a']:5.2f} {t['b'] / t['c']:5.2f} | {t['a_net']:10.1f} "
            f"{t['a'] - t['a_net']:9.1f} {t['b'] - t['c']:6.1f} | {t['apart']:14.2g} px"
        )
    print("a-network / b-c: the work around the network (crop, decoding, mask) of each step")


if __name__ == "__main__":
    main()
