"""The O(crop) crop equals the naive 'pad the whole frame, then slice' crop, pixel for pixel."""

from __future__ import annotations

import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from siamedge.tracking.crop import crop_region, crop_resized, mean_color
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
