"""GStreamerSource for real: run under Debian's Python, whose OpenCV is built with GStreamer.

The venv's OpenCV wheel has no GStreamer, so these tests run siamedge/sources/gstreamer.py in a
/usr/bin/python3 subprocess (python3-opencv; the repository on sys.path) on `videotestsrc` and
on an RTSP pipeline (rtspsrc ! rtph264depay ! avdec_h264) against the real RTSP server, also
inside the capture thread while the server is frozen (a GStreamer read has no timeout of its
own: the stall watchdog is what reports it). Skipped, naming the package, only where Debian's
OpenCV with GStreamer is not installed.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from fixtures.rtsp import SYSTEM_PYTHON, RtspServer

RUN_TIMEOUT_S = 120.0
"""The subprocess: GStreamer's registry scan on a first run and RTSP on a loaded machine."""
FRAMES = 30

READER = """
import json, sys
sys.path.insert(0, sys.argv[1])
import cv2
from siamedge.errors import SourceError
from siamedge.sources.clock_stamp import read_stamp
from siamedge.sources.gstreamer import GStreamerSource, gstreamer_available

source = GStreamerSource(sys.argv[2])
report = {"cv2": cv2.__file__, "gstreamer": gstreamer_available(), "frames": [], "error": None}
try:
    source.open()
    for _ in range(int(sys.argv[3])):
        frame = source.read()
        stamp = read_stamp(frame.image)
        report["frames"].append(
            {"index": frame.index, "wh": frame.size_wh, "shape": list(frame.image.shape),
             "dtype": str(frame.image.dtype), "stamp": None if stamp is None else stamp.index}
        )
except SourceError as exc:
    report["error"] = str(exc)
finally:
    source.close()
print(json.dumps(report))
"""


CAPTURE = """
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
from siamedge.sources.capture import CaptureThread
from siamedge.sources.gstreamer import GStreamerSource

lock = threading.Lock()

def say(**event):
    # Two threads speak (states on the capture thread, frames here): one write per line.
    with lock:
        sys.stdout.write(json.dumps({"at": time.monotonic(), **event}) + "\\n")
        sys.stdout.flush()

capture = CaptureThread(
    GStreamerSource(sys.argv[2]), reopen_min_s=0.2, reopen_max_s=1.0,
    stall_timeout_s=float(sys.argv[3]),
    on_state=lambda s: say(state=s.state.value, error=s.error),
)
capture.start()
threading.Thread(target=lambda: (sys.stdin.read(), capture.stop_event.set()), daemon=True).start()
while not capture.stop_event.is_set():
    frame = capture.get(0.1)
    if frame is not None:
        say(frame=frame.index)
capture.stop()
"""
"""Runs a capture thread on a pipeline (argv: repository, pipeline, stall timeout) and prints
each state change and frame as a JSON line with its time.monotonic() (one clock for all
processes on Linux), until stdin closes."""
STALL_TIMEOUT_S = 1.0
REPORT_MARGIN_S = 1.0
"""Issue 10: a stall is reported within read_timeout_s + 1 s."""
WAIT_S = 30.0


@functools.cache
def system_opencv_missing() -> str | None:
    """Why Debian's OpenCV with GStreamer cannot be used here, or None."""
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import cv2; print(cv2.getBuildInformation())"],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    if probe.returncode != 0:
        return f"python3-opencv (Debian's OpenCV) is not installed for {SYSTEM_PYTHON}"
    if not any(
        line.split(":")[0].strip() == "GStreamer" and "YES" in line
        for line in probe.stdout.splitlines()
    ):
        return f"the OpenCV of {SYSTEM_PYTHON} was built without GStreamer"
    return None


@pytest.fixture(autouse=True)
def _system_opencv() -> None:
    missing = system_opencv_missing()
    if missing is not None:
        pytest.skip(missing)


