"""SiamMask crop and back-projection geometry: context sides, search scale, mask window, clipping.

Plain float arithmetic in the original tracker's operation order (parity); never touches pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from siamedge.contract import ModelContract
from siamedge.errors import BoxError

PointXY = tuple[float, float]
BoxXYWH = tuple[float, float, float, float]

MIN_TARGET_SIDE = 10.0
"""SiamMask clips the target size to at least 10 px after every step."""
MIN_BOX_SIDE = 1.0
"""A start box narrower or lower than this (px) holds nothing to track."""


@dataclass(frozen=True)
class CropGeometry:
    """The network's fixed crop sizes (read from the model), in pixels of the crops."""

    exemplar_size: int
    instance_size: int
    total_stride: int
    base_size: int
    context_amount: float

    @classmethod
    def from_contract(cls, contract: ModelContract) -> CropGeometry:
        """The geometry a model declares (shapes and metadata)."""
        return cls(
            exemplar_size=contract.exemplar_size,
            instance_size=contract.instance_size,
            total_stride=contract.total_stride,
            base_size=contract.base_size,
            context_amount=contract.context_amount,
        )


@dataclass(frozen=True)
class SearchWindow:
    """Where the track step looks: s_x is the search side before rounding.

    scale_x: exemplar_size / s_z (crop pixels per frame pixel), the model's `scale_x` input.
    side: round(s_x), the side of the square frame region resized to instance_size.
    """

    scale_x: float
    s_x: float
    side: int


def context_side(size_wh: PointXY, context_amount: float) -> float:
    """s_z = sqrt((w + p)(h + p)) with p = context_amount * (w + h)."""
    w, h = size_wh
    context = context_amount * (w + h)
    return math.sqrt((w + context) * (h + context))


def exemplar_side(size_wh: PointXY, context_amount: float) -> int:
    """Side of the frame region the init step crops: round(s_z), ties to even."""
    return round(context_side(size_wh, context_amount))


def search_window(size_wh: PointXY, geometry: CropGeometry) -> SearchWindow:
    """The track step's scale and search side for the current target size."""
    s_z = context_side(size_wh, geometry.context_amount)
    scale_x = geometry.exemplar_size / s_z
    d_search = (geometry.instance_size - geometry.exemplar_size) / 2
    s_x = s_z + 2 * (d_search / scale_x)
    return SearchWindow(scale_x=scale_x, s_x=s_x, side=round(s_x))


def crop_origin(center_xy: PointXY, side: int) -> tuple[int, int]:
    """Top-left frame pixel of a side x side crop centred on center_xy (SiamMask's rounding)."""
    half = (side + 1) / 2
    return round(center_xy[0] - half), round(center_xy[1] - half)


@dataclass(frozen=True)
class MaskPlacement:
    """Where the model's mask window lands in the frame: top-left and side, in frame pixels."""

    x: float
    y: float
    side: float


def mask_placement(
    center_before_xy: PointXY,
    search_side: int,
    best_cell_yx: tuple[int, int],
    geometry: CropGeometry,
) -> MaskPlacement:
    """The exemplar-sized window of the best anchor cell, mapped back into the frame.

    center_before_xy: the centre before the step (the search crop was centred there).
    """
    crop_x = center_before_xy[0] - search_side / 2
    crop_y = center_before_xy[1] - search_side / 2
    scale = search_side / geometry.instance_size
    row, col = best_cell_yx
    half_base = geometry.base_size / 2
    return MaskPlacement(
        x=crop_x + (col - half_base) * geometry.total_stride * scale,
        y=crop_y + (row - half_base) * geometry.total_stride * scale,
        side=scale * geometry.exemplar_size,
    )


def clip_state(
    center_xy: PointXY, size_wh: PointXY, frame_wh: tuple[int, int]
) -> tuple[PointXY, PointXY]:
    """Centre clipped to [0, W] x [0, H], size to [10, W] x [10, H] (after every SiamMask step)."""
    width, height = frame_wh
    center = (max(0.0, min(width, center_xy[0])), max(0.0, min(height, center_xy[1])))
    size = (
        max(MIN_TARGET_SIDE, min(width, size_wh[0])),
        max(MIN_TARGET_SIDE, min(height, size_wh[1])),
    )
    return (float(center[0]), float(center[1])), (float(size[0]), float(size[1]))


def center_box(center_xy: PointXY, size_wh: PointXY) -> BoxXYWH:
    """(x, y, w, h) of the box with that centre and size."""
    w, h = size_wh
    return center_xy[0] - w / 2, center_xy[1] - h / 2, w, h


def box_corners(box_xywh: BoxXYWH) -> tuple[PointXY, PointXY, PointXY, PointXY]:
    """Corners of an axis-aligned box, clockwise from the top-left (SiamMask's fallback order)."""
    x, y, w, h = box_xywh
    return (x, y), (x + w, y), (x + w, y + h), (x, y + h)


def box_problem(box_xywh: BoxXYWH, frame_wh: tuple[int, int] | None) -> str | None:
    """Why a start box in pixels cannot seed a target in a frame of that size (None: it can).

    frame_wh None (no frame yet): only the box's own numbers are checked. A box partly outside
    the frame is fine; one with no pixel inside it, or larger than it, is not.
    """
    if len(box_xywh) != 4 or not all(math.isfinite(float(v)) for v in box_xywh):
        return f"box must be 4 finite numbers x, y, w, h; got {list(box_xywh)}"
    x, y, w, h = (float(v) for v in box_xywh)
    if w <= 0 or h <= 0:
        return f"box size must be positive; got w={w:g}, h={h:g}"
    if w < MIN_BOX_SIDE or h < MIN_BOX_SIDE:
        return f"box {w:g}x{h:g} px is smaller than {MIN_BOX_SIDE:g}x{MIN_BOX_SIDE:g} px"
    if frame_wh is None:
        return None
    width, height = frame_wh
    if w > width or h > height:
        return f"box {w:g}x{h:g} is larger than the {width}x{height} frame"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"box [{x:g}, {y:g}, {w:g}, {h:g}] lies entirely outside the {width}x{height} frame"
    return None


def validate_box(box_xywh: BoxXYWH, frame_wh: tuple[int, int]) -> None:
    """Raise BoxError naming why a start box cannot seed a target (see box_problem)."""
    problem = box_problem(box_xywh, frame_wh)
    if problem is not None:
        raise BoxError(problem)
