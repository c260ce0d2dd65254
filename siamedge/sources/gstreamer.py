"""CSI cameras and custom inputs through a GStreamer pipeline string that ends in `appsink`.

Never edits the user's pipeline; it only checks it and says clearly when OpenCV lacks GStreamer.

The pip wheels of OpenCV (opencv-python, opencv-python-headless) are built WITHOUT GStreamer.
On a Jetson use JetPack's OpenCV: `sudo apt install python3-opencv`, create the venv with
`python3 -m venv --system-site-packages .venv`, and do not install an OpenCV wheel into it
(`pip uninstall opencv-python-headless`), or the wheel's cv2 shadows the system one.

A typical CSI camera pipeline (Jetson, nvarguscamerasrc; sensor-id picks the camera,
flip-method=2 turns the image by 180 degrees):

    nvarguscamerasrc sensor-id=0 !
      video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,format=NV12 !
      nvvidconv flip-method=0 ! video/x-raw,width=1280,height=720,format=BGRx !
      videoconvert ! video/x-raw,format=BGR !
      appsink drop=true max-buffers=1 sync=false

(one line in the YAML `source.uri`). `drop=true max-buffers=1` keeps the newest frame instead of
a backlog; `sync=false` delivers frames as soon as they arrive. Test a pipeline outside siamedge
with `gst-launch-1.0`, replacing `appsink ...` by `fakesink`.
"""

from __future__ import annotations

import functools
import logging
import re

import cv2

from siamedge.errors import SourceError
from siamedge.sources.redact import redact_pipeline
from siamedge.sources.videocapture import VideoCaptureSource, log_opened, open_video_capture

log = logging.getLogger(__name__)

PIPELINE_SEPARATOR = "!"
SINK_ELEMENT = "appsink"
_BUILD_INFO_GSTREAMER = re.compile(r"^\s*GStreamer:\s*(\S+)", re.MULTILINE)

NO_GSTREAMER_HELP = (
    "this OpenCV ({version}, {origin}) was built without GStreamer support, so it cannot run "
    "GStreamer pipelines (the pip wheels opencv-python and opencv-python-headless never have it). "
    "Use a system OpenCV built with GStreamer: on a Jetson JetPack's `python3-opencv` "
    "(`sudo apt install python3-opencv`), a venv created with `python3 -m venv "
    "--system-site-packages`, and no OpenCV wheel inside that venv "
    "(`pip uninstall opencv-python-headless`), so `import cv2` finds the system one"
)


@functools.cache
def gstreamer_available() -> bool:
    """True when this cv2 can open GStreamer pipelines (built in, or as a videoio plugin)."""
    match = _BUILD_INFO_GSTREAMER.search(cv2.getBuildInformation())
    if match and match.group(1).upper() == "YES":
        return True
    registry = getattr(cv2, "videoio_registry", None)
    return bool(registry is not None and registry.hasBackend(cv2.CAP_GSTREAMER))


def ends_in_appsink(pipeline: str) -> bool:
    """True when the last element of the pipeline is an appsink (with or without properties)."""
    last = pipeline.strip().split(PIPELINE_SEPARATOR)[-1].split()
    return bool(last) and last[0] == SINK_ELEMENT


class GStreamerSource(VideoCaptureSource):
    """Frames from `pipeline`, a gst-launch style description whose last element is appsink.

    description: for logs and status instead of the pipeline (one holding a password).
    SourceError at once for a pipeline without a final appsink: no retry can mend it, so the
    daemon stops with a configuration error instead of retrying it for ever.
    """

    def __init__(self, pipeline: str, *, description: str | None = None) -> None:
        self._pipeline = " ".join(pipeline.split())
        # A user's own pipeline may carry a password (`location=rtsp://u:pw@cam`, `user-pw=`): the
        # description goes to logs, the retained status and the web view's /api/status.
        super().__init__(description or f"gstreamer `{redact_pipeline(self._pipeline)}`")
        if not ends_in_appsink(self._pipeline):
            raise SourceError(
                f"{self.description}: the pipeline must end in `{SINK_ELEMENT}` "
                f"(e.g. `... ! videoconvert ! video/x-raw,format=BGR ! {SINK_ELEMENT} drop=true "
                "max-buffers=1`), so OpenCV can take the frames"
            )

    @property
    def pipeline(self) -> str:
        """The pipeline with its whitespace normalised (YAML folding may add newlines)."""
        return self._pipeline

    def _open_capture(self) -> cv2.VideoCapture:
        if not gstreamer_available():
            origin = f"imported from {cv2.__file__}"
            raise SourceError(
                f"{self.description}: "
                + NO_GSTREAMER_HELP.format(version=cv2.__version__, origin=origin)
            )
        try:
            capture = open_video_capture(self._pipeline, cv2.CAP_GSTREAMER, [], self.description)
        except SourceError as exc:
            raise SourceError(
                f"{exc}; check the pipeline with gst-launch-1.0, replacing `{SINK_ELEMENT}` by "
                "`fakesink`, to see GStreamer's own error"
            ) from None
        log_opened(capture, self.description)
        return capture
