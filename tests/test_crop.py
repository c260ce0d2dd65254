"""The O(crop) crop equals the naive 'pad the whole frame, then slice' crop, pixel for pixel.

Large regions straddling the frame edge are built with only the rows the resize reads; the tests
fill the other rows with noise to show they are never read.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from siamedge.tracking.crop import (
    SCRATCH_GROWTH,
    SCRATCH_KEEP_MAX_BYTES,
    SPARSE_MIN_SCALE,
    CropScratch,
    crop_region,
    crop_resized,
    mean_color,
    resize_read_rows,
)
from siamedge.tracking.geometry import crop_origin


def naive_crop(
    frame: NDArray[np.uint8], center_xy: tuple[float, float], side: int, fill: tuple[int, int, int]
) -> NDArray[np.uint8]:
    """The original way: pad the whole frame with the fill colour far enough, then slice."""
    x_min, y_min = crop_origin(center_xy, side)
    pad = side + int(max(abs(center_xy[0]), abs(center_xy[1]))) + 2
    height, width = frame.shape[:2]
    padded = np.empty((height + 2 * pad, width + 2 * pad, 3), np.uint8)
    padded[:] = fill
    padded[pad : pad + height, pad : pad + width] = frame
    return padded[y_min + pad : y_min + pad + side, x_min + pad : x_min + pad + side]


def random_frame(seed: int, width: int, height: int) -> NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 90),
    height=st.integers(1, 90),
    cx=st.floats(-150, 250, allow_nan=False),
    cy=st.floats(-150, 250, allow_nan=False),
    side=st.integers(1, 160),
    seed=st.integers(0, 2**16),
)
def test_crop_region_equals_naive(
    width: int, height: int, cx: float, cy: float, side: int, seed: int
) -> None:
    frame = random_frame(seed, width, height)
    fill = (7, 99, 201)
    fast = crop_region(frame, (cx, cy), side, fill)
    np.testing.assert_array_equal(fast, naive_crop(frame, (cx, cy), side, fill))


@settings(max_examples=100, deadline=None)
@given(
    cx=st.floats(-100, 300, allow_nan=False),
    cy=st.floats(-100, 200, allow_nan=False),
    side=st.integers(20, 400),
    out_size=st.sampled_from([127, 255]),
    seed=st.integers(0, 2**16),
)
def test_crop_resized_equals_naive_then_resize(
    cx: float, cy: float, side: int, out_size: int, seed: int
) -> None:
    frame = random_frame(seed, 200, 120)
    fill = mean_color(frame)
    fast = crop_resized(frame, (cx, cy), side, out_size, fill)
    naive = naive_crop(frame, (cx, cy), side, fill)
    expected = naive if side == out_size else cv2.resize(naive, (out_size, out_size))
    np.testing.assert_array_equal(fast, expected)


def noise(seed: int, size: int) -> NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def naive_resized(
    frame: NDArray[np.uint8], center_xy: tuple[float, float], side: int, out_size: int
) -> NDArray[np.uint8]:
    """What crop_resized did before it built large regions row by row: pad, then resize."""
    naive = naive_crop(frame, center_xy, side, FILL)
    if side == out_size:
        return naive
    resized: NDArray[np.uint8] = cv2.resize(naive, (out_size, out_size))
    return resized


FILL = (7, 99, 201)


@settings(max_examples=400, deadline=None)
@given(
    out_size=st.integers(1, 300),
    extra=st.integers(1, 5000),
    seed=st.integers(0, 2**16),
)
def test_resize_reads_only_the_rows_it_is_said_to(out_size: int, extra: int, seed: int) -> None:
    side = 2 * out_size + extra
    rows = resize_read_rows(side, out_size)
    image = noise(seed, side * 4 * 3).reshape(side, 4, 3)
    other = noise(seed + 1, side * 4 * 3).reshape(side, 4, 3)
    other[rows] = image[rows]
    expected = cv2.resize(image, (4, out_size))
    np.testing.assert_array_equal(cv2.resize(other, (4, out_size)), expected)
    assert np.all(np.diff(rows) > 0)


@settings(max_examples=400, deadline=None)
@given(
    width=st.integers(1, 120),
    height=st.integers(1, 120),
    fx=st.floats(-1.5, 2.5, allow_nan=False),
    fy=st.floats(-1.5, 2.5, allow_nan=False),
    out_size=st.integers(1, 40),
    scale=st.floats(1.0, 12.0),
    seed=st.integers(0, 2**16),
)
def test_large_straddling_crop_equals_naive_whatever_the_scratch_holds(
    width: int, height: int, fx: float, fy: float, out_size: int, scale: float, seed: int
) -> None:
    side = max(1, round(out_size * scale))
    frame = random_frame(seed, width, height)
    center = (fx * width, fy * height)
    expected = naive_resized(frame, center, side, out_size)
    for salt in (1, 2):
        scratch = noise(seed + salt, side * side * 3 + salt)
        got = crop_resized(frame, center, side, out_size, FILL, scratch=CropScratch(scratch))
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(crop_resized(frame, center, side, out_size, FILL), expected)


@pytest.mark.parametrize(
    ("center", "side", "out_size"),
    [
        ((-20.0, 60.0), 400, 31),  # straddles the left edge
        ((180.0, 60.0), 400, 31),  # the right edge
        ((80.0, -30.0), 350, 31),  # the top
        ((80.0, 150.0), 350, 31),  # the bottom
        ((0.0, 0.0), 700, 63),  # a corner
        ((199.0, 119.0), 1000, 127),  # the opposite corner
        ((100.0, 60.0), 2000, 255),  # larger than the frame on every side
        ((100.0, 60.0), 255 * SPARSE_MIN_SCALE, 255),  # just below the row-by-row scale
        ((100.0, 60.0), 255 * SPARSE_MIN_SCALE + 1, 255),  # just above it
        ((10.0, 10.0), 62, 31),  # exactly 2x: OpenCV averages instead
        ((10.0, 10.0), 20, 31),  # upscaling
        ((0.0, 0.0), 1, 2),  # tiny
        ((100.0, 60.0), 7, 1),  # one output pixel
        ((-5000.0, 60.0), 900, 31),  # misses the frame
    ],
)
def test_crop_resized_geometries(center: tuple[float, float], side: int, out_size: int) -> None:
    frame = random_frame(3, 200, 120)
    scratch = noise(4, side * side * 3)
    got = crop_resized(frame, center, side, out_size, FILL, scratch=CropScratch(scratch))
    np.testing.assert_array_equal(got, naive_resized(frame, center, side, out_size))


def test_large_straddling_crop_writes_only_the_rows_resize_reads() -> None:
    """The 4K tennis search window (3403 px, off the top and bottom edges): about two rows per
    output row are written into the scratch; the others keep what it held."""
    frame = random_frame(5, 3840, 2160)
    side, out_size = 3403, 255
    scratch = noise(6, side * side * 3)
    before = scratch.copy().reshape(side, side, 3)
    crop_resized(frame, (1721.5, 1057.5), side, out_size, FILL, scratch=CropScratch(scratch))
    written = np.flatnonzero((scratch.reshape(side, side, 3) != before).any(axis=(1, 2)))
    rows = resize_read_rows(side, out_size)
    assert set(written.tolist()) <= set(rows.tolist())
    assert 2 * out_size <= written.size <= rows.size < 2.1 * out_size


def test_crop_inside_is_a_view_not_a_copy() -> None:
    frame = random_frame(1, 640, 480)
    region = crop_region(frame, (320.0, 240.0), 101, (0, 0, 0))
    assert np.shares_memory(region, frame)
    assert region.shape == (101, 101, 3)


def test_crop_fully_outside_is_the_fill_colour() -> None:
    frame = random_frame(2, 64, 48)
    region = crop_region(frame, (-500.0, -500.0), 31, (1, 2, 3))
    assert region.shape == (31, 31, 3)
    assert (region == np.array([1, 2, 3], np.uint8)).all()


def test_mean_color_truncates_like_uint8_padding() -> None:
    frame = np.zeros((2, 2, 3), np.uint8)
    frame[0, 0] = (3, 5, 255)  # means 0.75, 1.25, 63.75
    assert mean_color(frame) == (0, 1, 63)


def test_a_kept_scratch_serves_every_frame_and_region_size() -> None:
    """One scratch for targets of changing size around the frame edge, as a tracker keeps it:
    each crop equals padding and resizing, whatever the earlier crops left in the buffer."""
    frame = random_frame(7, 640, 360)
    scratch = CropScratch()
    rng = np.random.default_rng(8)
    for _ in range(40):
        side = int(rng.integers(SPARSE_MIN_SCALE * 31 + 1, 40 * 31))
        center = (float(rng.uniform(-200, 840)), float(rng.uniform(-200, 560)))
        got = crop_resized(frame, center, side, 31, FILL, scratch=scratch)
        np.testing.assert_array_equal(got, naive_resized(frame, center, side, 31))


def test_scratch_keeps_its_buffer_up_to_the_limit() -> None:
    scratch = CropScratch()
    small = scratch.take(1000)
    assert small.size == 1000 * SCRATCH_GROWTH and not small.any()
    assert scratch.take(600) is small  # a smaller region reuses it
    assert scratch.take(1200) is small  # so does a slightly larger one: the room to grow
    larger = scratch.take(5000)
    assert larger.size == 5000 * SCRATCH_GROWTH and scratch.take(5000) is larger
    near_limit = SCRATCH_KEEP_MAX_BYTES - 10
    assert scratch.take(near_limit).size == SCRATCH_KEEP_MAX_BYTES  # the room stops at the limit
    kept = scratch.take(near_limit)
    huge = scratch.take(SCRATCH_KEEP_MAX_BYTES + 1)
    assert huge.size == SCRATCH_KEEP_MAX_BYTES + 1
    assert scratch.take(5000) is kept  # a region over the limit is not kept
    assert scratch.take(SCRATCH_KEEP_MAX_BYTES + 1) is not huge


def test_read_rows_are_cached_and_read_only() -> None:
    """Cached per (side, out_size): a caller cannot change what the next crop reads."""
    rows = resize_read_rows(1441, 255)
    assert resize_read_rows(1441, 255) is rows
    with pytest.raises(ValueError, match="read-only"):
        rows[0] = 5
