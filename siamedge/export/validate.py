"""Checks an exported model of any layout: the contract, the ONNX checker, and onnxruntime (CPU)
against the PyTorch reference, row by row; batched models also against one-row calls.

Runs models through export.runners (onnxruntime via siamedge.engine); never writes a model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import torch
from numpy.typing import NDArray

from siamedge import contract as c
from siamedge.errors import ModelError
from siamedge.export.reference_step import ReferenceStep, reference_contract
from siamedge.export.runners import InitRows, LayoutRunner, Outputs, TrackRows
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
NOISE_CELL_PX = 16
"""Side of the random blocks the sample frame is smoothed from (texture for the features)."""


@dataclass(frozen=True)
class SampleRow:
    """One target of the comparison batch: its start box (template) and its track state."""

    box: BoxXYWH
    center: PointXY
    size: PointXY


# Row 0 is the reference step (the init state on the sample target); the others are elsewhere
# in the frame with their own templates: moved and reshaped, in the corner (padded crops),
# large.
SAMPLE_ROWS: tuple[SampleRow, ...] = (
    SampleRow(SAMPLE_BOX, (310.0, 220.0), (120.0, 100.0)),
    SampleRow(SAMPLE_BOX, (330.0, 205.0), (80.0, 150.0)),
    SampleRow((10.0, 400.0, 60.0, 50.0), (30.0, 440.0), (60.0, 50.0)),
    SampleRow((380.0, 60.0, 220.0, 180.0), (470.0, 160.0), (240.0, 170.0)),
)


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
class RowConsistency:
    """A batched call against one call per row: max abs differences over the rows.

    cells_differ: rows whose best cell differs between the two.
    """

    rows: int
    features: float
    mask: float
    state_px: float
    score: float
    cells_differ: tuple[int, ...]

    def problems(self, tol: Tolerances, features_scale: float) -> list[str]:
        """What is out of tolerance, in words."""
        found = [f"batch row {row}: another best cell alone" for row in self.cells_differ]
        limit = tol.features * (features_scale if tol.features_relative else 1.0)
        checks = (
            ("template features", self.features, limit),
            ("masks", self.mask, tol.mask),
            ("states (px)", self.state_px, tol.state_px),
            ("scores", self.score, tol.mask),
        )
        found += [
            f"batch rows differ from one-row calls: {name} by {value:.3g} > {bound:.3g}"
            for name, value, bound in checks
            if not value <= bound
        ]
        return found


@dataclass(frozen=True)
class Comparison:
    """Max abs differences of both steps, and whether they are within the tolerances.

    init_outputs_neutral: None when the init step has no other outputs (split layout).
    rows: batched models only. contract: why the declared tensors fail the contract, if so.
    """

    features: float
    features_scale: float
    init_outputs_neutral: bool | None
    steps: tuple[StepDiff, ...]
    tolerances: Tolerances
    rows: RowConsistency | None = None
    contract: str | None = None

    @property
    def problems(self) -> list[str]:
        """What is out of tolerance, in words (empty: all good)."""
        tol = self.tolerances
        found = [] if self.contract is None else [f"contract: {self.contract}"]
        limit = tol.features * (self.features_scale if tol.features_relative else 1.0)
        if not self.features <= limit:  # also catches NaN
            found.append(f"template features differ by {self.features:.3g} > {limit:.3g}")
        if self.init_outputs_neutral is False:
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
        if self.rows is not None:
            found += self.rows.problems(tol, self.features_scale)
        return found

    def lines(self) -> list[str]:
        """The comparison for people."""
        verdict = "OK" if not self.problems else "FAILED"
        neutral = {None: "none to check", True: "yes", False: "NO"}[self.init_outputs_neutral]
        out = [
            f"onnxruntime (CPU) vs PyTorch: {verdict}",
            f"  init step: template features max abs diff {self.features:.3g} "
            f"(largest feature {self.features_scale:.3g}); other outputs neutral: {neutral}",
        ]
        for i, step in enumerate(self.steps):
            score = "" if step.score is None else f", score {step.score:.3g}"
            out.append(
                f"  track sample {i}: cell {step.cells[0]} (PyTorch {step.cells[1]}, margin "
                f"{step.margin:.3g}); max abs diff mask {step.mask:.3g}, centre "
                f"{step.center_px:.3g} px, size {step.size_px:.3g} px{score}"
            )
        if self.rows is not None:
            rows = self.rows
            out.append(
                f"  batch of {rows.rows} vs one row per call: max abs diff features "
                f"{rows.features:.3g}, mask {rows.mask:.3g}, state {rows.state_px:.3g} px, "
                f"score {rows.score:.3g}; rows with another cell: {len(rows.cells_differ)}"
            )
        out += [f"  problem: {problem}" for problem in self.problems]
        return out


def check_onnx(path: Path) -> None:
    """onnx.checker with full shape checks; ModelError with the checker's message."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"{path}: the ONNX checker rejects the model: {exc}") from exc


ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.BOOL: "bool",
    onnx.TensorProto.INT64: "int64",
}


