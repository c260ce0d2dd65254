"""The frame and frame-source types every source implements and every consumer reads.

Never decodes or opens anything itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    image: (H, W, 3) uint8 BGR, owned by the frame (sources never reuse its buffer).
    index: running number of the frame within the source, from 0.
    timestamp: capture time, unix seconds.
    monotonic: capture time on time.monotonic(), for latencies and rates: the wall clock may be
    stepped (NTP on a board without a battery clock) between capture and publishing.
    """

    image: NDArray[np.uint8]
    index: int
    timestamp: float
    monotonic: float = field(default_factory=time.monotonic, compare=False)

    @property
    def size_wh(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


class FrameSource(Protocol):
    """A blocking reader of frames. Raises SourceError when it cannot open or read."""

    @property
    def description(self) -> str:
        """A short human description (`camera /dev/video0`, `file clip.mp4`) for logs and status."""
        ...

    def open(self) -> None:
        """Open the device, file or stream; raises SourceError with the reason."""
        ...

    def read(self) -> Frame | None:
        """The next frame; None at the end of a finite source; SourceError on failure."""
        ...

    def close(self) -> None:
        """Release the device; safe to call twice."""
        ...
