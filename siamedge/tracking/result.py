"""What one tracking step reports for one target: a frozen value, safe to hand to other threads.

Never holds a reference to the frame; the mask is kept as a small window, not a full-frame array.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

PointXY = tuple[float, float]
BoxXYWH = tuple[float, float, float, float]


class TrackState(str, enum.Enum):
    """Whether the target is followed (`tracking`) or its score stayed low (`lost`)."""

    TRACKING = "tracking"
    LOST = "lost"


@dataclass(frozen=True)
class MaskWindow:
    """A binary mask stored as the window of the frame that can hold foreground pixels.

    bits: (h, w) bool, the mask inside the window; pixels outside the window are background.
    origin_xy: full-frame pixel coordinates of bits[0, 0].
    frame_wh: size of the full frame the mask belongs to.
    contour_xy: (N, 2) int32 full-frame points of the largest external contour ((0, 2) if none).
    """

    bits: NDArray[np.bool_]
    origin_xy: tuple[int, int]
    frame_wh: tuple[int, int]
    contour_xy: NDArray[np.int32]

    @property
    def area(self) -> int:
        """Number of foreground pixels."""
        return int(np.count_nonzero(self.bits))

    def to_full(self) -> NDArray[np.bool_]:
        """The (H, W) full-frame mask; allocates a frame-sized array (tests and overlays only)."""
        width, height = self.frame_wh
        full = np.zeros((height, width), dtype=np.bool_)
        x0, y0 = self.origin_xy
        h, w = self.bits.shape
        full[y0 : y0 + h, x0 : x0 + w] = self.bits
        return full


@dataclass(frozen=True)
class TrackResult:
    """One target after one step, in full-frame pixel coordinates.

    center_xy / size_wh: the tracker state after the step (clipped as in SiamMask).
    bbox_xywh: axis-aligned box of the mask; the centre/size box when the mask is empty.
    rotated_box: 4 corner points (x, y): minAreaRect of the largest contour, else the axis box.
    score: the model's best-anchor score, or None when the model has no `score` output.
    """

    center_xy: PointXY
    size_wh: PointXY
    bbox_xywh: BoxXYWH
    rotated_box: tuple[PointXY, PointXY, PointXY, PointXY]
    score: float | None
    state: TrackState
    mask: MaskWindow | None
