"""Square crops around the target, padded with the init frame's mean colour, resized for the model.

Work is O(crop size): only the part of the frame that overlaps the crop is read; the whole frame
is never padded or copied.
"""

from __future__ import annotations

from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.tracking.geometry import PointXY, crop_origin

BGR = tuple[int, int, int]


def mean_color(frame: NDArray[np.uint8]) -> BGR:
    """Per-channel mean of a (H, W, 3) frame, truncated to uint8 as SiamMask's padding does."""
    means = cv2.mean(frame)[:3]
    return int(means[0]), int(means[1]), int(means[2])


def crop_region(
    frame: NDArray[np.uint8], center_xy: PointXY, side: int, fill_bgr: BGR
) -> NDArray[np.uint8]:
    """The side x side region centred on center_xy, (side, side, 3) uint8.

    Pixels outside the frame take fill_bgr. Returns a view of the frame when the region lies
    inside it; otherwise a new array built from the overlapping part only.
    """
    height, width = frame.shape[:2]
    x_min, y_min = crop_origin(center_xy, side)
    x_end, y_end = x_min + side, y_min + side
    if x_min >= 0 and y_min >= 0 and x_end <= width and y_end <= height:
        return frame[y_min:y_end, x_min:x_end]
    x0, y0 = max(x_min, 0), max(y_min, 0)
    x1, y1 = min(x_end, width), min(y_end, height)
    if x0 >= x1 or y0 >= y1:
        region = np.empty((side, side, 3), dtype=np.uint8)
        region[:] = fill_bgr
        return region
    padded = cv2.copyMakeBorder(
        frame[y0:y1, x0:x1],
        top=y0 - y_min,
        bottom=y_end - y1,
        left=x0 - x_min,
        right=x_end - x1,
        borderType=cv2.BORDER_CONSTANT,
        value=fill_bgr,
    )
    return cast(NDArray[np.uint8], padded)


def crop_resized(
    frame: NDArray[np.uint8], center_xy: PointXY, side: int, out_size: int, fill_bgr: BGR
) -> NDArray[np.uint8]:
    """The side x side region resized (bilinear, as uint8) to (out_size, out_size, 3)."""
    region = crop_region(frame, center_xy, side, fill_bgr)
    if side == out_size:
        return region
    resized = cv2.resize(region, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
    return cast(NDArray[np.uint8], resized)
