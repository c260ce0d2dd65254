"""The frame-rate meter of the status, the web view and the metrics."""

from __future__ import annotations

import pytest

from siamedge.fps import FPS_WINDOW, FpsMeter


def ticked(times: list[float]) -> FpsMeter:
    meter = FpsMeter()
    for now in times:
        meter.tick(now)
    return meter


def test_a_steady_stream_reports_its_rate() -> None:
    meter = ticked([100.0 + i / 20 for i in range(50)])
    assert meter.fps(100.0 + 49 / 20) == pytest.approx(20.0)
    assert meter.fps(100.0 + 49 / 20 + 0.04) == pytest.approx(20.0)  # the next frame is due


def test_the_rate_falls_when_frames_stop() -> None:
    # During a camera outage the status kept saying 14.9 fps: the rate of the last frames.
    times = [100.0 + i / 20 for i in range(FPS_WINDOW)]
    meter = ticked(times)
    later = times[-1] + 15.0
    assert meter.fps(later) == pytest.approx((FPS_WINDOW - 1) / (later - times[0]))
    assert meter.fps(later) < 2.0
    assert meter.fps(times[-1] + 3600.0) < 0.01


def test_fewer_than_two_frames_or_no_span_is_zero() -> None:
    assert FpsMeter().fps(1.0) == 0.0
    assert ticked([5.0]).fps(5.0) == 0.0
    assert ticked([5.0, 5.0]).fps(5.0) == 0.0
