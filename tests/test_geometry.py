"""Crop geometry against hand-computed cases and the original tracker's recorded numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from siamedge.errors import BoxError
from siamedge.tracking.geometry import (
    CropGeometry,
    box_corners,
    center_box,
    clip_state,
    context_side,
    crop_origin,
    exemplar_side,
    mask_placement,
    search_window,
    validate_box,
)

SIAMMASK = CropGeometry(
    exemplar_size=127, instance_size=255, total_stride=8, base_size=8, context_amount=0.5
)


def test_context_side_hand_computed() -> None:
    # w=100, h=50: p = 75, sqrt(175 * 125) = 147.902...
    assert context_side((100.0, 50.0), 0.5) == pytest.approx(math.sqrt(175 * 125))
    # a square target: s_z = 2 w
    assert context_side((40.0, 40.0), 0.5) == pytest.approx(80.0)


def test_exemplar_side_rounds_half_to_even() -> None:
    # s_z = 2 w exactly, so w = 63.25 gives 126.5 -> 126 and w = 63.75 gives 127.5 -> 128
    assert exemplar_side((63.25, 63.25), 0.5) == 126
    assert exemplar_side((63.75, 63.75), 0.5) == 128


def test_search_window_hand_computed() -> None:
    # square 40 px target: s_z = 80, scale_x = 127/80, s_x = 80 + 128 * 80 / 127
    window = search_window((40.0, 40.0), SIAMMASK)
    assert window.scale_x == pytest.approx(127 / 80)
    assert window.s_x == pytest.approx(80 + 128 * 80 / 127)
    assert window.side == round(80 + 128 * 80 / 127) == 161


def test_search_window_matches_reference_trace(reference_dir: Path) -> None:
    trace = json.loads((reference_dir / "tennis_trace.json").read_text())
    for step in trace["steps"]:
        before = step["before"]
        window = search_window(tuple(before["size"]), SIAMMASK)
        assert window.scale_x == pytest.approx(before["scale_x"], rel=1e-8), step["file"]
        assert window.s_x == pytest.approx(before["s_x"], abs=1e-5), step["file"]
        assert window.side == before["s_x_rounded"], step["file"]


def test_crop_origin_matches_siammask_rounding() -> None:
    # side 127 around (100, 50): c = 64, round(36) = 36, round(-14) = -14
    assert crop_origin((100.0, 50.0), 127) == (36, -14)
    # ties go to even: cx - c = 10.5 -> 10, 11.5 -> 12
    assert crop_origin((74.5, 75.5), 127) == (10, 12)


def test_mask_placement_hand_computed() -> None:
    # centre (500, 300), side 510 -> crop at (245, 45), scale 2; cell (row 12, col 4)
    placement = mask_placement((500.0, 300.0), 510, (12, 4), SIAMMASK)
    assert placement.x == pytest.approx(245 + (4 - 4) * 8 * 2)
    assert placement.y == pytest.approx(45 + (12 - 4) * 8 * 2)
    assert placement.side == pytest.approx(254.0)


def test_clip_state_limits() -> None:
    center, size = clip_state((-5.0, 700.0), (3.0, 900.0), (640, 480))
    assert center == (0.0, 480.0)
    assert size == (10.0, 480.0)
    center, size = clip_state((320.0, 240.0), (50.0, 60.0), (640, 480))
    assert center == (320.0, 240.0)
    assert size == (50.0, 60.0)


def test_center_box_and_corners() -> None:
    box = center_box((50.0, 40.0), (20.0, 10.0))
    assert box == (40.0, 35.0, 20.0, 10.0)
    assert box_corners(box) == ((40.0, 35.0), (60.0, 35.0), (60.0, 45.0), (40.0, 45.0))


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((10.0, 10.0, 0.0, 5.0), "size must be positive"),
        ((10.0, 10.0, 5.0, -1.0), "size must be positive"),
        ((10.0, 10.0, 0.5, 5.0), "box 0.5x5 px is smaller than 1x1 px"),
        ((0.0, 0.0, 641.0, 5.0), "box 641x5 is larger than the 640x480 frame"),
        ((700.0, 10.0, 5.0, 5.0), "entirely outside"),
        ((-50.0, 10.0, 50.0, 5.0), "entirely outside"),
        ((10.0, float("nan"), 5.0, 5.0), "finite"),
    ],
)
def test_validate_box_rejects(box: tuple[float, float, float, float], message: str) -> None:
    with pytest.raises(BoxError, match=message):
        validate_box(box, (640, 480))


def test_validate_box_accepts_partly_outside() -> None:
    validate_box((-10.0, -10.0, 20.0, 20.0), (640, 480))
