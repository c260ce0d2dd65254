"""Times the model calls inside an Engine: the one session wrapper every benchmark uses.

Benchmark-only: it swaps the engine's session for a timing proxy.
"""

from __future__ import annotations

import time
from typing import Any

from siamedge.engine import Engine


class TimedSession:
    """Wraps an onnxruntime session: when the latest model call started and ended, and the
    time of every call since reset() (a frame's calls, when a fixed batch splits it)."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.started = 0.0
        self.ended = 0.0
        self.elapsed_s = 0.0

    @property
    def last_s(self) -> float:
        """Seconds of the latest call."""
        return self.ended - self.started

    def reset(self) -> None:
        self.elapsed_s = 0.0

    def run(self, names: Any, feeds: Any, run_options: Any = None) -> Any:
        self.started = time.perf_counter()
        outputs = self._session.run(names, feeds, run_options)
        self._ended()
        return outputs

    def run_with_iobinding(self, binding: Any, run_options: Any = None) -> None:
        self.started = time.perf_counter()
        self._session.run_with_iobinding(binding, run_options)
        self._ended()

    def _ended(self) -> None:
        self.ended = time.perf_counter()
        self.elapsed_s += self.ended - self.started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def timed(engine: Engine) -> TimedSession:
    """Time the engine's track-step session from now on."""
    session = TimedSession(engine.session)
    engine._session = session  # benchmark only: time the model call inside Engine.track
    return session
