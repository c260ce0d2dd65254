"""Mask post-processing: warp the model's mask window into the frame, threshold, trace contours.

Everything happens inside the part of the frame where the warped mask can exceed the threshold;
nothing is ever allocated frame-sized.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.tracking.geometry import MaskPlacement, PointXY
from siamedge.tracking.result import MaskWindow

BORDER_VALUE = -1.0
"""Probability given to frame pixels the mask window does not cover (below any threshold)."""

WINDOW_MARGIN_PX = 2
"""Extra pixels around the warped window: bilinear reach plus warpAffine's fixed-point rounding,
and a zero border so contours traced in the window equal those traced in the full frame."""

NO_CONTOUR = np.zeros((0, 2), dtype=np.int32)

HOT_MARGIN = 1e-3
"""Map values this far below the threshold still count as possibly above it once warped (the
bilinear weights, in float, can sum to a little over 1)."""

SAMPLE_ROUNDING_PX = 1.0 / 16
"""How far warpAffine's fixed-point sample positions (1/32 map px) may lie from the exact ones,
with room to spare."""

AREA_BOUND_DIVISOR = 6.0
"""n^2 / 6 bounds the area inside a closed chain of n 8-neighbour points (isoperimetric, 2 pi > 6)
and so skips contours that cannot be the largest."""

HULL_FILTER_MIN_POINTS = 4096
"""Contours this long are thinned to their possible hull vertices before minAreaRect (whose
convex hull sorts every point); shorter ones cost less than the thinning."""


RIGHT_ANGLE_DEG = 90.0
"""The ends of OpenCV's minAreaRect angle ranges, [-90, 0) or [0, 90] by version."""


@dataclass(frozen=True)
class WarpWindow:
    """The frame window the warped mask can touch, and the affine map mask -> window pixels."""

    x0: int
    y0: int
    width: int
    height: int
    matrix: NDArray[np.float64]
    """(2, 3) affine map from mask-map pixels to window pixels."""


def warp_window(
    placement: MaskPlacement, map_size: int, frame_wh: tuple[int, int]
) -> WarpWindow | None:
    """The window of the frame covered by the mask map, or None when it misses the frame.

    The map is SiamMask's full-frame `crop_back` warp restricted to the window: the same
    scale (W - 1) / (W * s), so the warped values equal the full-frame warp's.
    """
    width, height = frame_wh
    scale = map_size / placement.side
    back_x, back_y = -placement.x * scale, -placement.y * scale
    a = (width - 1) / (width * scale)
    b = (height - 1) / (height * scale)
    c = -a * back_x
    d = -b * back_y
    # Mask pixels u in (-1, map_size) can contribute: bilinear blends with the border.
    x_lo = max(0, math.floor(c - a) - WINDOW_MARGIN_PX)
    y_lo = max(0, math.floor(d - b) - WINDOW_MARGIN_PX)
    x_hi = min(width, math.ceil(c + a * map_size) + WINDOW_MARGIN_PX + 1)
    y_hi = min(height, math.ceil(d + b * map_size) + WINDOW_MARGIN_PX + 1)
    if x_lo >= x_hi or y_lo >= y_hi:
        return None
    matrix = np.array([[a, 0.0, c - x_lo], [0.0, b, d - y_lo]], dtype=np.float64)
    return WarpWindow(x_lo, y_lo, x_hi - x_lo, y_hi - y_lo, matrix)


def hot_window(
    probs: NDArray[np.float32], threshold: float, window: WarpWindow
) -> WarpWindow | None:
    """The part of `window` where the warped (E, E) map can exceed `threshold`, with the same
    map; None when no map pixel comes near it.

    A window pixel samples the map at u = (x - tx) / a and blends pixels floor(u) and
    floor(u) + 1, so only samples within one map pixel of the columns (and rows) holding
    values above threshold - HOT_MARGIN can come out above the threshold. The margin of
    WINDOW_MARGIN_PX around them keeps the zero border that contours need.
    """
    near = probs > threshold - HOT_MARGIN
    cols = np.flatnonzero(near.any(axis=0))
    rows = np.flatnonzero(near.any(axis=1))
    if cols.size == 0:
        return None
    a, tx = float(window.matrix[0, 0]), float(window.matrix[0, 2])
    b, ty = float(window.matrix[1, 1]), float(window.matrix[1, 2])
    reach = 1.0 + SAMPLE_ROUNDING_PX
    x_lo = max(0, math.floor(tx + a * (cols[0] - reach)) - WINDOW_MARGIN_PX)
    y_lo = max(0, math.floor(ty + b * (rows[0] - reach)) - WINDOW_MARGIN_PX)
    x_hi = min(window.width, math.ceil(tx + a * (cols[-1] + reach)) + WINDOW_MARGIN_PX + 1)
    y_hi = min(window.height, math.ceil(ty + b * (rows[-1] + reach)) + WINDOW_MARGIN_PX + 1)
    if x_lo >= x_hi or y_lo >= y_hi:
        return None
    matrix = np.array([[a, 0.0, tx - x_lo], [0.0, b, ty - y_lo]], dtype=np.float64)
    return WarpWindow(window.x0 + x_lo, window.y0 + y_lo, x_hi - x_lo, y_hi - y_lo, matrix)


