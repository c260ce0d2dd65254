"""The live preview: keeps the latest processed frame and, while anyone watches, one encoder
thread draws the tracks on it (overlay.py), scales it and encodes it as JPEG for every viewer.

The frame listener only stores a reference, so with no viewer the preview costs nothing; it must
never block the main loop nor encode on it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray

from siamedge.config import WebSettings
from siamedge.fps import FpsMeter
from siamedge.frontend import FrameReport
from siamedge.overlay import draw_track

log = logging.getLogger(__name__)

IDLE_CHECK_S = 1.0
"""How often an idle encoder looks at the stop flag (it is also woken by frames and viewers)."""


@dataclass(frozen=True)
class Preview:
    """One encoded preview: JPEG bytes of frame `frame_index`; seq counts previews from 1."""

    seq: int
    frame_index: int
    jpeg: bytes


@dataclass(frozen=True)
class ViewStats:
    """What the status panel shows about the live view (any thread)."""

    fps: float
    frame_index: int | None
    frame_age_s: float | None
    latency_ms: float | None
    viewers: int


def preview_size(frame_wh: tuple[int, int], width: int) -> tuple[int, int]:
    """(w, h) of the preview: `width` wide (never wider than the frame), same aspect ratio."""
    frame_w, frame_h = frame_wh
    w = min(width, frame_w)
    return w, max(1, round(frame_h * w / frame_w))


def render_preview(report: FrameReport, width: int) -> NDArray[np.uint8]:
    """(h, w, 3) uint8 BGR: the frame with every track drawn, scaled to preview_size."""
    image: NDArray[np.uint8] = report.frame.image.copy()
    for track_id, result, slot in report.tracks:
        draw_track(image, track_id, result, slot)
    size = preview_size(report.frame.size_wh, width)
    if size == report.frame.size_wh:
        return image
    return cast(NDArray[np.uint8], cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def encode_jpeg(image: NDArray[np.uint8], quality: int) -> bytes:
    """JPEG bytes of a BGR image."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding of a {image.shape} image failed")
    return bytes(buffer)


class PreviewHub:
    """Latest frame in, JPEG previews out, one encode per preview frame for all viewers.

    on_frame runs on the service's main loop; open_viewer/next_preview/close_viewer on the HTTP
    threads. The encoder thread starts with the first viewer and sleeps while there is none.
    """

    def __init__(self, settings: WebSettings) -> None:
        self._width = settings.preview_width
        self._quality = settings.jpeg_quality
        self._interval_s = 1.0 / settings.preview_fps
        self._max_viewers = settings.max_streams
        self._latest: FrameReport | None = None
        self._latest_at = 0.0
        self._fps = FpsMeter()
        self._frame_ready = threading.Event()
        self._changed = threading.Condition()
        self._viewers = 0
        self._preview: Preview | None = None
        self._closed = False
        self._encoder: threading.Thread | None = None

    # ---- the main loop's side -----------------------------------------------------------------

    def on_frame(self, report: FrameReport) -> None:
        """Frame listener: keep a reference; wake the encoder only when someone watches."""
        now = time.monotonic()
        self._latest = report
        self._latest_at = now
        self._fps.tick(now)
        if self._viewers:
            self._frame_ready.set()

    # ---- any thread ---------------------------------------------------------------------------

    @property
    def latest(self) -> FrameReport | None:
        """The last processed frame and its tracks (None before the first)."""
        return self._latest

    @property
    def frame_wh(self) -> tuple[int, int] | None:
        """(width, height) of the last processed frame."""
        report = self._latest
        return report.frame.size_wh if report else None

    def frame_age_s(self) -> float | None:
        """Seconds since the last processed frame (None before the first)."""
        return time.monotonic() - self._latest_at if self._latest is not None else None

    def stats(self) -> ViewStats:
        """Live numbers for the status panel."""
        report = self._latest
        return ViewStats(
            fps=round(self._fps.fps(time.monotonic()), 1),
            frame_index=report.frame.index if report else None,
            frame_age_s=self.frame_age_s(),
            latency_ms=report.latency_ms if report else None,
            viewers=self._viewers,
        )

    def snapshot(self) -> Preview | None:
        """A preview of the latest frame: the stream's if it is current, else encoded here."""
        report = self._latest
        if report is None:
            return None
        preview = self._preview
        if preview is not None and preview.frame_index == report.frame.index:
            return preview
        jpeg = encode_jpeg(render_preview(report, self._width), self._quality)
        return Preview(0, report.frame.index, jpeg)

    # ---- viewers (HTTP threads) ---------------------------------------------------------------

    def open_viewer(self) -> bool:
        """Count one more viewer (starts the encoder); False when max_streams are watching."""
        with self._changed:
            if self.full:
                return False
            self._viewers += 1
            if self._encoder is None:
                self._encoder = threading.Thread(
                    target=self._encode_loop, name="web-preview", daemon=True
                )
                self._encoder.start()
            self._changed.notify_all()
        self._frame_ready.set()
        return True

    @property
    def full(self) -> bool:
        """True when max_streams are watching (or the hub is closed): a viewer is refused."""
        return self._closed or self._viewers >= self._max_viewers

    def close_viewer(self) -> None:
        """One viewer fewer (its stream ended)."""
        with self._changed:
            self._viewers -= 1

    def next_preview(self, after_seq: int, timeout_s: float) -> Preview | None:
        """The first preview newer than `after_seq`; None after timeout_s or when closed."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not self._closed:
                preview = self._preview
                if preview is not None and preview.seq > after_seq:
                    return preview
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
        return None

    @property
    def closed(self) -> bool:
        """True once close() ran."""
        return self._closed

    @property
    def current(self) -> Preview | None:
        """The newest encoded preview (None before the first)."""
        return self._preview

    def close(self) -> None:
        """End every stream and the encoder thread."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._frame_ready.set()
        encoder = self._encoder
        if encoder is not None:
            encoder.join()

    # ---- the encoder thread -------------------------------------------------------------------

    def _wait_for_viewers(self) -> bool:
        with self._changed:
            while self._viewers <= 0 and not self._closed:
                self._changed.wait()
            return not self._closed

    def _encode_loop(self) -> None:
        encoded: FrameReport | None = None
        next_due = 0.0
        seq = 0
        while self._wait_for_viewers():
            if not self._frame_ready.wait(IDLE_CHECK_S):
                continue
            self._frame_ready.clear()
            wait = next_due - time.monotonic()
            if wait > 0:
                # Rate limit: sleep, then take whatever frame is newest by then.
                with self._changed:
                    if self._changed.wait_for(lambda: self._closed, wait):
                        return
            report = self._latest
            if report is None or report is encoded:
                continue
            started = time.monotonic()
            try:
                jpeg = encode_jpeg(render_preview(report, self._width), self._quality)
            except (ValueError, cv2.error) as exc:
                log.warning("web preview of frame %d failed: %s", report.frame.index, exc)
                continue
            encoded = report
            next_due = started + self._interval_s
            seq += 1
            with self._changed:
                self._preview = Preview(seq, report.frame.index, jpeg)
                self._changed.notify_all()
