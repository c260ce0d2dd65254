"""The capture thread: newest-frame hand-out, pacing, retry with backoff, state, prompt stop."""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from fixtures.media import write_video
from fixtures.waiting import WAIT_S, wait_until

from siamedge.errors import SourceError
from siamedge.sources import capture as capture_module
from siamedge.sources.base import Frame
from siamedge.sources.capture import (
    STABLE_STREAM_S,
    Backoff,
    CaptureThread,
    SourceState,
    SourceStatus,
)
from siamedge.sources.file import VideoFileSource

FAST_MIN_S = 0.005
FAST_MAX_S = 0.02


class FakeSource:
    """A scripted FrameSource. Frame images are (1, 1, 3) uint8 holding the per-open number.

    open_errors: raised by the first opens, in order (later opens succeed).
    frames_per_open: after this many frames read() ends (None) or raises end_error.
    read_delay_s: each read takes this long.
    read_tokens: when given, each frame takes one token first (read() blocks until released).
    open_gate: when given, every open after the first waits for it (a reopen that hangs).
    """

    def __init__(
        self,
        *,
        open_errors: Iterable[Exception] = (),
        frames_per_open: int | None = None,
        end_error: Exception | None = None,
        read_delay_s: float = 0.0,
        read_tokens: threading.Semaphore | None = None,
        open_gate: threading.Event | None = None,
    ) -> None:
        self._open_errors = list(open_errors)
        self._frames_per_open = frames_per_open
        self._end_error = end_error
        self._read_delay_s = read_delay_s
        self._read_tokens = read_tokens
        self._open_gate = open_gate
        self.opens = 0
        self.closes = 0
        self.is_open = False
        self._count = 0

    @property
    def description(self) -> str:
        return "fake"

    def open(self) -> None:
        self.opens += 1
        if self._open_gate is not None and self.opens > 1:
            self._open_gate.wait()
        if self._open_errors:
            raise self._open_errors.pop(0)
        self.is_open = True
        self._count = 0

    def read(self) -> Frame | None:
        if not self.is_open:
            raise SourceError("fake: read() before open()")
        if self._read_tokens is not None:
            self._read_tokens.acquire()
        if self._read_delay_s:
            time.sleep(self._read_delay_s)
        if self._frames_per_open is not None and self._count >= self._frames_per_open:
            if self._end_error is not None:
                raise self._end_error
            return None
        image = np.full((1, 1, 3), self._count % 256, dtype=np.uint8)
        frame = Frame(image=image, index=self._count, timestamp=time.time())
        self._count += 1
        return frame

    def close(self) -> None:
        self.closes += 1
        self.is_open = False


class Recorder:
    """on_state callback that keeps every status it was given."""

    def __init__(self) -> None:
        self.statuses: list[SourceStatus] = []

    def __call__(self, status: SourceStatus) -> None:
        self.statuses.append(status)

    def states(self) -> list[SourceState]:
        return [status.state for status in self.statuses]


def capture_of(
    source: FakeSource | VideoFileSource,
    *,
    reopen_min_s: float = FAST_MIN_S,
    reopen_max_s: float = FAST_MAX_S,
    pace_fps: float | None = None,
    stop_event: threading.Event | None = None,
    on_state: Callable[[SourceStatus], None] | None = None,
) -> CaptureThread:
    return CaptureThread(
        source,
        reopen_min_s=reopen_min_s,
        reopen_max_s=reopen_max_s,
        pace_fps=pace_fps,
        stop_event=stop_event,
        on_state=on_state,
    )


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted() -> None:
    capture = capture_of(FakeSource(read_delay_s=0.001))
    capture.start()
    taken: list[Frame] = []
    for _ in range(5):
        time.sleep(0.02)
        captured_before = capture.stats().captured
        frame = capture.get(timeout=WAIT_S)
        assert frame is not None
        # The slot always holds the newest capture, so nothing older than that can come out.
        assert frame.index >= captured_before - 1
        taken.append(frame)
    assert capture.stop()
    leftover = capture.get(timeout=0)

    stats = capture.stats()
    assert stats.dropped > 0
    assert stats.taken == len(taken) + (leftover is not None)
    assert stats.captured == stats.taken + stats.dropped
    assert all(b.index > a.index for a, b in itertools.pairwise(taken))


