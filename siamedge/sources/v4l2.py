"""The V4L2 cameras present and the formats each offers: from `v4l2-ctl --list-formats-ext` when
v4l-utils is installed, else by asking OpenCV for a few common modes.

Never changes a device's settings for good and never reads frames: it only lists what a camera
says it can deliver, so `source.fourcc`, `width`, `height` and `fps` can be set to a real mode.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import cv2

from siamedge.errors import SourceError
from siamedge.sources.camera import DEV_DIR, list_video_devices
from siamedge.sources.videocapture import fourcc_code, fourcc_text

V4L2_CTL = "v4l2-ctl"
V4L2_CTL_TIMEOUT_S = 10.0
"""A v4l2-ctl call longer than this is a hung driver: the device is reported with that error."""
PROBED_FOURCCS = ("MJPG", "YUYV")
"""What USB (UVC) cameras offer: compressed MJPG for large sizes at full rate, raw YUYV."""
PROBED_SIZES_WH = ((1920, 1080), (1280, 720), (640, 480))
OPENCV_DESCRIPTION = "as OpenCV negotiated it"

ListingMethod = Literal["v4l2-ctl", "opencv"]

# v4l-utils >= 1.16:  [0]: 'MJPG' (Motion-JPEG, compressed)
_FORMAT = re.compile(r"^\s*\[\d+\]: '(?P<fourcc>[^']*)' \((?P<description>.*)\)\s*$")
# v4l-utils 1.14 (Ubuntu 18.04, JetPack 4): Pixel Format: 'MJPG' (compressed) / Name : Motion-JPEG
_OLD_FORMAT = re.compile(r"^\s*Pixel Format\s*: '(?P<fourcc>[^']*)'(?: \((?P<flags>.*)\))?\s*$")
_OLD_NAME = re.compile(r"^\s*Name\s*: (?P<name>.*)$")
_DISCRETE_SIZE = re.compile(r"^\s*Size: Discrete (?P<width>\d+)x(?P<height>\d+)\s*$")
_OTHER_SIZE = re.compile(r"^\s*Size: (?P<text>(?:Stepwise|Continuous) .*)$")
_DISCRETE_INTERVAL = re.compile(r"^\s*Interval: Discrete \S+ \((?P<fps>[\d.]+) fps\)\s*$")
_OTHER_INTERVAL = re.compile(r"^\s*Interval: (?P<text>(?:Stepwise|Continuous) .*)$")
_CARD = re.compile(r"^\s*Card type\s*: (?P<name>.*?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class FrameSize:
    """One frame size of a format and the rates offered at it (fps, as the driver lists them).

    range_text: a stepwise or continuous size range as v4l2-ctl prints it (`Stepwise 16x16 -
    1920x1080 with step 2/2`; width and height are 0 then); rates_text likewise for a rate range.
    """

    width: int
    height: int
    fps: tuple[float, ...] = ()
    range_text: str | None = None
    rates_text: str | None = None

    def __str__(self) -> str:
        size = self.range_text or f"{self.width}x{self.height}"
        rates = self.rates_text or ", ".join(f"{fps:g}" for fps in self.fps)
        if not rates:
            return size
        return f"{size}: {rates}" if self.rates_text else f"{size}: {rates} fps"


@dataclass(frozen=True)
class PixelFormat:
    """One pixel format (FOURCC such as MJPG or YUYV), its description and its sizes."""

    fourcc: str
    description: str
    sizes: tuple[FrameSize, ...]


@dataclass(frozen=True)
class VideoDevice:
    """A /dev/video* node: its name, what it offers, and how that was found out.

    formats empty and error None: a node without capture formats (UVC cameras add a metadata
    node next to the capture one). error: why it could not be listed (busy, no permission).
    """

    path: str
    name: str | None
    formats: tuple[PixelFormat, ...]
    method: ListingMethod
    error: str | None = None


def parse_formats(text: str) -> tuple[PixelFormat, ...]:
    """The formats in `v4l2-ctl --list-formats-ext` output (v4l-utils 1.14 and later)."""
    formats: list[PixelFormat] = []
    fourcc: str | None = None
    description = ""
    sizes: list[FrameSize] = []

    def finish() -> None:
        if fourcc is not None:
            formats.append(PixelFormat(fourcc, description, tuple(sizes)))

    for line in text.splitlines():
        new_format = _FORMAT.match(line) or _OLD_FORMAT.match(line)
        if new_format:
            finish()
            fourcc, sizes = new_format.group("fourcc").strip(), []
            groups = new_format.groupdict()
            description = groups.get("description") or groups.get("flags") or ""
        elif (name := _OLD_NAME.match(line)) and fourcc is not None:
            flags = f", {description}" if description else ""
            description = name.group("name").strip() + flags
        elif size := _DISCRETE_SIZE.match(line):
            sizes.append(FrameSize(int(size.group("width")), int(size.group("height"))))
        elif other := _OTHER_SIZE.match(line):
            sizes.append(FrameSize(0, 0, range_text=other.group("text").strip()))
        elif (interval := _DISCRETE_INTERVAL.match(line)) and sizes:
            last = sizes[-1]
            sizes[-1] = replace(last, fps=(*last.fps, float(interval.group("fps"))))
        elif (other_interval := _OTHER_INTERVAL.match(line)) and sizes:
            sizes[-1] = replace(sizes[-1], rates_text=other_interval.group("text").strip())
    finish()
    return tuple(formats)


def parse_card_name(text: str) -> str | None:
    """The `Card type` of `v4l2-ctl --info` output (the camera's name), if any."""
    match = _CARD.search(text)
    return match.group("name") if match else None


def list_with_v4l2_ctl(path: str, executable: str) -> VideoDevice:
    """One device as `v4l2-ctl -d PATH --info --list-formats-ext` reports it."""
    try:
        done = subprocess.run(
            [executable, "-d", path, "--info", "--list-formats-ext"],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
            timeout=V4L2_CTL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return VideoDevice(
            path, None, (), "v4l2-ctl", f"v4l2-ctl gave no answer in {V4L2_CTL_TIMEOUT_S:g} s"
        )
    if done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip()).splitlines()
        message = reason[-1] if reason else f"v4l2-ctl exited with status {done.returncode}"
        return VideoDevice(path, None, (), "v4l2-ctl", message)
    return VideoDevice(path, parse_card_name(done.stdout), parse_formats(done.stdout), "v4l2-ctl")


def probe_with_opencv(path: str) -> VideoDevice:
    """One device as OpenCV's V4L2 backend negotiates PROBED_FOURCCS at PROBED_SIZES_WH: the
    modes the driver really gave (a driver may answer a request with another mode)."""
    capture = cv2.VideoCapture(path, cv2.CAP_V4L2)
    try:
        if not capture.isOpened():
            return VideoDevice(
                path, None, (), "opencv", "cannot open it (busy, not a camera, or no permission)"
            )
        found: dict[str, dict[tuple[int, int], float]] = {}
        for fourcc in PROBED_FOURCCS:
            for width, height in PROBED_SIZES_WH:
                capture.set(cv2.CAP_PROP_FOURCC, fourcc_code(fourcc))
                capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
                given = fourcc_text(capture.get(cv2.CAP_PROP_FOURCC))
                size = (
                    int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
                    int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                )
                if given:
                    found.setdefault(given, {})[size] = float(capture.get(cv2.CAP_PROP_FPS))
    finally:
        capture.release()
    formats = tuple(
        PixelFormat(
            fourcc,
            OPENCV_DESCRIPTION,
            tuple(
                FrameSize(width, height, (fps,) if fps > 0 else ())
                for (width, height), fps in sorted(sizes.items(), reverse=True)
            ),
        )
        for fourcc, sizes in found.items()
    )
    return VideoDevice(path, None, formats, "opencv")


def list_devices(dev_dir: Path = DEV_DIR, method: ListingMethod | None = None) -> list[VideoDevice]:
    """Every /dev/video* node under dev_dir with its formats, in device-number order.

    method: None uses v4l2-ctl when it is installed, else OpenCV; `v4l2-ctl` when it is not
    installed is a SourceError.
    """
    executable = shutil.which(V4L2_CTL)
    if method is None:
        method = "v4l2-ctl" if executable else "opencv"
    if method == "v4l2-ctl" and executable is None:
        raise SourceError(f"{V4L2_CTL} is not installed (Debian, Ubuntu: apt install v4l-utils)")
    paths = list_video_devices(dev_dir)
    if method == "v4l2-ctl" and executable is not None:
        return [list_with_v4l2_ctl(path, executable) for path in paths]
    return [probe_with_opencv(path) for path in paths]


def device_report(device: VideoDevice) -> list[str]:
    """The lines `siamedge sources` prints for one device."""
    name = f" {device.name}" if device.name else ""
    lines = [f"{device.path}:{name} (by {device.method})"]
    if device.error:
        return [*lines, f"  cannot list it: {device.error}"]
    if not device.formats:
        return [*lines, "  no capture formats (e.g. the metadata node of a USB camera)"]
    for pixel_format in device.formats:
        lines.append(f"  {pixel_format.fourcc} ({pixel_format.description})")
        lines.extend(f"    {size}" for size in pixel_format.sizes)
    return lines
