"""How old the frame the tracker gets is, per source kind, with a model slower than the stream.

Each source is served for real on loopback with frames that carry their capture time (clock
stamps: siamedge.sources.clock_stamp): a file played in real time, an HTTP MJPEG camera, an RTSP
camera (H.264, gst-rtsp-server) read by FFmpeg (kind auto) and by the GStreamer `rtsp` preset
(avdec, under Debian's OpenCV). The consumer works --work-ms per frame, like a model slower than
the stream. Printed side by side: age = get time - capture time (p50/p99/worst), what the
source adds before the capture slot (the frame's timestamp - capture time) and how long a frame
sat in the slot.

    python benchmarks/freshness.py [--seconds 10] [--work-ms 100] [--fps 25]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark_extras import FIXTURES, needs

from siamedge.config import SourceSettings
from siamedge.sources.factory import create_source
from siamedge.sources.file import VideoFileSource
from siamedge.sources.presets import rtsp_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

with needs(FIXTURES, "for the test fixtures it serves its sources with"):
    from fixtures.freshness import (
        SIZE_WH,
        Freshness,
        PlaybackClock,
        measure,
        measure_gstreamer,
        stamped_now,
        stamped_rtsp_args,
        write_stamped_video,
    )
    from fixtures.mjpeg_server import MjpegServer
    from fixtures.rtsp import RtspServer, rtsp_server_missing

MS = 1000.0
Measurement = Callable[[], Freshness]


@contextmanager
def rtsp_server(fps: int, folder: Path) -> Iterator[RtspServer]:
    server = RtspServer(stamped_rtsp_args(fps), folder / "rtsp-server.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def run(kind: str, fps: int, measurement: Measurement) -> tuple[str, int, Freshness | str]:
    try:
        return kind, fps, measurement()
    except Exception as exc:  # a row that says why, the other rows still print
        return kind, fps, f"failed: {exc}"


def row(kind: str, fps: int, result: Freshness | str) -> str:
    if isinstance(result, str):
        return f"| {kind} | {fps} | {result} | | | | | |"
    ms = {
        "p50": result.percentile("age_s", 0.5) * MS,
        "p99": result.percentile("age_s", 0.99) * MS,
        "worst": result.worst("age_s") * MS,
        "lag": result.percentile("timestamp_lag_s", 0.5) * MS,
        "wait": result.percentile("waited_s", 0.99) * MS,
    }
    return (
        f"| {kind} | {fps} | {len(result.samples)}/{result.captured} | {ms['p50']:.1f} | "
        f"{ms['p99']:.1f} | {ms['worst']:.1f} | {ms['lag']:.1f} | {ms['wait']:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--work-ms", type=float, default=100.0, help="the slow model, per frame")
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()
    seconds, work_s, fps = args.seconds, args.work_ms / MS, args.fps
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = write_stamped_video(folder / "stamped.avi", frames=3 * fps, fps=fps)
        rows.append(
            run(
                "file, played in real time",
                fps,
                lambda: measure(
                    VideoFileSource(clip, loop=True),
                    seconds=seconds,
                    work_s=work_s,
                    pace_fps=fps,
                    capture_time=PlaybackClock(fps),
                ),
            )
        )
        mjpeg = MjpegServer(frames=stamped_now, fps=fps)
        try:
            source = create_source(SourceSettings(uri=mjpeg.url))
            rows.append(
                run("HTTP MJPEG", fps, lambda: measure(source, seconds=seconds, work_s=work_s))
            )
        finally:
            mjpeg.close()
        missing = rtsp_server_missing()
        if missing is not None:
            rows.append(("RTSP", fps, f"not measured: {missing}"))
        else:
            with rtsp_server(fps, folder) as server:
                stream = create_source(SourceSettings(uri=server.url))
                rows.append(
                    run(
                        "RTSP, FFmpeg (kind auto)",
                        fps,
                        lambda: measure(stream, seconds=seconds, work_s=work_s),
                    )
                )
                pipeline = rtsp_pipeline(SourceSettings(kind="rtsp", uri=server.url, latency_ms=0))
                rows.append(
                    run(
                        "RTSP, GStreamer preset (avdec)",
                        fps,
                        lambda: measure_gstreamer(pipeline, seconds=seconds, work_s=work_s),
                    )
                )
    print(
        f"frame age when the tracker gets it; the model takes {args.work_ms:g} ms per frame, "
        f"{SIZE_WH[0]}x{SIZE_WH[1]}, {seconds:g} s per source (ms)\n"
    )
    print(
        "| source | fps | got/captured | age p50 | age p99 | worst | source lag p50 "
        "| slot wait p99 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, rate, result in rows:
        print(row(kind, rate, result))


if __name__ == "__main__":
    main()
