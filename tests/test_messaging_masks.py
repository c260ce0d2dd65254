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
    decode_mask,
    decode_png,
    decode_polygon,
    decode_rle,
    encode_mask,
    encode_png,
    encode_polygon,
    encode_rle,
    rle_counts,
    rle_string,
)
from siamedge.tracking.mask import largest_contour
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


@settings(max_examples=400)
@given(mask_windows())
def test_rle_decoder_inverts_the_encoder_like_pycocotools(mask: MaskWindow) -> None:
    encoded = encode_rle(mask)
    decoded = decode_rle(encoded)
    assert decoded.dtype == np.bool_
    np.testing.assert_array_equal(decoded, mask.to_full())
    np.testing.assert_array_equal(decoded, coco_decode(encoded))


@settings(max_examples=200)
@given(arrays(np.bool_, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_rle_decoder_reads_what_pycocotools_writes(full: NDArray[np.bool_]) -> None:
    encoded = coco_mask.encode(np.asfortranarray(full.astype(np.uint8)))
    mask = {"format": "rle", "size": list(encoded["size"]), "counts": encoded["counts"].decode()}
    np.testing.assert_array_equal(decode_rle(mask), full)


def test_rle_decoder_handles_long_runs_in_a_4k_frame() -> None:
    bits = np.zeros((300, 500), np.bool_)
    bits[10:290, 20:480] = True
    mask = window(bits, (3000, 1500), (3840, 2160))
    np.testing.assert_array_equal(decode_rle(encode_rle(mask)), mask.to_full())


@pytest.mark.parametrize(
    ("counts", "size", "reason"),
    [
        ("5", [2, 2], "cover 5 pixels"),
        ("0" + chr(48 + 32), [1, 1], "middle of a number"),
        ("~~", [1, 1], "alphabet"),
    ],
)
def test_malformed_rle_is_a_value_error(counts: str, size: list[int], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        decode_rle({"format": "rle", "size": size, "counts": counts})


@pytest.mark.parametrize(
    "shape",
    ["rectangle", "disc", "L"],
)
def test_polygon_decoder_fills_the_contour_of_a_solid_shape(shape: str) -> None:
    bits = np.zeros((40, 50), np.uint8)
    if shape == "rectangle":
        bits[5:30, 8:45] = 1
    elif shape == "disc":
        cv2.circle(bits, (25, 20), 15, 1, thickness=-1)
    else:
        bits[5:35, 5:15] = 1
        bits[25:35, 5:40] = 1
    mask = MaskWindow(bits.astype(np.bool_), (7, 9), (80, 60), largest_contour(bits, (7, 9))[0])
    decoded = decode_polygon(encode_polygon(mask), (60, 80))
    np.testing.assert_array_equal(decoded, mask.to_full())


def test_polygon_decoder_of_no_points_is_empty() -> None:
    decoded = decode_polygon({"format": "polygon", "points": []}, (3, 4))
    assert decoded.shape == (3, 4)
    assert not decoded.any()


def test_decode_mask_selects_the_decoder() -> None:
    bits = np.zeros((3, 3), np.uint8)
    bits[1:3, 0:2] = 1
    mask = MaskWindow(bits.astype(np.bool_), (1, 1), (4, 5), largest_contour(bits, (1, 1))[0])
    for encoding in ("rle", "polygon", "png"):
        encoded = encode_mask(mask, encoding)
        assert encoded is not None
        np.testing.assert_array_equal(decode_mask(encoded, (5, 4)), mask.to_full())
    with pytest.raises(ValueError, match="unknown mask format 'jpeg'"):
        decode_mask({"format": "jpeg"}, (5, 4))


def test_png_decoder_rejects_what_is_not_png() -> None:
    data = base64.b64encode(b"not a png").decode()
    with pytest.raises(ValueError, match="not a PNG"):
        decode_png({"format": "png", "origin": [0, 0], "size": [2, 2], "data": data})


def coco_rle_to_string(counts: list[int]) -> str:
    """pycocotools' rleToString, one value and one 5-bit chunk at a time."""
    text = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            text.append(chr((chunk | (0x20 if more else 0)) + 48))
    return "".join(text)


@settings(max_examples=300)
@given(st.lists(st.integers(0, 3840 * 2160), max_size=60), st.sampled_from([16, 1024, 2**23]))
def test_rle_string_equals_pycocotools_loop(counts: list[int], ceiling: int) -> None:
    small = [count % ceiling for count in counts]  # short runs too: one-chunk differences
    for values in (counts, small):
        assert rle_string(np.array(values, dtype=np.int64)) == coco_rle_to_string(values)
