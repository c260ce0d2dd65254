"""TrackManager's crop scratch: shared by its targets, let go when the last target stops."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator

import numpy as np
import pytest

from siamedge.config import ModelSettings, TrackerSettings
from siamedge.engine import Engine
from siamedge.sources.base import Frame
from siamedge.tracking.tracker import TrackerParams
from siamedge.tracks import TrackManager

MIB = 1 << 20
FRAME_WH = (3840, 2160)
LARGE_BOX = (0.0, 0.0, 800.0, 800.0)
"""At a corner of a 4K frame: a 3213 px search window straddling two edges, built in the
scratch (12.6x the model input); the kept buffer is about 37 MiB."""


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def _manager() -> TrackManager:
    engine = Engine.load("builtin", ModelSettings(providers=["cpu"], warmup=False))
    params = TrackerParams.from_settings(TrackerSettings(), engine.contract)
    return TrackManager(engine, params, max_tracks=2)


def _frames(count: int) -> list[Frame]:
    rng = np.random.default_rng(0)
    width, height = FRAME_WH
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return [Frame(image, index, float(index)) for index in range(count)]


def test_the_scratch_of_a_large_target_goes_when_the_last_track_stops(traced: None) -> None:
    manager = _manager()
    frames = _frames(4)
    before = tracemalloc.get_traced_memory()[0]
    manager.start(frames[0], LARGE_BOX, "big", None)
    manager.start(frames[0], (3000.0, 1800.0, 100.0, 100.0), "small", None)
    results, dropped = manager.step(frames[1])
    assert [track_id for track_id, _ in results] == ["big", "small"] and dropped == []
    assert tracemalloc.get_traced_memory()[0] - before > 30 * MIB  # the kept scratch
    manager.stop("big", None)
    assert tracemalloc.get_traced_memory()[0] - before > 30 * MIB  # "small" still tracks
    manager.stop("small", None)
    assert tracemalloc.get_traced_memory()[0] - before < 5 * MIB
    manager.start(frames[2], LARGE_BOX, "again", None)  # a new target gets a new scratch
    results, _ = manager.step(frames[3])
    assert [track_id for track_id, _ in results] == ["again"]
    assert tracemalloc.get_traced_memory()[0] - before > 30 * MIB
