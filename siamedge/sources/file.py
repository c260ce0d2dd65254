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
from siamedge.filestamp import FileStamp, file_stamp
from siamedge.sources.base import Frame
from siamedge.sources.videocapture import VideoCaptureSource, open_video_capture

log = logging.getLogger(__name__)

TRUNCATED_BELOW_FRACTION = 0.9
"""A pass that ends before this fraction of the container's declared frame count is reported as
truncated or corrupt. Not 1.0: the count is an estimate in many containers (duration times the
nominal rate in mp4/mkv, variable frame rates, edit lists), a few frames off on a sound file,
while a cut copy or a damaged middle loses far more."""


def looks_truncated(frames_read: int, declared_frames: int) -> bool:
    """True when a pass that ended after frames_read frames fell well short of the declared count.

    declared_frames <= 0 means the container declares none (raw streams): never truncated then.
    """
    return declared_frames > 0 and frames_read < TRUNCATED_BELOW_FRACTION * declared_frames


def _fps_of(capture: cv2.VideoCapture) -> float | None:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    return fps if math.isfinite(fps) and fps > 0 else None


def _frame_count_of(capture: cv2.VideoCapture) -> int:
    """The declared frame count; 0 when the container has none (raw streams report garbage)."""
    count = float(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return int(count) if math.isfinite(count) and count > 0 else 0


def probe_fps(path: Path | str) -> float | None:
    """The nominal frame rate written in a video file; None when missing, unreadable or unset."""
    if not Path(path).is_file():
        return None
    capture = cv2.VideoCapture(str(path), cv2.CAP_ANY)
    try:
        return _fps_of(capture) if capture.isOpened() else None
    finally:
        capture.release()


def probe_frame_count(path: Path | str) -> int:
    """The frame count a video file's container declares; 0 when it has none or does not open
    (an mp4 whose index was never written)."""
    if not Path(path).is_file():
        return 0
    capture = cv2.VideoCapture(str(path), cv2.CAP_ANY)
    try:
        return _frame_count_of(capture) if capture.isOpened() else 0
    finally:
        capture.release()


class VideoFileSource(VideoCaptureSource):
    """Frames of a video file in order; at the end None, or (loop=True) the first frame again.

    Frame indices keep counting across loops (frame N of the file is not index N on pass 2).
    With loop=False a file played to the end is not played again by a later open() of the same
    object (the capture thread reopens an ended source) until the file changes.
    """

    def __init__(self, path: Path | str, *, loop: bool) -> None:
        self._path = Path(path)
        super().__init__(f"file {self._path}")
        self._loop = loop
        self._nominal_fps: float | None = None
        self._declared_frames = 0
        self._pass_started_at = 0
        """_frames_since_open when the current pass started (a loop starts a new pass)."""
        self._played: FileStamp | None = None
        """The file as it was when a loop=False pass reached its end."""
        self._warned_truncated: FileStamp | None = None
        """The file version already reported as truncated (a looped one ends every pass)."""

    @property
    def path(self) -> Path:
        """The video file."""
        return self._path

    @property
    def nominal_fps(self) -> float | None:
        """The file's own frame rate (None when the container has none); known after open()."""
        return self._nominal_fps

    def open(self) -> None:
        """Open the file; SourceError when it cannot, or when it was played (loop=False) and is
        unchanged since."""
        if self._played is not None:
            if file_stamp(self._path) == self._played:
                raise SourceError(
                    f"{self.description}: played to the end (loop: false); "
                    "played again when it changes"
                )
            self._played = None
        super().open()
        self._pass_started_at = 0

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
        self._declared_frames = _frame_count_of(capture)
        log.info(
            "%s opened: %dx%d, %s frames, %s fps",
            self.description,
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            self._declared_frames or "unknown",
            "unknown" if self._nominal_fps is None else f"{self._nominal_fps:g}",
        )
        return capture

    def _no_frame(self) -> Frame | None:
        if self._frames_since_open == 0:
            raise SourceError(f"{self.description}: no frame could be decoded (not a video?)")
        self._check_pass_length(self._frames_since_open - self._pass_started_at)
        if not self._loop:
            self._played = file_stamp(self._path)
            return None
        image = self._rewound_image()
        if image is None:
            raise SourceError(f"{self.description}: no frame after starting again (file changed?)")
        self._pass_started_at = self._frames_since_open
        return self._frame(image)

    def _check_pass_length(self, frames_read: int) -> None:
        """Warn, once per version of the file, when a pass ended well before the declared count."""
        if not looks_truncated(frames_read, self._declared_frames):
            return
        stamp = file_stamp(self._path)
        if stamp is not None and stamp == self._warned_truncated:
            return
        self._warned_truncated = stamp
        log.warning(
            "%s: ended at frame %d of %d: truncated or corrupt?",
            self.description,
            frames_read,
            self._declared_frames,
        )

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
