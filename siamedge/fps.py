"""Frames per second over a sliding window (the service's status and the web view's preview)."""

from __future__ import annotations

from collections import deque

FPS_WINDOW = 30


class FpsMeter:
    """Frames per second over the last FPS_WINDOW frames."""

    def __init__(self) -> None:
        self._times: deque[float] = deque(maxlen=FPS_WINDOW)

    def tick(self, now: float) -> None:
        self._times.append(now)

    @property
    def fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0
