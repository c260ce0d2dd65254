"""USB / V4L2 cameras by index (`0`) or device path (`/dev/video0`), with size, rate and FOURCC.

Never assumes the driver honoured a request: what it really gave is read back and logged.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2

from siamedge.errors import SourceError
from siamedge.sources.videocapture import (
    VideoCaptureSource,
    VideoTarget,
    fourcc_code,
    fourcc_text,
    open_video_capture,
)

log = logging.getLogger(__name__)

DEV_DIR = Path("/dev")
_DEVICE_NAME = re.compile(r"video(\d+)")
_ON_LINUX = sys.platform.startswith("linux")


@dataclass(frozen=True)
class CameraMode:
    """What the driver delivers after negotiation (`fourcc` empty when it reports none)."""

    width: int
    height: int
    fps: float
    fourcc: str

    def __str__(self) -> str:
        fourcc = f" {self.fourcc}" if self.fourcc else ""
        return f"{self.width}x{self.height} @ {self.fps:g} fps{fourcc}"


def list_video_devices(dev_dir: Path = DEV_DIR) -> list[str]:
    """The /dev/video* paths present, in device-number order (video2 before video10)."""
    found = []
    for path in dev_dir.glob("video*"):
        match = _DEVICE_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), str(path)))
    return [path for _, path in sorted(found)]


def _present_devices_text(dev_dir: Path) -> str:
    devices = list_video_devices(dev_dir)
    if not devices:
        return f"no {dev_dir / 'video*'} devices are present"
    return "present: " + ", ".join(devices)


class CameraSource(VideoCaptureSource):
    """A V4L2 camera (any OpenCV backend off Linux).

    device: `0` (an index, i.e. /dev/video0) or a path such as `/dev/video0`.
    width, height, fps, fourcc: requests (None: the driver's choice); check `mode` after open().
    dev_dir: where the /dev/videoN nodes live (tests point it elsewhere).
    """

    def __init__(
        self,
        device: str,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fourcc: str | None = None,
        dev_dir: Path = DEV_DIR,
    ) -> None:
        self._target, self._node = _parse_device(device, dev_dir)
        super().__init__(f"camera {self._node}")
        self._device = device
        self._dev_dir = dev_dir
        self._requested = (width, height, fps, fourcc)
        self._fourcc_code = None if fourcc is None else fourcc_code(fourcc)
        self._mode: CameraMode | None = None

    @property
    def mode(self) -> CameraMode | None:
        """The negotiated size, rate and FOURCC; None before the first open()."""
        return self._mode

    def _open_capture(self) -> cv2.VideoCapture:
        if _ON_LINUX and not self._node.exists():
            raise SourceError(
                f"camera {self._device!r}: {self._node} does not exist; "
                f"{_present_devices_text(self._dev_dir)}"
            )
        if _ON_LINUX and not self._node.is_char_device():
            what = "a folder" if self._node.is_dir() else "a regular file"
            raise SourceError(
                f"camera {self._device!r}: {self._node} is {what}, not a video device; "
                f"{_present_devices_text(self._dev_dir)}"
            )
        api = cv2.CAP_V4L2 if _ON_LINUX else cv2.CAP_ANY
        try:
            capture = open_video_capture(self._target, api, [], self.description)
        except SourceError:
            raise SourceError(
                f"camera {self._device!r}: {self._node} exists but cannot be opened "
                f"(busy, not a capture device, or no permission: is the user in group `video`?); "
                f"{_present_devices_text(self._dev_dir)}"
            ) from None
        self._negotiate(capture)
        return capture

    def _negotiate(self, capture: cv2.VideoCapture) -> None:
        """Ask for the requested mode, then read back and log what the driver gave."""
        width, height, fps, fourcc = self._requested
        # V4L2 picks the frame size within the pixel format, so FOURCC goes first.
        requests: list[tuple[str, int, float | None]] = [
            ("FOURCC", cv2.CAP_PROP_FOURCC, self._fourcc_code),
            ("width", cv2.CAP_PROP_FRAME_WIDTH, width),
            ("height", cv2.CAP_PROP_FRAME_HEIGHT, height),
            ("fps", cv2.CAP_PROP_FPS, fps),
        ]
        for name, prop, value in requests:
            if value is not None and not capture.set(prop, float(value)):
                log.warning("%s: the driver refused %s=%s", self.description, name, value)
        self._mode = CameraMode(
            width=int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            fps=float(capture.get(cv2.CAP_PROP_FPS)),
            fourcc=fourcc_text(capture.get(cv2.CAP_PROP_FOURCC)),
        )
        log.info(
            "%s opened (%s backend): %s; asked width=%s height=%s fps=%s fourcc=%s",
            self.description,
            capture.getBackendName(),
            self._mode,
            width,
            height,
            fps,
            fourcc,
        )
        mismatched = (
            (width is not None and width != self._mode.width)
            or (height is not None and height != self._mode.height)
            or (fourcc is not None and fourcc != self._mode.fourcc)
        )
        if mismatched:
            log.warning("%s: the driver did not give the requested mode", self.description)


def _parse_device(device: str, dev_dir: Path) -> tuple[VideoTarget, Path]:
    """`0` -> (0, /dev/video0); `/dev/video0` -> ("/dev/video0", /dev/video0)."""
    text = device.strip()
    if text.isdigit():
        return int(text), dev_dir / f"video{int(text)}"
    if text.startswith("/"):
        return text, Path(text)
    raise SourceError(
        f"camera {device!r}: expected an index such as 0 or a path such as /dev/video0"
    )
