"""Per-frame cost of each mask encoding for a ~200 px object at four frame sizes, side by side.

Prints figures only; asserts nothing. Run: PYTHONPATH=. python benchmarks/encoding.py
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import cv2
import numpy as np
from benchmark_extras import PYCOCOTOOLS, needs

from siamedge.messaging.masks import encode_png, encode_polygon, encode_rle
from siamedge.messaging.protocol import encode_results
from siamedge.tracking.result import MaskWindow, TrackResult, TrackState

with needs(PYCOCOTOOLS, "for the COCO RLE it compares with"):
    from pycocotools import mask as coco_mask

FRAME_SIZES = ((640, 480), (1280, 720), (1920, 1080), (3840, 2160))
OBJECT_WH = (200, 150)
"""The ellipse's axes; the window adds a margin as the tracker's mask crop would."""
WINDOW_MARGIN = 16
REPEATS = 7


def object_window(frame_wh: tuple[int, int]) -> MaskWindow:
    """A filled, slightly rotated ellipse in the middle of the frame, with its contour."""
    obj_w, obj_h = OBJECT_WH
    win_w, win_h = obj_w + 2 * WINDOW_MARGIN, obj_h + 2 * WINDOW_MARGIN
    image = np.zeros((win_h, win_w), dtype=np.uint8)
    center = (win_w // 2, win_h // 2)
    cv2.ellipse(image, center, (obj_w // 2, obj_h // 2), 20.0, 0.0, 360.0, 255, -1)
    origin = ((frame_wh[0] - win_w) // 2, (frame_wh[1] - win_h) // 2)
    contours, _ = cv2.findContours(image, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=origin)
    contour = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.int32)
    return MaskWindow(image > 0, origin, frame_wh, contour)


def result_for(window: MaskWindow) -> TrackResult:
    x0, y0 = window.origin_xy
    h, w = window.bits.shape
    return TrackResult(
        center_xy=(x0 + w / 2, y0 + h / 2),
        size_wh=(float(OBJECT_WH[0]), float(OBJECT_WH[1])),
        bbox_xywh=(float(x0), float(y0), float(w), float(h)),
        rotated_box=((x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)),
        score=0.93,
        state=TrackState.TRACKING,
        mask=window,
    )


def coco_full_frame(window: MaskWindow) -> None:
    """The naive way: build the full-frame mask and hand it to pycocotools."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        coco_mask.encode(np.asfortranarray(window.to_full().astype(np.uint8)))


def best_of(function: Callable[[], object], number: int) -> float:
    """Median over REPEATS runs of the mean time of `number` calls, in microseconds."""
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(number):
            function()
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--number", type=int, default=200, help="calls per timing run")
    args = parser.parse_args()

    windows = {size: object_window(size) for size in FRAME_SIZES}
    rows: list[tuple[str, Callable[[MaskWindow], object]]] = [
        ("rle (window only)", encode_rle),
        ("polygon", encode_polygon),
        ("png (window)", encode_png),
        (
            "results msg, rle",
            lambda w: encode_results(0, 0.0, w.frame_wh, [("t1", result_for(w))], publish_time=0),
        ),
        ("pycocotools full frame", coco_full_frame),
    ]
    headers = [f"{w}x{h}" for w, h in FRAME_SIZES]
    print(f"object {OBJECT_WH[0]}x{OBJECT_WH[1]} px ellipse, window +{WINDOW_MARGIN} px; µs/call")
    print(f"{'encoding':<24}" + "".join(f"{name:>12}" for name in headers))
    for name, encode in rows:
        cells = []
        for size in FRAME_SIZES:
            window = windows[size]
            cells.append(best_of(lambda e=encode, w=window: e(w), args.number))
        print(f"{name:<24}" + "".join(f"{cell:>12.1f}" for cell in cells))
    sizes = {
        "rle": len(encode_rle(windows[FRAME_SIZES[-1]])["counts"]),
        "polygon points": len(windows[FRAME_SIZES[-1]].contour_xy),
        "png base64": len(encode_png(windows[FRAME_SIZES[-1]])["data"]),
    }
    print("payload sizes (chars):", ", ".join(f"{k} {v}" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
