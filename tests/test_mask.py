"""Windowed mask back-projection equals SiamMask's full-frame warp; contours, boxes, bboxes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from siamedge.tracking.geometry import MaskPlacement
from siamedge.tracking.mask import (
    HULL_FILTER_MIN_POINTS,
    hot_window,
    hull_candidates,
    largest_contour,
    mask_bbox,
    project_mask,
    rect_corners,
    rotated_box_of,
    warp_probabilities,
    warp_window,
)
from siamedge.tracking.result import MaskWindow

MAP = 127
THRESHOLD = 0.35


def full_frame_warp(
    probs: NDArray[np.float32], placement: MaskPlacement, width: int, height: int
) -> NDArray[np.float32]:
    """The original tracker's way: warp the map onto a whole frame-sized array."""
    scale = MAP / placement.side
    back = (-placement.x * scale, -placement.y * scale, width * scale, height * scale)
    a = (width - 1) / back[2]
    b = (height - 1) / back[3]
    matrix = np.array([[a, 0, -a * back[0]], [0, b, -b * back[1]]], dtype=np.float64)
    warped: NDArray[np.float32] = cv2.warpAffine(
        probs, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=-1
    )
    return warped


EDGE_FLIP_SHARE = 0.05
"""OpenCV 4.x's warpAffine rounds sample positions to 1/32 map pixel (OpenCV 5 samples float
images exactly), and a window-relative map rounds otherwise than a frame-relative one, so a
pixel within rounding of the threshold can flip: up to 1.2 % of the mask's edge pixels over
1,500 random cases on OpenCV 4.8, none on 5.1. A window off by a pixel flips most of them."""
NEIGHBOURS = np.ones((3, 3), np.uint8)


def assert_same_mask_but_rounding(got: NDArray[np.bool_], expected: NDArray[np.bool_]) -> int:
    """Assert that the masks differ only in pixels on the expected mask's edge, and in few of
    them (EDGE_FLIP_SHARE); the number of differing pixels."""
    differing = got != expected
    bits = expected.view(np.uint8)
    eroded = cv2.erode(bits, NEIGHBOURS)
    assert not (differing & (cv2.dilate(bits, NEIGHBOURS) == eroded)).any()  # off the edge
    edge = int(np.count_nonzero(bits > eroded))
    count = int(np.count_nonzero(differing))
    assert count <= max(2, EDGE_FLIP_SHARE * edge)
    return count


