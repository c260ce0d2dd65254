"""builtin-ncc: the committed file is what the builder makes, it has the batched layout with
static shapes (but the batch) and plain ops, rows of a batch never mix, and both branches do their
job on onnxruntime CPU (shift, mask, size, loss).

The behaviour tests run the builder's output on onnxruntime directly (the staleness test ties it
to the committed file). The scene: a textured orange ellipse (80 x 48 box) on the synthetic
clip's background. With that box s_z = sqrt(144 * 112) ~= 127 and scale_x ~= 1, so exemplar and
search crops are plain slices of the scene and a shift of k * 8 pixels moves the target exactly
k score cells.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import shape_inference

from siamedge import contract as c
from siamedge.builtin_model import (
    COLOUR_BINS,
    COLOUR_LEVELS,
    FEATURE_CHANNELS,
    MODEL_NAME,
    PRODUCER,
    TARGET_FEATURE_SHAPE,
    HyperParameters,
    model_bytes,
)
from siamedge.config import ModelSettings, SyntheticSettings
from siamedge.engine import Engine
from siamedge.models import BUILTIN_FILE
from siamedge.sources.synthetic import SyntheticClip

HP = HyperParameters()
EXEMPLAR = 127
INSTANCE = 255
STRIDE = 8
CENTER_CELL = 12
SIZE_WH = (80.0, 48.0)
CENTER_XY = (320, 240)
SCENE_WH = (640, 480)
ORANGE_BGR = (30, 120, 215)
BATCH_DIM = "batch"
# Batched rows against the same rows one at a time: MatMul over a batch may sum in another
# order, so float outputs agree to rounding, cells exactly.
ROW_ATOL = 1e-5

# Ops the TensorRT ONNX parser supports with static shapes (checked against its operator list).
PLAIN_OPS = {
    "Abs", "Add", "ArgMax", "AveragePool", "Cast", "Clip", "Concat", "Constant", "Conv", "Div",
    "ConstantOfShape", "Equal", "Floor", "Gather", "GatherElements", "GatherND", "Greater",
    "Identity", "If", "Less", "MatMul", "Max", "Min", "Mul", "Pad", "Reciprocal", "ReduceMax",
    "ReduceMean", "ReduceMin", "ReduceSum", "Relu", "Reshape", "Shape", "Slice", "Sqrt", "Sub",
    "Transpose", "Unsqueeze", "Where",
}  # fmt: skip

ONNX_TYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.DOUBLE: "float64",
              onnx.TensorProto.BOOL: "bool", onnx.TensorProto.INT64: "int64"}  # fmt: skip


def s_z(size_wh: tuple[float, float]) -> float:
    context = 0.5 * (size_wh[0] + size_wh[1])
    return math.sqrt((size_wh[0] + context) * (size_wh[1] + context))


SCALE_X = EXEMPLAR / s_z(SIZE_WH)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(background, scene with the target, (H, W) bool target mask)."""
    width, height = SCENE_WH
    background = SyntheticClip(SyntheticSettings(width=width, height=height, seed=5)).background
    mask_u8 = np.zeros((height, width), np.uint8)
    axes = (int(SIZE_WH[0] / 2), int(SIZE_WH[1] / 2))
    cv2.ellipse(mask_u8, CENTER_XY, axes, 0, 0, 360, 255, thickness=-1)
    mask = mask_u8 > 0
    rng = np.random.default_rng(11)
    texture = np.array(ORANGE_BGR, np.int16) + rng.integers(-25, 26, (height, width, 3))
    stripes = (np.arange(width)[None, :] // 6) % 2 == 0
    texture[stripes & mask] = (texture[stripes & mask] * [1, 1, 0.75]).astype(np.int16)
    image = background.copy()
    image[mask] = np.clip(texture[mask], 0, 255).astype(np.uint8)
    return background.copy(), image, mask


@pytest.fixture(scope="module")
def session() -> Any:
    """The builder's model on onnxruntime CPU, one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model_bytes(), options, providers=["CPUExecutionProvider"])


def crop(image: np.ndarray, center_xy: tuple[float, float], side: int) -> np.ndarray:
    """A side x side slice centred like the caller's crop (side odd), as [3, S, S] float32."""
    x0, y0 = int(center_xy[0]) - side // 2, int(center_xy[1]) - side // 2
    patch = image[y0 : y0 + side, x0 : x0 + side]
    assert patch.shape == (side, side, 3)
    return np.ascontiguousarray(patch.transpose(2, 0, 1)).astype(np.float32)


@dataclass(frozen=True)
class Row:
    """One target's inputs: im [3, S, S] or an exemplar [3, E, E]; features [C, h, w]."""

    im: np.ndarray
    center_xy: tuple[float, float]
    size_wh: tuple[float, float]
    features: np.ndarray | None = None
    scale_x: float = SCALE_X

    def image(self) -> np.ndarray:
        """[3, S, S]: the exemplar in the top-left corner, zeros elsewhere, as CONTRACT.md says."""
        full = np.zeros((3, INSTANCE, INSTANCE), np.float32)
        full[:, : self.im.shape[1], : self.im.shape[2]] = self.im
        return full


def run_batch(session: Any, rows: list[Row], first_time: bool) -> dict[str, np.ndarray]:
    """One session.run over all rows: every output [N, ...]."""
    features = [
        np.zeros(TARGET_FEATURE_SHAPE, np.float32) if row.features is None else row.features
        for row in rows
    ]
    feeds = {
        c.IN_IMAGE: np.stack([row.image() for row in rows]),
        c.IN_CENTER: np.array([row.center_xy for row in rows], np.float32),
        c.IN_SIZE: np.array([row.size_wh for row in rows], np.float32),
        c.IN_SCALE: np.array([row.scale_x for row in rows], np.float64),
        c.IN_FEATURES: np.stack(features),
        c.IN_FIRST_TIME: np.array(first_time),
    }
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


def run(
    session: Any,
    im: np.ndarray,
    center_xy: tuple[float, float],
    size_wh: tuple[float, float],
    features: np.ndarray | None,
    first_time: bool,
    scale_x: float = SCALE_X,
) -> dict[str, np.ndarray]:
    """One target as a batch of one: its row of every output."""
    out = run_batch(session, [Row(im, center_xy, size_wh, features, scale_x)], first_time)
    return {name: value[0] for name, value in out.items()}


def template(session: Any, image: np.ndarray, size_wh: tuple[float, float] = SIZE_WH) -> Any:
    out = run(session, crop(image, CENTER_XY, EXEMPLAR), CENTER_XY, size_wh, None, True)
    return out[c.OUT_FEATURES]


def colour_probability(features: np.ndarray, pixels_bgr: np.ndarray) -> np.ndarray:
    """The colour table packed in z_features, looked up for (N, 3) uint8 BGR pixels."""
    table = features[FEATURE_CHANNELS:].reshape(-1)[:COLOUR_BINS]
    levels = pixels_bgr.astype(np.int64) * COLOUR_LEVELS // 256
    bins = (levels[:, 0] * COLOUR_LEVELS + levels[:, 1]) * COLOUR_LEVELS + levels[:, 2]
    return table[bins]


def test_committed_model_is_what_the_builder_makes(repo_root: Path) -> None:
    committed = (repo_root / "models" / BUILTIN_FILE).read_bytes()
    assert model_bytes() == committed, (
        f"models/{BUILTIN_FILE} is stale: run `python -m siamedge.builtin_model` and commit it"
    )


def graph_specs(values: Any) -> list[c.TensorSpec]:
    """Declared tensors; a symbolic dimension by its name."""
    return [
        c.TensorSpec(
            value.name,
            ONNX_TYPES[value.type.tensor_type.elem_type],
            tuple(
                dim.dim_value if dim.HasField("dim_value") else dim.dim_param
                for dim in value.type.tensor_type.shape.dim
            ),
        )
        for value in values
    ]


def test_batched_layout_declared() -> None:
    model = onnx.load_from_string(model_bytes())
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert metadata[c.META_LAYOUT] == c.LAYOUT_IF == "if"
    assert metadata[c.META_PRODUCER] == PRODUCER
    shapes = {spec.name: spec.shape for spec in graph_specs(model.graph.input)}
    assert shapes == {
        c.IN_IMAGE: (BATCH_DIM, 3, INSTANCE, INSTANCE),
        c.IN_CENTER: (BATCH_DIM, 2),
        c.IN_SIZE: (BATCH_DIM, 2),
        c.IN_SCALE: (BATCH_DIM,),
        c.IN_FEATURES: (BATCH_DIM, *TARGET_FEATURE_SHAPE),
        c.IN_FIRST_TIME: (),
    }
    shapes = {spec.name: spec.shape for spec in graph_specs(model.graph.output)}
    assert shapes == {
        c.OUT_MASK: (BATCH_DIM, EXEMPLAR, EXEMPLAR),
        c.OUT_CENTER: (BATCH_DIM, 2),
        c.OUT_SIZE: (BATCH_DIM, 2),
        c.OUT_FEATURES: (BATCH_DIM, *TARGET_FEATURE_SHAPE),
        c.OUT_BEST_CELL: (BATCH_DIM, 2),
        c.OUT_SCORE: (BATCH_DIM,),
    }


def test_contract_check_from_the_graph() -> None:
    model = onnx.load_from_string(model_bytes())
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    checked = c.check_contract(
        graph_specs(model.graph.input), graph_specs(model.graph.output), metadata, "builtin"
    )
    assert checked.model_name == MODEL_NAME == "builtin-ncc"
    assert metadata[c.META_PRODUCER] == PRODUCER
    assert checked.instance_size == INSTANCE and checked.exemplar_size == EXEMPLAR
    assert checked.score_size == 25
    assert checked.feature_shape == (1, *TARGET_FEATURE_SHAPE)
    assert checked.batched and checked.max_batch is None and checked.layout == c.LAYOUT_IF
    assert checked.has_score
    assert checked.seg_thr == HP.seg_thr
    params = json.loads(metadata[c.META_HYPER_PARAMETERS])
    assert set(params) >= {"exemplar_size", "instance_size", "total_stride", "seg_thr", "lr"}
    assert params["window_influence"] == HP.window_influence


def test_engine_loads_and_warms_up_builtin() -> None:
    engine = Engine.load("builtin", ModelSettings(providers=["cpu"], warmup=True))
    assert engine.contract.model_name == MODEL_NAME
    assert engine.contract.feature_shape == (1, *TARGET_FEATURE_SHAPE)
    assert engine.contract.batched
    assert engine.provider == "CPUExecutionProvider"


def test_one_if_with_matching_static_branches_and_plain_ops() -> None:
    model = shape_inference.infer_shapes(
        onnx.load_from_string(model_bytes()), strict_mode=True, data_prop=True
    )
    assert [node.op_type for node in model.graph.node] == ["If"]
    switch = model.graph.node[0]
    assert list(switch.input) == [c.IN_FIRST_TIME]
    branches = {attr.name: attr.g for attr in switch.attribute}
    declared = [
        [(spec.dtype, spec.shape) for spec in graph_specs(branch.output)]
        for branch in (branches["then_branch"], branches["else_branch"])
    ]
    outputs = [(spec.dtype, spec.shape) for spec in graph_specs(model.graph.output)]
    assert declared[0] == declared[1] == outputs
    for branch in branches.values():
        assert {node.op_type for node in branch.node} <= PLAIN_OPS
        assert not any(
            attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for node in branch.node
            for attr in node.attribute
        )
        # Static shapes but a leading batch dimension (inferred values keep its name).
        dynamic = [
            value.name
            for value in list(branch.value_info) + list(branch.output)
            for index, dim in enumerate(value.type.tensor_type.shape.dim)
            if not dim.HasField("dim_value") and (index > 0 or dim.dim_param != BATCH_DIM)
        ]
        assert dynamic == []
        assert len(branch.value_info) > 100  # every intermediate tensor got a shape
        # TensorRT takes Conv weights as constants only; the NCC's template is a runtime tensor
        # whose group count would change with the batch, so it must not be a Conv weight.
        constants = {output for node in branch.node if node.op_type == "Constant"
                     for output in node.output}  # fmt: skip
        assert all(node.input[1] in constants for node in branch.node if node.op_type == "Conv")


def test_model_is_small(repo_root: Path) -> None:
    assert (repo_root / "models" / BUILTIN_FILE).stat().st_size < 1 << 20


def test_init_outputs_template_and_colour_model(session: Any, scene: Any) -> None:
    _, image, mask = scene
    out = run(session, crop(image, CENTER_XY, EXEMPLAR), CENTER_XY, SIZE_WH, None, True)
    features = out[c.OUT_FEATURES]
    assert features.shape == TARGET_FEATURE_SHAPE and np.isfinite(features).all()
    assert not np.array_equal(features, np.zeros(TARGET_FEATURE_SHAPE, np.float32))
    assert not out[c.OUT_MASK].any()
    assert out[c.OUT_BEST_CELL].tolist() == [0, 0]
    assert out[c.OUT_CENTER].tolist() == list(CENTER_XY)
    assert out[c.OUT_SIZE].tolist() == list(SIZE_WH)
    target = colour_probability(features, image[mask])
    surroundings = colour_probability(features, image[~mask])
    assert target.mean() > 0.8
    assert surroundings.mean() < 0.05


def test_init_ignores_scale_and_incoming_features(session: Any, scene: Any) -> None:
    _, image, _ = scene
    exemplar = crop(image, CENTER_XY, EXEMPLAR)
    first = run(session, exemplar, CENTER_XY, SIZE_WH, None, True, scale_x=1.0)
    noise = np.random.default_rng(0).normal(size=TARGET_FEATURE_SHAPE).astype(np.float32)
    second = run(session, exemplar, CENTER_XY, SIZE_WH, noise, True, scale_x=3.7)
    assert np.array_equal(first[c.OUT_FEATURES], second[c.OUT_FEATURES])


def test_init_without_a_size_estimates_the_target(session: Any, scene: Any) -> None:
    # A caller may pass zeros as the size in the init step: the model then guesses the target
    # extent from a first colour model.
    _, image, mask = scene
    features = template(session, image, size_wh=(0.0, 0.0))
    assert colour_probability(features, image[mask]).mean() > 0.8
    assert colour_probability(features, image[~mask]).mean() < 0.05


@pytest.mark.parametrize("shift_cells", [(0, 0), (2, -1), (-3, 2), (1, 4)])
def test_track_finds_the_shift(session: Any, scene: Any, shift_cells: tuple[int, int]) -> None:
    _, image, _ = scene
    features = template(session, image)
    kx, ky = shift_cells
    # The tracker believes the target is 8k px up-left of where it is: the crop is centred there.
    believed = (CENTER_XY[0] - STRIDE * kx, CENTER_XY[1] - STRIDE * ky)
    out = run(session, crop(image, believed, INSTANCE), believed, SIZE_WH, features, False)
    assert out[c.OUT_BEST_CELL].tolist() == [CENTER_CELL + ky, CENTER_CELL + kx]
    assert float(out[c.OUT_SCORE]) > 0.99  # the same pixels under the template: NCC ~ 1
    assert out[c.OUT_CENTER] == pytest.approx(CENTER_XY, abs=1.0)
    assert out[c.OUT_SIZE] == pytest.approx(SIZE_WH, abs=2.0)
    assert np.array_equal(out[c.OUT_FEATURES], features)


def test_track_mask_covers_the_object(session: Any, scene: Any) -> None:
    _, image, mask = scene
    features = template(session, image)
    believed = (CENTER_XY[0] - 16, CENTER_XY[1] + 8)
    out = run(session, crop(image, believed, INSTANCE), believed, SIZE_WH, features, False)
    row, col = out[c.OUT_BEST_CELL].tolist()
    probabilities = out[c.OUT_MASK]
    assert probabilities.shape == (EXEMPLAR, EXEMPLAR)
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    # Window of cell (row, col): crop pixels from 8 * (cell - 4), crop pixel 0 at centre - 127.
    x0 = believed[0] - INSTANCE // 2 + STRIDE * (col - 4)
    y0 = believed[1] - INSTANCE // 2 + STRIDE * (row - 4)
    truth = mask[y0 : y0 + EXEMPLAR, x0 : x0 + EXEMPLAR]
    predicted = probabilities > HP.seg_thr
    assert truth.sum() == mask.sum()  # the whole target lies in the window
    iou = np.logical_and(predicted, truth).sum() / np.logical_or(predicted, truth).sum()
    assert iou > 0.9


def test_track_size_grows_towards_the_object_at_a_bounded_rate(session: Any, scene: Any) -> None:
    _, image, _ = scene
    features = template(session, image)
    small = (SIZE_WH[0] * 0.85, SIZE_WH[1] * 0.85)
    out = run(session, crop(image, CENTER_XY, INSTANCE), CENTER_XY, small, features, False)
    assert out[c.OUT_SIZE] == pytest.approx(np.array(small) * HP.max_size_change, rel=1e-5)


def test_track_without_the_target_keeps_the_size(session: Any, scene: Any) -> None:
    background, image, _ = scene
    features = template(session, image)
    found = run(session, crop(image, CENTER_XY, INSTANCE), CENTER_XY, SIZE_WH, features, False)
    lost = run(session, crop(background, CENTER_XY, INSTANCE), CENTER_XY, SIZE_WH, features, False)
    assert lost[c.OUT_MASK].max() < HP.seg_thr
    assert lost[c.OUT_SIZE].tolist() == list(SIZE_WH)
    row, col = lost[c.OUT_BEST_CELL].tolist()
    moved = np.array([col - CENTER_CELL, row - CENTER_CELL]) * STRIDE / SCALE_X
    assert lost[c.OUT_CENTER] == pytest.approx(np.array(CENTER_XY) + moved, abs=1e-3)
    assert float(lost[c.OUT_SCORE]) < float(found[c.OUT_SCORE]) - 0.3


def four_targets(session: Any, scene: Any) -> tuple[list[Row], list[Row]]:
    """(init rows, track rows) of four different targets, so a row that mixed would show.

    Init: the target with its size, without a size, shifted with a smaller box, and background
    alone. Track: shifted by other cells at other scales, smaller than the target, and the
    target's template over background alone (lost).
    """
    background, image, _ = scene
    shifted = (CENTER_XY[0] + STRIDE, CENTER_XY[1] - STRIDE)
    small = (SIZE_WH[0] * 0.85, SIZE_WH[1] * 0.85)
    init = [
        Row(crop(image, CENTER_XY, EXEMPLAR), CENTER_XY, SIZE_WH),
        Row(crop(image, CENTER_XY, EXEMPLAR), CENTER_XY, (0.0, 0.0)),
        Row(crop(image, shifted, EXEMPLAR), shifted, small),
        Row(crop(background, CENTER_XY, EXEMPLAR), CENTER_XY, SIZE_WH),
    ]
    templates = run_batch(session, init, first_time=True)[c.OUT_FEATURES]
    features = (templates[0], templates[1], templates[2], templates[0])
    believed = [
        (CENTER_XY[0] - STRIDE * 2, CENTER_XY[1] + STRIDE),
        (CENTER_XY[0] + STRIDE * 3, CENTER_XY[1] - STRIDE * 2),
        CENTER_XY,
        CENTER_XY,
    ]
    scales = (SCALE_X, SCALE_X * 0.9, SCALE_X * 1.1, SCALE_X)
    sizes = (SIZE_WH, SIZE_WH, small, SIZE_WH)
    images = (image, image, image, background)
    track = [
        Row(crop(frame, centre, INSTANCE), centre, size, row_features, scale)
        for frame, centre, size, row_features, scale in zip(
            images, believed, sizes, features, scales, strict=True
        )
    ]
    return init, track


def assert_rows_match(
    batched: dict[str, np.ndarray], single: dict[str, np.ndarray], n: int
) -> None:
    """Row n of a batched call equals a call of that row alone (cells exactly, floats closely)."""
    for name, value in single.items():
        if value.dtype == np.int64:
            assert np.array_equal(batched[name][n], value), name
        else:
            np.testing.assert_allclose(batched[name][n], value, rtol=0, atol=ROW_ATOL, err_msg=name)


@pytest.mark.parametrize("first_time", [True, False], ids=["init", "track"])
def test_a_batch_of_four_equals_four_single_calls(
    session: Any, scene: Any, first_time: bool
) -> None:
    rows = four_targets(session, scene)[0 if first_time else 1]
    batched = run_batch(session, rows, first_time)
    for n, row in enumerate(rows):
        single = run_batch(session, [row], first_time)
        assert_rows_match(batched, {name: value[0] for name, value in single.items()}, n)
    # The rows really differ, so a batch that mixed them would not match.
    if first_time:
        assert len({features.tobytes() for features in batched[c.OUT_FEATURES]}) == len(rows)
    else:
        assert len({tuple(cell) for cell in batched[c.OUT_BEST_CELL].tolist()}) >= 3
        assert batched[c.OUT_SCORE][3] < batched[c.OUT_SCORE][0] - 0.3  # the lost row


def output_specs(out: dict[str, np.ndarray]) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {name: (value.dtype.name, value.shape) for name, value in out.items()}


@pytest.mark.parametrize("batch", [1, 8])
def test_both_branches_run_any_batch_with_identical_shapes(
    session: Any, scene: Any, batch: int
) -> None:
    init_rows, track_rows = four_targets(session, scene)
    init = run_batch(session, [init_rows[n % 4] for n in range(batch)], first_time=True)
    track = run_batch(session, [track_rows[n % 4] for n in range(batch)], first_time=False)
    expected = {
        c.OUT_MASK: ("float32", (batch, EXEMPLAR, EXEMPLAR)),
        c.OUT_CENTER: ("float32", (batch, 2)),
        c.OUT_SIZE: ("float32", (batch, 2)),
        c.OUT_FEATURES: ("float32", (batch, *TARGET_FEATURE_SHAPE)),
        c.OUT_BEST_CELL: ("int64", (batch, 2)),
        c.OUT_SCORE: ("float32", (batch,)),
    }
    assert output_specs(init) == output_specs(track) == expected
    # Row n repeats the inputs of row n % 4: the same outputs wherever it sits in the batch.
    for n in range(4, batch):
        assert_rows_match(track, {name: value[n % 4] for name, value in track.items()}, n)


def test_init_branch_returns_zeros_for_the_track_outputs(session: Any, scene: Any) -> None:
    rows = four_targets(session, scene)[0][:3]
    out = run_batch(session, rows, first_time=True)
    assert np.array_equal(out[c.OUT_MASK], np.zeros((3, EXEMPLAR, EXEMPLAR), np.float32))
    assert np.array_equal(out[c.OUT_BEST_CELL], np.zeros((3, 2), np.int64))
    assert np.array_equal(out[c.OUT_SCORE], np.zeros(3, np.float32))
    assert np.array_equal(out[c.OUT_CENTER], np.array([row.center_xy for row in rows], np.float32))
    assert np.array_equal(out[c.OUT_SIZE], np.array([row.size_wh for row in rows], np.float32))


def test_runtime_modules_do_not_import_onnx() -> None:
    code = (
        "import sys\n"
        "import siamedge.engine, siamedge.models, siamedge.service, siamedge.offline\n"
        "import siamedge.sources.synthetic, siamedge.tracking.tracker\n"
        "print(sorted(m for m in sys.modules if m == 'onnx' or m.startswith('onnx.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


def _build_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`python -m siamedge.builtin_model ARGV` in this process: (exit status, stderr)."""
    from siamedge.builtin_model import main

    code = main(argv)
    return code, capsys.readouterr().err


def test_a_folder_as_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _build_command(["--out", str(tmp_path)], capsys)
    assert code == 1
    assert err.splitlines() == [
        f"python -m siamedge.builtin_model: error: --out {tmp_path} is a folder: "
        "give the path of the file to write"
    ]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("parent_is_a_file", [False, True])
def test_a_missing_folder_of_out_is_refused_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], parent_is_a_file: bool
) -> None:
    folder = tmp_path / "missing"
    if parent_is_a_file:
        folder.write_text("not a folder\n", encoding="utf-8")
    code, err = _build_command(["--out", str(folder / BUILTIN_FILE)], capsys)
    assert code == 1
    what = "is not a folder" if parent_is_a_file else "does not exist"
    assert err.splitlines() == [
        f"python -m siamedge.builtin_model: error: --out {folder / BUILTIN_FILE}: "
        f"the folder {folder} {what}"
    ]
    assert folder.is_file() if parent_is_a_file else not folder.exists()


def test_a_failed_write_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / BUILTIN_FILE
    out.symlink_to(tmp_path / "gone" / BUILTIN_FILE)  # its folder is there, the write fails
    code, err = _build_command(["--out", str(out)], capsys)
    assert code == 1
    assert err.splitlines() == [
        f"python -m siamedge.builtin_model: error: cannot write {out}: No such file or directory"
    ]
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("argv", [[], ["--out", f"models/{BUILTIN_FILE}"]], ids=["default", "out"])
def test_the_default_out_creates_its_models_folder(
    argv: list[str],
    tmp_path: Path,
    repo_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # What models.py tells people to run when the builtin model is missing; in a checkout whose
    # models/ went with the file (git keeps no empty folder) it must still work.
    monkeypatch.chdir(tmp_path)
    code, err = _build_command(argv, capsys)
    assert code == 0, err
    committed = (repo_root / "models" / BUILTIN_FILE).read_bytes()
    assert (tmp_path / "models" / BUILTIN_FILE).read_bytes() == committed
