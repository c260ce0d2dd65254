"""Video files, played once or looped, with the file's own nominal frame rate.

Never paces playback itself: it reads as fast as asked (the capture thread paces).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.errors import SourceError
from siamedge.sources.base import Frame
from siamedge.sources.videocapture import VideoCaptureSource, open_video_capture

log = logging.getLogger(__name__)


def _fps_of(capture: cv2.VideoCapture) -> float | None:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    return fps if math.isfinite(fps) and fps > 0 else None


def probe_fps(path: Path | str) -> float | None:
    """The nominal frame rate written in a video file; None when missing, unreadable or unset."""
    if not Path(path).is_file():
        return None
    capture = cv2.VideoCapture(str(path), cv2.CAP_ANY)
    try:
        return _fps_of(capture) if capture.isOpened() else None
    finally:
        capture.release()


class VideoFileSource(VideoCaptureSource):
    """Frames of a video file in order; at the end None, or (loop=True) the first frame again.

    Frame indices keep counting across loops (frame N of the file is not index N on pass 2).
    """

    def __init__(self, path: Path | str, *, loop: bool) -> None:
        self._path = Path(path)
        super().__init__(f"file {self._path}")
        self._loop = loop
        self._nominal_fps: float | None = None

    @property
    def path(self) -> Path:
        """The video file."""
        return self._path

    @property
    def nominal_fps(self) -> float | None:
        """The file's own frame rate (None when the container has none); known after open()."""
        return self._nominal_fps

    def _open_capture(self) -> cv2.VideoCapture:
        if not self._path.exists():
            raise SourceError(f"{self.description}: no such file")
        if not self._path.is_file():
            raise SourceError(f"{self.description}: not a regular file")
        try:
            capture = open_video_capture(str(self._path), cv2.CAP_ANY, [], self.description)
        except SourceError:
            raise SourceError(f"{self.description}: not a video OpenCV can decode") from None
        self._nominal_fps = _fps_of(capture)
        log.info(
            "%s opened: %dx%d, %d frames, %s fps",
            self.description,
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            int(capture.get(cv2.CAP_PROP_FRAME_COUNT)),
            self._nominal_fps,
        )
        return capture

    def _no_frame(self) -> Frame | None:
        if self._frames_since_open == 0:
            raise SourceError(f"{self.description}: no frame could be decoded (not a video?)")
        if not self._loop:
            return None
        image = self._rewound_image()
        if image is None:
            raise SourceError(f"{self.description}: no frame after starting again (file changed?)")
        return self._frame(image)

    def _rewound_image(self) -> NDArray[np.uint8] | None:
        """Seek to frame 0 and grab; some containers cannot seek, so reopen the file then."""
        capture = self._opened()
        if capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            image = self._grab()
            if image is not None:
                return image
        log.debug("%s: seeking to the start failed, reopening", self.description)
        self.close()
        self._capture = self._open_capture()
        return self._grab()
