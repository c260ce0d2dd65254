"""Draws tracking results onto a frame for people: mask tint, rotated box, centre, label.

Draws in place on the image it is given (callers pass a copy); touches only the mask window.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.tracking.result import TrackResult, TrackState

PALETTE_BGR = (
    (80, 200, 60),
    (40, 160, 255),
    (230, 90, 200),
    (60, 220, 230),
    (250, 170, 60),
    (120, 120, 255),
)
LOST_BGR = (128, 128, 128)
TINT_ALPHA = 0.45
FONT = cv2.FONT_HERSHEY_SIMPLEX


def track_color(slot: int, state: TrackState) -> tuple[int, int, int]:
    """A stable colour per track slot; grey while the target is lost."""
    return LOST_BGR if state is TrackState.LOST else PALETTE_BGR[slot % len(PALETTE_BGR)]


def tint_mask(image: NDArray[np.uint8], result: TrackResult, color: tuple[int, int, int]) -> None:
    """Blend color into the mask's pixels, inside the mask window only."""
    mask = result.mask
    if mask is None or mask.bits.size == 0:
        return
    x0, y0 = mask.origin_xy
    h, w = mask.bits.shape
    window = image[y0 : y0 + h, x0 : x0 + w]
    tint = np.array(color, dtype=np.float32) * TINT_ALPHA
    pixels = window[mask.bits].astype(np.float32) * (1 - TINT_ALPHA) + tint
    window[mask.bits] = pixels.astype(np.uint8)


def draw_track(image: NDArray[np.uint8], label: str, result: TrackResult, slot: int) -> None:
    """Mask tint, rotated box, centre and `label score` for one track."""
    color = track_color(slot, result.state)
    tint_mask(image, result, color)
    thickness = max(1, round(image.shape[1] / 640))
    corners = np.round(np.array(result.rotated_box, dtype=np.float64)).astype(np.int32)
    cv2.polylines(image, [corners], isClosed=True, color=color, thickness=thickness)
    cx, cy = (round(v) for v in result.center_xy)
    cv2.circle(image, (cx, cy), 2 * thickness + 1, color, -1)
    text = label if result.score is None else f"{label} {result.score:.2f}"
    if result.state is TrackState.LOST:
        text += " lost"
    top = int(np.min(corners[:, 1]))
    left = int(np.min(corners[:, 0]))
    scale = 0.5 * thickness
    cv2.putText(image, text, (left, max(12, top - 6)), FONT, scale, color, thickness, cv2.LINE_AA)