def blob_map(seed: int) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:MAP, 0:MAP].astype(np.float32)
    cx, cy = rng.uniform(20, 107, 2)
    rx, ry = rng.uniform(5, 60, 2)
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    probs = 1 / (1 + np.exp(np.minimum(4 * (inside - 1), 50.0)))
    probs[rng.random((MAP, MAP)) < 0.01] = 1.0  # specks: several contours
    return probs.astype(np.float32)


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(20, 700),
    height=st.integers(20, 500),
    side=st.floats(15, 900),
    fx=st.floats(-1.2, 1.0),
    fy=st.floats(-1.2, 1.0),
    seed=st.integers(0, 2**16),
)
def test_windowed_mask_equals_full_frame_mask(
    width: int, height: int, side: float, fx: float, fy: float, seed: int
) -> None:
    probs = blob_map(seed)
    placement = MaskPlacement(x=fx * max(width, side), y=fy * max(height, side), side=side)
    expected = full_frame_warp(probs, placement, width, height) > THRESHOLD

    mask, area = project_mask(probs, placement, (width, height), THRESHOLD)

    got = mask.to_full() if mask.bits.size else np.zeros((height, width), np.bool_)
    differing = assert_same_mask_but_rounding(got, expected)
    contours, _ = cv2.findContours(
        expected.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    areas = [cv2.contourArea(contour) for contour in contours]
    if differing == 0 and contours:
        best = contours[int(np.argmax(areas))].reshape(-1, 2)
        np.testing.assert_array_equal(mask.contour_xy, best)
        assert area == max(areas)
    elif not contours:
        assert mask.contour_xy.shape[0] <= 2
    else:
        assert area == pytest.approx(max(areas), rel=0.01, abs=2.0)


def test_windowed_mask_known_rounding_case() -> None:
    """A case hypothesis found where one pixel flips: still within a pixel of the original."""
    width, height, side = 700, 217, 80.563021446428
    placement = MaskPlacement(x=0.5501076277528534 * 700, y=-0.3360982830191157 * 217, side=side)
    probs = blob_map(13808)
    expected = full_frame_warp(probs, placement, width, height) > THRESHOLD
    mask, _ = project_mask(probs, placement, (width, height), THRESHOLD)
    assert int(np.count_nonzero(mask.to_full() != expected)) <= 2


def test_window_size_does_not_depend_on_frame_size() -> None:
    placement = MaskPlacement(x=400.0, y=300.0, side=200.0)
    small = warp_window(placement, MAP, (1280, 720))
    large = warp_window(placement, MAP, (3840, 2160))
    assert small is not None
    assert large is not None
    assert (small.width, small.height) == (large.width, large.height)
    assert small.width <= 200 + 8


def test_window_off_frame_is_empty() -> None:
    placement = MaskPlacement(x=2000.0, y=10.0, side=100.0)
    assert warp_window(placement, MAP, (640, 480)) is None
    mask, area = project_mask(blob_map(1), placement, (640, 480), THRESHOLD)
    assert mask.area == 0
    assert area == 0.0
    assert mask_bbox(mask) is None


def test_rotated_box_of_a_tilted_rectangle() -> None:
    canvas = np.zeros((200, 200), np.uint8)
    corners = cv2.boxPoints(((100.0, 100.0), (80.0, 30.0), 30.0))
    cv2.fillPoly(canvas, [np.round(corners).astype(np.int32)], 1)
    contours, _ = cv2.findContours(canvas, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = contours[0].reshape(-1, 2).astype(np.int32)
    box = rotated_box_of(contour, cv2.contourArea(contour), 100.0)
    assert box is not None
    center = np.mean(np.array(box), axis=0)
    np.testing.assert_allclose(center, (100.0, 100.0), atol=1.5)
    sides = sorted(np.linalg.norm(np.array(box) - np.roll(np.array(box), 1, axis=0), axis=1))
    np.testing.assert_allclose(sides, [30, 30, 80, 80], atol=2.5)


def test_rotated_box_needs_area_over_minimum() -> None:
    square = np.array([[0, 0], [9, 0], [9, 9], [0, 9]], np.int32)
    assert rotated_box_of(square, 81.0, 100.0) is None
    assert rotated_box_of(square, 81.0, 80.0) is not None


# cv2.minAreaRect of the same points on OpenCV 4.8 (angle in [0, 90]) and the corners OpenCV 5.1
# gives for them (angle in [-90, 0), as OpenCV 3.x and SiamMask's reference trace).
OPENCV_4X_RECTS_AND_5X_CORNERS = [
    (
        ((191.946533203125, 193.02745056152344), (166.71078491210938, 42.148101806640625), 36.2538),
        [(246.7023, 259.3150), (112.2659, 160.7283), (137.1908, 126.7399), (271.6272, 225.3266)],
    ),
    (((5.0, 2.5), (5.0, 10.0), 90.0), [(10.0, 5.0), (0.0, 5.0), (0.0, 0.0), (10.0, 0.0)]),
    (
        ((0.0, 5.000000476837158), (7.071068286895752, 7.071068286895752), 45.0),
        [(0.0, 10.0), (-5.0, 5.0), (0.0, 0.0), (5.0, 5.0)],
    ),
]


@pytest.mark.parametrize(("rect", "corners"), OPENCV_4X_RECTS_AND_5X_CORNERS)
def test_an_opencv_4x_rect_gives_the_corners_opencv_5_gives(
    rect: cv2.typing.RotatedRect, corners: list[tuple[float, float]]
) -> None:
    # The published rotated_box started at another corner on OpenCV 4.5.1-4.x (JetPack's 4.8).
    np.testing.assert_allclose(rect_corners(rect), corners, atol=2e-3)


def test_a_rect_in_the_minus_90_to_0_range_is_boxpoints_as_it_is() -> None:
    rect = ((100.0, 50.0), (42.1, 166.7), -53.7)
    assert rect_corners(rect) == tuple(tuple(map(float, p)) for p in cv2.boxPoints(rect))


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**20))
def test_rotated_box_starts_at_the_lowest_corner_and_turns_clockwise(seed: int) -> None:
    # OpenCV's documented order for its [-90, 0) range, whatever the installed OpenCV gives.
    rng = np.random.default_rng(seed)
    turn = rng.uniform(0, np.pi)
    rotation = np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
    points = rng.normal(size=(30, 2)) * rng.uniform(2, 40, 2) @ rotation + 200
    contour = np.round(points).astype(np.int32)
    box = np.array(rect_corners(cv2.minAreaRect(contour)))
    lowest = box[:, 1].max()
    tied = box[box[:, 1] > lowest - 1e-3]
    assert box[0, 1] > lowest - 1e-3 and box[0, 0] == tied[:, 0].max()
    following = np.roll(box, -1, axis=0)
    turning = np.sum(box[:, 0] * following[:, 1] - following[:, 0] * box[:, 1])
    assert turning > 0  # clockwise on screen (y down)


