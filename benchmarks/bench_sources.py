"""Frame sources and the capture thread: read rates, and frame age behind a slow consumer.

Prints figures only; never asserts timings. Run from the checkout root:
    PYTHONPATH=$PWD python benchmarks/bench_sources.py [--frames 300] [--model-ms 25]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from siamedge.config import SourceSettings
from siamedge.sources.base import FrameSource
from siamedge.sources.factory import create_capture, create_source

TENNIS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "tennis"
VIDEO_FPS = 30.0


def read_rate(source: FrameSource, frames: int) -> float:
    """Frames per second of source.read() alone (decoding included)."""
    source.open()
    try:
        start = time.perf_counter()
        for _ in range(frames):
            if source.read() is None:
                raise RuntimeError(f"{source.description} ended early")
        return frames / (time.perf_counter() - start)
    finally:
        source.close()


def write_tennis_video(path: Path, fourcc: str) -> Path:
    images = sorted(TENNIS.glob("*.jpg"))
    first = cv2.imread(str(images[0]))
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), VIDEO_FPS, (width, height))
    for image_path in images:
        writer.write(cv2.imread(str(image_path)))
    writer.release()
    return path


def frame_age(settings: SourceSettings, frames: int, model_s: float) -> None:
    """A consumer that works model_s per frame: how old is the frame it gets, what is dropped."""
    capture = create_capture(settings)
    ages_ms = []
    capture.start()
    try:
        for _ in range(frames):
            frame = capture.get(timeout=2.0)
            if frame is None:
                break
            ages_ms.append((time.time() - frame.timestamp) * 1000.0)
            time.sleep(model_s)
    finally:
        capture.stop()
    stats = capture.stats()
    print(
        f"  consumer {model_s * 1000:.0f} ms/frame, paced at {settings.fps} fps: "
        f"frame age median {np.median(ages_ms):.2f} ms, p95 {np.percentile(ages_ms, 95):.2f} ms; "
        f"captured {stats.captured}, taken {stats.taken}, dropped {stats.dropped}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--model-ms", type=float, default=25.0)
    args = parser.parse_args()
    print(f"OpenCV {cv2.__version__}; tennis frames 854x480 from {TENNIS}")
    with tempfile.TemporaryDirectory() as tmp:
        mjpg = write_tennis_video(Path(tmp) / "tennis.avi", "MJPG")
        mp4v = write_tennis_video(Path(tmp) / "tennis.mp4", "mp4v")
        for name, uri in (("image folder (jpg)", TENNIS), ("MJPG .avi", mjpg), ("mp4v .mp4", mp4v)):
            source = create_source(SourceSettings(uri=str(uri), loop=True))
            print(f"  read {name:20s} {read_rate(source, args.frames):8.1f} frames/s")
        for fps in (VIDEO_FPS, 1000.0):
            frame_age(
                SourceSettings(uri=str(mjpg), loop=True, fps=fps),
                args.frames // 3,
                args.model_ms / 1000,
            )


if __name__ == "__main__":
    main()
