"""RTSP streams against a real gst-rtsp-server on loopback: frames, stalls, kills and restarts.

The server (tests/fixtures/rtsp_server.py) stamps each frame with its number, counted from 0 for
each client, so a test can tell a frame of a new session from one of the old. Time bounds are
those of issue 10: a stall or a loss is reported within read_timeout_s + 1 s, frames are back
within 5 s of the server; everything else waits generously (a loaded CI machine).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fixtures.rtsp import RtspServer

from siamedge.errors import SourceError
from siamedge.sources.base import Frame
from siamedge.sources.capture import CaptureThread, SourceState, SourceStatus
from siamedge.sources.clock_stamp import Stamp, read_stamp
from siamedge.sources.stream import StreamSource

OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 1.0
REPORT_MARGIN_S = 1.0
"""Issue 10: a stall or loss is on the status within read_timeout_s + 1 s."""
BACK_WITHIN_S = 5.0
"""Issue 10: frames resume within 5 s of the server coming back."""
WAIT_S = 30.0
"""For what is not timed: the first frames after opening (RTSP and x264 starting on a loaded
machine); turns a hang into a failure."""
FRAMES = 40


def stamp_of(frame: Frame) -> Stamp:
    stamp = read_stamp(frame.image)
    assert stamp is not None, f"frame {frame.index} carries no readable stamp"
    return stamp


def stamp_index(frame: Frame) -> int:
    return stamp_of(frame).index


def stream(server: RtspServer, read_timeout_s: float = READ_TIMEOUT_S) -> StreamSource:
    return StreamSource(server.url, open_timeout_s=OPEN_TIMEOUT_S, read_timeout_s=read_timeout_s)


@dataclass(frozen=True)
class Seen:
    at: float
    """time.monotonic() when the callback ran."""
    status: SourceStatus


class Recorder:
    """Collects the capture thread's state changes with the time each arrived."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._changed = threading.Condition()

    def __call__(self, status: SourceStatus) -> None:
        with self._changed:
            self.seen.append(Seen(time.monotonic(), status))
            self._changed.notify_all()

    def wait_for(
        self, where: Callable[[SourceStatus], bool], after: float, timeout_s: float
    ) -> Seen:
        """The first state change after `after` (monotonic) that matches."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for seen in self.seen:
                    if seen.at >= after and where(seen.status):
                        return seen
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    states = [(round(s.at - after, 2), s.status.state.value) for s in self.seen]
                    pytest.fail(f"no matching state within {timeout_s} s; saw {states}")
                self._changed.wait(remaining)


@pytest.fixture
def capture_of(
    rtsp_server: RtspServer,
) -> Iterator[Callable[..., tuple[CaptureThread, Recorder]]]:
    """`capture_of(read_timeout_s=1.0, stall_timeout_s=1.0)`: a started capture thread on the
    server and the recorder of its states; stopped after the test."""
    captures: list[CaptureThread] = []

    def make(
        read_timeout_s: float = READ_TIMEOUT_S, stall_timeout_s: float = READ_TIMEOUT_S
    ) -> tuple[CaptureThread, Recorder]:
        recorder = Recorder()
        capture = CaptureThread(
            stream(rtsp_server, read_timeout_s),
            reopen_min_s=0.1,
            reopen_max_s=0.5,
            stall_timeout_s=stall_timeout_s,
            on_state=recorder,
        )
        captures.append(capture)
        capture.start()
        return capture, recorder

    yield make
    for capture in captures:
        capture.stop()


def next_frame(capture: CaptureThread, timeout_s: float = WAIT_S) -> Frame:
    frame = capture.get(timeout_s)
    assert frame is not None, f"no frame within {timeout_s} s: {capture.status}"
    return frame


def frame_made_after(capture: CaptureThread, unix_s: float, deadline: float) -> Frame:
    """The first frame the server made after unix_s (wall clock, from its stamp)."""
    while (remaining := deadline - time.monotonic()) > 0:
        frame = capture.get(remaining)
        if frame is not None and stamp_of(frame).unix_s > unix_s:
            return frame
    pytest.fail(f"no frame made after the server came back, in time: {capture.status}")


def test_each_client_gets_every_frame_from_frame_zero(rtsp_server: RtspServer) -> None:
    source = stream(rtsp_server)
    source.open()
    try:
        frames = [source.read() for _ in range(FRAMES)]
    finally:
        source.close()

    assert [stamp_index(frame) for frame in frames if frame is not None] == list(range(FRAMES))
    assert frames[0] is not None and frames[0].size_wh == (320, 240)


def test_frozen_server_fails_the_read_within_the_timeout_saying_stalled(
    rtsp_server: RtspServer,
) -> None:
    # The user's report: SIGSTOP with read_timeout_s 2 was seen only after 6.1 s, because
    # FFmpeg's decoder handed out the frames it held, one per timeout.
    read_timeout_s = 2.0
    source = stream(rtsp_server, read_timeout_s)
    source.open()
    try:
        for _ in range(10):
            source.read()
        rtsp_server.freeze()
        frozen_at = time.monotonic()
        with pytest.raises(SourceError, match=r"stalled: no data for \d\.\d s") as caught:
            while time.monotonic() - frozen_at < WAIT_S:
                source.read()
        failed_after_s = time.monotonic() - frozen_at
    finally:
        rtsp_server.thaw()
        source.close()

    assert failed_after_s <= read_timeout_s + REPORT_MARGIN_S, caught.value
    assert rtsp_server.url in str(caught.value)


def test_frozen_server_is_reported_stalled_then_reopened_after_it_resumes(
    capture_of: Callable[..., tuple[CaptureThread, Recorder]], rtsp_server: RtspServer
) -> None:
    capture, recorder = capture_of()
    for _ in range(5):
        next_frame(capture)

    rtsp_server.freeze()
    frozen_at = time.monotonic()
    stalled = recorder.wait_for(
        lambda s: s.state is SourceState.STALLED, frozen_at, READ_TIMEOUT_S + REPORT_MARGIN_S
    )
    lost = recorder.wait_for(lambda s: s.state is SourceState.RETRYING, frozen_at, WAIT_S)
    rtsp_server.thaw()
    thawed_at = time.monotonic()
    frame = frame_made_after(capture, time.time(), thawed_at + WAIT_S)
    reopened = recorder.wait_for(lambda s: s.state is SourceState.STREAMING, lost.at, 0.0)

    assert stalled.at - frozen_at <= READ_TIMEOUT_S + REPORT_MARGIN_S
    assert stalled.status.error is not None and "stalled: no frame for" in stalled.status.error
    assert lost.status.error is not None and "stalled: no data for" in lost.status.error
    assert reopened.at >= thawed_at
    assert frame.index > 0  # the capture thread's numbering goes on across the reopening


def test_a_short_freeze_is_reported_and_streaming_goes_on_without_reopening(
    capture_of: Callable[..., tuple[CaptureThread, Recorder]], rtsp_server: RtspServer
) -> None:
    # The stall watchdog (1 s) reports the blocked read; the read timeout (10 s) does not end
    # it, so when the server resumes the same session goes on.
    capture, recorder = capture_of(read_timeout_s=10.0, stall_timeout_s=1.0)
    for _ in range(5):
        last = stamp_index(next_frame(capture))

    rtsp_server.freeze()
    frozen_at = time.monotonic()
    recorder.wait_for(lambda s: s.state is SourceState.STALLED, frozen_at, 1.0 + REPORT_MARGIN_S)
    rtsp_server.thaw()
    thawed_at = time.monotonic()
    streaming = recorder.wait_for(lambda s: s.state is SourceState.STREAMING, thawed_at, WAIT_S)
    after = [stamp_index(next_frame(capture)) for _ in range(3)]

    assert streaming.at >= thawed_at
    assert all(index > last for index in after), (last, after)
    assert not [s for s in recorder.seen if s.status.state is SourceState.RETRYING]


def test_killed_server_is_reported_lost_and_frames_resume_after_its_restart(
    capture_of: Callable[..., tuple[CaptureThread, Recorder]], rtsp_server: RtspServer
) -> None:
    capture, recorder = capture_of()
    for _ in range(5):
        next_frame(capture)

    rtsp_server.kill()
    killed_at = time.monotonic()
    lost = recorder.wait_for(
        lambda s: s.state in (SourceState.STALLED, SourceState.RETRYING),
        killed_at,
        READ_TIMEOUT_S + REPORT_MARGIN_S,
    )
    refused = recorder.wait_for(
        lambda s: s.state is SourceState.RETRYING and "cannot open" in (s.error or ""),
        killed_at,
        WAIT_S,
    )
    rtsp_server.start()
    back_at = time.monotonic()
    frame = frame_made_after(capture, time.time(), back_at + BACK_WITHIN_S)

    assert lost.at - killed_at <= READ_TIMEOUT_S + REPORT_MARGIN_S
    assert refused.status.failures >= 1
    assert time.monotonic() - back_at <= BACK_WITHIN_S
    assert frame.index > 0
