"""builtin-ncc through the real Engine and Tracker on the synthetic clip, against its truth.

Started from the truth box of frame 0; every later frame's reported box (the box of the
thresholded full-frame mask) and mask are compared with the truth. Run with -s for the figures.
"""

from __future__ import annotations

import numpy as np
import pytest

from siamedge.config import ModelSettings, SyntheticSettings, TrackerSettings
from siamedge.engine import Engine
from siamedge.sources.synthetic import SyntheticClip
from siamedge.tracking.tracker import Tracker, TrackerParams

MIN_MEAN_BOX_IOU = 0.75
MIN_FRAME_BOX_IOU = 0.4
MIN_MEAN_MASK_IOU = 0.75


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """IoU of two (x, y, w, h) boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.load("builtin", ModelSettings(providers=["cpu"], intra_op_threads=1))


@pytest.mark.parametrize(
    "settings",
    [
        SyntheticSettings(),  # 1280x720, 300 frames, seed 0: the demo clip
        SyntheticSettings(width=640, height=480, frames=150, seed=7),
    ],
    ids=["1280x720x300-seed0", "640x480x150-seed7"],
)
def test_builtin_model_follows_the_synthetic_object(
    engine: Engine, settings: SyntheticSettings, record_property: pytest.RecordProperty
) -> None:
    clip = SyntheticClip(settings)
    tracker = Tracker(engine, TrackerParams.from_settings(TrackerSettings(), engine.contract))
    tracker.start(clip.frame(0), clip.truth(0).box_xywh)
    box_ious, mask_ious = [], []
    for index in range(1, len(clip)):
        result = tracker.step(clip.frame(index)).result
        truth = clip.truth(index)
        box_ious.append(box_iou(result.bbox_xywh, truth.box_xywh))
        assert result.mask is not None
        mask = result.mask.to_full()
        mask_ious.append(np.count_nonzero(mask & truth.mask) / np.count_nonzero(mask | truth.mask))
    figures = {
        "box_iou_mean": float(np.mean(box_ious)),
        "box_iou_min": float(np.min(box_ious)),
        "mask_iou_mean": float(np.mean(mask_ious)),
        "mask_iou_min": float(np.min(mask_ious)),
    }
    for name, value in figures.items():
        record_property(name, round(value, 4))
    print(
        f"\n{clip.size_wh[0]}x{clip.size_wh[1]} x{len(clip)} seed {settings.seed}: "
        + ", ".join(f"{name} {value:.3f}" for name, value in figures.items())
    )
    assert figures["box_iou_mean"] >= MIN_MEAN_BOX_IOU
    assert figures["box_iou_min"] >= MIN_FRAME_BOX_IOU
    assert figures["mask_iou_mean"] >= MIN_MEAN_MASK_IOU
