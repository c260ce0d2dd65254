"""The web page in a real headless Chromium against a real Service and mosquitto: drag a box
around the synthetic object, see the track on the page, in `track/results` and drawn in the
live view over the mask, then stop it with its button.

Set SIAMEDGE_SAVE_DOCS=1 to also write the page's screenshot to docs/web-view.png (the README's).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from fixtures.mosquitto import Broker, MqttCollector
from fixtures.web import RunningService
from numpy.typing import NDArray
from playwright.sync_api import Browser, Page, expect
from pycocotools import mask as coco_mask

from siamedge.overlay import PALETTE_BGR, TINT_ALPHA

StartService = Callable[..., RunningService]
Collect = Callable[..., MqttCollector]

VIEWPORT = {"width": 1060, "height": 520}
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "web-view.png"
DOCS_MAX_BYTES = 200 * 1024
DOCS_COLOURS = 128
DOCS_KMEANS_ROUNDS = 10
PAGE_TIMEOUT_MS = 15_000
STATUS_TIMEOUT_S = 10.0
EDGE_PX = 4
"""Pixels this close to the mask outline blend with the background in scaling and JPEG."""
ZONE_MARGIN_PX = 40
"""The box outline, centre dot and label lie within this margin of the rotated box."""


def _bgr(png: bytes) -> NDArray[np.uint8]:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _decode_rle(mask: dict[str, Any]) -> NDArray[np.bool_]:
    rle = {"size": mask["size"], "counts": mask["counts"].encode("ascii")}
    with warnings.catch_warnings():
        # pycocotools 2.0.11's Cython decode trips numpy 2's __array__(copy=) deprecation.
        warnings.filterwarnings(
            "ignore", "__array__ implementation doesn't accept a copy", DeprecationWarning
        )
        decoded = coco_mask.decode(rle)
    return decoded.astype(bool)


def _iou(a: NDArray[np.bool_], b: NDArray[np.bool_]) -> float:
    return float(np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b)))


def _box_iou(a: list[float], b: list[float]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = w * h
    return inter / (aw * ah + bw * bh - inter)


def _as_displayed(
    image: NDArray[np.uint8], preview_wh: tuple[int, int], shown_wh: tuple[int, int]
) -> NDArray[np.uint8]:
    """A full-frame image as the page shows it: scaled to the preview, then to the screen."""
    preview = cv2.resize(image, preview_wh, interpolation=cv2.INTER_AREA)
    return cv2.resize(preview, shown_wh, interpolation=cv2.INTER_LINEAR)


def _drag(page: Page, box_xywh: list[int], frame_wh: tuple[int, int]) -> None:
    """Drag the mouse over the live view around a full-frame box."""
    view = page.locator("#view").bounding_box()
    assert view is not None
    sx, sy = view["width"] / frame_wh[0], view["height"] / frame_wh[1]
    x, y, w, h = box_xywh
    page.mouse.move(view["x"] + x * sx, view["y"] + y * sy)
    page.mouse.down()
    page.mouse.move(view["x"] + (x + w) * sx, view["y"] + (y + h) * sy, steps=6)
    page.mouse.up()


def _latest_with_mask(collector: MqttCollector, topic: str) -> dict[str, Any]:
    messages = collector.wait_for(
        topic, where=lambda m: any(t["track_id"] == "t1" and t["mask"] for t in m["tracks"])
    )
    found = [json.loads(m.payload) for m in collector.messages(topic)]
    with_mask = [m for m in found if any(t["track_id"] == "t1" and t["mask"] for t in m["tracks"])]
    return with_mask[-1] if with_mask else json.loads(messages[0].payload)


def test_drag_a_box_to_track_see_it_drawn_and_stop_it(
    web_service: StartService,
    mosquitto: Broker,
    mqtt_collector: Collect,
    chromium: Browser,
    tmp_path: Path,
) -> None:
    running = web_service()
    frame_wh = (running.settings.source.synthetic.width, running.settings.source.synthetic.height)
    collector = mqtt_collector(mosquitto, [running.topics.results, running.topics.status])
    page = chromium.new_page(viewport=VIEWPORT)
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        page.goto(running.url)
        # The live view plays and the page shows which frame the service is on.
        page.wait_for_function("document.getElementById('view').naturalWidth > 0")
        page.wait_for_function("/^[0-9]+$/.test(document.getElementById('s-frame').textContent)")
        expect(page.locator("#online")).to_have_text("online")
        expect(page.locator("#s-broker")).to_contain_text("connected")
        expect(page.locator("#s-provider")).to_have_text("CPUExecutionProvider")

        frame = int(page.text_content("#s-frame") or "")
        truth = running.truth_box(frame)  # the clip moves < 0.03 px per frame: still valid
        _drag(page, truth, frame_wh)

        row = page.locator('#tracks tr[data-track-id="t1"]')
        expect(row).to_be_visible()
        expect(row.locator("td").nth(1)).to_have_text("tracking")
        expect(page.locator("#message")).to_have_text("started t1")

        # The broker carries the track, on the object: the dragged box was mapped from the
        # displayed size to full-frame pixels.
        results = _latest_with_mask(collector, running.topics.results)
        track = next(t for t in results["tracks"] if t["track_id"] == "t1")
        assert _box_iou(track["bbox"], [float(v) for v in truth]) > 0.6, (track["bbox"], truth)
        result_mask = _decode_rle(track["mask"])
        truth_mask = running.clip.truth(results["frame"] % len(running.clip)).mask
        assert _iou(result_mask, truth_mask) > 0.7

        # Let a few previews with the track go by, then look at the pixels of the live view.
        page.wait_for_timeout(600)
        shot = _bgr(page.locator("#view").screenshot(path=str(tmp_path / "view.png")))
        page.screenshot(path=str(tmp_path / "page.png"))
        results = _latest_with_mask(collector, running.topics.results)
        track = next(t for t in results["tracks"] if t["track_id"] == "t1")
        _assert_overlay_on_mask(running, shot, results["frame"], track)
        if os.environ.get("SIAMEDGE_SAVE_DOCS") == "1":
            _save_docs_screenshot(page)

        # Stop it with its button: the row goes, the broker hears the end of the track.
        row.locator("button.stop").click()
        expect(row).to_have_count(0)
        expect(page.locator("#message")).to_have_text("stopped t1")
        collector.wait_for(running.topics.results, where=lambda m: m["tracks"] == [])
        # The retained status said t1 while it ran, and says no track after the stop.
        _wait_for_status_after_stop(collector, running.topics.status)
    finally:
        page.close()


def _wait_for_status_after_stop(collector: MqttCollector, topic: str) -> None:
    """A status report listing t1, then a later one listing no track."""
    collector.wait_for(topic, where=lambda m: m.get("track_ids") == ["t1"])

    def stopped_after_running() -> bool:
        reports = [json.loads(m.payload) for m in collector.messages(topic)]
        ids = [r["track_ids"] for r in reports if "track_ids" in r]
        return ["t1"] in ids and [] in ids[ids.index(["t1"]) :]

    deadline = time.monotonic() + STATUS_TIMEOUT_S
    while not stopped_after_running():
        assert time.monotonic() < deadline, "no status without t1 after the stop"
        time.sleep(0.05)


def _assert_overlay_on_mask(
    running: RunningService, shot: NDArray[np.uint8], frame: int, track: dict[str, Any]
) -> None:
    """The tint colour is on the mask's pixels (as shown) and nothing is drawn far from it."""
    shown_wh = (shot.shape[1], shot.shape[0])
    frame_wh = running.clip.size_wh
    preview_w = running.settings.web.preview_width
    preview_wh = (preview_w, round(frame_wh[1] * preview_w / frame_wh[0]))
    plain = running.clip.frame(frame % len(running.clip))
    colour = np.array(PALETTE_BGR[0], dtype=np.float32)
    tinted_full = (plain.astype(np.float32) * (1 - TINT_ALPHA) + colour * TINT_ALPHA).astype(
        np.uint8
    )
    expected_plain = _as_displayed(plain, preview_wh, shown_wh).astype(np.int16)
    expected_tint = _as_displayed(tinted_full, preview_wh, shown_wh).astype(np.int16)
    mask = _decode_rle(track["mask"]).astype(np.uint8)
    mask_shown = cv2.resize(mask, shown_wh, interpolation=cv2.INTER_NEAREST).astype(bool)

    kernel = np.ones((2 * EDGE_PX + 1, 2 * EDGE_PX + 1), np.uint8)
    inner_u8 = cv2.erode(mask_shown.astype(np.uint8), kernel)
    outer = ~cv2.dilate(mask_shown.astype(np.uint8), kernel).astype(bool)
    # The centre dot is drawn over the mask: leave it out.
    scale = shown_wh[0] / frame_wh[0]
    cx, cy = (round(v * scale) for v in track["center"])
    cv2.circle(inner_u8, (cx, cy), round(12 * scale) + EDGE_PX, 0, -1)
    inner = inner_u8.astype(bool)

    shot16 = shot.astype(np.int16)
    to_tint = np.abs(shot16 - expected_tint).sum(axis=2)
    to_plain = np.abs(shot16 - expected_plain).sum(axis=2)
    # Inside the mask the live view shows the tinted frame, not the plain one.
    assert float(to_tint[inner].mean()) < 30, float(to_tint[inner].mean())
    assert float(to_plain[inner].mean()) > 2 * float(to_tint[inner].mean())
    looks_tinted = to_tint < to_plain
    assert np.count_nonzero(looks_tinted & inner) > 0.95 * np.count_nonzero(inner)

    # Away from the track (beyond its box, outline and label) the frame is shown untouched.
    corners = np.array(track["rotated_box"], dtype=np.float64) * scale
    x0, y0 = np.floor(corners.min(axis=0)).astype(int) - ZONE_MARGIN_PX
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + ZONE_MARGIN_PX
    far = np.ones(shot.shape[:2], dtype=bool)
    far[max(0, y0) : y1, max(0, x0) : x1] = False
    assert float(to_plain[far & outer].mean()) < 20, float(to_plain[far & outer].mean())
    assert np.count_nonzero(looks_tinted & far & outer) < 0.02 * np.count_nonzero(far & outer)


def _save_docs_screenshot(page: Page) -> None:
    """docs/web-view.png for the README, reduced to DOCS_COLOURS colours so that the noisy
    synthetic texture compresses (the full-colour PNG is some 350 KB)."""
    image = _bgr(page.screenshot())
    pixels = image.reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_MAX_ITER, DOCS_KMEANS_ROUNDS, 1.0)
    _, labels, centres = cv2.kmeans(pixels, DOCS_COLOURS, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    reduced = centres.astype(np.uint8)[labels.ravel()].reshape(image.shape)
    ok, png = cv2.imencode(".png", reduced, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    assert len(png) < DOCS_MAX_BYTES, len(png)
    DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
    DOCS_SCREENSHOT.write_bytes(png.tobytes())