def test_mask_bbox_in_frame_pixels() -> None:
    probs = np.zeros((MAP, MAP), np.float32)
    probs[40:60, 30:90] = 1.0
    placement = MaskPlacement(x=100.0, y=50.0, side=float(MAP))  # one map pixel per frame pixel
    mask, _ = project_mask(probs, placement, (640, 480), THRESHOLD)
    bbox = mask_bbox(mask)
    assert bbox is not None
    x, y, w, h = bbox
    full = mask.to_full()
    ys, xs = np.nonzero(full)
    assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert 125 <= x <= 131
    assert 85 <= y <= 91


def random_shapes(seed: int) -> NDArray[np.uint8]:
    """A mask of one kind: noisy blob, rotated rectangles, thin lines, polygon, speckle, boxes."""
    rng = np.random.default_rng(seed)
    height, width = (int(v) for v in rng.integers(3, 160, 2))
    image = np.zeros((height, width), np.uint8)
    kind = seed % 6
    if kind == 0:
        yy, xx = np.mgrid[0:height, 0:width]
        radii = rng.uniform(1, (width, height))
        inside = ((xx - rng.uniform(0, width)) / radii[0]) ** 2
        inside = inside + ((yy - rng.uniform(0, height)) / radii[1]) ** 2
        image[inside + rng.normal(0, rng.uniform(0, 0.8), inside.shape) < 1] = 1
    elif kind == 1:
        for _ in range(rng.integers(1, 4)):
            center = (float(rng.uniform(0, width)), float(rng.uniform(0, height)))
            size = (float(rng.uniform(1, width)), float(rng.uniform(1, height)))
            angle = float(rng.choice([0.0, 45.0, 90.0, rng.uniform(0, 180)]))
            corners = np.round(cv2.boxPoints((center, size, angle))).astype(np.int32)
            cv2.fillPoly(image, [corners], 1)
    elif kind == 2:
        for _ in range(rng.integers(1, 5)):
            ends = rng.integers(0, (width, height), (2, 2))
            start, end = (int(ends[0, 0]), int(ends[0, 1])), (int(ends[1, 0]), int(ends[1, 1]))
            cv2.line(image, start, end, 1, int(rng.integers(1, 3)))
    elif kind == 3:
        points = rng.integers(0, (width, height), (int(rng.integers(3, 12)), 2)).astype(np.int32)
        cv2.fillPoly(image, [points], 1)
    elif kind == 4:
        image[rng.random((height, width)) < rng.uniform(0.05, 0.7)] = 1
    else:
        for _ in range(rng.integers(1, 6)):
            x, y = (int(v) for v in rng.integers(0, (width, height)))
            image[y : y + int(rng.integers(1, height)), x : x + int(rng.integers(1, width))] = 1
    return image


def all_contours(image: NDArray[np.uint8]) -> list[NDArray[np.int32]]:
    contours, _ = cv2.findContours(image, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return [contour.reshape(-1, 2).astype(np.int32) for contour in contours]


@settings(max_examples=600, deadline=None)
@given(seed=st.integers(0, 2**20))
def test_hull_candidates_keep_the_hull_and_the_min_area_rect(seed: int) -> None:
    for contour in all_contours(random_shapes(seed)):
        thinned = hull_candidates(contour)
        np.testing.assert_array_equal(cv2.convexHull(thinned), cv2.convexHull(contour))
        assert cv2.minAreaRect(thinned) == cv2.minAreaRect(contour)


def test_rotated_box_of_a_long_noisy_contour_is_min_area_rect_of_all_points() -> None:
    probs = blob_map(7) + np.random.default_rng(7).normal(0, 0.3, (MAP, MAP)).astype(np.float32)
    placement = MaskPlacement(x=0.0, y=0.0, side=MAP * 8.0)
    mask, area = project_mask(probs, placement, (MAP * 8, MAP * 8), THRESHOLD)
    assert len(mask.contour_xy) >= HULL_FILTER_MIN_POINTS
    box = rotated_box_of(mask.contour_xy, area, 100.0)
    assert box == rect_corners(cv2.minAreaRect(mask.contour_xy))


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**20), copies=st.integers(0, 3))
def test_largest_contour_is_the_first_of_greatest_area(seed: int, copies: int) -> None:
    image = random_shapes(seed)
    if copies:  # equal shapes side by side: ties go to the first found
        image = np.hstack([np.pad(image, 1)] * (copies + 1))
    contours, _ = cv2.findContours(image, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour, area = largest_contour(image, (3, 5))
    if not contours:
        assert contour.shape == (0, 2)
        return
    areas = [cv2.contourArea(c) for c in contours]
    best = int(np.argmax(areas))
    origin = np.array([3, 5], np.int32)
    np.testing.assert_array_equal(contour, contours[best].reshape(-1, 2) + origin)
    assert area == areas[best]


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**20), empty=st.booleans())
def test_mask_bbox_spans_the_foreground(seed: int, empty: bool) -> None:
    bits = random_shapes(seed).astype(np.bool_) & (not empty)
    mask = MaskWindow(bits, (11, 4), (400, 300), np.zeros((0, 2), np.int32))
    ys, xs = np.nonzero(bits)
    if empty or xs.size == 0:
        assert mask_bbox(mask) is None
        return
    x, y = int(xs.min()), int(ys.min())
    w, h = int(xs.max()) - x + 1, int(ys.max()) - y + 1
    assert mask_bbox(mask) == (11.0 + x, 4.0 + y, float(w), float(h))


