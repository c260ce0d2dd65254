"""Checks an exported model: the ONNX checker, and onnxruntime (CPU) against the PyTorch reference.

Runs the model through siamedge.engine (the one owner of onnxruntime); never writes the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import torch
from numpy.typing import NDArray

from siamedge import contract as c
from siamedge.config import ModelSettings
from siamedge.engine import Engine
from siamedge.errors import ModelError
from siamedge.export.reference_step import ReferenceStep
from siamedge.tracking.crop import crop_resized, mean_color
from siamedge.tracking.geometry import (
    BoxXYWH,
    CropGeometry,
    PointXY,
    exemplar_side,
    search_window,
)

SAMPLE_FRAME_WH = (640, 480)
SAMPLE_SEED = 20190308
SAMPLE_BOX: BoxXYWH = (250.0, 170.0, 120.0, 100.0)
# Track states (centre, size) for the comparison: the init state, then a moved, reshaped target.
SAMPLE_STATES: tuple[tuple[PointXY, PointXY], ...] = (
    ((310.0, 220.0), (120.0, 100.0)),
    ((330.0, 205.0), (80.0, 150.0)),
)
NOISE_CELL_PX = 16
"""Side of the random blocks the sample frame is smoothed from (texture for the features)."""


@dataclass(frozen=True)
class Tolerances:
    """Largest differences onnxruntime may show against the PyTorch reference.

    features: max abs difference of the template features, as a fraction of their largest
    magnitude when `features_relative`. cell_margin: below this lead of the best penalised
    score over the second best, the two runtimes may pick different cells (a near-tie).
    """

    features: float
    features_relative: bool
    mask: float
    state_px: float
    cell_margin: float


FP32_TOLERANCES = Tolerances(
    features=1e-3, features_relative=False, mask=1e-3, state_px=0.01, cell_margin=1e-4
)
"""The reference trace's tolerances (about 100x the float32/float64 spread)."""
FP16_TOLERANCES = Tolerances(
    features=1e-2, features_relative=True, mask=0.05, state_px=1.0, cell_margin=1e-2
)
"""float16 keeps about 3 significant digits: 1% of the feature scale, a pixel of state."""


@dataclass(frozen=True)
class StepDiff:
    """One track step, onnxruntime against PyTorch.

    cells: (onnxruntime, PyTorch) best cells; the other numbers are only compared when they
    agree. margin: PyTorch's lead of the best penalised score over the second best.
    """

    cells: tuple[tuple[int, int], tuple[int, int]]
    margin: float
    mask: float
    center_px: float
    size_px: float
    score: float | None

    @property
    def same_cell(self) -> bool:
        """Both runtimes chose the same anchor cell."""
        return self.cells[0] == self.cells[1]


@dataclass(frozen=True)
class Comparison:
    """Max abs differences of both branches, and whether they are within the tolerances."""

    features: float
    features_scale: float
    init_outputs_neutral: bool
    steps: tuple[StepDiff, ...]
    tolerances: Tolerances

    @property
    def problems(self) -> list[str]:
        """What is out of tolerance, in words (empty: all good)."""
        tol = self.tolerances
        found = []
        limit = tol.features * (self.features_scale if tol.features_relative else 1.0)
        if not self.features <= limit:  # also catches NaN
            found.append(f"template features differ by {self.features:.3g} > {limit:.3g}")
        if not self.init_outputs_neutral:
            found.append("the init branch does not return zeros / the unchanged state")
        for i, step in enumerate(self.steps):
            if not step.same_cell:
                if step.margin >= tol.cell_margin:
                    found.append(
                        f"track sample {i}: best cell {step.cells[0]} != {step.cells[1]} "
                        f"(margin {step.margin:.3g})"
                    )
                continue
            if not step.mask <= tol.mask:
                found.append(f"track sample {i}: mask differs by {step.mask:.3g} > {tol.mask}")
            if not max(step.center_px, step.size_px) <= tol.state_px:
                found.append(
                    f"track sample {i}: state differs by "
                    f"{max(step.center_px, step.size_px):.3g} px > {tol.state_px}"
                )
        return found

    def lines(self) -> list[str]:
        """The comparison for people."""
        verdict = "OK" if not self.problems else "FAILED"
        out = [
            f"onnxruntime (CPU) vs PyTorch: {verdict}",
            f"  init branch: template features max abs diff {self.features:.3g} "
            f"(largest feature {self.features_scale:.3g}); "
            f"other outputs neutral: {'yes' if self.init_outputs_neutral else 'NO'}",
        ]
        for i, step in enumerate(self.steps):
            score = "" if step.score is None else f", score {step.score:.3g}"
            out.append(
                f"  track sample {i}: cell {step.cells[0]} (PyTorch {step.cells[1]}, margin "
                f"{step.margin:.3g}); max abs diff mask {step.mask:.3g}, centre "
                f"{step.center_px:.3g} px, size {step.size_px:.3g} px{score}"
            )
        out += [f"  problem: {problem}" for problem in self.problems]
        return out