def warp_probabilities(probs: NDArray[np.float32], window: WarpWindow) -> NDArray[np.float32]:
    """The (height, width) probabilities of the window (bilinear; -1 where the map has none)."""
    warped = cv2.warpAffine(
        probs,
        window.matrix,
        (window.width, window.height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=BORDER_VALUE,
    )
    return cast(NDArray[np.float32], warped)


def largest_contour(
    bits_u8: NDArray[np.uint8], origin_xy: tuple[int, int]
) -> tuple[NDArray[np.int32], float]:
    """The largest external contour of a window mask, in frame pixels, and its area (px^2).

    Ties go to the first contour found, as in SiamMask. Returns ((0, 2), 0.0) when empty.
    """
    contours, _ = cv2.findContours(
        bits_u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=origin_xy
    )
    if not contours:
        return NO_CONTOUR, 0.0
    best, area = _largest(contours)
    points: NDArray[np.int32] = contours[best].reshape(-1, 2).astype(np.int32, copy=False)
    return points, area


def _largest(contours: Sequence[cv2.typing.MatLike]) -> tuple[int, float]:
    """Index and area of the first contour of greatest area, as argmax over all areas.

    Longest first: a closed curve of n 8-neighbour steps (length <= n * sqrt(2)) encloses at most
    length^2 / (4 pi) < n^2 / 6, so once that is below the best area the rest cannot win.
    """
    lengths = [len(contour) for contour in contours]
    best, best_area = 0, -1.0
    for index in sorted(range(len(contours)), key=lengths.__getitem__, reverse=True):
        if lengths[index] ** 2 / AREA_BOUND_DIVISOR < best_area:
            break
        area = float(cv2.contourArea(contours[index]))
        if area > best_area or (area == best_area and index < best):
            best, best_area = index, area
    return best, best_area


def project_mask(
    probs: NDArray[np.float32],
    placement: MaskPlacement,
    frame_wh: tuple[int, int],
    threshold: float,
) -> tuple[MaskWindow, float]:
    """Threshold the model's (E, E) mask probabilities placed in the frame: a window mask,
    warped and traced only around the map pixels near the threshold (hot_window).

    Returns the mask, whose contour is the largest external one (frame pixels; (0, 2) when the
    mask is empty), and that contour's area in px^2.
    """
    window = warp_window(placement, probs.shape[0], frame_wh)
    if window is not None:
        window = hot_window(probs, threshold, window)
    if window is None:
        return MaskWindow(np.zeros((0, 0), np.bool_), (0, 0), frame_wh, NO_CONTOUR), 0.0
    bits = warp_probabilities(probs, window) > threshold
    contour, area = largest_contour(bits.view(np.uint8), (window.x0, window.y0))
    return MaskWindow(bits, (window.x0, window.y0), frame_wh, contour), area


def rotated_box_of(
    contour_xy: NDArray[np.int32], contour_area: float, min_area: float
) -> tuple[PointXY, PointXY, PointXY, PointXY] | None:
    """Corners of the min-area rotated rectangle of a contour whose area exceeds min_area."""
    if contour_area <= min_area:
        return None
    if len(contour_xy) >= HULL_FILTER_MIN_POINTS:
        contour_xy = hull_candidates(contour_xy)
    return rect_corners(cv2.minAreaRect(contour_xy))


def rect_corners(rect: cv2.typing.RotatedRect) -> tuple[PointXY, PointXY, PointXY, PointXY]:
    """cv2.boxPoints of a minAreaRect result ((centre), (width, height), angle in degrees), in
    the order of OpenCV's angle range [-90, 0).

    That is the range of OpenCV 3.x to 4.5.0 and 5.x, which SiamMask was written against (its
    corners start at the lowest one). OpenCV 4.5.1 to 4.x give the same rectangle with an angle
    in [0, 90], whose corners start elsewhere: the published corners would depend on the
    OpenCV a board has. Such an angle is written in the other range first.
    """
    (cx, cy), (width, height), angle = rect
    if angle == RIGHT_ANGLE_DEG:
        rect = ((cx, cy), (width, height), -RIGHT_ANGLE_DEG)
    elif 0 <= angle < RIGHT_ANGLE_DEG:
        rect = ((cx, cy), (height, width), angle - RIGHT_ANGLE_DEG)
    corners = cv2.boxPoints(rect)
    p0, p1, p2, p3 = ((float(x), float(y)) for x, y in corners)
    return p0, p1, p2, p3


def hull_candidates(contour_xy: NDArray[np.int32]) -> NDArray[np.int32]:
    """The points of a (N, 2) int32 contour that can be convex-hull vertices, in contour order.

    A vertex has the least or greatest x of the points in its row and the least or greatest y of
    those in its column; any other point lies between two points on a line. Thinning keeps every
    copy of a kept point and the order, so OpenCV's hull, and minAreaRect, come out the same
    (tests/test_mask.py checks this on many shapes).
    """
    x = contour_xy[:, 0].astype(np.intp)
    y = contour_xy[:, 1].astype(np.intp)
    keep = _line_extremes(x, y) & _line_extremes(y, x)
    return np.compress(keep, contour_xy, axis=0)


def _line_extremes(value: NDArray[np.intp], line: NDArray[np.intp]) -> NDArray[np.bool_]:
    """Which points have the least or greatest value among the points on their line."""
    index = line - np.min(line)
    count = int(np.max(index)) + 1
    least = np.full(count, np.iinfo(np.intp).max, dtype=np.intp)
    most = np.full(count, np.iinfo(np.intp).min, dtype=np.intp)
    np.minimum.at(least, index, value)
    np.maximum.at(most, index, value)
    extreme: NDArray[np.bool_] = (value == least[index]) | (value == most[index])
    return extreme


def mask_bbox(mask: MaskWindow) -> tuple[float, float, float, float] | None:
    """(x, y, w, h) in frame pixels of the mask's foreground pixels; None when empty."""
    if mask.bits.size == 0:
        return None
    x, y, w, h = cv2.boundingRect(mask.bits.view(np.uint8))
    if w == 0:
        return None
    x0, y0 = mask.origin_xy
    return float(x0 + x), float(y0 + y), float(w), float(h)
