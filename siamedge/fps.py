"""Frames per second over a sliding window (the service's status and the web view's preview)."""

from __future__ import annotations

from collections import deque

FPS_WINDOW = 30


class FpsMeter:
    """Frames per second over the last FPS_WINDOW frames, falling towards 0 when they stop."""

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=FPS_WINDOW)

    def tick(self, now: float) -> None:
        self._times.append(now)

    def fps(self, now: float) -> float:
        """The rate as of `now` (the clock tick() was given): over the window's frames while
        they keep coming; once the last one is late (older than the window's mean interval),
        up to `now`, so a source that stopped does not go on reporting its old rate."""
        if len(self._times) < 2:
            return 0.0
        first, last = self._times[0], self._times[-1]
        intervals = len(self._times) - 1
        span = last - first
        if span <= 0:
            return 0.0
        end = last if now - last <= span / intervals else now
        return intervals / (end - first)
