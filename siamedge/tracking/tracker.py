"""One target's SiamMask tracking state and its init / track steps around a StepModel.

Pure computation on the frames it is handed: no I/O, no logging of frames, no threads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from siamedge.config import TrackerSettings
from siamedge.contract import ModelContract
from siamedge.tracking.crop import BGR, crop_resized, mean_color
from siamedge.tracking.geometry import (
    BoxXYWH,
    CropGeometry,
    PointXY,
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
        """The configured values; the mask threshold comes from the model when it records one."""
        return cls(
            seg_thr=contract.seg_thr if contract.seg_thr is not None else settings.seg_thr,
            min_contour_area=settings.min_contour_area,
            lost_score=settings.lost_score,
            lost_frames=settings.lost_frames,
        )


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


def _frame_wh(frame: NDArray[np.uint8]) -> tuple[int, int]:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"frames must be (H, W, 3) uint8 BGR, got {frame.shape} {frame.dtype}")
    return int(frame.shape[1]), int(frame.shape[0])


class Tracker:
    """Follows one target through frames of one size. Create one per target."""

    def __init__(self, model: StepModel, params: TrackerParams) -> None:
        self._model = model
        self._params = params
        self._geometry = CropGeometry.from_contract(model.contract)
        self._has_score = model.contract.has_score
        self._state: TargetState | None = None

    @property
    def target(self) -> TargetState | None:
        """The current state, None before start()."""
        return self._state

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
        exemplar = crop_resized(frame, center, side, self._geometry.exemplar_size, fill)
        features = self._model.template(exemplar, center, size)
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
        state = self._require_state()
        center = (float(center_xy[0]), float(center_xy[1]))
        self._state = replace(
            state, center_xy=center, size_wh=(float(size_wh[0]), float(size_wh[1]))
        )

    def step(self, frame: NDArray[np.uint8]) -> StepOutcome:
        """Track the target into this frame and report where it is."""
        state = self._require_state()
        frame_wh = _frame_wh(frame)
        if frame_wh != state.frame_wh:
            raise ValueError(
                f"frame size changed from {state.frame_wh} to {frame_wh}; restart the target"
            )
        geometry = self._geometry
        search = search_window(state.size_wh, geometry)
        crop = crop_resized(
            frame, state.center_xy, search.side, geometry.instance_size, state.fill_bgr
        )
        out = self._model.track(
            crop, state.center_xy, state.size_wh, search.scale_x, state.features
        )

        placement = mask_placement(state.center_xy, search.side, out.best_cell_yx, geometry)
        mask, contour_area = project_mask(out.mask_probs, placement, frame_wh, self._params.seg_thr)
        rotated = rotated_box_of(mask.contour_xy, contour_area, self._params.min_contour_area)
        if rotated is None:
            rotated = box_corners(center_box(out.center_xy, out.size_wh))
        center, size = clip_state(out.center_xy, out.size_wh, frame_wh)
        low_steps = self._low_score_steps(state.low_score_steps, out.score)
        lost = low_steps >= self._params.lost_frames
        self._state = replace(state, center_xy=center, size_wh=size, low_score_steps=low_steps)

        result = TrackResult(
            center_xy=center,
            size_wh=size,
            bbox_xywh=mask_bbox(mask) or center_box(center, size),
            rotated_box=rotated,
            score=out.score,
            state=TrackState.LOST if lost else TrackState.TRACKING,
            mask=mask,
        )
        return StepOutcome(result=result, model=out)

    def _low_score_steps(self, previous: int, score: float | None) -> int:
        if not self._has_score or score is None:
            return 0
        return previous + 1 if score < self._params.lost_score else 0

    def _require_state(self) -> TargetState:
        if self._state is None:
            raise RuntimeError("Tracker.start() must run before step() or set_target()")
        return self._state
