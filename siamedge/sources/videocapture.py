"""Shared plumbing of the sources that read through one cv2.VideoCapture: open, read, release.

Never retries or sleeps: it reports SourceError and lets the caller (the capture thread) recover.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.errors import SourceError
from siamedge.sources.base import Frame

VideoTarget = int | str
"""What cv2.VideoCapture opens: a camera index, or a path, URL or pipeline string."""

log = logging.getLogger(__name__)

FOURCC_LENGTH = 4
_GRAY_CHANNELS = 1
_BGRA_CHANNELS = 4


def fourcc_code(text: str) -> int:
    """`MJPG` -> the integer OpenCV uses for CAP_PROP_FOURCC."""
    if len(text) != FOURCC_LENGTH:
        raise SourceError(f"FOURCC must be {FOURCC_LENGTH} characters, got {text!r}")
    return int(cv2.VideoWriter.fourcc(*text))


def fourcc_text(code: float) -> str:
    """CAP_PROP_FOURCC as read back (a float) -> `MJPG`; empty when the backend reports none."""
    value = int(code)
    if value <= 0:
        return ""
    raw = value.to_bytes(FOURCC_LENGTH, "little")
    return raw.decode("ascii", errors="replace").rstrip("\0 ")


def to_bgr(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(H, W), (H, W, 1) or (H, W, 4) uint8 from a driver or appsink -> (H, W, 3) uint8 BGR."""
    if image.ndim == 2 or image.shape[2] == _GRAY_CHANNELS:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.shape[2] == _BGRA_CHANNELS:
        return np.asarray(cv2.cvtColor(image, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    return image


def open_video_capture(
    target: VideoTarget, api: int, params: list[int], description: str
) -> cv2.VideoCapture:
    """An opened cv2.VideoCapture, or SourceError naming the description.

    params: OpenCV's flat (property, value, property, value, ...) list applied while opening.
    """
    try:
        capture = cv2.VideoCapture(target, api, params)
    except cv2.error as exc:
        raise SourceError(f"{description}: OpenCV refused to open it: {exc}") from None
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"{description}: cannot open it")
    return capture


def log_opened(capture: cv2.VideoCapture, description: str) -> None:
    """Log the size and rate a live source actually delivers."""
    log.info(
        "%s opened: %dx%d @ %g fps",
        description,
        int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        capture.get(cv2.CAP_PROP_FPS),
    )


class VideoCaptureSource:
    """Base of the sources that read one cv2.VideoCapture; subclasses say how to open it.

    Frame indices keep counting across close()/open() of the same object.
    """

    def __init__(self, description: str) -> None:
        self._description = description
        self._capture: cv2.VideoCapture | None = None
        self._next_index = 0
        self._frames_since_open = 0

    @property
    def description(self) -> str:
        """A short human description for logs and status."""
        return self._description

    def open(self) -> None:
        """Open (or reopen) the capture; raises SourceError with the reason."""
        self.close()
        self._capture = self._open_capture()
        self._frames_since_open = 0

    def read(self) -> Frame | None:
        """The next frame; what happens when there is none is up to _no_frame()."""
        image = self._grab()
        if image is None:
            return self._no_frame()
        return self._frame(image)

    def close(self) -> None:
        """Release the capture; safe to call twice."""
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.release()

    def _open_capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def _no_frame(self) -> Frame | None:
        """The default for live sources: no frame means the device or stream is lost."""
        raise SourceError(f"{self._description}: no frame (device lost or stream ended)")

    def _opened(self) -> cv2.VideoCapture:
        if self._capture is None:
            raise SourceError(f"{self._description}: read() before open()")
        return self._capture

    def _grab(self) -> NDArray[np.uint8] | None:
        """One decoded (H, W, 3) uint8 BGR image, or None when the backend gave none."""
        capture = self._opened()
        try:
            ok, image = capture.read()
        except cv2.error as exc:
            raise SourceError(f"{self._description}: read failed: {exc}") from None
        if not ok or image is None or image.size == 0:
            return None
        # cv2.read() allocates a new array per call, so the frame owns its buffer.
        return to_bgr(np.asarray(image, dtype=np.uint8))

    def _frame(self, image: NDArray[np.uint8]) -> Frame:
        frame = Frame(image=image, index=self._next_index, timestamp=time.time())
        self._next_index += 1
        self._frames_since_open += 1
        return frame
