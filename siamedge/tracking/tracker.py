"""SiamMask tracking state of targets and their steps: prepare (crop) -> one batched model
call for all targets -> finish (mask, state), around a StepModel.

Pure computation on the frames it is handed: no I/O, no logging of frames, no threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from siamedge.config import DEFAULT_LOST_SCORE, DEFAULT_SEG_THR, TrackerSettings
from siamedge.contract import ModelContract
from siamedge.tracking.crop import BGR, CropScratch, crop_resized, mean_color
from siamedge.tracking.geometry import (
    BoxXYWH,
    CropGeometry,
    PointXY,
    SearchWindow,
    box_corners,
    center_box,
    clip_state,
    exemplar_side,
    mask_placement,
    search_window,
    validate_box,
)
from siamedge.tracking.mask import mask_bbox, project_mask, rotated_box_of
from siamedge.tracking.model_io import ModelStep, StepModel
from siamedge.tracking.result import TrackResult, TrackState


@dataclass(frozen=True)
class TrackerParams:
    """Post-processing and lost-target settings of a tracker.

    seg_thr: mask probability threshold. min_contour_area: a contour must be larger (px^2) to
    define the rotated box. lost_score / lost_frames: a target whose score stays below
    lost_score for lost_frames consecutive steps is reported lost (models with `score` only).
    """

    seg_thr: float
    min_contour_area: float
    lost_score: float
    lost_frames: int

    @classmethod
    def from_settings(cls, settings: TrackerSettings, contract: ModelContract) -> TrackerParams:
        """The configured values; the mask and lost-score thresholds left unset (None) come
        from the model when it records them, else from the defaults."""
        return cls(
            seg_thr=_threshold(settings.seg_thr, contract.seg_thr, DEFAULT_SEG_THR),
            min_contour_area=settings.min_contour_area,
            lost_score=_threshold(settings.lost_score, contract.lost_score, DEFAULT_LOST_SCORE),
            lost_frames=settings.lost_frames,
        )


def replaced_model_thresholds(settings: TrackerSettings, contract: ModelContract) -> list[str]:
    """One line for each threshold the model records that the configuration replaces, e.g.
    "tracker.seg_thr 0.5 replaces the model's 0.45" (for the log at model load)."""
    pairs = (
        ("seg_thr", settings.seg_thr, contract.seg_thr),
        ("lost_score", settings.lost_score, contract.lost_score),
    )
    return [
        f"tracker.{key} {configured:g} replaces the model's {recorded:g}"
        for key, configured, recorded in pairs
        if configured is not None and recorded is not None and configured != recorded
    ]


def _threshold(configured: float | None, recorded: float | None, default: float) -> float:
    """The configured threshold, else the model's, else the default."""
    if configured is not None:
        return configured
    return recorded if recorded is not None else default


@dataclass(frozen=True)
class TargetState:
    """Everything a target carries from one frame to the next.

    center_xy / size_wh: full-frame pixels (clipped). features: the template features.
    fill_bgr: the init frame's mean colour, padding crops that leave the frame.
    low_score_steps: consecutive steps with a score below the lost threshold.
    """

    center_xy: PointXY
    size_wh: PointXY
    features: NDArray[np.float32]
    fill_bgr: BGR
    frame_wh: tuple[int, int]
    low_score_steps: int = 0


@dataclass(frozen=True)
class StepOutcome:
    """The reported result of a step and the raw model outputs behind it."""

    result: TrackResult
    model: ModelStep


@dataclass(frozen=True)
class SearchCrop:
    """One target's part of a batched track step: its (S, S, 3) uint8 search crop and where
    the crop lies in the frame."""

    crop: NDArray[np.uint8]
    window: SearchWindow


def _frame_wh(frame: NDArray[np.uint8]) -> tuple[int, int]:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 BGR, got {frame.shape} {frame.dtype}")
    return int(frame.shape[1]), int(frame.shape[0])


