"""A deterministic synthetic clip: a textured blob moving, scaling and turning over a textured
background, with its ground-truth box and mask per frame; and the frame source that plays it.

Never reads the clock or global random state for the picture: everything derives from the seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.config import SyntheticSettings
from siamedge.errors import SourceError
from siamedge.sources.base import Frame

# The object's outline is a union of ellipses in object coordinates (units of OBJECT_RADIUS):
# (centre u, centre v, semi-axis u, semi-axis v). A body and an off-centre head, so that a turn
# of the object changes its silhouette.
_OBJECT_ELLIPSES = ((-0.12, 0.0, 0.95, 0.62), (0.8, -0.22, 0.36, 0.34))
# Object semi-major axis at scale 1, as a fraction of min(width, height).
OBJECT_RADIUS_FRACTION = 0.12
SCALE_MIN = 0.7
SCALE_MAX = 1.4
ROTATION_MAX_DEG = 30.0
# Pose values are rounded to a binary grid so that the last-ulp differences of sin/cos between
# libm implementations cannot move a mask pixel across the outline (on any practical clip).
_POSE_QUANTUM = 2.0**-20
_BACKGROUND_NOISE = 10
_OBJECT_NOISE = 12
_BACKGROUND_SHAPES = 60


@dataclass(frozen=True)
class GroundTruth:
    """Where the object is in one frame.

    box_xywh: axis-aligned box of the mask, (x, y, w, h) in full-frame pixels (w = xmax - xmin + 1).
    mask: (H, W) bool, True on the object's pixels.
    """

    box_xywh: tuple[int, int, int, int]
    mask: NDArray[np.bool_]


@dataclass(frozen=True)
class Pose:
    """The object's pose in one frame: centre (full-frame px), scale (1 = base), angle (rad)."""

    center_xy: tuple[float, float]
    scale: float
    angle_rad: float


def _quantize(value: float) -> float:
    return round(value / _POSE_QUANTUM) * _POSE_QUANTUM


def _smooth_noise(
    rng: np.random.Generator,
    grid_hw: tuple[int, int],
    size_hw: tuple[int, int],
    low: int,
    high: int,
) -> NDArray[np.uint8]:
    """(H, W, 3) uint8 value noise: a random coarse grid, resized with the bit-exact bilinear."""
    grid = rng.integers(low, high + 1, size=(*grid_hw, 3), dtype=np.uint8)
    height, width = size_hw
    resized = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR_EXACT)
    return cast(NDArray[np.uint8], resized)


def _add_noise(
    rng: np.random.Generator, image: NDArray[np.uint8], amplitude: int
) -> NDArray[np.uint8]:
    noise = rng.integers(-amplitude, amplitude + 1, size=image.shape, dtype=np.int16)
    noisy: NDArray[np.uint8] = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return noisy


