"""Mask encodings for result messages: COCO RLE, contour polygon, PNG window, or nothing.

Works on the MaskWindow alone and never builds a full-frame array: the cost follows the window.
"""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.config import MaskEncoding
from siamedge.tracking.result import MaskWindow

JsonObject = dict[str, Any]

_CHUNK_BITS = 5
"""pycocotools' compressed counts: 5 value bits per character, little end first."""
_CHUNK_MASK = (1 << _CHUNK_BITS) - 1
_SIGN_BIT = 1 << (_CHUNK_BITS - 1)
_MORE_BIT = 1 << _CHUNK_BITS
_CHAR_OFFSET = 48
"""Characters start at '0'."""
_DELTA_FROM = 3
"""From the fourth count on, pycocotools stores the difference to the count two places back."""


def _check_inside(window: MaskWindow) -> None:
    width, height = window.frame_wh
    x0, y0 = window.origin_xy
    h, w = window.bits.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(
            f"mask window {w}x{h} at ({x0}, {y0}) does not lie inside the {width}x{height} frame"
        )


def rle_counts(window: MaskWindow) -> NDArray[np.int64]:
    """Run lengths of the full-frame mask in column-major order, background run first.

    Equal to pycocotools' uncompressed counts of `window.to_full()`, computed in O(window):
    the background around the window only shifts the positions where runs change.
    """
    _check_inside(window)
    width, height = window.frame_wh
    x0, y0 = window.origin_xy
    h, w = window.bits.shape
    total = width * height
    # Each window column padded with background above and below; a change between rows r-1
    # and r is where a run starts or ends. Flat indices walk the columns in frame order.
    padded = np.zeros((w, h + 2), dtype=np.uint8)
    if window.bits.size:  # cv2.transpose: a quarter of numpy's strided copy of bits.T
        padded[:, 1:-1] = cv2.transpose(window.bits.view(np.uint8))
    flat = np.flatnonzero(padded[:, 1:] != padded[:, :-1])
    cols, rows = np.divmod(flat, h + 1)
    changes = (cols + x0) * height + (rows + y0)
    if h == height and changes.size > 1:
        # A full-height window: a run ending at the bottom of one column and a run starting at
        # the top of the next are one run in column-major order.
        same = changes[1:] == changes[:-1]
        keep = np.ones(changes.size, dtype=np.bool_)
        keep[1:] &= ~same
        keep[:-1] &= ~same
        changes = changes[keep]
    bounds = np.empty(changes.size + 2, dtype=np.int64)
    bounds[0], bounds[1:-1], bounds[-1] = 0, changes, total
    counts: NDArray[np.int64] = np.diff(bounds)
    if changes.size and changes[-1] == total:
        counts = counts[:-1]  # pycocotools ends with the last run, never with an empty one
    return counts


def rle_string(counts: NDArray[np.int64]) -> str:
    """pycocotools' compressed form of `counts` (what `mask.encode` returns, as text).

    Each value takes as many 5-bit chunks as it needs, sign included, little end first; every
    chunk but a value's last carries the "more" bit. All chunks are made at once: chunk i
    belongs to value owner[i] and holds its bits from 5 * level[i] on.
    """
    values = counts.astype(np.int64)
    values[_DELTA_FROM:] -= counts[_DELTA_FROM - 2 : -2]
    if values.size == 0:
        return ""
    magnitude = values ^ (values >> 63)  # v, or -v - 1 when negative: the bits besides the sign
    lengths = np.ones(values.size, dtype=np.int64)
    bound = _SIGN_BIT
    while True:  # one more chunk for every value whose magnitude does not fit in the sign bit
        longer = magnitude >= bound
        if not longer.any():
            break
        lengths += longer
        bound <<= _CHUNK_BITS
    owner = np.repeat(np.arange(values.size), lengths)
    starts = np.cumsum(lengths) - lengths
    level = np.arange(owner.size) - starts[owner]
    chunks: NDArray[np.int64] = (values[owner] >> (_CHUNK_BITS * level)) & _CHUNK_MASK
    chunks += (level + 1 < lengths[owner]) * _MORE_BIT + _CHAR_OFFSET
    return chunks.astype(np.uint8).tobytes().decode("ascii")


def encode_rle(window: MaskWindow) -> JsonObject:
    """`{"format": "rle", "size": [H, W], "counts": str}`: pycocotools.mask.decode reads it."""
    width, height = window.frame_wh
    return {"format": "rle", "size": [height, width], "counts": rle_string(rle_counts(window))}


def encode_polygon(window: MaskWindow) -> JsonObject:
    """`{"format": "polygon", "points": [[x, y], ...]}`: the largest contour, full-frame pixels."""
    return {"format": "polygon", "points": window.contour_xy.tolist()}


def encode_png(window: MaskWindow) -> JsonObject:
    """`{"format": "png", "origin": [x, y], "size": [H, W], "data": base64}`.

    data: a 1-bit PNG of the window (255 foreground); origin: its top-left pixel in the frame;
    size: the full frame, as in RLE. An empty window is sent as one background pixel.
    """
    _check_inside(window)
    width, height = window.frame_wh
    x0, y0 = window.origin_xy
    bits = window.bits
    if bits.size == 0:
        bits = np.zeros((1, 1), dtype=np.bool_)
        x0, y0 = min(x0, width - 1), min(y0, height - 1)
    image = bits.astype(np.uint8) * np.uint8(255)
    ok, png = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_BILEVEL, 1])
    if not ok:
        raise ValueError(f"OpenCV could not PNG-encode a {bits.shape} mask window")
    return {
        "format": "png",
        "origin": [x0, y0],
        "size": [height, width],
        "data": base64.b64encode(png.tobytes()).decode("ascii"),
    }