def test_get_waits_for_a_new_frame_not_the_one_already_taken() -> None:
    tokens = threading.Semaphore(0)
    capture = capture_of(FakeSource(read_tokens=tokens))
    capture.start()
    tokens.release()
    first = capture.get(timeout=WAIT_S)
    nothing = capture.get(timeout=0.05)  # no token, no new frame: the taken one is not repeated
    tokens.release()
    second = capture.get(timeout=WAIT_S)
    tokens.release()  # lets the blocked read return, so the thread can see the stop
    assert capture.stop()

    assert first is not None and second is not None
    assert nothing is None
    assert second.index > first.index


def test_pacing_keeps_capture_times_at_or_below_the_rate() -> None:
    pace_fps = 50.0
    capture = capture_of(FakeSource(), pace_fps=pace_fps)
    capture.start()
    frames = [capture.get(timeout=WAIT_S) for _ in range(6)]
    assert capture.stop()

    taken = [frame for frame in frames if frame is not None]
    assert len(taken) == 6
    # Frame k is read no earlier than k periods after frame 0 (a late frame may shorten the
    # next gap to keep the cadence, so single gaps are not bounded, the span is).
    span_s = taken[-1].timestamp - taken[0].timestamp
    periods = taken[-1].index - taken[0].index
    assert periods >= 5
    assert span_s >= 0.9 * periods / pace_fps


def test_failed_opens_are_retried_with_growing_delay_then_stream() -> None:
    recorder = Recorder()
    source = FakeSource(open_errors=[SourceError("fake: cable out"), SourceError("fake: busy")])
    capture = capture_of(source, on_state=recorder, reopen_min_s=0.01, reopen_max_s=0.04)
    capture.start()
    wait_until(lambda: capture.status.state is SourceState.STREAMING, "streaming")
    assert capture.stop()

    retrying = [s for s in recorder.statuses if s.state is SourceState.RETRYING]
    assert recorder.states()[0] is SourceState.STARTING
    assert recorder.states()[-2:] == [SourceState.STREAMING, SourceState.STOPPED]
    assert [s.error for s in retrying] == ["fake: cable out", "fake: busy"]
    assert [s.failures for s in retrying] == [1, 2]
    assert all(s.next_retry_at is not None for s in retrying)
    assert source.opens == 3
    assert source.closes >= 3  # every failed open is closed too, and the last one at stop


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)

    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5
    with pytest.raises(ValueError, match="0 < min_s <= max_s"):
        Backoff(2.0, 1.0)


def test_indices_keep_increasing_across_reopenings() -> None:
    source = FakeSource(frames_per_open=3)
    capture = capture_of(source)
    capture.start()
    frames: list[Frame] = []
    while len(frames) < 8:  # 3 frames per opening: needs at least 3 openings
        frame = capture.get(timeout=WAIT_S)
        assert frame is not None
        frames.append(frame)
    assert capture.stop()

    assert source.opens >= 3
    assert all(b.index > a.index for a, b in itertools.pairwise(frames))
    # The fake numbers frames from 0 on every open; the capture thread renumbers them.
    assert int(frames[-1].image[0, 0, 0]) < frames[-1].index


def test_unexpected_exception_is_a_retry_not_a_dead_thread() -> None:
    recorder = Recorder()
    source = FakeSource(frames_per_open=2, end_error=RuntimeError("boom"))
    capture = capture_of(source, on_state=recorder)
    capture.start()
    wait_until(lambda: source.opens >= 3, "two reopenings")

    assert capture.is_alive()
    errors = {s.error for s in recorder.statuses if s.state is SourceState.RETRYING}
    assert errors == {"unexpected RuntimeError: boom"}
    assert capture.stop()