def check_onnx(path: Path) -> None:
    """onnx.checker with full shape checks; ModelError with the checker's message."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"{path}: the ONNX checker rejects the model: {exc}") from exc


def sample_frame() -> NDArray[np.uint8]:
    """A deterministic textured (H, W, 3) uint8 BGR frame with a bright ellipse as the target."""
    width, height = SAMPLE_FRAME_WH
    rng = np.random.default_rng(SAMPLE_SEED)
    coarse = rng.integers(0, 256, (height // NOISE_CELL_PX, width // NOISE_CELL_PX, 3), np.uint8)
    frame = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    x, y, w, h = SAMPLE_BOX
    center = (round(x + w / 2), round(y + h / 2))
    cv2.ellipse(frame, center, (round(w / 2), round(h / 2)), 30.0, 0.0, 360.0, (40, 200, 240), -1)
    return np.asarray(frame, dtype=np.uint8)


def run_model(
    session: Any,
    *,
    image: NDArray[np.float32],
    center: PointXY,
    size: PointXY,
    scale_x: float,
    features: NDArray[np.float32],
    first_time: bool,
) -> dict[str, NDArray[Any]]:
    """All outputs of one session.run of a contract model, by name."""
    feeds = {
        c.IN_IMAGE: image,
        c.IN_CENTER: np.asarray(center, np.float32),
        c.IN_SIZE: np.asarray(size, np.float32),
        c.IN_SCALE: np.asarray(scale_x, np.float64),
        c.IN_FEATURES: features,
        c.IN_FIRST_TIME: np.asarray(first_time),
    }
    names = [out.name for out in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _chw(crop: NDArray[np.uint8]) -> NDArray[np.float32]:
    return np.ascontiguousarray(crop.transpose(2, 0, 1)[None], dtype=np.float32)


def _max_abs(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def compare_with_reference(path: Path, reference: ReferenceStep, fp16: bool) -> Comparison:
    """Run both branches on onnxruntime (CPU) and on PyTorch with the same inputs."""
    engine = Engine.load(str(path), ModelSettings(providers=["cpu"], warmup=False))
    session = engine.session
    geometry = CropGeometry.from_contract(engine.contract)
    frame = sample_frame()
    fill = mean_color(frame)
    x, y, w, h = SAMPLE_BOX
    box_center, box_size = (x + w / 2, y + h / 2), (w, h)

    side = exemplar_side(box_size, geometry.context_amount)
    exemplar = _chw(crop_resized(frame, box_center, side, geometry.exemplar_size, fill))
    image = np.zeros((1, 3, geometry.instance_size, geometry.instance_size), np.float32)
    image[:, :, : geometry.exemplar_size, : geometry.exemplar_size] = exemplar
    zeros = np.zeros(engine.contract.feature_shape, np.float32)
    init = run_model(
        session,
        image=image,
        center=box_center,
        size=box_size,
        scale_x=1.0,
        features=zeros,
        first_time=True,
    )
    features = reference.template_tensor(torch.from_numpy(exemplar)).numpy()
    neutral = (
        not np.any(init[c.OUT_MASK])
        and not np.any(init[c.OUT_BEST_CELL])
        and np.array_equal(init[c.OUT_CENTER], np.asarray(box_center, np.float32))
        and np.array_equal(init[c.OUT_SIZE], np.asarray(box_size, np.float32))
        and not np.any(init.get(c.OUT_SCORE, 0.0))
    )

    steps = []
    for center, size in SAMPLE_STATES:
        window = search_window(size, geometry)
        search = _chw(crop_resized(frame, center, window.side, geometry.instance_size, fill))
        ort = run_model(
            session,
            image=search,
            center=center,
            size=size,
            scale_x=window.scale_x,
            features=features,
            first_time=False,
        )
        ref = reference.track_tensor(
            torch.from_numpy(search), center, size, window.scale_x, features
        )
        decision = reference.last_decision
        ort_cell = (int(ort[c.OUT_BEST_CELL][0]), int(ort[c.OUT_BEST_CELL][1]))
        steps.append(
            StepDiff(
                cells=(ort_cell, ref.best_cell_yx),
                margin=decision.margin if decision is not None else float("nan"),
                mask=_max_abs(ort[c.OUT_MASK], ref.mask_probs),
                center_px=_max_abs(ort[c.OUT_CENTER], ref.center_xy),
                size_px=_max_abs(ort[c.OUT_SIZE], ref.size_wh),
                score=(
                    _max_abs(ort[c.OUT_SCORE], ref.score)
                    if c.OUT_SCORE in ort and ref.score is not None
                    else None
                ),
            )
        )
    return Comparison(
        features=_max_abs(init[c.OUT_FEATURES], features),
        features_scale=float(np.max(np.abs(features))),
        init_outputs_neutral=bool(neutral),
        steps=tuple(steps),
        tolerances=FP16_TOLERANCES if fp16 else FP32_TOLERANCES,
    )
