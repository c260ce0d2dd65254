"""The original SiamMask step (tools/test.py siamese_track arithmetic) around the PyTorch network.

The reference an export is checked against; implements tracking.model_io.StepModel, so the
siamedge Tracker can drive it. Never used by the service (torch is an export-only extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual PyTorch alias
from numpy.typing import NDArray

from siamedge import contract as c
from siamedge.contract import (
    BASE_SIZE,
    CONTEXT_AMOUNT,
    EXEMPLAR_SIZE,
    INSTANCE_SIZE,
    SCORE_SIZE,
    TOTAL_STRIDE,
)
from siamedge.export.network import SiamMaskVOT
from siamedge.export.spec import (
    MODEL_NAME,
    TEMPLATE_FEATURE_SHAPE,
    HyperParameters,
    anchor_grid,
    cosine_window,
)
from siamedge.tracking.geometry import PointXY
from siamedge.tracking.model_io import ModelStep


@dataclass(frozen=True)
class Decision:
    """The anchor choice of one step, in the original's float64 numpy arithmetic.

    best: flat index into (anchor, row, col). center_xy / size_wh: new state, unclipped.
    score: softmax foreground probability of the best anchor. margin: best minus second-best
    penalised score (a small margin means another runtime may pick the other cell).
    """

    best: int
    center_xy: PointXY
    size_wh: PointXY
    score: float
    margin: float

    @property
    def cell_yx(self) -> tuple[int, int]:
        """(row, col) of the best anchor's grid cell."""
        row, col = divmod(self.best % (SCORE_SIZE * SCORE_SIZE), SCORE_SIZE)
        return row, col


def _change(ratio: NDArray[np.floating]) -> NDArray[np.floating]:
    return np.asarray(np.maximum(ratio, 1.0 / ratio))


def _context_side(w: NDArray[np.floating], h: NDArray[np.floating]) -> NDArray[np.floating]:
    pad = (w + h) * 0.5
    return np.asarray(np.sqrt((w + pad) * (h + pad)))


def decide(
    *,
    cls: NDArray[np.float32],
    loc: NDArray[np.float32],
    center_xy: PointXY,
    size_wh: PointXY,
    scale_x: float,
    hp: HyperParameters,
    penalty_size_wh: PointXY | None = None,
) -> Decision:
    """Decode the heads' outputs into the next state, as siamese_track does.

    cls: (1, 2A, S, S) logits; loc: (1, 4A, S, S) deltas. penalty_size_wh: the size the
    scale/ratio penalty compares against (default size_wh; other values emulate an export
    that baked a fixed size in).
    """
    anchors = anchor_grid()
    delta = loc.reshape(4, -1).copy()
    logits = torch.from_numpy(cls.reshape(2, -1).T.copy())
    score = F.softmax(logits, dim=1)[:, 1].numpy()
    delta[0] = delta[0] * anchors[2] + anchors[0]
    delta[1] = delta[1] * anchors[3] + anchors[1]
    delta[2] = np.exp(delta[2]) * anchors[2]
    delta[3] = np.exp(delta[3]) * anchors[3]

    size = np.array(size_wh, dtype=np.float64)
    in_crop = np.array(penalty_size_wh or size_wh, dtype=np.float64) * scale_x
    s_c = _change(_context_side(delta[2], delta[3]) / _context_side(in_crop[0], in_crop[1]))
    r_c = _change((in_crop[0] / in_crop[1]) / (delta[2] / delta[3]))
    penalty = np.exp(-(r_c * s_c - 1) * hp.penalty_k)
    pscore = penalty * score
    pscore = pscore * (1 - hp.window_influence) + cosine_window() * hp.window_influence
    best = int(np.argmax(pscore))
    top_two = np.partition(pscore, -2)[-2:]

    pred = delta[:, best] / scale_x
    lr = penalty[best] * score[best] * hp.lr
    new_size = size * (1 - lr) + pred[2:] * lr
    return Decision(
        best=best,
        center_xy=(float(pred[0] + center_xy[0]), float(pred[1] + center_xy[1])),
        size_wh=(float(new_size[0]), float(new_size[1])),
        score=float(score[best]),
        margin=float(top_two[1] - top_two[0]),
    )


def _chw(crop: NDArray[np.uint8]) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float()[None]


def reference_contract(hp: HyperParameters, with_score: bool = True) -> c.ModelContract:
    """The contract an export of this network declares."""
    return c.ModelContract(
        instance_size=INSTANCE_SIZE,
        exemplar_size=EXEMPLAR_SIZE,
        feature_shape=TEMPLATE_FEATURE_SHAPE,
        total_stride=TOTAL_STRIDE,
        base_size=BASE_SIZE,
        context_amount=CONTEXT_AMOUNT,
        has_score=with_score,
        seg_thr=hp.seg_thr,
        lost_score=None,
        model_name=MODEL_NAME,
        metadata={},
    )


class ReferenceStep:
    """The PyTorch network with the original tracker arithmetic, as a tracking StepModel."""

    def __init__(self, net: SiamMaskVOT, hp: HyperParameters) -> None:
        self._net = net
        self._hp = hp
        self._contract = reference_contract(hp)
        self.last_decision: Decision | None = None

    @property
    def hp(self) -> HyperParameters:
        """The hyper-parameters of the tracker arithmetic."""
        return self._hp

    @property
    def contract(self) -> c.ModelContract:
        """The contract an export of this network declares (score output included)."""
        return self._contract

    def template(
        self, exemplar: NDArray[np.uint8], center_xy: PointXY, size_wh: PointXY
    ) -> NDArray[np.float32]:
        """(1, 256, 7, 7) template features of a (127, 127, 3) uint8 BGR exemplar crop."""
        with torch.inference_mode():
            features = self._net.template(_chw(exemplar))
        return np.asarray(features.numpy(), dtype=np.float32)

    def template_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """Template features of a (1, 3, 127, 127) float crop (the model input's top-left)."""
        with torch.inference_mode():
            return self._net.template(image)

    def track(
        self,
        search: NDArray[np.uint8],
        center_xy: PointXY,
        size_wh: PointXY,
        scale_x: float,
        features: NDArray[np.float32],
    ) -> ModelStep:
        """One track step on a (255, 255, 3) uint8 BGR search crop."""
        return self.track_tensor(_chw(search), center_xy, size_wh, scale_x, features)

    def track_tensor(
        self,
        image: torch.Tensor,
        center_xy: PointXY,
        size_wh: PointXY,
        scale_x: float,
        features: NDArray[np.float32],
    ) -> ModelStep:
        """One track step on a (1, 3, 255, 255) float search crop (the model input `im`)."""
        with torch.inference_mode():
            outputs = self._net.search(image, torch.from_numpy(features))
            decision = decide(
                cls=outputs.cls.numpy(),
                loc=outputs.loc.numpy(),
                center_xy=center_xy,
                size_wh=size_wh,
                scale_x=scale_x,
                hp=self._hp,
            )
            row, col = decision.cell_yx
            mask = torch.sigmoid(self._net.refine(outputs, row, col)).numpy()
        self.last_decision = decision
        return ModelStep(
            mask_probs=np.asarray(mask, dtype=np.float32),
            center_xy=decision.center_xy,
            size_wh=decision.size_wh,
            best_cell_yx=(row, col),
            score=decision.score,
        )