def prepare_search(
    state: TargetState,
    frame: NDArray[np.uint8],
    geometry: CropGeometry,
    scratch: CropScratch | None = None,
) -> SearchCrop:
    """The search crop of a target in this frame (ValueError when the frame size changed).

    scratch: where a large crop straddling the frame edge is built (see crop_resized).
    """
    frame_wh = _frame_wh(frame)
    if frame_wh != state.frame_wh:
        raise ValueError(
            f"frame size changed from {state.frame_wh} to {frame_wh}; restart the target"
        )
    window = search_window(state.size_wh, geometry)
    crop = crop_resized(
        frame,
        state.center_xy,
        window.side,
        geometry.instance_size,
        state.fill_bgr,
        scratch=scratch,
    )
    return SearchCrop(crop, window)


def finish_step(
    state: TargetState,
    search: SearchCrop,
    out: ModelStep,
    params: TrackerParams,
    geometry: CropGeometry,
) -> tuple[TargetState, TrackResult]:
    """The target's next state and reported result from its row of the model's outputs.

    out.score is None for models without `score`: the lost-target count then stays 0. A row
    with a non-finite centre, size or score is dropped (see below).
    """
    finite = _finite_step(out)
    if not finite:
        # NaN or infinity (a float16 network that overflowed): min/max would clip the centre to
        # a frame edge. The step is dropped: the target stays where it was, with no score and
        # no mask, and the step counts towards lost_frames like a low score.
        out = ModelStep(
            np.zeros_like(out.mask_probs), state.center_xy, state.size_wh, out.best_cell_yx, None
        )
    frame_wh = state.frame_wh
    placement = mask_placement(state.center_xy, search.window.side, out.best_cell_yx, geometry)
    mask, contour_area = project_mask(out.mask_probs, placement, frame_wh, params.seg_thr)
    rotated = rotated_box_of(mask.contour_xy, contour_area, params.min_contour_area)
    if rotated is None:
        rotated = box_corners(center_box(out.center_xy, out.size_wh))
    center, size = clip_state(out.center_xy, out.size_wh, frame_wh)
    low_steps = (
        _low_score_steps(state.low_score_steps, out.score, params.lost_score)
        if finite
        else state.low_score_steps + 1
    )
    lost = low_steps >= params.lost_frames
    result = TrackResult(
        center_xy=center,
        size_wh=size,
        bbox_xywh=mask_bbox(mask) or center_box(center, size),
        rotated_box=rotated,
        score=out.score,
        state=TrackState.LOST if lost else TrackState.TRACKING,
        mask=mask,
    )
    return replace(state, center_xy=center, size_wh=size, low_score_steps=low_steps), result


def _finite_step(out: ModelStep) -> bool:
    values = (*out.center_xy, *out.size_wh, 0.0 if out.score is None else out.score)
    return all(math.isfinite(value) for value in values)


def _low_score_steps(previous: int, score: float | None, lost_score: float) -> int:
    if score is None:
        return 0
    return previous + 1 if score < lost_score else 0


