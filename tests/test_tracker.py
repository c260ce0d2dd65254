"""The Tracker around a model: state flow, clipping, lost targets, bad boxes and frames."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from siamedge import contract as c
from siamedge.config import DEFAULT_LOST_SCORE, DEFAULT_SEG_THR, ModelSettings, TrackerSettings
from siamedge.engine import Engine
from siamedge.errors import BoxError
from siamedge.tracking.geometry import PointXY, box_corners
from siamedge.tracking.model_io import ModelStep, Serial
from siamedge.tracking.result import TrackState
from siamedge.tracking.tracker import (
    StepOutcome,
    Tracker,
    TrackerParams,
    replaced_model_thresholds,
    step_together,
)

PARAMS = TrackerParams(seg_thr=0.35, min_contour_area=100.0, lost_score=0.5, lost_frames=3)
CONTRACT = c.ModelContract(
    instance_size=255,
    exemplar_size=127,
    feature_shape=(1, 4, 7, 7),
    total_stride=8,
    base_size=8,
    context_amount=0.5,
    has_score=True,
    seg_thr=None,
    lost_score=None,
    model_name="scripted",
    metadata={},
)


@dataclass
class ScriptedModel:
    """A StepModel stand-in that returns scripted outputs and records what it was fed."""

    moves: list[tuple[PointXY, PointXY, float, NDArray[np.float32]]]
    contract: c.ModelContract = CONTRACT

    def __post_init__(self) -> None:
        self.fed: list[tuple[tuple[int, ...], PointXY, PointXY, float]] = []
        self.exemplars: list[NDArray[np.uint8]] = []

    def template(
        self, exemplar: NDArray[np.uint8], center_xy: PointXY, size_wh: PointXY
    ) -> NDArray[np.float32]:
        self.exemplars.append(exemplar)
        self.template_box = (center_xy, size_wh)
        return np.ones(self.contract.feature_shape, np.float32)

    def track(
        self,
        search: NDArray[np.uint8],
        center_xy: PointXY,
        size_wh: PointXY,
        scale_x: float,
        features: NDArray[np.float32],
    ) -> ModelStep:
        self.fed.append((search.shape, center_xy, size_wh, scale_x))
        center, size, score, mask = self.moves[len(self.fed) - 1]
        return ModelStep(mask, center, size, (12, 12), score)


def centre_blob(radius: float) -> NDArray[np.float32]:
    yy, xx = np.mgrid[0:127, 0:127]
    return ((xx - 63) ** 2 + (yy - 63) ** 2 <= radius**2).astype(np.float32)


FRAME = np.full((480, 640, 3), 50, np.uint8)


def test_start_reports_the_box_and_crops_the_exemplar() -> None:
    model = ScriptedModel([])
    tracker = Tracker(Serial(model), PARAMS)
    result = tracker.start(FRAME, (100.0, 100.0, 40.0, 20.0))
    assert result.center_xy == (120.0, 110.0)
    assert result.size_wh == (40.0, 20.0)
    assert result.bbox_xywh == (100.0, 100.0, 40.0, 20.0)
    assert result.rotated_box == box_corners((100.0, 100.0, 40.0, 20.0))
    assert result.mask is None
    assert model.exemplars[0].shape == (127, 127, 3)
    assert model.template_box == ((120.0, 110.0), (40.0, 20.0))


def test_step_feeds_the_state_and_places_the_mask_at_the_new_position() -> None:
    model = ScriptedModel([((130.0, 115.0), (44.0, 22.0), 0.9, centre_blob(20))])
    tracker = Tracker(Serial(model), PARAMS)
    tracker.start(FRAME, (100.0, 100.0, 40.0, 20.0))
    outcome = tracker.step(FRAME)
    shape, center, size, scale_x = model.fed[0]
    assert shape == (255, 255, 3)
    assert center == (120.0, 110.0)
    assert size == (40.0, 20.0)
    s_z = np.sqrt((40 + 30) * (20 + 30))
    assert scale_x == pytest.approx(127 / s_z)
    result = outcome.result
    assert result.center_xy == (130.0, 115.0)
    assert result.state is TrackState.TRACKING
    assert result.score == pytest.approx(0.9)
    # cell (12, 12) is the centre cell: the mask window is centred on the pre-step centre
    assert result.mask is not None
    ys, xs = np.nonzero(result.mask.to_full())
    assert xs.mean() == pytest.approx(120.0, abs=1.0)
    assert ys.mean() == pytest.approx(110.0, abs=1.0)
    assert result.bbox_xywh[2] == pytest.approx(result.bbox_xywh[3], abs=1.0)
    assert tracker.target is not None
    assert tracker.target.center_xy == (130.0, 115.0)


def test_state_is_clipped_but_the_fallback_box_uses_the_unclipped_state() -> None:
    empty = np.zeros((127, 127), np.float32)
    model = ScriptedModel([((-30.0, 500.0), (4.0, 900.0), 0.9, empty)])
    tracker = Tracker(Serial(model), PARAMS)
    tracker.start(FRAME, (10.0, 10.0, 40.0, 40.0))
    result = tracker.step(FRAME).result
    assert result.center_xy == (0.0, 480.0)
    assert result.size_wh == (10.0, 480.0)
    assert result.rotated_box == box_corners((-32.0, 50.0, 4.0, 900.0))
    assert result.mask is not None
    assert result.mask.area == 0
    assert result.bbox_xywh == (-5.0, 240.0, 10.0, 480.0)


@pytest.mark.parametrize(
    "bad_row",
    [
        ((math.nan, 100.0), (40.0, 20.0), 0.9),
        ((100.0, 100.0), (40.0, math.inf), 0.9),
        ((100.0, 100.0), (40.0, 20.0), math.nan),
    ],
)
def test_a_non_finite_model_row_is_dropped_and_counts_towards_lost(
    bad_row: tuple[PointXY, PointXY, float],
) -> None:
    # min/max clipped a NaN centre to the frame's right edge, reported as `tracking`.
    good = ((130.0, 115.0), (40.0, 20.0), 0.9, centre_blob(20))
    bad = (*bad_row, centre_blob(20))
    model = ScriptedModel([good] + [bad] * PARAMS.lost_frames + [good])
    tracker = Tracker(Serial(model), PARAMS)
    tracker.start(FRAME, (100.0, 100.0, 40.0, 20.0))
    tracker.step(FRAME)
    results = [tracker.step(FRAME).result for _ in range(PARAMS.lost_frames)]
    kept = ((130.0, 115.0), (40.0, 20.0), None)
    assert {(r.center_xy, r.size_wh, r.score) for r in results} == {kept}
    assert all(r.mask is not None and r.mask.area == 0 for r in results)
    assert [r.state for r in results] == [TrackState.TRACKING] * (PARAMS.lost_frames - 1) + [
        TrackState.LOST
    ]
    assert tracker.step(FRAME).result.state is TrackState.TRACKING  # a good row again


def test_low_score_for_n_frames_reports_lost_and_recovers() -> None:
    blob = centre_blob(20)
    scores = [0.9, 0.2, 0.3, 0.1, 0.4, 0.8]
    model = ScriptedModel([((120.0, 110.0), (40.0, 20.0), s, blob) for s in scores])
    tracker = Tracker(Serial(model), PARAMS)
    tracker.start(FRAME, (100.0, 100.0, 40.0, 20.0))
    states = [tracker.step(FRAME).result.state for _ in scores]
    assert states == [
        TrackState.TRACKING,
        TrackState.TRACKING,
        TrackState.TRACKING,
        TrackState.LOST,
        TrackState.LOST,
        TrackState.TRACKING,
    ]


def test_model_without_score_is_never_lost() -> None:
    no_score = c.ModelContract(**{**CONTRACT.__dict__, "has_score": False})
    model = ScriptedModel(
        [((120.0, 110.0), (40.0, 20.0), 0.0, centre_blob(20))] * 5, contract=no_score
    )
    tracker = Tracker(Serial(model), PARAMS)
    tracker.start(FRAME, (100.0, 100.0, 40.0, 20.0))
    assert all(tracker.step(FRAME).result.state is TrackState.TRACKING for _ in range(5))


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ((10.0, 10.0, 0.0, 10.0), "size must be positive"),
        ((10.0, 10.0, 10.0, -3.0), "size must be positive"),
        ((640.0, 10.0, 10.0, 10.0), "entirely outside the 640x480 frame"),
        ((-20.0, -20.0, 10.0, 10.0), "entirely outside"),
    ],
)
def test_bad_start_boxes_are_rejected(box: tuple[float, float, float, float], message: str) -> None:
    tracker = Tracker(Serial(ScriptedModel([])), PARAMS)
    with pytest.raises(BoxError, match=message):
        tracker.start(FRAME, box)
    assert tracker.target is None


def test_step_before_start_and_frame_size_change_are_errors() -> None:
    tracker = Tracker(Serial(ScriptedModel([])), PARAMS)
    with pytest.raises(RuntimeError, match="start"):
        tracker.step(FRAME)
    tracker.start(FRAME, (10.0, 10.0, 40.0, 40.0))
    with pytest.raises(ValueError, match="frame size changed"):
        tracker.step(np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 BGR"):
        tracker.step(np.zeros((480, 640), np.uint8))


def test_set_target_moves_the_search(toy_model: Callable[..., Path]) -> None:
    engine = Engine.load(str(toy_model()), ModelSettings(providers=["cpu"], warmup=False))
    tracker = Tracker(engine, PARAMS)
    tracker.start(FRAME, (10.0, 10.0, 40.0, 40.0))
    tracker.set_target((300.0, 200.0), (60.0, 30.0))
    outcome = tracker.step(FRAME)
    # the toy model moves the centre by (1, 2) and scales the size by scale_x
    assert outcome.model.center_xy == (301.0, 202.0)
    s_z = np.sqrt((60 + 45) * (30 + 45))
    assert outcome.model.size_wh[0] == pytest.approx(60 * 127 / s_z, rel=1e-6)
    assert outcome.result.center_xy == (301.0, 202.0)


def test_thresholds_come_from_the_configuration_then_the_model_then_the_defaults() -> None:
    from_model = c.ModelContract(**{**CONTRACT.__dict__, "seg_thr": 0.45, "lost_score": 0.2})
    unset = TrackerSettings()
    params = TrackerParams.from_settings(unset, from_model)
    assert (params.seg_thr, params.lost_score) == (0.45, 0.2)
    assert replaced_model_thresholds(unset, from_model) == []
    params = TrackerParams.from_settings(unset, CONTRACT)  # the model records neither
    assert (params.seg_thr, params.lost_score) == (DEFAULT_SEG_THR, DEFAULT_LOST_SCORE)

    configured = TrackerSettings(seg_thr=0.5, lost_score=0.2)
    params = TrackerParams.from_settings(configured, from_model)
    assert (params.seg_thr, params.lost_score) == (0.5, 0.2)
    assert replaced_model_thresholds(configured, from_model) == [
        "tracker.seg_thr 0.5 replaces the model's 0.45"
    ]
    params = TrackerParams.from_settings(configured, CONTRACT)
    assert (params.seg_thr, params.lost_score) == (0.5, 0.2)
    assert replaced_model_thresholds(configured, CONTRACT) == []


def test_builtin_model_records_its_thresholds() -> None:
    engine = Engine.load("builtin", ModelSettings(providers=["cpu"], warmup=False))
    assert engine.contract.model_name == "builtin-ncc"
    assert engine.contract.seg_thr == 0.45
    assert engine.contract.lost_score == 0.2


def _synthetic_frames(count: int) -> tuple[list[NDArray[np.uint8]], tuple[float, ...]]:
    from siamedge.config import SyntheticSettings
    from siamedge.sources.synthetic import SyntheticClip

    clip = SyntheticClip(SyntheticSettings(width=640, height=360, frames=count))
    return [clip.frame(i) for i in range(count)], clip.truth(0).box_xywh


BUILTIN_CPU = ModelSettings(providers=["cpu"], warmup=False)
OTHER_BOXES = ((20.0, 20.0, 60.0, 40.0), (400.0, 200.0, 80.0, 90.0))


def test_step_together_equals_each_target_alone() -> None:
    frames, truth = _synthetic_frames(6)
    boxes = (truth, *OTHER_BOXES)
    engine = Engine.load("builtin", BUILTIN_CPU)
    params = TrackerParams.from_settings(TrackerSettings(), engine.contract)
    together = [Tracker(engine, params) for _ in boxes]
    alone = [Tracker(Engine.load("builtin", BUILTIN_CPU), params) for _ in boxes]
    for tracker, single, box in zip(together, alone, boxes, strict=True):
        tracker.start(frames[0], box)
        single.start(frames[0], box)
    for frame in frames[1:]:
        before = engine.calls
        outcomes = step_together(together, frame)
        assert engine.calls - before == 1
        for outcome, single in zip(outcomes, alone, strict=True):
            assert isinstance(outcome, StepOutcome)
            expected = single.step(frame)
            assert outcome.model.best_cell_yx == expected.model.best_cell_yx
            np.testing.assert_allclose(outcome.model.center_xy, expected.model.center_xy, atol=1e-4)
            np.testing.assert_allclose(outcome.model.size_wh, expected.model.size_wh, atol=1e-4)
            np.testing.assert_allclose(
                outcome.model.mask_probs, expected.model.mask_probs, atol=1e-5
            )
            assert outcome.result.mask is not None and expected.result.mask is not None
            assert np.array_equal(outcome.result.mask.bits, expected.result.mask.bits)


def test_a_target_that_cannot_step_does_not_stop_the_others() -> None:
    frames, truth = _synthetic_frames(2)
    engine = Engine.load("builtin", BUILTIN_CPU)
    params = TrackerParams.from_settings(TrackerSettings(), engine.contract)
    trackers = [Tracker(engine, params) for _ in range(3)]
    trackers[0].start(frames[0], truth)
    trackers[1].start(np.zeros((100, 100, 3), np.uint8), (10.0, 10.0, 20.0, 20.0))
    trackers[2].start(frames[0], OTHER_BOXES[0])
    before = trackers[1].target
    outcomes = step_together(trackers, frames[1])
    assert isinstance(outcomes[0], StepOutcome)
    assert isinstance(outcomes[1], ValueError)
    assert "frame size changed from (100, 100) to (640, 360)" in str(outcomes[1])
    assert isinstance(outcomes[2], StepOutcome)
    assert trackers[1].target is before
    assert step_together([], frames[1]) == []