def whole_window_mask(
    probs: NDArray[np.float32], placement: MaskPlacement, frame_wh: tuple[int, int]
) -> NDArray[np.bool_]:
    """The full-frame mask warped over the whole window the map covers (no hot window)."""
    window = warp_window(placement, MAP, frame_wh)
    full = np.zeros(frame_wh[::-1], np.bool_)
    if window is not None:
        bits = warp_probabilities(probs, window) > THRESHOLD
        full[window.y0 : window.y0 + window.height, window.x0 : window.x0 + window.width] = bits
    return full


@settings(max_examples=200, deadline=None)
@given(
    side=st.floats(15, 3000),
    fx=st.floats(-0.5, 0.9),
    fy=st.floats(-0.5, 0.9),
    seed=st.integers(0, 2**16),
    spot=st.booleans(),
)
def test_hot_window_holds_every_pixel_over_the_threshold(
    side: float, fx: float, fy: float, seed: int, spot: bool
) -> None:
    """Only the part of the window near map values over the threshold is warped: the mask is
    the whole window's (up to warpAffine's fixed-point rounding, as for the window itself)."""
    width, height = 1280, 720
    if spot:  # one pixel over the threshold, anywhere on the map, edges included
        probs = np.zeros((MAP, MAP), np.float32)
        row, col = np.random.default_rng(seed).integers(0, MAP, 2)
        probs[row, col] = 1.0
    else:
        probs = blob_map(seed)
    placement = MaskPlacement(x=fx * width, y=fy * height, side=side)
    expected = whole_window_mask(probs, placement, (width, height))

    mask, _ = project_mask(probs, placement, (width, height), THRESHOLD)

    got = mask.to_full() if mask.bits.size else np.zeros((height, width), np.bool_)
    assert_same_mask_but_rounding(got, expected)
    if mask.bits.size:  # a zero border all round, where the frame allows
        x0, y0 = mask.origin_xy
        h, w = mask.bits.shape
        assert not mask.bits[0].any() or y0 == 0
        assert not mask.bits[-1].any() or y0 + h == height
        assert not mask.bits[:, 0].any() or x0 == 0
        assert not mask.bits[:, -1].any() or x0 + w == width


def test_hot_window_is_the_blob_not_the_whole_window() -> None:
    probs = np.zeros((MAP, MAP), np.float32)
    probs[50:70, 40:90] = 1.0
    placement = MaskPlacement(x=100.0, y=50.0, side=MAP * 4.0)  # 4 frame px per map px
    window = warp_window(placement, MAP, (1920, 1080))
    assert window is not None
    hot = hot_window(probs, THRESHOLD, window)
    assert hot is not None
    # Map columns 40-89 and rows 50-69, one map pixel of reach and the margin either side.
    assert 4 * 48 <= hot.width <= 4 * 52 + 2 * 3 + 1
    assert 4 * 18 <= hot.height <= 4 * 22 + 2 * 3 + 1
    assert hot.width * hot.height < 0.1 * window.width * window.height
    mask, area = project_mask(probs, placement, (1920, 1080), THRESHOLD)
    assert mask.origin_xy == (hot.x0, hot.y0)
    assert area == pytest.approx(200 * 80, rel=0.05)


def test_a_map_below_the_threshold_warps_nothing() -> None:
    probs = np.full((MAP, MAP), THRESHOLD - 0.01, np.float32)
    placement = MaskPlacement(x=100.0, y=50.0, side=300.0)
    window = warp_window(placement, MAP, (640, 480))
    assert window is not None
    assert hot_window(probs, THRESHOLD, window) is None
    mask, area = project_mask(probs, placement, (640, 480), THRESHOLD)
    assert (mask.area, area, mask_bbox(mask), mask.contour_xy.shape) == (0, 0.0, None, (0, 2))