class Tracker:
    """Follows one target through frames of one size. Create one per target.

    scratch: a buffer for large crops straddling the frame edge, kept between frames; trackers
    stepped together may share one (their crops are made one after another). Default: its own.
    """

    def __init__(
        self, model: StepModel, params: TrackerParams, scratch: CropScratch | None = None
    ) -> None:
        self._model = model
        self._params = params
        self._scratch = scratch or CropScratch()
        self._geometry = CropGeometry.from_contract(model.contract)
        self._has_score = model.contract.has_score
        self._state: TargetState | None = None

    @property
    def target(self) -> TargetState | None:
        """The current state, None before start()."""
        return self._state

    @property
    def model(self) -> StepModel:
        """The model this tracker steps with."""
        return self._model

    def start(self, frame: NDArray[np.uint8], box_xywh: BoxXYWH) -> TrackResult:
        """Run the init step (template features of the box in this frame); report the box.

        Raises BoxError when the box has a non-positive size or lies outside the frame.
        """
        frame_wh = _frame_wh(frame)
        validate_box(box_xywh, frame_wh)
        x, y, w, h = (float(v) for v in box_xywh)
        center = (x + w / 2, y + h / 2)
        size = (w, h)
        fill = mean_color(frame)
        side = exemplar_side(size, self._geometry.context_amount)
        exemplar = crop_resized(
            frame, center, side, self._geometry.exemplar_size, fill, scratch=self._scratch
        )
        features = self._model.template(
            exemplar[np.newaxis], np.array([center], np.float64), np.array([size], np.float64)
        )
        self._state = TargetState(center, size, features, fill, frame_wh)
        box = (x, y, w, h)
        return TrackResult(
            center_xy=center,
            size_wh=size,
            bbox_xywh=box,
            rotated_box=box_corners(box),
            score=None,
            state=TrackState.TRACKING,
            mask=None,
        )

    def set_target(self, center_xy: PointXY, size_wh: PointXY) -> None:
        """Move the target to a given state, keeping the template (re-seeding, tests)."""
        state = self.require_state()
        center = (float(center_xy[0]), float(center_xy[1]))
        self._state = replace(
            state, center_xy=center, size_wh=(float(size_wh[0]), float(size_wh[1]))
        )

    def prepare(self, frame: NDArray[np.uint8]) -> SearchCrop:
        """This target's search crop in the frame (ValueError when the frame size changed)."""
        return prepare_search(self.require_state(), frame, self._geometry, self._scratch)

    def finish(self, search: SearchCrop, out: ModelStep) -> StepOutcome:
        """Take this target's row of a track step: update the state, report the result."""
        if not self._has_score:
            out = replace(out, score=None)  # a model without `score` never loses its target
        self._state, result = finish_step(
            self.require_state(), search, out, self._params, self._geometry
        )
        return StepOutcome(result=result, model=out)

    def step(self, frame: NDArray[np.uint8]) -> StepOutcome:
        """Track the target into this frame and report where it is (a batch of one)."""
        outcome = step_together([self], frame)[0]
        if isinstance(outcome, ValueError):
            raise outcome
        return outcome

    def require_state(self) -> TargetState:
        """The current state; RuntimeError before start()."""
        if self._state is None:
            raise RuntimeError("Tracker.start() must run before step() or set_target()")
        return self._state


def step_together(
    trackers: Sequence[Tracker], frame: NDArray[np.uint8]
) -> list[StepOutcome | ValueError]:
    """Track every target into this frame with ONE model call (all trackers share a model).

    Returns one entry per tracker, in order: its outcome, or the ValueError that keeps it from
    stepping (frame size changed); such a tracker is left unchanged.
    """
    prepared: list[SearchCrop | ValueError] = []
    for tracker in trackers:
        try:
            prepared.append(tracker.prepare(frame))
        except ValueError as exc:
            prepared.append(exc)
    ready = [
        (tracker, search)
        for tracker, search in zip(trackers, prepared, strict=True)
        if isinstance(search, SearchCrop)
    ]
    outcomes: dict[int, StepOutcome] = {}
    if ready:
        model = ready[0][0].model
        states = [tracker.require_state() for tracker, _ in ready]
        batch = model.track(
            np.stack([search.crop for _, search in ready]),
            np.array([state.center_xy for state in states], np.float64),
            np.array([state.size_wh for state in states], np.float64),
            np.array([search.window.scale_x for _, search in ready], np.float64),
            [state.features for state in states],
        )
        for row, (tracker, search) in enumerate(ready):
            outcomes[id(tracker)] = tracker.finish(search, batch.row(row))
    return [
        outcomes[id(tracker)] if isinstance(search, SearchCrop) else search
        for tracker, search in zip(trackers, prepared, strict=True)
    ]
