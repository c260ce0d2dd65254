"""Mask encodings: the window-only RLE must equal pycocotools on the full frame, byte for byte."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from fixtures.coco import coco_decode
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray
from pycocotools import mask as coco_mask

from siamedge.messaging.masks import (
    encode_mask,
    encode_png,
    encode_polygon,
    encode_rle,
    rle_counts,
    rle_string,
)
from siamedge.tracking.result import MaskWindow

NO_CONTOUR = np.zeros((0, 2), dtype=np.int32)
MAX_SIDE = 24


def window(
    bits: NDArray[np.bool_], origin_xy: tuple[int, int], frame_wh: tuple[int, int]
) -> MaskWindow:
    return MaskWindow(bits, origin_xy, frame_wh, NO_CONTOUR)


def coco_counts(full: NDArray[np.bool_]) -> str:
    """What pycocotools makes of the full-frame mask."""
    encoded = coco_mask.encode(np.asfortranarray(full.astype(np.uint8)))
    counts: bytes = encoded["counts"]
    return counts.decode("ascii")


@st.composite
def mask_windows(draw: st.DrawFn) -> MaskWindow:
    """Any window inside any small frame, including empty, full and 1-pixel cases."""
    width = draw(st.integers(1, MAX_SIDE))
    height = draw(st.integers(1, MAX_SIDE))
    w = draw(st.integers(0, width))
    h = draw(st.integers(0, height))
    x0 = draw(st.integers(0, width - w))
    y0 = draw(st.integers(0, height - h))
    fill = draw(st.sampled_from(["random", "empty", "full"]))
    if fill == "random":
        bits = draw(arrays(np.bool_, (h, w)))
    else:
        bits = np.full((h, w), fill == "full", dtype=np.bool_)
    return window(bits, (x0, y0), (width, height))


@settings(max_examples=400)
@given(mask_windows())
def test_rle_decodes_to_the_full_mask(mask: MaskWindow) -> None:
    decoded = coco_decode(encode_rle(mask))
    np.testing.assert_array_equal(decoded, mask.to_full())


@settings(max_examples=400)
@given(mask_windows())
def test_rle_counts_equal_pycocotools_bytes(mask: MaskWindow) -> None:
    assert encode_rle(mask)["counts"] == coco_counts(mask.to_full())


@given(mask_windows())
def test_runs_cover_the_frame_starting_with_background(mask: MaskWindow) -> None:
    counts = rle_counts(mask)
    width, height = mask.frame_wh
    assert counts.sum() == width * height
    assert (counts[1:] > 0).all()
    assert counts[0] == 0 if mask.to_full()[0, 0] else counts[0] > 0


@pytest.mark.parametrize(
    ("bits", "origin_xy", "frame_wh"),
    [
        (np.ones((1, 1), np.bool_), (0, 0), (1, 1)),
        (np.zeros((1, 1), np.bool_), (0, 0), (1, 1)),
        (np.zeros((0, 0), np.bool_), (0, 0), (1, 1)),
        (np.ones((5, 7), np.bool_), (0, 0), (7, 5)),  # full frame, one run
        (np.ones((5, 3), np.bool_), (4, 0), (7, 5)),  # full height at the right border
        (np.array([[1, 0], [0, 1], [1, 1]], np.bool_), (0, 2), (2, 5)),  # bottom-left corner
        (np.array([[0, 1, 1], [1, 1, 0]], np.bool_), (3, 0), (6, 2)),  # runs cross columns
        (np.ones((2, 2), np.bool_), (4, 4), (6, 6)),  # ends in foreground
    ],
    ids=[
        "1px-on",
        "1px-off",
        "empty-window",
        "full-frame",
        "full-height-right",
        "bottom-left",
        "cross-columns",
        "ends-on",
    ],
)
def test_rle_border_cases(
    bits: NDArray[np.bool_], origin_xy: tuple[int, int], frame_wh: tuple[int, int]
) -> None:
    mask = window(bits, origin_xy, frame_wh)
    encoded = encode_rle(mask)
    assert encoded["size"] == [frame_wh[1], frame_wh[0]]
    assert encoded["counts"] == coco_counts(mask.to_full())
    np.testing.assert_array_equal(coco_decode(encoded), mask.to_full())


def test_rle_of_a_small_window_in_a_4k_frame() -> None:
    rng = np.random.default_rng(7)
    bits = rng.random((200, 180)) < 0.6
    mask = window(bits, (3000, 1900), (3840, 2160))
    encoded = encode_rle(mask)
    assert encoded["counts"] == coco_counts(mask.to_full())
    np.testing.assert_array_equal(coco_decode(encoded), mask.to_full())


def test_rle_string_of_hand_counts() -> None:
    # [0, 4]: '0' is 0, '4' is 4; [30] needs two chunks: 30 = 0b11110 -> sign bit set.
    assert rle_string(np.array([0, 4], dtype=np.int64)) == "04"
    assert rle_string(np.array([30], dtype=np.int64)) == chr(48 + (30 | 32)) + chr(48 + 0)
    # From the fourth count on the value is the difference to the count two places back.
    assert rle_string(np.array([1, 2, 3, 1], dtype=np.int64)) == "123" + chr(48 + (-1 & 31))


def test_window_outside_the_frame_is_a_bug() -> None:
    with pytest.raises(ValueError, match="does not lie inside the 4x4 frame"):
        encode_rle(window(np.ones((2, 2), np.bool_), (3, 0), (4, 4)))


def test_polygon_lists_the_contour_points() -> None:
    contour = np.array([[10, 20], [30, 20], [30, 40]], dtype=np.int32)
    mask = MaskWindow(np.ones((21, 21), np.bool_), (10, 20), (64, 64), contour)
    assert encode_polygon(mask) == {"format": "polygon", "points": [[10, 20], [30, 20], [30, 40]]}


def decode_png(encoded: dict[str, object]) -> NDArray[np.bool_]:
    """A consumer's decoding of the png encoding into the full-frame mask."""
    data = base64.b64decode(str(encoded["data"]))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    height, width = encoded["size"]  # type: ignore[misc]
    x0, y0 = encoded["origin"]  # type: ignore[misc]
    full = np.zeros((height, width), dtype=np.bool_)
    h, w = image.shape
    full[y0 : y0 + h, x0 : x0 + w] = image > 0
    return full


@settings(max_examples=100)
@given(mask_windows())
def test_png_decodes_to_the_full_mask(mask: MaskWindow) -> None:
    encoded = encode_png(mask)
    assert encoded["format"] == "png"
    np.testing.assert_array_equal(decode_png(encoded), mask.to_full())


def test_png_is_one_bit_per_pixel() -> None:
    mask = window(np.ones((64, 64), np.bool_), (0, 0), (64, 64))
    data = base64.b64decode(encode_png(mask)["data"])
    bit_depth = data[24]  # the IHDR chunk's bit depth byte
    assert bit_depth == 1


def test_encode_mask_selects_the_encoding() -> None:
    mask = window(np.ones((2, 2), np.bool_), (1, 1), (4, 4))
    assert encode_mask(mask, "none") is None
    assert encode_mask(None, "rle") is None
    for encoding in ("rle", "polygon", "png"):
        encoded = encode_mask(mask, encoding)
        assert encoded is not None
        assert encoded["format"] == encoding