def encode_mask(window: MaskWindow | None, encoding: MaskEncoding) -> JsonObject | None:
    """The `mask` value of one track in a results message; None for `none` or no mask."""
    if window is None or encoding == "none":
        return None
    if encoding == "rle":
        return encode_rle(window)
    if encoding == "polygon":
        return encode_polygon(window)
    return encode_png(window)


# ---- decoders (for clients: the inverse of the encoders, without pycocotools) ----------------


def rle_decode_counts(text: str) -> NDArray[np.int64]:
    """The run lengths of pycocotools' compressed `counts` string (the inverse of rle_string)."""
    if not text:
        return np.zeros(0, dtype=np.int64)
    chars = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - _CHAR_OFFSET
    if np.min(chars) < 0 or np.max(chars) > _MORE_BIT | _CHUNK_MASK:
        raise ValueError("RLE counts hold a character outside pycocotools' alphabet")
    more = (chars & _MORE_BIT) != 0
    if more[-1]:
        raise ValueError("RLE counts end in the middle of a number")
    # Number i is made of the chunks after the (i-1)-th chunk without the "more" bit.
    number = np.concatenate(([0], np.cumsum(~more)[:-1]))
    first = np.flatnonzero(np.concatenate(([True], ~more[:-1])))
    position = np.arange(chars.size) - first[number]
    digits = chars & _CHUNK_MASK
    values = np.zeros(first.size, dtype=np.int64)
    np.add.at(values, number, digits << (position * _CHUNK_BITS))
    last = np.flatnonzero(~more)
    negative = (digits[last] & _SIGN_BIT) != 0
    widths = (position[last] + 1) * _CHUNK_BITS
    values[negative] -= np.left_shift(1, widths[negative])
    # Undo the differences: from the fourth on, each count adds the one two places back.
    counts: NDArray[np.int64] = values.copy()
    counts[1::2] = np.cumsum(values[1::2])
    counts[2::2] = np.cumsum(values[2::2])
    if (counts < 0).any():
        raise ValueError("RLE counts decode to a negative run length")
    return counts


def decode_rle(mask: JsonObject) -> NDArray[np.bool_]:
    """The (H, W) bool mask of `{"format": "rle", "size": [H, W], "counts": str}`."""
    height, width = (int(side) for side in mask["size"])
    counts = rle_decode_counts(str(mask["counts"]))
    if int(counts.sum()) != height * width:
        raise ValueError(
            f"RLE runs cover {int(counts.sum())} pixels, not the {height}x{width} frame"
        )
    # Runs alternate background/foreground, column by column (column-major).
    flat = np.repeat(np.arange(counts.size) % 2 == 1, counts)
    decoded: NDArray[np.bool_] = flat.reshape(width, height).T
    return np.ascontiguousarray(decoded)


def decode_polygon(mask: JsonObject, size_hw: tuple[int, int]) -> NDArray[np.bool_]:
    """The (H, W) bool mask inside `{"format": "polygon", "points": [[x, y], ...]}` (the contour
    and the pixels it encloses); the message's frame size gives (H, W)."""
    height, width = size_hw
    canvas = np.zeros((height, width), dtype=np.uint8)
    points = np.asarray(mask["points"], dtype=np.int32).reshape(-1, 2)
    if points.size:
        cv2.fillPoly(canvas, [points], 1)
    decoded: NDArray[np.bool_] = canvas.astype(np.bool_)
    return decoded


def decode_png(mask: JsonObject) -> NDArray[np.bool_]:
    """The (H, W) bool mask of `{"format": "png", "origin": [x, y], "size": [H, W], "data"}`."""
    height, width = (int(side) for side in mask["size"])
    x0, y0 = (int(value) for value in mask["origin"])
    png = np.frombuffer(base64.b64decode(str(mask["data"]), validate=True), dtype=np.uint8)
    image = cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("the mask's PNG data is not a PNG image")
    h, w = image.shape
    if x0 < 0 or y0 < 0 or x0 + w > width or y0 + h > height:
        raise ValueError(
            f"PNG window {w}x{h} at ({x0}, {y0}) is outside the {width}x{height} frame"
        )
    decoded = np.zeros((height, width), dtype=np.bool_)
    decoded[y0 : y0 + h, x0 : x0 + w] = image > 0
    return decoded


def decode_mask(mask: JsonObject, size_hw: tuple[int, int]) -> NDArray[np.bool_]:
    """The (H, W) bool full-frame mask of a track's `mask` value in any encoding.

    size_hw: the results message's (height, width), needed by polygons only.
    Raises ValueError for an unknown format or a malformed mask.
    """
    encoding = mask.get("format")
    decoders = {
        "rle": decode_rle,
        "polygon": lambda value: decode_polygon(value, size_hw),
        "png": decode_png,
    }
    if encoding not in decoders:
        raise ValueError(f"unknown mask format {encoding!r}")
    try:
        return decoders[encoding](mask)
    except (KeyError, TypeError) as exc:  # a field missing or of the wrong type
        raise ValueError(f"malformed {encoding} mask: {exc!r}") from exc