def declared_specs(values: Iterable[onnx.ValueInfoProto]) -> list[c.TensorSpec]:
    """The contract's view of graph inputs or outputs (symbolic dims by name)."""
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        dims: list[c.Dim] = []
        for dim in tensor.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(dim.dim_value)
            else:
                dims.append(dim.dim_param or None)
        dtype = ONNX_DTYPES.get(tensor.elem_type, str(tensor.elem_type))
        specs.append(c.TensorSpec(value.name, dtype, tuple(dims)))
    return specs


def contract_of(path: Path, init_path: Path | None = None) -> c.ModelContract:
    """Check a model file (and a split layout's init model) against the contract."""
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    contract = c.check_contract(
        declared_specs(graph.input), declared_specs(graph.output), metadata, str(path)
    )
    if init_path is not None:
        init = onnx.load(str(init_path), load_external_data=False).graph
        c.check_init_contract(
            declared_specs(init.input), declared_specs(init.output), contract, str(init_path)
        )
    return contract


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


def chw(crop: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(S, S, 3) uint8 crop -> (3, S, S) float32, the model's channel order."""
    return np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)


def init_rows(
    frame: NDArray[np.uint8], boxes: Sequence[BoxXYWH], geometry: CropGeometry
) -> InitRows:
    """Exemplar crops of start boxes in a frame, as the tracker cuts them (mean-colour padding)."""
    fill = mean_color(frame)
    exemplars, centers, sizes = [], [], []
    for x, y, w, h in boxes:
        center, size = (x + w / 2, y + h / 2), (w, h)
        side = exemplar_side(size, geometry.context_amount)
        exemplars.append(chw(crop_resized(frame, center, side, geometry.exemplar_size, fill)))
        centers.append(center)
        sizes.append(size)
    return InitRows(
        np.stack(exemplars), np.asarray(centers, np.float32), np.asarray(sizes, np.float32)
    )


def track_rows(
    frame: NDArray[np.uint8],
    states: Sequence[tuple[PointXY, PointXY]],
    features: NDArray[np.float32],
    geometry: CropGeometry,
    fill: tuple[int, int, int],
) -> TrackRows:
    """Search crops of (centre, size) states in a frame, with each row's template features."""
    images, scales = [], []
    for center, size in states:
        window = search_window(size, geometry)
        images.append(chw(crop_resized(frame, center, window.side, geometry.instance_size, fill)))
        scales.append(window.scale_x)
    return TrackRows(
        np.stack(images),
        np.asarray([center for center, _ in states], np.float32),
        np.asarray([size for _, size in states], np.float32),
        np.asarray(scales, np.float64),
        np.ascontiguousarray(features, dtype=np.float32),
    )