def read_under_system_python(repo_root: Path, pipeline: str, frames: int) -> dict[str, Any]:
    """What GStreamerSource read from the pipeline under Debian's Python (see READER)."""
    run = subprocess.run(
        [SYSTEM_PYTHON, "-c", READER, str(repo_root), pipeline, str(frames)],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return report


def test_videotestsrc_frames_through_the_system_opencv(repo_root: Path) -> None:
    pipeline = (
        "videotestsrc num-buffers=10 ! video/x-raw,width=160,height=120,framerate=30/1 "
        "! videoconvert ! video/x-raw,format=BGR ! appsink"
    )

    report = read_under_system_python(repo_root, pipeline, 5)

    assert report["cv2"].startswith("/usr/lib/python3/dist-packages/")
    assert report["gstreamer"] is True
    assert report["error"] is None
    assert [f["index"] for f in report["frames"]] == [0, 1, 2, 3, 4]
    assert {tuple(f["wh"]) for f in report["frames"]} == {(160, 120)}
    assert {(tuple(f["shape"]), f["dtype"]) for f in report["frames"]} == {((120, 160, 3), "uint8")}


def test_rtsp_pipeline_against_the_real_server(repo_root: Path, rtsp_server: RtspServer) -> None:
    pipeline = (
        f"rtspsrc location={rtsp_server.url} protocols=tcp latency=100 ! rtph264depay "
        "! avdec_h264 ! videoconvert ! video/x-raw,format=BGR ! appsink max-buffers=100"
    )

    report = read_under_system_python(repo_root, pipeline, FRAMES)

    assert report["error"] is None
    # One media per client: this client's stream starts at the server's frame 0, and the
    # pipeline loses none of the frames in between.
    assert [f["stamp"] for f in report["frames"]] == list(range(FRAMES))
    assert {tuple(f["wh"]) for f in report["frames"]} == {(320, 240)}


def test_unreachable_rtsp_server_is_a_clear_open_error(
    repo_root: Path, rtsp_server: RtspServer
) -> None:
    rtsp_server.kill()
    pipeline = (
        f"rtspsrc location={rtsp_server.url} ! rtph264depay ! avdec_h264 ! videoconvert ! appsink"
    )

    report = read_under_system_python(repo_root, pipeline, 1)

    assert report["frames"] == []
    assert f"gstreamer `rtspsrc location={rtsp_server.url}" in report["error"]
    assert "cannot open it" in report["error"]
    assert "gst-launch-1.0" in report["error"]


class Events:
    """The JSON lines of a CAPTURE subprocess, read on a thread, waited for with a deadline."""

    def __init__(self, process: subprocess.Popen[str], log_path: Path) -> None:
        self._log_path = log_path
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        assert process.stdout is not None
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stdout: IO[str]) -> None:
        for line in stdout:
            self._lines.put(json.loads(line))

    def wait_for(self, where: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                event = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(event)
            if where(event):
                return event
        log = self._log_path.read_text(errors="replace")[-3000:]
        pytest.fail(f"no matching event within {timeout_s} s; saw {self.seen[-20:]}\n{log}")


@pytest.fixture
def capture_process(repo_root: Path, tmp_path: Path) -> Iterator[Callable[[str], Events]]:
    """`capture_process(pipeline)`: a CAPTURE subprocess and its events; ended after the test."""
    processes: list[subprocess.Popen[str]] = []

    def start(pipeline: str) -> Events:
        log_path = tmp_path / f"capture-{len(processes)}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [SYSTEM_PYTHON, "-c", CAPTURE, str(repo_root), pipeline, str(STALL_TIMEOUT_S)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "GST_DEBUG": "rtspsrc:4"},
            )
        processes.append(process)
        return Events(process, log_path)

    yield start
    for process in processes:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_frozen_rtsp_server_is_reported_stalled_and_frames_go_on_after(
    capture_process: Callable[[str], Events], rtsp_server: RtspServer
) -> None:
    events = capture_process(
        f"rtspsrc location={rtsp_server.url} protocols=tcp latency=100 ! rtph264depay "
        "! avdec_h264 ! videoconvert ! video/x-raw,format=BGR ! appsink max-buffers=1 drop=true"
    )
    events.wait_for(lambda e: e.get("state") == "streaming", WAIT_S)
    events.wait_for(lambda e: e.get("frame", 0) >= 10, WAIT_S)

    rtsp_server.freeze()
    frozen_at = time.monotonic()
    stalled = events.wait_for(lambda e: e.get("state") == "stalled", WAIT_S)
    rtsp_server.thaw()
    thawed_at = time.monotonic()
    streaming = events.wait_for(lambda e: e.get("state") == "streaming", WAIT_S)
    frame = events.wait_for(lambda e: "frame" in e, WAIT_S)

    assert stalled["at"] - frozen_at <= STALL_TIMEOUT_S + REPORT_MARGIN_S, stalled
    assert "stalled: no frame for" in stalled["error"]
    assert streaming["at"] >= thawed_at
    assert frame["at"] >= thawed_at
