"""A capture time and frame number burned into a frame as black/white blocks, and read back.

Measures how old a frame is when the tracker gets it: a test server stamps each frame with the
wall clock as it makes it, the reader decodes the stamp after the stream, codec and decoder.
Cells of 16 px survive H.264 and JPEG at ordinary quality. Pure numpy: never does I/O, and runs
under any Python that has numpy (the RTSP test server runs under Debian's own Python).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

CELL_PX = 16
"""Side of one bit's square block."""
GRID = 8
"""The stamp is GRID x GRID cells in the top-left corner: 128 x 128 px."""
STAMP_PX = CELL_PX * GRID
MILLIS_BITS = 42
"""Milliseconds since the epoch: 2**42 ms reach the year 2109."""
INDEX_BITS = 16
"""The frame number, modulo 2**16."""
CHECK_BITS = GRID * GRID - MILLIS_BITS - INDEX_BITS
CHECK_MODULUS = 61
"""The check value is 1 + the payload modulo this prime: 1..61 in CHECK_BITS = 6 bits, so an
all-black or all-white corner never reads as a stamp."""
BLACK = 16
WHITE = 235
THRESHOLD = 128
MS_PER_S = 1000.0


@dataclass(frozen=True)
class Stamp:
    """What a stamp carries: capture time (unix s, ms resolution) and frame number mod 2**16."""

    unix_s: float
    index: int


def _check(payload: int) -> int:
    return 1 + payload % CHECK_MODULUS


def _bits_of(value: int, count: int) -> list[int]:
    return [(value >> shift) & 1 for shift in range(count - 1, -1, -1)]


def _value_of(bits: NDArray[np.bool_]) -> int:
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def burn_stamp(image: NDArray[np.uint8], unix_s: float, index: int) -> None:
    """Write the stamp into image's top-left STAMP_PX x STAMP_PX corner, in place.

    image: (H, W) or (H, W, C) uint8 with H, W >= STAMP_PX.
    """
    height, width = image.shape[:2]
    if height < STAMP_PX or width < STAMP_PX:
        raise ValueError(f"a stamp needs at least {STAMP_PX}x{STAMP_PX} px, got {width}x{height}")
    millis = round(unix_s * MS_PER_S) % (1 << MILLIS_BITS)
    payload = (millis << INDEX_BITS) | (index % (1 << INDEX_BITS))
    bits = _bits_of(payload, MILLIS_BITS + INDEX_BITS) + _bits_of(_check(payload), CHECK_BITS)
    cells = np.where(np.array(bits, dtype=bool).reshape(GRID, GRID), WHITE, BLACK)
    block = np.kron(cells, np.ones((CELL_PX, CELL_PX), dtype=np.int64)).astype(np.uint8)
    if image.ndim == 3:
        image[:STAMP_PX, :STAMP_PX] = block[:, :, None]
    else:
        image[:STAMP_PX, :STAMP_PX] = block


def read_stamp(image: NDArray[np.uint8]) -> Stamp | None:
    """The stamp in image's top-left corner; None when there is none or its check fails."""
    height, width = image.shape[:2]
    if height < STAMP_PX or width < STAMP_PX:
        return None
    corner = image[:STAMP_PX, :STAMP_PX].astype(np.float32)
    if corner.ndim == 3:
        corner = corner.mean(axis=2)
    # Only the middle half of each cell: codecs smear the edges between blocks.
    margin = CELL_PX // 4
    cells = corner.reshape(GRID, CELL_PX, GRID, CELL_PX)[:, margin:-margin, :, margin:-margin]
    bits = (cells.mean(axis=(1, 3)) > THRESHOLD).reshape(-1)
    payload = _value_of(bits[: MILLIS_BITS + INDEX_BITS])
    if _value_of(bits[MILLIS_BITS + INDEX_BITS :]) != _check(payload):
        return None
    millis, index = payload >> INDEX_BITS, payload & ((1 << INDEX_BITS) - 1)
    return Stamp(unix_s=millis / MS_PER_S, index=index)


def stamped_frame(width: int, height: int, unix_s: float, index: int) -> NDArray[np.uint8]:
    """A (height, width, 3) uint8 BGR test frame: a moving gradient with the stamp burned in."""
    columns = (np.arange(width, dtype=np.int64) + 4 * index) % 256
    rows = np.arange(height, dtype=np.int64)[:, None] % 256
    grey = ((columns[None, :] + rows) // 2).astype(np.uint8)
    image = np.repeat(grey[:, :, None], 3, axis=2)
    burn_stamp(image, unix_s, index)
    return image
