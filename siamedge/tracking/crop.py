"""Square crops around the target, padded with the init frame's mean colour, resized for the model.

Work is O(crop size): only the part of the frame that overlaps the crop is read; the whole frame
is never padded or copied, and a large region off the frame edge gets only the rows resize reads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.tracking.geometry import PointXY, crop_origin

BGR = tuple[int, int, int]

SPARSE_MIN_SCALE = 5
"""A region straddling the frame edge and more than this many times the output side is built
with only the rows the resize reads (about 2 per output row) in a kept CropScratch. Median ms
of crop and resize to 255 px on this 2-core machine (the read rows cached), padding the
whole region against the rows, at the bottom / side / corner of a 1080p frame:
3.9x 0.41-0.44 / 0.47-0.51, about even at 4.3x (0.44-0.49 / 0.47-0.51), then the rows win:
4.9x 0.54-0.62 / 0.52-0.55, 5.7x (1441 px, the 1080p tennis search window) 0.77-0.94 /
0.53-0.58, 2704 px 2.9 / 1.5 (`benchmarks/large_target.py`). Being over 2, it also keeps clear
of OpenCV's exact-2x path."""

READ_ROWS_CACHED = 64
"""Search sides whose read rows (resize_read_rows) are kept: a few targets' recent sides."""

SCRATCH_KEEP_MAX_BYTES = 64 << 20
"""The largest buffer a CropScratch keeps between frames (a 4729 px region); a larger region,
which only a target of most of a 4K frame needs, gets fresh pages each time."""

SCRATCH_GROWTH = 1.25
"""A kept scratch is made this much larger than the region that needs it, so a target that
grows by a few pixels per frame does not make a new one every frame."""

READ_ROW_MARGIN = 0.01
"""Rows this close (px) to a sample position also count as read: OpenCV rounds sample positions
to float32 (off by under 0.008 px for regions under 131072 px)."""


class CropScratch:
    """A zeroed buffer kept from frame to frame for large regions straddling the frame edge.

    Fresh pages cost a page fault each when first written (the 4K tennis search window: 5.7 ms
    with a new buffer every frame, 1.1 ms with a kept one, on this 2-core VM), and the rows
    resize reads move with the region's size. So a kept buffer is written through once when
    made, with SCRATCH_GROWTH room for a growing target. What it holds never changes a crop.
    Trackers whose crops are made one after another can share one.
    """

    def __init__(self, initial: NDArray[np.uint8] | None = None) -> None:
        self._buffer = np.zeros(0, np.uint8) if initial is None else initial

    def take(self, size: int) -> NDArray[np.uint8]:
        """A flat uint8 buffer of at least `size` bytes, kept for the next call unless it is
        over SCRATCH_KEEP_MAX_BYTES."""
        if size <= self._buffer.size:
            return self._buffer
        if size > SCRATCH_KEEP_MAX_BYTES:
            # Lazily mapped zero pages: only the rows written cost memory. Zeros, not empty
            # memory, keep the rows resize should not read deterministic, whatever an OpenCV
            # build reads.
            return np.zeros(size, np.uint8)
        kept = min(max(size, int(size * SCRATCH_GROWTH)), SCRATCH_KEEP_MAX_BYTES)
        self._buffer = np.full(kept, 0, np.uint8)  # every page touched now, not frame by frame
        return self._buffer


@dataclass(frozen=True)
class RegionBounds:
    """A side x side region of a frame: its top-left (x_min, y_min) and the frame part inside it,
    [x0, x1) x [y0, y1) in frame pixels (empty when x0 >= x1 or y0 >= y1)."""

    x_min: int
    y_min: int
    side: int
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def inside(self) -> bool:
        """The region lies wholly inside the frame."""
        return (self.x1 - self.x0, self.y1 - self.y0) == (self.side, self.side)

    @property
    def misses(self) -> bool:
        """The region and the frame do not overlap."""
        return self.x0 >= self.x1 or self.y0 >= self.y1


def region_bounds(frame: NDArray[np.uint8], center_xy: PointXY, side: int) -> RegionBounds:
    """Where the side x side region centred on center_xy lies in a (H, W, 3) frame."""
    height, width = frame.shape[:2]
    x_min, y_min = crop_origin(center_xy, side)
    return RegionBounds(
        x_min,
        y_min,
        side,
        max(x_min, 0),
        max(y_min, 0),
        min(x_min + side, width),
        min(y_min + side, height),
    )


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
    return _region(frame, region_bounds(frame, center_xy, side), fill_bgr)


