"""MJPEG over HTTP: the MJPEG reader against FFmpeg's StreamSource on the same live stream.

For each: the age of a frame when read() hands it out (now - the time the server began to send
that part), how far Frame.timestamp is from that send time, and the same age for a reader that
works `--work-ms` on each frame (a slow model without a capture thread). Prints figures only;
never asserts timings. Uses the test MJPEG server (tests/fixtures/mjpeg_server.py) on loopback.
Run from the checkout root:
    PYTHONPATH=$PWD python benchmarks/bench_mjpeg.py [--fps 30] [--size 640x480] [--frames 150]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from benchmark_extras import FIXTURES, needs
from numpy.typing import NDArray

from siamedge.config import SyntheticSettings
from siamedge.sources.base import FrameSource
from siamedge.sources.mjpeg import MjpegSource
from siamedge.sources.stream import StreamSource
from siamedge.sources.synthetic import SyntheticClip

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

with needs(FIXTURES, "for the test MJPEG server it reads"):
    from fixtures.mjpeg_server import (
        BIT_WIDTH_PX,
        BITS,
        FRAME_HEIGHT_PX,
        MjpegServer,
        SentPart,
        frame_number,
        numbered_frame,
    )

CLIP_FRAMES = 300
WARM_UP_FRAMES = 10
TIMEOUT_S = 5.0
STAMP_W = BITS * BIT_WIDTH_PX


def stamped_clip(width: int, height: int) -> Callable[[int], NDArray[np.uint8]]:
    """Frame n of the synthetic clip with n written in its top-left corner."""
    clip = SyntheticClip(SyntheticSettings(width=width, height=height, frames=CLIP_FRAMES))
    pictures = [clip.frame(i) for i in range(CLIP_FRAMES)]

    def frame(number: int) -> NDArray[np.uint8]:
        image = pictures[number % CLIP_FRAMES].copy()
        image[:FRAME_HEIGHT_PX, :STAMP_W] = numbered_frame(number)
        return image

    return frame


def sent_part(server: MjpegServer, number: int) -> SentPart:
    """The server's record of part `number` (written just after the part itself)."""
    while True:
        for part in reversed(server.sent):
            if part.number == number:
                return part
        time.sleep(0.0005)


def measure(
    server: MjpegServer, source: FrameSource, frames: int, work_s: float
) -> tuple[list[float], list[float]]:
    """(ages on delivery, timestamp offsets from the send time), in ms."""
    ages, offsets = [], []
    source.open()
    try:
        for index in range(WARM_UP_FRAMES + frames):
            frame = source.read()
            now = time.time()
            assert frame is not None
            stamp = np.ascontiguousarray(frame.image[:FRAME_HEIGHT_PX, :STAMP_W])
            sent = sent_part(server, frame_number(stamp))
            if index >= WARM_UP_FRAMES:
                ages.append((now - sent.started_at) * 1000)
                offsets.append((frame.timestamp - sent.started_at) * 1000)
            time.sleep(work_s)
    finally:
        source.close()
    return ages, offsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--work-ms", type=float, default=50.0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    server = MjpegServer(frames=stamped_clip(width, height), fps=args.fps)
    readers: dict[str, Callable[[], FrameSource]] = {
        "mjpeg": lambda: MjpegSource(
            server.url, open_timeout_s=TIMEOUT_S, read_timeout_s=TIMEOUT_S
        ),
        "ffmpeg": lambda: StreamSource(
            server.url, open_timeout_s=TIMEOUT_S, read_timeout_s=TIMEOUT_S
        ),
    }
    print(f"{width}x{height} at {args.fps:g} fps, {args.frames} frames; ms, median / p95")
    slow = f"age, {args.work_ms:g} ms work"
    print(f"{'reader':8s} {'age':>15s} {'timestamp-send':>15s} {slow:>22s}")
    try:
        for name, make in readers.items():
            ages, offsets = measure(server, make(), args.frames, 0.0)
            slow_ages, _ = measure(server, make(), args.frames, args.work_ms / 1000)
            print(f"{name:8s} {_stats(ages):>15s} {_stats(offsets):>15s} {_stats(slow_ages):>22s}")
    finally:
        server.close()


def _stats(values: list[float]) -> str:
    return f"{np.percentile(values, 50):.1f} / {np.percentile(values, 95):.1f}"


if __name__ == "__main__":
    main()
