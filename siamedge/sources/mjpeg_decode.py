"""JPEG parts of an MJPEG stream -> images, refusing what is not a whole JPEG of sane size.

Never decodes a truncated JPEG (libjpeg would fill the missing rows grey with only a warning)
or one announcing more than MAX_FRAME_PIXELS (a few bytes can ask for gigabytes).
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.sources.mjpeg_parts import JPEG_SOI

JPEG_EOI = b"\xff\xd9"
MAX_FRAME_PIXELS = 7680 * 4320
"""A JPEG announcing more pixels (8K) is refused before decoding: a few bytes can ask for
gigabytes."""
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""Start-of-frame markers (DHT, JPG and DAC share the range); they carry the image size."""
_SOS, _TEM = 0xDA, 0x01
_RST_MARKERS = range(0xD0, 0xD8)
_JPEG_TRAILER_PADDING = b"\r\n\t \0"


def jpeg_size_wh(body: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame header; None when it cannot be found."""
    pos = len(JPEG_SOI)
    while pos + 4 <= len(body) and body[pos] == 0xFF:
        marker = body[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in _SOF_MARKERS:
            header = body[pos + 5 : pos + 9]
            if len(header) < 4:
                return None
            return int.from_bytes(header[2:], "big"), int.from_bytes(header[:2], "big")
        elif marker == _SOS:
            return None
        elif marker in _RST_MARKERS or marker == _TEM:
            pos += 2
        else:
            pos += 2 + int.from_bytes(body[pos + 2 : pos + 4], "big")
    return None


def decode_jpeg(body: bytes) -> tuple[NDArray[np.uint8] | None, str]:
    """(image, ``) for a whole JPEG: (H, W, 3) uint8 BGR; (None, why) when it cannot be used.

    A JPEG without its end-of-image marker is refused before decoding (libjpeg would return
    the missing rows grey with only a warning), and so is one over MAX_FRAME_PIXELS.
    """
    if not body.startswith(JPEG_SOI):
        return None, f"not a JPEG ({len(body)} bytes starting {body[:4].hex()})"
    if not body.rstrip(_JPEG_TRAILER_PADDING).endswith(JPEG_EOI):
        return None, f"truncated JPEG ({len(body)} bytes, no end-of-image marker)"
    size = jpeg_size_wh(body)
    if size is not None and size[0] * size[1] > MAX_FRAME_PIXELS:
        return None, f"a JPEG of {size[0]}x{size[1]} pixels (over {MAX_FRAME_PIXELS})"
    try:
        image = cv2.imdecode(np.frombuffer(body, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        return None, f"JPEG does not decode: {exc}"
    if image is None or image.size == 0:
        return None, f"JPEG does not decode ({len(body)} bytes)"
    return np.asarray(image, dtype=np.uint8), ""