def _region(frame: NDArray[np.uint8], b: RegionBounds, fill_bgr: BGR) -> NDArray[np.uint8]:
    """crop_region for bounds already found."""
    side = b.side
    if b.inside:
        return frame[b.y0 : b.y1, b.x0 : b.x1]
    if b.misses:
        region = np.empty((side, side, 3), dtype=np.uint8)
        region[:] = fill_bgr
        return region
    padded = cv2.copyMakeBorder(
        frame[b.y0 : b.y1, b.x0 : b.x1],
        top=b.y0 - b.y_min,
        bottom=b.y_min + side - b.y1,
        left=b.x0 - b.x_min,
        right=b.x_min + side - b.x1,
        borderType=cv2.BORDER_CONSTANT,
        value=fill_bgr,
    )
    return cast(NDArray[np.uint8], padded)


@functools.lru_cache(maxsize=READ_ROWS_CACHED)
def resize_read_rows(side: int, out_size: int) -> NDArray[np.intp]:
    """Sorted rows a bilinear cv2.resize of side rows to out_size rows may read (side > 2 * out);
    read-only, cached (a tracked target's side changes little from frame to frame).

    Output row d samples f = (d + 0.5) * side / out_size - 0.5 and blends rows floor(f) and
    floor(f) + 1, clamped to the image. (At exactly 2x OpenCV averages 2 x 2 blocks instead.)
    """
    scale = 1.0 / (out_size / side)  # as OpenCV computes it, rounding included
    samples = (np.arange(out_size) + 0.5) * scale - 0.5
    below = np.floor(samples - READ_ROW_MARGIN).astype(np.intp)
    above = np.floor(samples + READ_ROW_MARGIN).astype(np.intp) + 1
    read = np.zeros(side, dtype=np.bool_)
    for rows in (below, below + 1, above):
        read[np.clip(rows, 0, side - 1)] = True
    rows = np.flatnonzero(read)
    rows.setflags(write=False)
    return rows


def crop_region_rows(
    frame: NDArray[np.uint8],
    bounds: RegionBounds,
    fill_bgr: BGR,
    rows: NDArray[np.intp],
    scratch: NDArray[np.uint8],
) -> NDArray[np.uint8]:
    """The (side, side, 3) region of `bounds` in which only `rows` (sorted) hold crop_region's
    pixels; it is a view of the flat uint8 scratch (>= side * side * 3 bytes), whose other rows
    keep whatever scratch held."""
    b, side = bounds, bounds.side
    region = scratch[: side * side * 3].reshape(side, side, 3)
    lines = region.reshape(side, side * 3)
    fill_line = np.tile(np.array(fill_bgr, dtype=np.uint8), side)
    first, end = np.searchsorted(rows, (b.y0 - b.y_min, b.y1 - b.y_min))
    lines[rows[:first]] = fill_line
    lines[rows[end:]] = fill_line
    inner = rows[first:end]
    left, right = 3 * (b.x0 - b.x_min), 3 * (b.x1 - b.x_min)
    if left > 0:
        lines[inner, :left] = fill_line[:left]
    if right < side * 3:
        lines[inner, right:] = fill_line[right:]
    region[inner, b.x0 - b.x_min : b.x1 - b.x_min] = frame[inner + b.y_min, b.x0 : b.x1]
    return region


def crop_resized(
    frame: NDArray[np.uint8],
    center_xy: PointXY,
    side: int,
    out_size: int,
    fill_bgr: BGR,
    *,
    scratch: CropScratch | None = None,
) -> NDArray[np.uint8]:
    """The side x side region resized (bilinear, as uint8) to (out_size, out_size, 3).

    scratch: where to build a large region straddling the frame edge (a new one when None);
    its contents never change the result.
    """
    bounds = region_bounds(frame, center_xy, side)
    if side == out_size:
        return _region(frame, bounds, fill_bgr)
    if bounds.inside or bounds.misses or side <= SPARSE_MIN_SCALE * out_size:
        region = _region(frame, bounds, fill_bgr)
    else:
        buffer = (scratch or CropScratch()).take(side * side * 3)
        rows = resize_read_rows(side, out_size)
        region = crop_region_rows(frame, bounds, fill_bgr, rows, buffer)
    resized = cv2.resize(region, (out_size, out_size), interpolation=cv2.INTER_LINEAR)
    return cast(NDArray[np.uint8], resized)