def _render_background(rng: np.random.Generator, width: int, height: int) -> NDArray[np.uint8]:
    """Cool-coloured (blue, green, grey) texture at three frequencies plus scattered shapes."""
    coarse = _smooth_noise(rng, (5, 8), (height, width), 40, 170)
    fine = _smooth_noise(rng, (height // 24 + 2, width // 24 + 2), (height, width), 0, 60)
    image = (coarse.astype(np.int16) + fine.astype(np.int16) - 30).clip(0, 255).astype(np.uint8)
    # Keep red low: the object's palette is warm, the background's cool.
    image[..., 2] = (image[..., 2].astype(np.uint16) * 3 // 5).astype(np.uint8)
    side = min(width, height)
    for _ in range(_BACKGROUND_SHAPES):
        colour = (
            int(rng.integers(60, 220)),
            int(rng.integers(60, 200)),
            int(rng.integers(20, 110)),
        )
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        extent = int(rng.integers(side // 60 + 2, side // 12 + 3))
        if rng.integers(0, 2) == 0:
            cv2.circle(image, (x, y), extent, colour, thickness=-1, lineType=cv2.LINE_8)
        else:
            corner = (x + int(rng.integers(-extent, extent + 1)), y + extent)
            cv2.rectangle(image, (x, y), corner, colour, thickness=-1, lineType=cv2.LINE_8)
    return _add_noise(rng, image, _BACKGROUND_NOISE)


def _render_object_texture(rng: np.random.Generator, side: int) -> NDArray[np.uint8]:
    """(side, side, 3) uint8 warm texture (orange base, red stripes, yellow spots)."""
    texture = _smooth_noise(rng, (6, 6), (side, side), 0, 40)
    base = np.array([30, 120, 215], dtype=np.int16)  # BGR orange
    image = (base + texture.astype(np.int16) - 20).clip(0, 255).astype(np.uint8)
    stripe_period = max(4, side // 7)
    rows = np.arange(side)[:, None] + np.arange(side)[None, :] // 2
    stripes = (rows // (stripe_period // 2)) % 2 == 0
    image[stripes] = (image[stripes].astype(np.int16) * [2, 1, 3] // [3, 2, 3]).astype(np.uint8)
    for _ in range(12):
        centre = (int(rng.integers(0, side)), int(rng.integers(0, side)))
        radius = int(rng.integers(max(2, side // 30), max(3, side // 10)))
        colour = (
            int(rng.integers(20, 70)),
            int(rng.integers(190, 240)),
            int(rng.integers(230, 256)),
        )
        cv2.circle(image, centre, radius, colour, thickness=-1, lineType=cv2.LINE_8)
    return _add_noise(rng, image, _OBJECT_NOISE)


class SyntheticClip:
    """The clip of `settings.frames` frames of `settings.width` x `settings.height`.

    The pose follows periodic curves over the clip (a Lissajous-like path, scale between
    SCALE_MIN and SCALE_MAX, angle within +-ROTATION_MAX_DEG), so looping is seamless.
    """

    def __init__(self, settings: SyntheticSettings) -> None:
        self._settings = settings
        width, height = settings.width, settings.height
        rng = np.random.Generator(np.random.PCG64(settings.seed))
        self._background = _render_background(rng, width, height)
        self._background.setflags(write=False)
        self._radius = OBJECT_RADIUS_FRACTION * min(width, height)
        # Radius (in OBJECT_RADIUS units) of a circle around the origin holding the outline.
        self._extent = max(math.hypot(cu, cv) + max(au, av) for cu, cv, au, av in _OBJECT_ELLIPSES)
        self._texture_side = 2 * math.ceil(self._extent * self._radius) + 3
        self._texture = _render_object_texture(rng, self._texture_side)
        self._phases = rng.uniform(0.0, 2.0 * math.pi, size=6)
        margin = SCALE_MAX * self._extent * self._radius + 2.0
        self._amplitude_xy = (max(0.0, width / 2 - margin), max(0.0, height / 2 - margin))

    def __len__(self) -> int:
        return self._settings.frames

    @property
    def size_wh(self) -> tuple[int, int]:
        """(width, height) of every frame."""
        return self._settings.width, self._settings.height

    @property
    def background(self) -> NDArray[np.uint8]:
        """(H, W, 3) uint8 BGR background without the object (read-only)."""
        return self._background

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"synthetic frame {index} out of range 0..{len(self) - 1}")

    def pose(self, index: int) -> Pose:
        """The object's pose in frame `index` (periodic over the clip)."""
        self._check_index(index)
        turn = 2.0 * math.pi * index / len(self)
        p = self._phases
        width, height = self.size_wh
        ax, ay = self._amplitude_xy
        x = width / 2 + ax * (0.8 * math.sin(turn + p[0]) + 0.2 * math.sin(3 * turn + p[1]))
        y = height / 2 + ay * (0.7 * math.sin(2 * turn + p[2]) + 0.3 * math.sin(turn + p[3]))
        mid_scale = math.sqrt(SCALE_MIN * SCALE_MAX)
        half_range = 0.5 * math.log(SCALE_MAX / SCALE_MIN)
        scale = mid_scale * math.exp(half_range * math.sin(turn + p[4]))
        angle = math.radians(ROTATION_MAX_DEG) * math.sin(2 * turn + p[5])
        return Pose((_quantize(x), _quantize(y)), _quantize(scale), _quantize(angle))

    def _window(self, pose: Pose) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the frame window (exclusive end) that can hold object pixels."""
        width, height = self.size_wh
        reach = pose.scale * self._radius * self._extent + 2.0
        cx, cy = pose.center_xy
        x0 = max(0, math.floor(cx - reach))
        y0 = max(0, math.floor(cy - reach))
        x1 = min(width, math.ceil(cx + reach) + 1)
        y1 = min(height, math.ceil(cy + reach) + 1)
        return x0, y0, max(x0, x1), max(y0, y1)

    def _mask_in_window(self, pose: Pose, window: tuple[int, int, int, int]) -> NDArray[np.bool_]:
        """(h, w) bool object mask inside `window`, tested at pixel centres (integer coords)."""
        x0, y0, x1, y1 = window
        cx, cy = pose.center_xy
        cos_a, sin_a = math.cos(pose.angle_rad), math.sin(pose.angle_rad)
        unit = pose.scale * self._radius
        dx = (np.arange(x0, x1, dtype=np.float64) - cx)[None, :]
        dy = (np.arange(y0, y1, dtype=np.float64) - cy)[:, None]
        u = (cos_a * dx + sin_a * dy) / unit
        v = (cos_a * dy - sin_a * dx) / unit
        mask = np.zeros((y1 - y0, x1 - x0), dtype=np.bool_)
        for cu, cv, au, av in _OBJECT_ELLIPSES:
            mask |= ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2 <= 1.0
        return mask

    def _object_in_window(self, pose: Pose, window: tuple[int, int, int, int]) -> NDArray[np.uint8]:
        """(h, w, 3) uint8 object texture warped into `window` (valid inside the mask only)."""
        x0, y0, x1, y1 = window
        cx, cy = pose.center_xy
        cos_a, sin_a = math.cos(pose.angle_rad), math.sin(pose.angle_rad)
        scale = pose.scale
        centre = (self._texture_side - 1) / 2
        # texture pixel (tx, ty) -> window pixel: rotate and scale about the texture centre.
        forward = np.array(
            [
                [scale * cos_a, -scale * sin_a, 0.0],
                [scale * sin_a, scale * cos_a, 0.0],
            ]
        )
        forward[:, 2] = np.array([cx - x0, cy - y0]) - forward[:, :2] @ np.array([centre, centre])
        warped = cv2.warpAffine(
            self._texture,
            forward,
            (x1 - x0, y1 - y0),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return cast(NDArray[np.uint8], warped)

    def frame(self, index: int) -> NDArray[np.uint8]:
        """(H, W, 3) uint8 BGR picture of frame `index` (a new array)."""
        pose = self.pose(index)
        image: NDArray[np.uint8] = self._background.copy()
        window = self._window(pose)
        x0, y0, x1, y1 = window
        if x1 <= x0 or y1 <= y0:
            return image
        mask = self._mask_in_window(pose, window)
        painted = self._object_in_window(pose, window)
        under = image[y0:y1, x0:x1]
        # The truth mask must be exactly the set of changed pixels: nudge any object pixel that
        # happens to equal the background there.
        same = mask & np.all(painted == under, axis=2)
        painted[same, 0] ^= 1
        np.copyto(under, painted, where=mask[:, :, None])
        return image

    def truth(self, index: int) -> GroundTruth:
        """The ground-truth mask and its box in frame `index`."""
        pose = self.pose(index)
        width, height = self.size_wh
        full = np.zeros((height, width), dtype=np.bool_)
        window = self._window(pose)
        x0, y0, x1, y1 = window
        if x1 > x0 and y1 > y0:
            full[y0:y1, x0:x1] = self._mask_in_window(pose, window)
        return GroundTruth(box_xywh=_mask_box(full), mask=full)


def _mask_box(mask: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    """Axis-aligned (x, y, w, h) of the True pixels; (0, 0, 0, 0) when there are none."""
    columns = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if columns.size == 0:
        return 0, 0, 0, 0
    x, y = int(columns[0]), int(rows[0])
    return x, y, int(columns[-1]) - x + 1, int(rows[-1]) - y + 1


class SyntheticSource:
    """FrameSource playing a SyntheticClip as fast as it is read (the capture thread paces it).

    loop: start again at frame 0 after the last frame; otherwise read() returns None there.
    Frame.index counts every frame read since open(); the clip frame is index % len(clip).
    """

    def __init__(self, settings: SyntheticSettings, loop: bool) -> None:
        self._settings = settings
        self._loop = loop
        self._clip: SyntheticClip | None = None
        self._count = 0

    @property
    def description(self) -> str:
        """`synthetic WxH xN`."""
        s = self._settings
        return f"synthetic {s.width}x{s.height} x{s.frames}"

    @property
    def clip(self) -> SyntheticClip | None:
        """The clip being played (None before open)."""
        return self._clip

    def open(self) -> None:
        """Render the background and texture (once) and rewind to frame 0."""
        if self._clip is None:
            self._clip = SyntheticClip(self._settings)
        self._count = 0

    def read(self) -> Frame | None:
        """The next frame, or None after the last one when not looping."""
        if self._clip is None:
            raise SourceError(f"{self.description}: read() before open() or after close()")
        length = len(self._clip)
        if self._count >= length and not self._loop:
            return None
        image = self._clip.frame(self._count % length)
        frame = Frame(image=image, index=self._count, timestamp=time.time())
        self._count += 1
        return frame

    def close(self) -> None:
        """Drop the rendered clip; safe to call twice."""
        self._clip = None
