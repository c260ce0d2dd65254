"""The web view's parts on their own: preview rendering and the shared encoder, the command
inbox, the bearer token, the web settings."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fixtures.waiting import wait_until

from siamedge.config import WebSettings, settings_from_mapping
from siamedge.errors import CommandError, ConfigError
from siamedge.frontend import ServiceCounters, StatusSnapshot
from siamedge.messaging.client import ConnectionState
from siamedge.messaging.protocol import SourceStatus, StatusReport
from siamedge.overlay import PALETTE_BGR, TINT_ALPHA
from siamedge.service import FrameReport
from siamedge.sources.base import Frame
from siamedge.tracking.result import MaskWindow, TrackResult, TrackState
from siamedge.web.api import status_document
from siamedge.web.auth import bearer_token, resolve_token, token_matches
from siamedge.web.commands import InboxFullError, WebInbox
from siamedge.web.preview import PreviewHub, ViewStats, preview_size, render_preview

FRAME_WH = (320, 180)
GREY = 100


def report(index: int, *, with_track: bool = True) -> FrameReport:
    """A grey frame with one track whose mask is a 40x20 block at (100, 60)."""
    width, height = FRAME_WH
    image = np.full((height, width, 3), GREY, dtype=np.uint8)
    bits = np.ones((20, 40), dtype=np.bool_)
    result = TrackResult(
        center_xy=(120.0, 70.0),
        size_wh=(40.0, 20.0),
        bbox_xywh=(100.0, 60.0, 40.0, 20.0),
        rotated_box=((100.0, 60.0), (139.0, 60.0), (139.0, 79.0), (100.0, 79.0)),
        score=0.9,
        state=TrackState.TRACKING,
        mask=MaskWindow(bits, (100, 60), FRAME_WH, np.zeros((0, 2), np.int32)),
    )
    tracks = (("t1", result, 0),) if with_track else ()
    return FrameReport(Frame(image, index, time.time()), tracks, 3.0)


def test_preview_size_keeps_the_aspect_ratio_and_never_upscales() -> None:
    assert preview_size((1280, 720), 640) == (640, 360)
    assert preview_size((640, 480), 640) == (640, 480)
    assert preview_size((320, 180), 640) == (320, 180)
    assert preview_size((1920, 1080), 500) == (500, 281)


def test_the_preview_tints_the_mask_pixels_only() -> None:
    image = render_preview(report(0), 160)  # half size
    assert image.shape == (90, 160, 3)
    expected = np.round(GREY * (1 - TINT_ALPHA) + np.array(PALETTE_BGR[0]) * TINT_ALPHA)
    inside = image[32:38, 52:57].reshape(-1, 3).astype(np.float64)  # mask: 50..70, 30..40
    assert np.abs(inside - expected).max() <= 1
    away = image[:20, :40]  # far from the box, outline and label
    assert (away == GREY).all()
    plain = render_preview(report(0, with_track=False), 160)
    assert (plain == GREY).all()


def test_the_hub_encodes_only_while_watched_and_at_most_preview_fps() -> None:
    hub = PreviewHub(WebSettings(preview_width=160, preview_fps=5))
    try:
        for index in range(20):
            hub.on_frame(report(index))
        assert hub.current is None  # nobody watched: nothing was encoded
        assert not any(t.name == "web-preview" for t in threading.enumerate())
        snapshot = hub.snapshot()
        assert snapshot is not None and snapshot.frame_index == 19
        image = cv2.imdecode(np.frombuffer(snapshot.jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (90, 160, 3)

        assert hub.open_viewer()
        feeding_for_s = 1.0
        started = time.monotonic()
        index = 20
        seen: list[int] = []
        while time.monotonic() - started < feeding_for_s:
            hub.on_frame(report(index))
            index += 1
            preview = hub.next_preview(seen[-1] if seen else 0, 0.01)
            if preview is not None and (not seen or preview.seq != seen[-1]):
                seen.append(preview.seq)
        # 5 fps over 1 s: the first preview at once, then one per 0.2 s (and a frame in flight).
        assert 1 <= len(seen) <= 5 * feeding_for_s + 2, seen
        hub.close_viewer()
        assert hub.stats().viewers == 0
    finally:
        hub.close()
    assert hub.next_preview(0, 1.0) is None  # closed: streams end at once


def test_the_hub_refuses_viewers_beyond_max_streams() -> None:
    hub = PreviewHub(WebSettings(max_streams=2, max_connections=4))
    try:
        assert hub.open_viewer() and hub.open_viewer()
        assert not hub.open_viewer()
        hub.close_viewer()
        assert hub.open_viewer()
    finally:
        hub.close()
    assert not hub.open_viewer()


def test_the_inbox_answers_waits_and_refuses_when_full() -> None:
    inbox = WebInbox(capacity=1)
    answers: list[object] = []

    def serve() -> None:
        while not (requests := inbox.drain()):
            time.sleep(0.005)
        request = requests[0]
        assert request.kind == "start" and request.payload == b"{}"
        request.responder.accepted("t1", "r1")

    server = threading.Thread(target=serve)
    server.start()
    outcome = inbox.submit("start", b"{}", 5.0)
    server.join()
    assert outcome is not None and outcome.track_id == "t1" and outcome.error is None

    def reject() -> None:
        while not (requests := inbox.drain()):
            time.sleep(0.005)
        requests[0].responder.rejected(CommandError("no track 'x' (active: none)", "r2"))

    server = threading.Thread(target=reject)
    server.start()
    outcome = inbox.submit("stop", b"{}", 5.0)
    server.join()
    assert outcome is not None and outcome.error is not None
    assert outcome.error.reason == "no track 'x' (active: none)"

    assert inbox.submit("stop", b"{}", 0.01) is None  # nobody drains: no answer in time
    with pytest.raises(InboxFullError):
        inbox.submit("stop", b"{}", 0.01)  # the unanswered one still fills the inbox
    waiting = threading.Thread(target=lambda: answers.append(inbox.submit("stop", b"{}", 30)))
    inbox.drain()
    waiting.start()
    wait_until(lambda: bool(inbox.drain()), "the waiting thread's command in the inbox")
    inbox.close()  # shutdown wakes the waiting HTTP thread with no answer
    waiting.join(5)
    assert answers == [None]
    with pytest.raises(InboxFullError, match="shutting down"):
        inbox.submit("stop", b"{}", 0.01)


def test_bearer_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None
    assert token_matches("abc", "abc")
    assert not token_matches("abc", "abd")
    assert not token_matches("abc", None)

    assert resolve_token(WebSettings()) is None
    token_file = tmp_path / "token"
    token_file.write_text("  tok  \n", encoding="utf-8")
    assert resolve_token(WebSettings(token_file=str(token_file))) == "tok"
    token_file.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"web\.token_file: .* is empty"):
        resolve_token(WebSettings(token_file=str(token_file)))
    with pytest.raises(ConfigError, match=r"web\.token_file: cannot read"):
        resolve_token(WebSettings(token_file=str(tmp_path / "missing")))
    monkeypatch.setenv("SIAMEDGE_TEST_TOKEN", "from-env")
    assert resolve_token(WebSettings(token_env="SIAMEDGE_TEST_TOKEN")) == "from-env"
    with pytest.raises(ConfigError, match="SIAMEDGE_TEST_UNSET"):
        resolve_token(WebSettings(token_env="SIAMEDGE_TEST_UNSET"))


def test_web_settings_are_checked() -> None:
    assert settings_from_mapping({}, "t").web.enabled is False
    for bad, key in [
        ({"token_file": "/a", "token_env": "B"}, "token_file or token_env"),
        ({"max_streams": 40, "max_connections": 32}, "max_streams must be below"),
        ({"port": 0}, "web.port"),
        ({"preview_fps": 0}, "web.preview_fps"),
        ({"jpeg_quality": 5}, "web.jpeg_quality"),
        ({"colour": "red"}, "web.colour"),
    ]:
        with pytest.raises(ConfigError, match=key):
            settings_from_mapping({"web": bad}, "t")


def test_the_status_document_carries_the_counters_as_of_now() -> None:
    report = StatusReport(
        "builtin", "CPUExecutionProvider", SourceStatus("synthetic", True), 30.0, 0, ("a",), 4,
        "rle", 12.0,
    )  # fmt: skip
    counters = ServiceCounters(commands={"accepted": 2, "rejected": 1}, results_dropped=5)
    snapshot = StatusSnapshot(report, ConnectionState(True, "connected", 100.0), counters)
    view = ViewStats(fps=30.0, frame_index=7, frame_age_s=0.01, latency_ms=4.0, viewers=1)
    document = status_document(snapshot, view)
    assert document["commands"] == {"accepted": 2, "rejected": 1}
    assert document["results_dropped"] == 5
    assert "commands_dropped" not in document
    assert document["broker"] == {"connected": True, "reason": "connected", "since": 100.0}
    assert document["view"] == {"fps": 30.0, "frame": 7, "frame_age_s": 0.01, "viewers": 1}
    starting = status_document(
        StatusSnapshot(None, ConnectionState(False, "connecting", 0.0)), view
    )
    assert (starting["online"], starting["starting"]) == (True, True)
