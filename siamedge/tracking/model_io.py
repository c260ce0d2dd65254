"""The seam between the tracker and whatever runs the model: batched protocols and their values.

The tracker depends on these protocols only; it never imports onnxruntime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from siamedge.contract import ModelContract
from siamedge.tracking.geometry import PointXY


@dataclass(frozen=True)
class ModelStep:
    """The model's outputs of one track step for one target.

    mask_probs: (E, E) float32 mask probabilities at the best cell (E = exemplar size).
    center_xy / size_wh: the new target state, not clipped (target_pos1 / target_sz1).
    best_cell_yx: (row, col) of the best anchor cell (delta_yx).
    score: the best anchor's score, None when the model has no `score` output.
    """

    mask_probs: NDArray[np.float32]
    center_xy: PointXY
    size_wh: PointXY
    best_cell_yx: tuple[int, int]
    score: float | None


@dataclass(frozen=True)
class BatchStep:
    """The model's outputs of one track step for N targets (row n: target n).

    mask_probs: (N, E, E) float32. center_xy / size_wh: (N, 2) float32, not clipped.
    best_cell_yx: (N, 2) int64. score: (N,) float32, None when the model has no `score`.
    """

    mask_probs: NDArray[np.float32]
    center_xy: NDArray[np.float32]
    size_wh: NDArray[np.float32]
    best_cell_yx: NDArray[np.int64]
    score: NDArray[np.float32] | None

    def __len__(self) -> int:
        return int(self.center_xy.shape[0])

    def row(self, index: int) -> ModelStep:
        """Target `index`'s outputs."""
        center, size, cell = self.center_xy[index], self.size_wh[index], self.best_cell_yx[index]
        return ModelStep(
            mask_probs=self.mask_probs[index],
            center_xy=(float(center[0]), float(center[1])),
            size_wh=(float(size[0]), float(size[1])),
            best_cell_yx=(int(cell[0]), int(cell[1])),
            score=None if self.score is None else float(self.score[index]),
        )

    @classmethod
    def stack(cls, steps: Sequence[ModelStep]) -> BatchStep:
        """N single-target steps as one batch (at least one step)."""
        scores = [step.score for step in steps]
        return cls(
            mask_probs=np.stack([step.mask_probs for step in steps]).astype(np.float32),
            center_xy=np.array([step.center_xy for step in steps], np.float32),
            size_wh=np.array([step.size_wh for step in steps], np.float32),
            best_cell_yx=np.array([step.best_cell_yx for step in steps], np.int64),
            score=None if any(score is None for score in scores) else np.array(scores, np.float32),
        )

    @classmethod
    def concatenate(cls, batches: Sequence[BatchStep]) -> BatchStep:
        """Batches one after another, rows in order (at least one batch); no score unless
        every batch has one."""
        scores = [batch.score for batch in batches]
        return cls(
            mask_probs=np.concatenate([batch.mask_probs for batch in batches]),
            center_xy=np.concatenate([batch.center_xy for batch in batches]),
            size_wh=np.concatenate([batch.size_wh for batch in batches]),
            best_cell_yx=np.concatenate([batch.best_cell_yx for batch in batches]),
            score=None
            if any(score is None for score in scores)
            else np.concatenate([score for score in scores if score is not None]),
        )


class StepModel(Protocol):
    """Runs the two branches of a contract model for N targets at once on uint8 HWC crops.

    Row n of every argument and result belongs to target n; targets never mix.
    """

    @property
    def contract(self) -> ModelContract:
        """The model's checked contract (crop sizes, feature shape, optional outputs)."""
        ...

    def template(
        self,
        exemplars: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
    ) -> NDArray[np.float32]:
        """Init branch: (N, E, E, 3) BGR exemplar crops of the start boxes (centres / sizes:
        (N, 2) float64 full-frame pixels) -> (N, C, h, w) template features."""
        ...

    def track(
        self,
        searches: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
        scales_x: NDArray[np.float64],
        features: Sequence[NDArray[np.float32]],
    ) -> BatchStep:
        """Track branch on (N, S, S, 3) BGR search crops, from the states before the step.

        centers_xy / sizes_wh: (N, 2) float64; scales_x: (N,); features: N arrays of (1, C, h, w)
        as template() returned them (an implementation may keep them on its device between
        calls while the same arrays come back in the same order).
        """
        ...


class SingleStepModel(Protocol):
    """A model that runs one target per call (reference implementations, test doubles)."""

    @property
    def contract(self) -> ModelContract:
        """The model's contract."""
        ...

    def template(
        self, exemplar: NDArray[np.uint8], center_xy: PointXY, size_wh: PointXY
    ) -> NDArray[np.float32]:
        """Init branch on a (E, E, 3) exemplar crop -> (1, C, h, w) template features."""
        ...

    def track(
        self,
        search: NDArray[np.uint8],
        center_xy: PointXY,
        size_wh: PointXY,
        scale_x: float,
        features: NDArray[np.float32],
    ) -> ModelStep:
        """Track branch on a (S, S, 3) search crop."""
        ...


class Serial:
    """A SingleStepModel as a StepModel: one call per target, in row order."""

    def __init__(self, model: SingleStepModel) -> None:
        self.model = model

    @property
    def contract(self) -> ModelContract:
        """The wrapped model's contract."""
        return self.model.contract

    def template(
        self,
        exemplars: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
    ) -> NDArray[np.float32]:
        """Init branch, one target after another."""
        return np.concatenate(
            [
                self.model.template(exemplar, _point(center), _point(size))
                for exemplar, center, size in zip(exemplars, centers_xy, sizes_wh, strict=True)
            ]
        )

    def track(
        self,
        searches: NDArray[np.uint8],
        centers_xy: NDArray[np.float64],
        sizes_wh: NDArray[np.float64],
        scales_x: NDArray[np.float64],
        features: Sequence[NDArray[np.float32]],
    ) -> BatchStep:
        """Track branch, one target after another."""
        rows = zip(searches, centers_xy, sizes_wh, scales_x, features, strict=True)
        return BatchStep.stack(
            [
                self.model.track(search, _point(center), _point(size), float(scale), feats)
                for search, center, size, scale, feats in rows
            ]
        )


def _point(row: NDArray[np.float64]) -> PointXY:
    return float(row[0]), float(row[1])
