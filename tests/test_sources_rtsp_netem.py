"""RTSP over a bad link: the server in its own network namespace behind a veth pair, with 20 %
packet loss or 300 ms delay each way (tests/fixtures/netlab.py: a random-drop tc filter, and a
delay line where the kernel has no netem), over TCP (OpenCV's default) and UDP.

Whatever the link does, the capture never hangs: at every moment either a frame came within
read_timeout_s + 1 s, or the state says the source is not streaming (stalled or retrying). Each
run prints what it measured: frames per second, frames lost (gaps in the server's frame numbers
within one session: frames lost or damaged on the way, and the capture slot's own drops), frames
the damage left without a readable stamp, stalls and reopenings. When the link heals, frames
flow again. Skipped only where namespaces cannot be created.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from fixtures.netlab import Namespace
from fixtures.rtsp import RtspServer
from numpy.typing import NDArray

from siamedge.sources.capture import CaptureThread, SourceState, SourceStatus
from siamedge.sources.clock_stamp import Stamp, read_stamp
from siamedge.sources.stream import StreamSource

READ_TIMEOUT_S = 2.0
REPORT_MARGIN_S = 1.0
"""Issue 10: no frame for read_timeout_s + 1 s must show in the state."""
MEASURE_S = 10.0
WAIT_S = 30.0
"""For the first frames and for frames after healing (RTSP over a slow link, a loaded machine)."""
GET_S = 0.1
FPS = 20
STAMP_PLAUSIBLE_S = 5.0
"""A stamp further than this from now is damage that happened to pass the stamp's check."""
INDEX_SLACK = 3
"""Frames: the server makes them as its pipeline asks, a frame or two early or late."""
TRANSPORT_OPTIONS = {"tcp": "rtsp_transport;tcp", "udp": "rtsp_transport;udp"}
FAULTS = {"loss 20 %": {"loss_percent": 20.0}, "delay 300 ms": {"delay_ms": 300.0}}


@dataclass
class Measured:
    """What the consumer saw while the link was impaired."""

    frames: int = 0
    unreadable: int = 0
    lost: int = 0
    silent_and_streaming_s: float = 0.0
    """Longest time with no frame while the state still said `streaming`."""
    states: list[str] = field(default_factory=list)
    last: Stamp | None = None

    def count(self, image: NDArray[np.uint8]) -> None:
        self.frames += 1
        stamp = read_stamp(image)
        if stamp is None or not self._plausible(stamp):
            self.unreadable += 1
            return
        if self.last is not None and stamp.index > self.last.index:
            self.lost += stamp.index - self.last.index - 1
        # A smaller number: a new session started again at frame 0 (a reopening).
        self.last = stamp

    def _plausible(self, stamp: Stamp) -> bool:
        """False for damage that happened to pass the stamp's check: a time far from now, or a
        frame number that does not match the time since the last frame of the session."""
        if abs(time.time() - stamp.unix_s) > STAMP_PLAUSIBLE_S:
            return False
        if self.last is None or stamp.index < self.last.index:
            return True
        expected = (stamp.unix_s - self.last.unix_s) * FPS
        return abs(stamp.index - self.last.index - expected) <= INDEX_SLACK


@pytest.fixture
def server_in_namespace(
    netns: Namespace, rtsp_server_factory: Callable[..., RtspServer]
) -> RtspServer:
    """The clock-stamped pattern at 20 fps, served from inside the namespace on its address."""
    return rtsp_server_factory(
        "--address", netns.address, "--fps", str(FPS), prefix=netns.exec_prefix
    )


@pytest.fixture
def capture_of(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., CaptureThread]]:
    """`capture_of(url, transport, on_state)`: a started capture thread; stopped after."""
    captures: list[CaptureThread] = []

    def make(url: str, transport: str, on_state: Callable[[SourceStatus], None]) -> CaptureThread:
        # Read by OpenCV at each open, in this process.
        monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", TRANSPORT_OPTIONS[transport])
        source = StreamSource(url, open_timeout_s=10.0, read_timeout_s=READ_TIMEOUT_S)
        capture = CaptureThread(
            source,
            reopen_min_s=0.2,
            reopen_max_s=1.0,
            stall_timeout_s=READ_TIMEOUT_S,
            on_state=on_state,
        )
        captures.append(capture)
        capture.start()
        return capture

    yield make
    for capture in captures:
        capture.stop()


def measure(capture: CaptureThread, measured: Measured, seconds: float) -> None:
    """Consume frames for `seconds`, counting them and the longest silence while `streaming`."""
    last_frame_at = time.monotonic()
    end = last_frame_at + seconds
    while (now := time.monotonic()) < end:
        frame = capture.get(GET_S)
        now = time.monotonic()
        if frame is not None:
            measured.count(frame.image)
            last_frame_at = now
        elif capture.status.state is SourceState.STREAMING:
            measured.silent_and_streaming_s = max(
                measured.silent_and_streaming_s, now - last_frame_at
            )
        else:
            last_frame_at = now  # reported as not streaming: the silence is accounted for


@pytest.mark.parametrize("transport", sorted(TRANSPORT_OPTIONS))
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_bad_link_keeps_frames_coming_or_reports_the_source_degraded(
    netns: Namespace,
    server_in_namespace: RtspServer,
    capture_of: Callable[..., CaptureThread],
    fault: str,
    transport: str,
) -> None:
    measured = Measured()
    capture = capture_of(
        server_in_namespace.url, transport, lambda s: measured.states.append(s.state.value)
    )
    assert capture.get(WAIT_S) is not None, f"no first frame: {capture.status}"

    netns.impair(**FAULTS[fault])
    dropped_before = capture.stats().dropped
    measure(capture, measured, MEASURE_S)
    slot_drops = capture.stats().dropped - dropped_before
    netns.heal()
    healed_at = time.monotonic()
    frames_after_heal = 0
    while frames_after_heal < 3 and time.monotonic() - healed_at < WAIT_S:
        frames_after_heal += capture.get(GET_S) is not None

    print(
        f"\nRTSP over {transport}, {fault} each way for {MEASURE_S:g} s:",
        f"{measured.frames / MEASURE_S:.1f} fps (server {FPS}),",
        f"{measured.lost} frame numbers missing ({slot_drops} replaced in the capture slot,",
        f"the others lost or damaged on the way), {measured.unreadable} frames damaged",
        "(stamp unreadable),",
        f"stalled {measured.states.count('stalled')} times,",
        f"reopened {measured.states.count('retrying')} times,",
        f"longest silence while streaming {measured.silent_and_streaming_s:.2f} s;",
        f"healed: 3 frames after {time.monotonic() - healed_at:.1f} s",
    )
    assert measured.silent_and_streaming_s <= READ_TIMEOUT_S + REPORT_MARGIN_S, measured
    assert frames_after_heal == 3, f"no frames after healing: {capture.status}"
    assert measured.frames > 0 or "retrying" in measured.states