def _max_abs(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _cells(outputs: Outputs) -> list[tuple[int, int]]:
    return [(int(row), int(col)) for row, col in outputs[c.OUT_BEST_CELL]]


def _neutral(init: Outputs, rows: InitRows) -> bool | None:
    """The If model's init step passes the state through and returns zeros otherwise."""
    if c.OUT_MASK not in init:
        return None
    return bool(
        not np.any(init[c.OUT_MASK])
        and not np.any(init[c.OUT_BEST_CELL])
        and np.array_equal(init[c.OUT_CENTER], rows.centers)
        and np.array_equal(init[c.OUT_SIZE], rows.sizes)
        and not np.any(init.get(c.OUT_SCORE, 0.0))
    )


def row_consistency(
    runner: LayoutRunner, init: InitRows, init_out: Outputs, track: TrackRows, track_out: Outputs
) -> RowConsistency:
    """Each row of batched calls against a call with that row alone."""
    features = state = mask = score = 0.0
    cells_differ = []
    for row in range(len(track)):
        alone_init = runner.template(init.row(row))
        alone = runner.track(track.row(row))
        features = max(
            features, _max_abs(alone_init[c.OUT_FEATURES][0], init_out[c.OUT_FEATURES][row])
        )
        if _cells(alone)[0] != _cells(track_out)[row]:
            cells_differ.append(row)
            continue
        mask = max(mask, _max_abs(alone[c.OUT_MASK][0], track_out[c.OUT_MASK][row]))
        for name in (c.OUT_CENTER, c.OUT_SIZE):
            state = max(state, _max_abs(alone[name][0], track_out[name][row]))
        if c.OUT_SCORE in alone:
            score = max(score, _max_abs(alone[c.OUT_SCORE][0], track_out[c.OUT_SCORE][row]))
    return RowConsistency(len(track), features, mask, state, score, tuple(cells_differ))


def _step_diff(ort: Outputs, row: int, reference: ReferenceStep, rows: TrackRows) -> StepDiff:
    ref = reference.track_tensor(
        torch.from_numpy(rows.images[row : row + 1]),
        (float(rows.centers[row][0]), float(rows.centers[row][1])),
        (float(rows.sizes[row][0]), float(rows.sizes[row][1])),
        float(rows.scales[row]),
        rows.features[row : row + 1],
    )
    decision = reference.last_decision
    return StepDiff(
        cells=(_cells(ort)[row], ref.best_cell_yx),
        margin=decision.margin if decision is not None else float("nan"),
        mask=_max_abs(ort[c.OUT_MASK][row], ref.mask_probs),
        center_px=_max_abs(ort[c.OUT_CENTER][row], ref.center_xy),
        size_px=_max_abs(ort[c.OUT_SIZE][row], ref.size_wh),
        score=(
            _max_abs(ort[c.OUT_SCORE][row], ref.score)
            if c.OUT_SCORE in ort and ref.score is not None
            else None
        ),
    )


def compare_with_reference(path: Path, reference: ReferenceStep, fp16: bool) -> Comparison:
    """Run both steps on onnxruntime (CPU) and on PyTorch with the same inputs, SAMPLE_ROWS
    as one batch (one call per row for a single-target model)."""
    runner = LayoutRunner(path)
    try:
        contract_of(path, runner.init_path)
        contract_problem = None
    except ModelError as exc:
        contract_problem = str(exc)
    geometry = CropGeometry.from_contract(reference_contract(reference.hp))
    frame = sample_frame()
    init = init_rows(frame, [row.box for row in SAMPLE_ROWS], geometry)
    init_out = runner.template(init)
    features = np.concatenate(
        [reference.template_tensor(torch.from_numpy(one[None])).numpy() for one in init.exemplars]
    )
    states = [(row.center, row.size) for row in SAMPLE_ROWS]
    track = track_rows(frame, states, features, geometry, mean_color(frame))
    track_out = runner.track(track)
    steps = [_step_diff(track_out, row, reference, track) for row in range(len(track))]
    return Comparison(
        features=_max_abs(init_out[c.OUT_FEATURES], features),
        features_scale=float(np.max(np.abs(features))),
        init_outputs_neutral=_neutral(init_out, init),
        steps=tuple(steps),
        tolerances=FP16_TOLERANCES if fp16 else FP32_TOLERANCES,
        rows=row_consistency(runner, init, init_out, track, track_out) if runner.batched else None,
        contract=contract_problem,
    )
