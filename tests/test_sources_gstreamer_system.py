"""GStreamerSource for real: run under Debian's Python, whose OpenCV is built with GStreamer.

The venv's OpenCV wheel has no GStreamer, so these tests run siamedge/sources/gstreamer.py in a
/usr/bin/python3 subprocess (python3-opencv; the repository on sys.path) on `videotestsrc` and
on an RTSP pipeline (rtspsrc ! rtph264depay ! avdec_h264) against the real RTSP server. Skipped,
naming the package, only where Debian's OpenCV with GStreamer is not installed.
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

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