def test_a_failing_state_callback_does_not_stop_capture() -> None:
    def explode(status: SourceStatus) -> None:
        raise ValueError(f"callback bug at {status.state}")

    capture = capture_of(FakeSource(), on_state=explode)
    capture.start()
    frame = capture.get(timeout=WAIT_S)

    assert frame is not None
    assert capture.status.state is SourceState.STREAMING
    assert capture.stop()


def test_file_that_ends_and_disappears_is_retried_until_it_is_back(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi", 3)
    recorder = Recorder()
    capture = capture_of(VideoFileSource(path, loop=False), on_state=recorder)
    capture.start()
    wait_until(
        lambda: any(s.error and s.error.endswith(": ended") for s in recorder.statuses),
        "the end of the file",
    )
    path.unlink()
    wait_until(
        lambda: any(s.error and "no such file" in s.error for s in recorder.statuses),
        "the missing-file retry",
    )
    assert capture.is_alive()
    assert capture.status.state is SourceState.RETRYING
    missing_at = len(recorder.statuses)

    write_video(path, 3)
    wait_until(lambda: SourceState.STREAMING in recorder.states()[missing_at:], "streaming again")
    assert capture.get(timeout=WAIT_S) is not None
    assert capture.stop()
    assert capture.status.state is SourceState.STOPPED


def test_stop_during_a_long_backoff_returns_promptly() -> None:
    recorder = Recorder()
    source = FakeSource(open_errors=[SourceError("fake: gone")])
    capture = capture_of(source, on_state=recorder, reopen_min_s=60.0, reopen_max_s=60.0)
    capture.start()
    wait_until(lambda: capture.status.state is SourceState.RETRYING, "retrying")

    assert capture.stop()
    assert not capture.is_alive()
    assert recorder.states()[-1] is SourceState.STOPPED
    assert capture.get(timeout=WAIT_S) is None


def test_stop_closes_the_source_and_get_returns_none() -> None:
    source = FakeSource(read_delay_s=0.01)
    capture = capture_of(source)
    capture.start()
    assert capture.get(timeout=WAIT_S) is not None

    assert capture.stop()
    capture.get(timeout=0)
    assert capture.get(timeout=WAIT_S) is None
    assert not source.is_open
    assert source.closes == source.opens


def test_stop_gives_up_on_a_read_blocked_in_the_driver_but_the_thread_ends_later() -> None:
    tokens = threading.Semaphore(0)
    source = FakeSource(read_tokens=tokens)
    capture = capture_of(source)
    capture.start()
    wait_until(lambda: source.opens == 1, "the open")

    assert capture.stop(timeout_s=0.05) is False
    assert capture.is_alive()
    tokens.release()
    wait_until(lambda: not capture.is_alive(), "the thread to end")
    assert capture.status.state is SourceState.STOPPED
    assert not source.is_open


def test_a_shared_stop_event_ends_the_thread() -> None:
    stop_event = threading.Event()
    capture = capture_of(FakeSource(), stop_event=stop_event)
    capture.start()
    assert capture.get(timeout=WAIT_S) is not None

    stop_event.set()
    wait_until(lambda: not capture.is_alive(), "the thread to end")
    assert capture.stop_event is stop_event
    assert capture.status.state is SourceState.STOPPED


def test_context_manager_starts_and_stops() -> None:
    with capture_of(FakeSource()) as capture:
        assert capture.get(timeout=WAIT_S) is not None
    assert not capture.is_alive()
    assert capture.status.state is SourceState.STOPPED


def test_stop_before_start_is_a_clean_stop() -> None:
    recorder = Recorder()
    capture = capture_of(FakeSource(), on_state=recorder)

    assert capture.stop()
    assert recorder.states() == [SourceState.STOPPED]


def test_bad_pace_is_rejected() -> None:
    with pytest.raises(ValueError, match="pace_fps must be > 0"):
        capture_of(FakeSource(), pace_fps=0.0)


def test_a_blocked_read_is_reported_stalled_then_streaming_when_it_returns() -> None:
    tokens = threading.Semaphore(0)
    recorder = Recorder()
    capture = CaptureThread(
        FakeSource(read_tokens=tokens),
        reopen_min_s=FAST_MIN_S,
        reopen_max_s=FAST_MAX_S,
        stall_timeout_s=0.05,
        on_state=recorder,
    )
    capture.start()
    # Waiting for the callback, not the status: both threads call it, each outside the lock.
    wait_until(lambda: SourceState.STALLED in recorder.states(), "the stall report")
    stalled = recorder.statuses[-1]

    tokens.release()
    frame = capture.get(timeout=WAIT_S)
    tokens.release(1000)  # the reads after it, so stop() does not wait on a blocked one
    assert capture.stop()
    assert frame is not None
    assert recorder.states()[:3] == [
        SourceState.STARTING,
        SourceState.STALLED,
        SourceState.STREAMING,
    ]
    assert stalled.error is not None
    assert re.fullmatch(
        r"fake: stalled: no frame for \d+\.\d s \(the read is blocked.*", stalled.error
    )


def test_bad_stall_timeout_is_rejected() -> None:
    with pytest.raises(ValueError, match="stall_timeout_s must be > 0"):
        CaptureThread(FakeSource(), reopen_min_s=0.1, reopen_max_s=0.1, stall_timeout_s=0.0)


def test_a_backoff_longer_than_the_stall_timeout_stays_retrying() -> None:
    recorder = Recorder()
    source = FakeSource(frames_per_open=0, end_error=SourceError("fake: lost"))
    stall_timeout_s = 0.02
    capture = CaptureThread(
        source,
        reopen_min_s=stall_timeout_s * 10,
        reopen_max_s=stall_timeout_s * 10,
        stall_timeout_s=stall_timeout_s,
        on_state=recorder,
    )
    capture.start()
    wait_until(lambda: source.opens >= 2, "a second attempt after the backoff")
    assert capture.stop()

    assert SourceState.RETRYING in recorder.states()
    assert SourceState.STALLED not in recorder.states()


def test_an_open_under_way_is_told_from_the_wait_for_the_next_one() -> None:
    # The service feeds systemd's watchdog while a lost source waits for its reopen, but not
    # while an open() hangs: it fed it for ever when a reopen (not the first open) hung.
    gate = threading.Event()
    source = FakeSource(frames_per_open=1, open_gate=gate)
    recorder = Recorder()
    capture = capture_of(source, reopen_min_s=0.3, reopen_max_s=0.3, on_state=recorder)
    capture.start()
    try:
        wait_until(lambda: capture.status.state is SourceState.RETRYING, "the source to end")
        assert source.opens == 1
        assert capture.opening_for_s() is None  # waiting out the backoff
        wait_until(lambda: source.opens == 2, "the reopen")
        wait_until(lambda: (capture.opening_for_s() or 0.0) > 0.2, "the reopen to hang")
        assert capture.status.state is SourceState.RETRYING
        gate.set()
        wait_until(lambda: capture.opening_for_s() is None, "the reopen to return")
    finally:
        gate.set()
        capture.stop()


def _delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The backoff delays the capture thread logged, in order."""
    pattern = re.compile(r"reopening in ([\d.e-]+) s")
    return [
        float(match.group(1))
        for record in caplog.records
        if (match := pattern.search(record.getMessage()))
    ]


@pytest.mark.parametrize(
    ("stable_stream_s", "delays"),
    [
        # A camera that sends a frame and drops the connection was reopened every
        # reopen_min_s for ever: any frame reset the backoff.
        (STABLE_STREAM_S, [FAST_MIN_S, 2 * FAST_MIN_S, FAST_MAX_S, FAST_MAX_S]),
        # One that streamed long enough is retried at the shortest delay again.
        (0.0, [FAST_MIN_S] * 4),
    ],
)
def test_the_backoff_starts_again_only_after_a_source_streamed_a_while(
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    stable_stream_s: float,
    delays: list[float],
) -> None:
    monkeypatch.setattr(capture_module, "STABLE_STREAM_S", stable_stream_s)
    caplog.set_level("DEBUG", logger="siamedge.sources.capture")
    source = FakeSource(frames_per_open=1, end_error=SourceError("fake: dropped"))
    capture = capture_of(source)
    capture.start()
    wait_until(lambda: len(_delays(caplog)) >= len(delays), "the retries")
    assert capture.stop()
    assert _delays(caplog)[: len(delays)] == delays


def test_a_camera_that_never_opens_keeps_backing_off_up_to_the_cap(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG", logger="siamedge.sources.capture")
    recorder = Recorder()
    source = FakeSource(open_errors=[SourceError("fake: no such device")] * 100)
    capture = capture_of(source, on_state=recorder)
    capture.start()
    wait_until(lambda: len(_delays(caplog)) >= 5, "the retries")
    assert capture.stop()

    assert _delays(caplog)[:5] == [FAST_MIN_S, 2 * FAST_MIN_S, FAST_MAX_S, FAST_MAX_S, FAST_MAX_S]
    retrying = [s for s in recorder.statuses if s.state is SourceState.RETRYING]
    assert [s.failures for s in retrying[:5]] == [1, 2, 3, 4, 5]
    assert SourceState.STREAMING not in recorder.states()


def _failure_levels(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(level, reason) of each failure the capture thread logged, in order."""
    return [
        (record.levelname, record.getMessage().partition("; reopening in")[0])
        for record in caplog.records
        if "; reopening in" in record.getMessage()
    ]


def test_a_failure_the_same_as_the_last_is_logged_once_then_at_debug_until_a_reminder(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unplugged camera was one WARNING line per attempt, for days (up to one every
    # reopen_max_s, a long one when the reason explains a missing GStreamer).
    caplog.set_level("DEBUG", logger="siamedge.sources.capture")
    gone, refused = "fake: no such device", "fake: permission denied"
    errors = [SourceError(gone)] * 3 + [SourceError(refused), SourceError(gone)]
    source = FakeSource(open_errors=errors, frames_per_open=1, end_error=SourceError(gone))
    capture = capture_of(source)
    capture.start()
    wait_until(lambda: len(_failure_levels(caplog)) >= 7, "the failures")
    assert capture.stop()
    assert _failure_levels(caplog)[:7] == [
        ("WARNING", gone),
        ("DEBUG", gone),
        ("DEBUG", gone),
        ("WARNING", refused),  # another reason
        ("WARNING", gone),  # and back
        ("WARNING", gone),  # the source streamed a frame before failing again
        ("WARNING", gone),
    ]

    monkeypatch.setattr(capture_module, "REPEATED_FAILURE_LOG_EVERY_S", 0.2)
    caplog.clear()
    capture = capture_of(
        FakeSource(open_errors=[SourceError(gone)] * 100), reopen_min_s=0.02, reopen_max_s=0.02
    )
    capture.start()
    wait_until(lambda: len(_failure_levels(caplog)) >= 25, "the failures")
    assert capture.stop()
    records = [record for record in caplog.records if "; reopening in" in record.getMessage()]
    warned_at = [record.created for record in records if record.levelname == "WARNING"]
    # the reason again at WARNING every 0.2 s (attempts every 0.02 s: DEBUG in between)
    assert records[0].levelname == "WARNING" and len(warned_at) >= 2
    assert all(later - earlier >= 0.19 for earlier, later in itertools.pairwise(warned_at))
    assert len(records) - len(warned_at) >= len(warned_at)


def test_failures_that_differ_only_in_a_measured_time_are_the_same_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A stream that fails after 3.0 s, 3.1 s, ... (stream.py says how long the open took) was a
    # new cause at every attempt; an HTTP status is a cause of its own.
    caplog.set_level("DEBUG", logger="siamedge.sources.capture")
    reasons = ["fake: failed after 3.0 s", "fake: failed after 3.1 s", "fake: failed after 12.7 s"]
    reasons += ["fake: HTTP 401", "fake: HTTP 503"]
    capture = capture_of(FakeSource(open_errors=[SourceError(reason) for reason in reasons]))
    capture.start()
    wait_until(lambda: len(_failure_levels(caplog)) >= 5, "the failures")
    assert capture.stop()
    assert [level for level, _ in _failure_levels(caplog)[:5]] == [
        "WARNING",
        "DEBUG",
        "DEBUG",
        "WARNING",
        "WARNING",
    ]
