"""Around the model for a target that grows with the frame: the tennis player at 480p, 1080p
and 4K (the tennis frames resized, as benchmarks/gpu.py does), builtin model on the CPU.

Its search window (about 600, 1350 and 2700 px) straddles the frame edge. Per frame, on the
tracker's own state, three ways to make the same crop (bit-identical results), side by side:
  kept:  crop_resized with a CropScratch kept between frames (what a Tracker does),
  fresh: crop_resized with a new scratch every frame (fresh pages, as before CropScratch),
  pad:   the whole region padded then resized (what SiamMask does, and siamedge for regions
         up to SPARSE_MIN_SCALE x the model input),
then the mask work two ways, side by side:
  hot:   warp, threshold, contours and rotated box only around the map pixels near the
         threshold (project_mask, what the tracker does),
  whole: the same over the whole window the map covers (as before hot_window),
and the tracker's whole finish (mask, boxes, state) and the results message (RLE, JSON);
median ms per frame. The model call is not timed.

    python benchmarks/large_target.py [--frames-dir DIR] [--frames 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from gpu import SIZES, load_frames, target_boxes
from numpy.typing import NDArray
from shared_reference import REFERENCE

from siamedge.config import ModelSettings, TrackerSettings
from siamedge.engine import Engine
from siamedge.messaging.protocol import encode_results
from siamedge.tracking.crop import BGR, CropScratch, crop_region, crop_resized
from siamedge.tracking.geometry import (
    CropGeometry,
    MaskPlacement,
    PointXY,
    mask_placement,
    search_window,
)
from siamedge.tracking.mask import (
    largest_contour,
    project_mask,
    rotated_box_of,
    warp_probabilities,
    warp_window,
)
from siamedge.tracking.tracker import Tracker, TrackerParams

MS = 1000.0
REPEATS = 3


def timed_ms(work: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    """ms that work(*args, **kwargs) took."""
    started = time.perf_counter()
    work(*args, **kwargs)
    return (time.perf_counter() - started) * MS


def padded_resize(
    frame: NDArray[np.uint8], center: PointXY, side: int, out: int, fill: BGR
) -> NDArray[np.uint8]:
    """SiamMask's way: the whole region padded, then resized."""
    resized: NDArray[np.uint8] = cv2.resize(crop_region(frame, center, side, fill), (out, out))
    return resized


def hot_window_post(
    probs: NDArray[np.float32],
    placement: MaskPlacement,
    frame_wh: tuple[int, int],
    params: TrackerParams,
) -> None:
    """The tracker's mask work: warp, threshold and contour around the hot map pixels, box."""
    mask, area = project_mask(probs, placement, frame_wh, params.seg_thr)
    rotated_box_of(mask.contour_xy, area, params.min_contour_area)


def whole_window_post(
    probs: NDArray[np.float32],
    placement: MaskPlacement,
    frame_wh: tuple[int, int],
    params: TrackerParams,
) -> None:
    """The mask work over the whole window the map covers: warp, threshold, contour, box."""
    window = warp_window(placement, probs.shape[0], frame_wh)
    if window is None:
        return
    bits = warp_probabilities(probs, window) > params.seg_thr
    contour, area = largest_contour(bits.view(np.uint8), (window.x0, window.y0))
    rotated_box_of(contour, area, params.min_contour_area)


def measure(engine: Engine, frames: list[NDArray[np.uint8]]) -> dict[str, float]:
    """Median ms per frame of each crop way, the finish and the message; the search side."""
    params = TrackerParams.from_settings(TrackerSettings(), engine.contract)
    geometry = CropGeometry.from_contract(engine.contract)
    tracker = Tracker(engine, params)
    tracker.start(frames[0], target_boxes((frames[0].shape[1], frames[0].shape[0]), 1)[0])
    out = geometry.instance_size
    kept = CropScratch()
    figures: dict[str, list[float]] = {
        name: [] for name in ("kept", "fresh", "pad", "finish", "hot", "whole", "message", "side")
    }
    for index, frame in enumerate(frames[1:], start=1):
        state = tracker.require_state()
        side = search_window(state.size_wh, geometry).side
        center, fill = state.center_xy, state.fill_bgr
        figures["side"].append(side)
        crop = (frame, center, side, out, fill)
        if not np.array_equal(crop_resized(*crop, scratch=kept), padded_resize(*crop)):
            raise SystemExit(f"frame {index}: the crops differ (side {side}, centre {center})")
        # Each way REPEATS times in turn, after the check above brought the frame into the
        # caches: the first to read a frame would pay for all.
        for _ in range(REPEATS):
            figures["kept"].append(timed_ms(crop_resized, *crop, scratch=kept))
            figures["fresh"].append(timed_ms(crop_resized, *crop))
            figures["pad"].append(timed_ms(padded_resize, *crop))
        search = tracker.prepare(frame)
        batch = engine.track(
            search.crop[np.newaxis],
            np.array([state.center_xy]),
            np.array([state.size_wh]),
            np.array([search.window.scale_x]),
            [state.features],
        )
        started = time.perf_counter()
        outcome = tracker.finish(search, batch.row(0))
        figures["finish"].append((time.perf_counter() - started) * MS)
        row = batch.row(0)
        placement = mask_placement(state.center_xy, side, row.best_cell_yx, geometry)
        mask_work = (row.mask_probs, placement, state.frame_wh, params)
        for _ in range(REPEATS):
            figures["hot"].append(timed_ms(hot_window_post, *mask_work))
            figures["whole"].append(timed_ms(whole_window_post, *mask_work))
        size_wh = (frame.shape[1], frame.shape[0])
        tracks = [("t1", outcome.result)]
        figures["message"].append(timed_ms(encode_results, index, 0.0, size_wh, tracks))
    return {name: statistics.median(values) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames-dir", type=Path, default=REFERENCE / "tennis")
    parser.add_argument("--frames", type=int, default=30)
    args = parser.parse_args()
    engine = Engine.load("builtin", ModelSettings(providers=["cpu"]))
    rows = [
        (size, measure(engine, load_frames(args.frames_dir, size, args.frames + 1)))
        for size in SIZES.values()
    ]
    print(
        f"median ms per frame, one target (the tennis player, scaled with the frame), "
        f"builtin model on the CPU, OpenCV {cv2.getNumThreads()} thread(s)"
    )
    header = (
        f"{'frame':>10} {'search px':>9} | {'kept':>6} {'fresh':>6} {'pad':>6} | "
        f"{'hot':>6} {'whole':>6} | {'finish':>6} {'message':>7} | {'kept+finish+message':>19}"
    )
    print(header)
    print("-" * len(header))
    for (width, height), t in rows:
        total = t["kept"] + t["finish"] + t["message"]
        print(
            f"{width:>5}x{height:<4} {t['side']:9.0f} | {t['kept']:6.2f} {t['fresh']:6.2f} "
            f"{t['pad']:6.2f} | {t['hot']:6.2f} {t['whole']:6.2f} | {t['finish']:6.2f} "
            f"{t['message']:7.2f} | {total:19.2f}"
        )


if __name__ == "__main__":
    main()
