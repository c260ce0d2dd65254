"""SiamMask VOT's fixed network geometry, its anchors and window, and the tunable hyper-parameters.

Plain values and numpy only: never imports torch or onnx, so the CLI can read the defaults.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from siamedge.contract import (
    EXEMPLAR_SIZE,
    SCORE_SIZE,
    TOTAL_STRIDE,
    geometry_metadata,
    hyper_parameter_problem,
)
from siamedge.errors import ModelError

ANCHOR_RATIOS = (0.33, 0.5, 1.0, 2.0, 3.0)
ANCHOR_SCALES = (8.0,)
ANCHOR_COUNT = len(ANCHOR_RATIOS) * len(ANCHOR_SCALES)
FEATURE_CHANNELS = 256
TEMPLATE_BORDER = 4
"""The adjust layer keeps the centre of the 15x15 template map: [4:-4] -> 7x7."""
TEMPLATE_FEATURE_SIDE = 7
TEMPLATE_FEATURE_SHAPE = (1, FEATURE_CHANNELS, TEMPLATE_FEATURE_SIDE, TEMPLATE_FEATURE_SIDE)
"""The model's `z_features0` / `z_features1`."""
MASK_SIDE = EXEMPLAR_SIZE
BN_EPS = 1e-5
"""torch.nn.BatchNorm2d's default epsilon, which the checkpoint was trained with."""

MODEL_NAME = "siammask-vot"

SINGLE_TARGET_BATCH = 1
"""ExportOptions.batch of the single-target layout (the public export's, no batch dimension)."""
DEFAULT_BATCH: int | None = None
"""What `siamedge export` writes by default: the batched layout with a dynamic batch."""
BATCH_DIM = "batch"
"""Name of the symbolic leading dimension of the batched layouts (docs/model-layouts.md)."""
INIT_MODEL_SUFFIX = ".init.onnx"
"""The split layout's init model is `<track model stem>.init.onnx`, beside the track model."""

DEFAULT_OPSET = 17
"""The public export's opset; TensorRT 10's ONNX parser takes 9 to 20."""
MIN_OPSET = 13
"""Resize with a `sizes` input and Pad with a `pads` input need opset 13."""


@dataclass(frozen=True)
class HyperParameters:
    """Tracker settings baked into an export (defaults: SiamMask's siammask_sharp/config.json).

    penalty_k: weight of the scale/ratio change penalty. window_influence: weight of the cosine
    window in the anchor choice. lr: size update rate (times penalty x score of the best anchor).
    seg_thr: mask probability threshold, applied by the caller (recorded in the metadata).
    """

    penalty_k: float = 0.04
    window_influence: float = 0.40
    lr: float = 1.0
    seg_thr: float = 0.35

    def __post_init__(self) -> None:
        """ModelError for a value a model may not record (contract.HYPER_PARAMETER_RANGES)."""
        for name, value in asdict(self).items():
            problem = hyper_parameter_problem(name, value)
            if problem is not None:
                raise ModelError(problem)

    def metadata(self) -> dict[str, object]:
        """The contract's hyper-parameter object (contract.HYPER_PARAMETER_KEYS)."""
        return {
            **geometry_metadata(),
            "penalty_k": self.penalty_k,
            "window_influence": self.window_influence,
            "lr": self.lr,
            "seg_thr": self.seg_thr,
            "ratios": list(ANCHOR_RATIOS),
            "scales": list(ANCHOR_SCALES),
        }

    def metadata_json(self) -> str:
        """metadata() as compact JSON with sorted keys."""
        return json.dumps(self.metadata(), sort_keys=True)


def init_model_path(track_model: Path) -> Path:
    """Where the split layout's init model goes for a track model path."""
    return track_model.with_name(track_model.stem + INIT_MODEL_SUFFIX)


def anchor_sizes() -> NDArray[np.float32]:
    """(A, 2) float32 anchor (w, h) in search-crop pixels, in ratio order.

    SiamMask truncates the base side to an integer before scaling: ws = int(sqrt(stride^2 / r)),
    hs = int(ws * r), so ratio 0.33 gives 104 x 32, not the exact aspect.
    """
    area = TOTAL_STRIDE * TOTAL_STRIDE
    sizes: list[tuple[float, float]] = []
    for ratio in ANCHOR_RATIOS:
        base_w = int(math.sqrt(area / ratio))
        base_h = int(base_w * ratio)
        sizes.extend((base_w * scale, base_h * scale) for scale in ANCHOR_SCALES)
    return np.asarray(sizes, dtype=np.float32)


def cell_offsets() -> NDArray[np.float32]:
    """(SCORE_SIZE,) float32 offset of each grid cell's centre from the crop centre, in pixels."""
    first = -(SCORE_SIZE // 2) * TOTAL_STRIDE
    return np.asarray([first + TOTAL_STRIDE * i for i in range(SCORE_SIZE)], dtype=np.float32)


def anchor_grid() -> NDArray[np.float32]:
    """(4, A * S * S) float32 anchors (cx, cy, w, h); flat index = anchor * S * S + row * S + col.

    This is the layout of the original tracker's score vector (anchor-major, then row, col).
    """
    sizes = anchor_sizes()
    offsets = cell_offsets()
    shape = (ANCHOR_COUNT, SCORE_SIZE, SCORE_SIZE)
    cx = np.broadcast_to(offsets[None, None, :], shape)
    cy = np.broadcast_to(offsets[None, :, None], shape)
    w = np.broadcast_to(sizes[:, 0, None, None], shape)
    h = np.broadcast_to(sizes[:, 1, None, None], shape)
    return np.stack([cx, cy, w, h]).reshape(4, -1).astype(np.float32)


def cosine_window() -> NDArray[np.float64]:
    """(A * S * S,) float64 Hann window over the grid, repeated for each anchor."""
    window = np.outer(np.hanning(SCORE_SIZE), np.hanning(SCORE_SIZE))
    return np.tile(window.ravel(), ANCHOR_COUNT)
