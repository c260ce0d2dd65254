"""The status report's source.mode: what a camera delivers after negotiation (size, rate,
FOURCC), null for sources without a negotiated mode and before the camera was first opened;
the message follows the status schema either way."""

from __future__ import annotations

import time
from typing import Any

import jsonschema
import numpy as np
from fixtures.mosquitto import closed_schema

from siamedge.config import Settings
from siamedge.messaging.protocol import SourceMode, status_message
from siamedge.service import ModelSlot, Service, delivered_mode
from siamedge.sources.base import Frame
from siamedge.sources.camera import CameraMode, CameraSource
from siamedge.sources.capture import CaptureThread, SourceState
from siamedge.sources.factory import create_capture
from siamedge.systemd import Notifier

WAIT_S = 10.0
POLL_S = 0.01
NEGOTIATED = CameraMode(width=1280, height=720, fps=30000 / 1001, fourcc="MJPG")
"""What the driver of the fake camera gives, whatever was asked (a C920 asked for YUYV 720p30)."""


class NegotiatingCamera:
    """A camera at the FrameSource seam: negotiates NEGOTIATED on open(), as CameraSource does
    with the driver, and then delivers frames of that size."""

    def __init__(self) -> None:
        self._mode: CameraMode | None = None
        self._index = 0

    @property
    def description(self) -> str:
        return "camera /dev/video7"

    @property
    def mode(self) -> CameraMode | None:
        return self._mode

    def open(self) -> None:
        self._mode = NEGOTIATED

    def read(self) -> Frame | None:
        assert self._mode is not None
        time.sleep(POLL_S)
        image = np.zeros((self._mode.height, self._mode.width, 3), np.uint8)
        self._index += 1
        return Frame(image=image, index=self._index - 1, timestamp=time.time())

    def close(self) -> None:
        pass


def report_message(service: Service, capture: CaptureThread) -> dict[str, Any]:
    settings = Settings()
    message = status_message(service.status_report(ModelSlot(settings, Notifier()), capture))
    jsonschema.validate(message, closed_schema("status"))
    return message


def wait_streaming(capture: CaptureThread) -> None:
    deadline = time.monotonic() + WAIT_S
    while capture.status.state is not SourceState.STREAMING:
        assert time.monotonic() < deadline, capture.status
        time.sleep(POLL_S)


def test_a_camera_reports_the_mode_it_negotiated_once_opened() -> None:
    service = Service(Settings())
    capture = CaptureThread(NegotiatingCamera(), reopen_min_s=0.1, reopen_max_s=1.0)

    before = report_message(service, capture)
    with capture:
        wait_streaming(capture)
        after = report_message(service, capture)

    assert before["source"]["mode"] is None
    assert after["source"]["mode"] == {
        "width": 1280,
        "height": 720,
        "fps": 29.97,
        "fourcc": "MJPG",
    }
    assert after["source"]["description"] == "camera /dev/video7"


def test_sources_without_a_negotiated_mode_report_null() -> None:
    service = Service(Settings())
    capture = create_capture(Settings().source)  # the synthetic clip

    with capture:
        wait_streaming(capture)
        message = report_message(service, capture)

    assert message["source"]["open"] is True
    assert message["source"]["mode"] is None


def test_delivered_mode_reads_a_real_camera_source() -> None:
    camera = CameraSource("/dev/video0", width=1280, height=720, fps=30, fourcc="MJPG")

    # Not opened: the configuration's request is no delivered mode.
    assert delivered_mode(camera) is None
    assert delivered_mode(NegotiatingCamera()) is None
    opened = NegotiatingCamera()
    opened.open()
    assert delivered_mode(opened) == SourceMode(1280, 720, 30000 / 1001, "MJPG")
