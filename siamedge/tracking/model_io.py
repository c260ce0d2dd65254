"""The seam between the tracker and whatever runs the model: one protocol, one output value.

The tracker depends on this protocol only; it never imports onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from siamedge.contract import ModelContract
from siamedge.tracking.geometry import PointXY


@dataclass(frozen=True)
class ModelStep:
    """The model's outputs of one track step.

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


class StepModel(Protocol):
    """Runs the two branches of a contract model on uint8 HWC crops."""

    @property
    def contract(self) -> ModelContract:
        """The model's checked contract (crop sizes, feature shape, optional outputs)."""
        ...

    def template(
        self, exemplar: NDArray[np.uint8], center_xy: PointXY, size_wh: PointXY
    ) -> NDArray[np.float32]:
        """Init branch: template features of a (E, E, 3) BGR exemplar crop of the box
        centred on center_xy with size size_wh (full-frame pixels)."""
        ...

    def track(
        self,
        search: NDArray[np.uint8],
        center_xy: PointXY,
        size_wh: PointXY,
        scale_x: float,
        features: NDArray[np.float32],
    ) -> ModelStep:
        """Track branch on a (S, S, 3) BGR search crop, from the state before the step."""
        ...
