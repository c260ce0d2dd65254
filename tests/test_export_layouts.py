"""The exporter's layouts (docs/model-layouts.md) on onnxruntime, called directly.

Batched rows equal single-target calls, the tennis trace comes out as row 0 of a batch of four,
the split models equal the If model's branches, the TensorRT check, and the command line.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from fixtures.export_models import ExportedLayouts, ExportedModels
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from siamedge import contract as c
from siamedge.errors import ModelError
from siamedge.export import command
from siamedge.export.builder import ExportOptions, build_init_model, build_model
from siamedge.export.graph_capture import graph_capture_problems
from siamedge.export.network import SiamMaskVOT
from siamedge.export.runners import InitRows, LayoutRunner, Outputs, TrackRows
from siamedge.export.trt_check import check_tensorrt
from siamedge.export.validate import contract_of, init_rows, track_rows
from siamedge.tracking.crop import mean_color
from siamedge.tracking.geometry import BoxXYWH, CropGeometry, PointXY

pytestmark = pytest.mark.torch

GEOMETRY = CropGeometry(
    exemplar_size=c.EXEMPLAR_SIZE,
    instance_size=c.INSTANCE_SIZE,
    total_stride=c.TOTAL_STRIDE,
    base_size=c.BASE_SIZE,
    context_amount=c.CONTEXT_AMOUNT,
)
OTHER_BOXES_XYWH: tuple[BoxXYWH, ...] = (
    (40.0, 40.0, 80.0, 60.0),
    (600.0, 300.0, 120.0, 140.0),
    (700.0, 20.0, 50.0, 50.0),
)
"""Three more targets elsewhere in the tennis frame (top left, bottom right, top right)."""
DISTINCT_CELL_STEPS = (68, 17, 35)
"""Trace steps whose best cells differ: (11, 13), (10, 12), (13, 11)."""
ROW_STATE_PX = 1e-4
ROW_MASK = 1e-5
ROW_SCORE = 1e-6
ROW_FEATURES = 1e-5
TRACE_STEP_TIMEOUT_S = 900
"""69 steps of four full SiamMask rows on a shared 2-core machine."""


@dataclass(frozen=True)
class Trace:
    """tennis_trace.json's header and steps, the .npz arrays, and the frame folder."""

    header: dict[str, Any]
    steps: list[dict[str, Any]]
    arrays: dict[str, NDArray[Any]]
    frames: Path

    def frame(self, name: str) -> NDArray[np.uint8]:
        """One tennis frame, (H, W, 3) uint8 BGR."""
        image = cv2.imread(str(self.frames / name))
        assert image is not None, name
        return np.asarray(image, dtype=np.uint8)

    @property
    def tol(self) -> dict[str, float]:
        """The header's tolerances."""
        tolerances: dict[str, float] = self.header["tolerances"]
        return tolerances

    @property
    def init_box(self) -> BoxXYWH:
        """The start box of the traced target."""
        x, y, w, h = self.header["init_box_xywh"]
        return (x, y, w, h)


@pytest.fixture(scope="module")
def trace(reference_dir: Path, tennis_dir: Path) -> Trace:
    """The original tracker's reference trace."""
    data = json.loads((reference_dir / "tennis_trace.json").read_text())
    with np.load(reference_dir / "tennis_trace.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    header = {k: v for k, v in data.items() if k not in ("steps", "free_run")}
    return Trace(header, data["steps"], arrays, tennis_dir)


def _diff(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def _concat(rows: list[TrackRows]) -> TrackRows:
    return TrackRows(
        *(np.concatenate([getattr(row, field.name) for row in rows]) for field in fields(TrackRows))
    )


def _state(record: dict[str, Any]) -> tuple[PointXY, PointXY]:
    """A trace step's state before the step: (centre, size)."""
    (cx, cy), (w, h) = record["before"]["center"], record["before"]["size"]
    return (cx, cy), (w, h)


def _cells(outputs: Outputs) -> list[tuple[int, int]]:
    return [(int(row), int(col)) for row, col in outputs[c.OUT_BEST_CELL]]


def _box_state(box: BoxXYWH) -> tuple[PointXY, PointXY]:
    x, y, w, h = box
    return (x + w / 2, y + h / 2), (w, h)


def _templates(runner: LayoutRunner, trace: Trace) -> tuple[InitRows, NDArray[np.float32]]:
    """The traced target and the three others in frame 0: init rows and their features."""
    rows = init_rows(trace.frame("00000.jpg"), [trace.init_box, *OTHER_BOXES_XYWH], GEOMETRY)
    return rows, runner.template(rows)[c.OUT_FEATURES]


def _mixed_rows(trace: Trace, features: NDArray[np.float32]) -> TrackRows:
    """Three trace steps with different best cells (the traced template), then one other target
    with its own template at its start box, each row cut from its own frame."""
    fill = mean_color(trace.frame("00000.jpg"))
    rows = []
    for index in DISTINCT_CELL_STEPS:
        step = trace.steps[index]
        frame = trace.frame(step["file"])
        rows.append(track_rows(frame, [_state(step)], features[:1], GEOMETRY, fill))
    frame = trace.frame(trace.steps[0]["file"])
    other = track_rows(frame, [_box_state(OTHER_BOXES_XYWH[0])], features[1:2], GEOMETRY, fill)
    return _concat([*rows, other])


def _assert_rows_match(batched: Outputs, single: Outputs) -> None:
    assert _cells(batched) == _cells(single)
    for name in (c.OUT_CENTER, c.OUT_SIZE):
        assert _diff(batched[name], single[name]) <= ROW_STATE_PX, name
    assert _diff(batched[c.OUT_MASK], single[c.OUT_MASK]) <= ROW_MASK
    assert _diff(batched[c.OUT_SCORE], single[c.OUT_SCORE]) <= ROW_SCORE


# --- batched rows, trace, split -------------------------------------------------------------


def test_batched_rows_equal_the_single_target_export(
    exported_layouts: ExportedLayouts, trace: Trace
) -> None:
    batched = LayoutRunner(exported_layouts.batched.path)
    single = LayoutRunner(exported_layouts.single.path)
    assert batched.batched and not single.batched
    init, features = _templates(batched, trace)
    assert _diff(features, single.template(init)[c.OUT_FEATURES]) <= ROW_FEATURES
    rows = _mixed_rows(trace, features)
    out = batched.track(rows)
    _assert_rows_match(out, single.track(rows))
    # Each row's mask comes from its own cell: the refine windows are cut at four places.
    assert _cells(out)[:3] == [tuple(trace.steps[i]["best_cell_yx"]) for i in DISTINCT_CELL_STEPS]
    assert len(set(_cells(out))) >= len(DISTINCT_CELL_STEPS)
    assert out[c.OUT_MASK].shape == (4, 127, 127) and out[c.OUT_SCORE].shape == (4,)


@pytest.mark.timeout(TRACE_STEP_TIMEOUT_S)
def test_tennis_trace_is_row_0_of_a_batch_of_four(
    exported_layouts: ExportedLayouts, trace: Trace
) -> None:
    runner = LayoutRunner(exported_layouts.batched.path)
    _, features = _templates(runner, trace)
    tol = trace.tol
    assert _diff(features[0], trace.arrays["z_features"][0]) <= tol["z_features_abs"]
    fill = mean_color(trace.frame("00000.jpg"))
    others = [_box_state(box) for box in OTHER_BOXES_XYWH]
    problems: list[str] = []
    for index, record in enumerate(trace.steps):
        frame = trace.frame(record["file"])
        out = runner.track(track_rows(frame, [_state(record), *others], features, GEOMETRY, fill))
        cell = _cells(out)[0]
        if cell != tuple(record["best_cell_yx"]):
            # Near-ties may go either way in another runtime.
            if not record["ambiguous"]:
                problems.append(f"step {index}: cell {cell} != {record['best_cell_yx']}")
            continue
        checks = (
            ("centre", _diff(out[c.OUT_CENTER][0], record["center_unclipped"]), tol["center_px"]),
            ("size", _diff(out[c.OUT_SIZE][0], record["size_unclipped"]), tol["size_px"]),
            ("score", _diff(out[c.OUT_SCORE][0], record["score"]), tol["mask_prob_abs"]),
            (
                "mask",
                _diff(out[c.OUT_MASK][0], trace.arrays["mask_probs"][index]),
                tol["mask_prob_abs"],
            ),
        )
        problems += [
            f"step {index}: {name} off by {value:.3g} > {limit}"
            for name, value, limit in checks
            if not value <= limit
        ]
    assert problems == [], "\n".join(problems)


def test_split_models_equal_the_if_branches(
    exported_layouts: ExportedLayouts, trace: Trace
) -> None:
    if_model = LayoutRunner(exported_layouts.batched.path)
    split = LayoutRunner(exported_layouts.split.path)
    assert split.layout == c.LAYOUT_SPLIT and split.init_path == exported_layouts.split.init_path
    init, features = _templates(if_model, trace)
    split_init = split.template(init)
    assert list(split_init) == [c.OUT_FEATURES]
    assert _diff(split_init[c.OUT_FEATURES], features) <= ROW_FEATURES
    rows = _mixed_rows(trace, features)
    split_out = split.track(rows)
    assert c.OUT_FEATURES not in split_out
    _assert_rows_match(split_out, if_model.track(rows))


def test_split_files_metadata_and_contract(exported_layouts: ExportedLayouts) -> None:
    result = exported_layouts.split
    assert result.init_path == result.path.with_name("split.init.onnx")
    assert result.init_path.is_file() and result.init_size_bytes is not None
    track = onnx.load(str(result.path), load_external_data=False)
    metadata = {prop.key: prop.value for prop in track.metadata_props}
    assert metadata[c.META_LAYOUT] == c.LAYOUT_SPLIT
    assert metadata[c.META_INIT_MODEL] == "split.init.onnx"
    assert not any(node.op_type == "If" for node in track.graph.node)
    assert [i.name for i in track.graph.input] == [
        c.IN_IMAGE,
        c.IN_CENTER,
        c.IN_SIZE,
        c.IN_SCALE,
        c.IN_FEATURES,
    ]
    contract = contract_of(result.path, result.init_path)
    assert contract.layout == c.LAYOUT_SPLIT and contract.max_batch is None
    init = onnx.load(str(result.init_path), load_external_data=False).graph
    dims = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in [*init.input, *init.output]
    }
    assert dims == {
        c.IN_IMAGE: ["batch", 3, 127, 127],
        c.IN_CENTER: ["batch", 2],
        c.IN_SIZE: ["batch", 2],
        c.OUT_FEATURES: ["batch", 256, 7, 7],
    }
    # The init model holds the trunk and adjust layer only; the track model everything.
    assert result.init_size_bytes < result.size_bytes
    assert result.comparison is not None and result.comparison.problems == []


def _dims(values: Any) -> dict[str, list[int | str]]:
    return {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in values
    }


def test_single_target_layout_is_the_public_exports(exported_layouts: ExportedLayouts) -> None:
    model = onnx.load(str(exported_layouts.single.path), load_external_data=False)
    assert _dims(model.graph.input) == {
        c.IN_IMAGE: [1, 3, 255, 255],
        c.IN_CENTER: [2],
        c.IN_SIZE: [2],
        c.IN_SCALE: [],
        c.IN_FEATURES: [1, 256, 7, 7],
        c.IN_FIRST_TIME: [],
    }
    assert _dims(model.graph.output) == {
        c.OUT_MASK: [127, 127],
        c.OUT_CENTER: [2],
        c.OUT_SIZE: [2],
        c.OUT_FEATURES: [1, 256, 7, 7],
        c.OUT_BEST_CELL: [2],
        c.OUT_SCORE: [],
    }
    contract = contract_of(exported_layouts.single.path)
    assert not contract.batched and contract.max_batch == 1
    assert exported_layouts.single.comparison is not None
    assert exported_layouts.single.comparison.rows is None


def test_batched_if_branches_return_every_output_with_the_batch(
    exported_layouts: ExportedLayouts,
) -> None:
    model = onnx.load(str(exported_layouts.batched.path), load_external_data=False)
    inputs = _dims(model.graph.input)
    assert inputs.pop(c.IN_FIRST_TIME) == []
    assert all(dims[0] == "batch" for dims in inputs.values())
    (switch,) = model.graph.node
    branches = {attr.name: attr.g for attr in switch.attribute}
    then_dims = list(_dims(branches["then_branch"].output).values())
    else_dims = list(_dims(branches["else_branch"].output).values())
    assert then_dims == else_dims == list(_dims(model.graph.output).values())
    assert all(
        dims[0] == "batch" and all(isinstance(d, int) for d in dims[1:]) for dims in then_dims
    )
    comparison = exported_layouts.batched.comparison
    assert comparison is not None and comparison.rows is not None
    assert comparison.rows.rows == 4 and comparison.problems == []


# --- TensorRT check -------------------------------------------------------------------------


def test_tensorrt_check_accepts_every_layout(
    exported_layouts: ExportedLayouts, seed0_network: SiamMaskVOT
) -> None:
    for result in (exported_layouts.single, exported_layouts.batched, exported_layouts.split):
        assert result.trt is not None and result.trt.ok, (result.path, result.trt)
        graph = onnx.load(str(result.path), load_external_data=False).graph
        weights = {init.name for init in graph.initializer}
        convs = [node for node in _nodes(graph) if node.op_type in ("Conv", "ConvTranspose")]
        # The correlation is Slice/Mul/Add: every convolution has stored weights.
        assert convs and all(node.input[1] in weights for node in convs)
    assert exported_layouts.split.trt_init is not None and exported_layouts.split.trt_init.ok
    init = build_init_model(seed0_network, ExportOptions(batch=None, layout="split"))
    assert check_tensorrt(init).ok


# --- CUDA graph check ----------------------------------------------------------------------


def test_split_track_model_can_be_captured_as_a_cuda_graph(
    exported_layouts: ExportedLayouts,
) -> None:
    split = exported_layouts.split
    assert split.graph_capture == ()
    assert "CUDA graph check (model.cuda_graph): OK" in split.lines()
    assert exported_layouts.batched.graph_capture is None  # only the split layout is checked
    batched = onnx.load(str(exported_layouts.batched.path), load_external_data=False)
    assert any("control flow" in problem for problem in graph_capture_problems(batched))


def test_graph_capture_check_flags_host_inputs_computed_at_run_time() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    computed = _model(
        [
            helper.make_node("Shape", ["x"], ["shape"], name="shape"),
            helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape"),
        ],
        [x],
    )
    assert graph_capture_problems(computed) == [
        "Shape 'shape': its output is in host memory",
        "Reshape 'reshape': input 1 ('shape') is read in host memory but computed at run time",
    ]
    stored = _model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
        [x],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [3, 2])],
    )
    assert graph_capture_problems(stored) == []


def _nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node of a graph and of the subgraphs in its nodes' attributes."""
    found = []
    for node in graph.node:
        found.append(node)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found += _nodes(attr.g)
    return found


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    initializers: list[onnx.TensorProto] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=initializers or [],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_tensorrt_check_flags_a_grouped_conv_with_runtime_weights() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, [4, 1, 3, 3])
    conv = helper.make_node("Conv", ["x", "k"], ["y"], name="xcorr", group=4)
    report = check_tensorrt(_model([conv], [x, k]))
    (problem,) = report.problems
    assert problem.startswith("Conv 'xcorr': 4 groups with weights computed at run time ('k')")
    weights = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "k")
    assert check_tensorrt(_model([conv], [x], [weights])).ok


def test_tensorrt_check_flags_dynamic_dims_other_than_the_batch() -> None:
    def report_for(dims: list[Any]) -> list[str]:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
        return list(check_tensorrt(_model([helper.make_node("Relu", ["x"], ["y"])], [x])).problems)

    assert report_for(["batch", 3, 8]) == []
    assert "dynamic shape: x ['batch', 'c', 8]" in report_for(["batch", "c", 8])
    assert "dynamic shape: x [3, 'batch']" in report_for([3, "batch"])
    assert "dynamic shape: x ['n', 3]" in report_for(["n", 3])


def test_tensorrt_check_flags_if_branches_of_different_shapes() -> None:
    def branch(name: str, side: int) -> onnx.GraphProto:
        value = numpy_helper.from_array(np.zeros(side, np.float32), f"{name}_zeros")
        node = helper.make_node("Constant", [], [f"{name}_out"], value=value)
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [side])
        return helper.make_graph([node], name, [], [out])

    cond = helper.make_tensor_value_info("x", TensorProto.BOOL, [])
    switch = helper.make_node(
        "If", ["x"], ["y"], name="switch", then_branch=branch("a", 2), else_branch=branch("b", 3)
    )
    report = check_tensorrt(_model([switch], [cond]))
    assert any(
        "If 'switch': outputs 'a_out' [2] and 'b_out' [3] differ in type or shape" in p
        for p in report.problems
    )


# --- options and command line ---------------------------------------------------------------


def test_export_options_name_impossible_layouts(seed0_network: SiamMaskVOT) -> None:
    with pytest.raises(ModelError, match=r"batch must be 1 \(single target\) or None"):
        ExportOptions(batch=4)
    with pytest.raises(ModelError, match="the split layout is batched"):
        ExportOptions(batch=1, layout="split")
    with pytest.raises(ModelError, match="layout must be one of if, split"):
        ExportOptions(layout="both")  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="only the split layout has an init model"):
        build_init_model(seed0_network, ExportOptions())
    assert ExportOptions().batch is None and ExportOptions().layout == "if"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siamedge export")
    command.add_arguments(parser)
    return parser


def test_command_batch_and_layout_options(capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser()
    args = parser.parse_args(["--checkpoint", "a.pth", "--out", "a.onnx"])
    assert (args.batch, args.layout) == ("dynamic", "if")
    args = parser.parse_args(["--checkpoint", "a", "--out", "b", "--batch", "1", "--layout", "if"])
    assert (args.batch, args.layout) == ("1", "if")
    for bad in (["--batch", "4"], ["--layout", "both"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["--checkpoint", "a", "--out", "b", *bad])
    errors = capsys.readouterr().err
    assert "argument --batch: invalid choice: '4'" in errors
    assert "argument --layout: invalid choice: 'both'" in errors
    text = " ".join(parser.format_help().split())
    assert "--batch {dynamic,1}" in text and "--layout {if,split}" in text
    assert "<OUT stem>.init.onnx the init model (needs --batch dynamic)" in text


def test_command_refuses_a_single_target_split(tmp_path: Path) -> None:
    out = str(tmp_path / "m.onnx")
    args = _parser().parse_args(
        ["--checkpoint", "a.pth", "--out", out, "--layout", "split", "--batch", "1"]
    )
    with pytest.raises(ModelError, match="--layout split writes batched models: add --batch"):
        command.run(args)
    assert not list(tmp_path.iterdir())


def test_command_writes_each_layout(
    exported_models: ExportedModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = str(exported_models.checkpoint)
    base = ["--checkpoint", checkpoint, "--no-validate"]
    single = tmp_path / "single.onnx"
    assert command.run(_parser().parse_args([*base, "--out", str(single), "--batch", "1"])) == 0
    assert _dims(onnx.load(str(single), load_external_data=False).graph.input)[c.IN_CENTER] == [2]
    split = tmp_path / "cam" / "tracker.onnx"
    assert command.run(_parser().parse_args([*base, "--out", str(split), "--layout", "split"])) == 0
    printed = capsys.readouterr().out
    assert f"wrote {split.with_name('tracker.init.onnx')} (its init model): " in printed
    assert "split layout, dynamic batch `batch`" in printed and "single target" in printed
    contract = contract_of(split, split.with_name("tracker.init.onnx"))
    assert contract.init_model == "tracker.init.onnx" and contract.batched


def test_split_export_refuses_an_init_model_path_that_is_the_checkpoint(
    seed0_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "m.init.onnx"
    shutil.copyfile(seed0_checkpoint, checkpoint)
    before = checkpoint.stat()
    out = tmp_path / "m.onnx"
    args = _parser().parse_args(
        ["--checkpoint", str(checkpoint), "--out", str(out), "--layout", "split", "--no-validate"]
    )
    with pytest.raises(ModelError) as caught:
        command.run(args)
    assert str(caught.value) == (
        f"cannot write the split layout's init model to {checkpoint}: it is the checkpoint "
        f"{checkpoint}; choose another output file"
    )
    after = checkpoint.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert [path.name for path in tmp_path.iterdir()] == ["m.init.onnx"]


def test_split_export_fails_fast_when_its_init_model_path_is_a_directory(
    seed0_checkpoint: Path, tmp_path: Path
) -> None:
    """Checked before the export: no track model without its init model, and an older model at
    --out stays as it was."""
    folder = tmp_path / "sp"
    (folder / "m.init.onnx").mkdir(parents=True)
    out = folder / "m.onnx"
    out.write_bytes(b"an older model")
    args = _parser().parse_args(
        [
            "--checkpoint",
            str(seed0_checkpoint),
            "--out",
            str(out),
            "--layout",
            "split",
            "--no-validate",
        ]
    )
    with pytest.raises(ModelError) as caught:
        command.run(args)
    assert str(caught.value) == (
        f"cannot write the split layout's init model to {folder / 'm.init.onnx'}: it is a directory"
    )
    assert out.read_bytes() == b"an older model"
    assert sorted(path.name for path in folder.iterdir()) == ["m.init.onnx", "m.onnx"]
    assert not any((folder / "m.init.onnx").iterdir())


def _unread_constants(graph: onnx.GraphProto) -> set[str]:
    """Constants of the graph or its subgraphs that no node and no graph output reads: each one
    becomes an initializer onnxruntime warns about (raw, on stderr) whenever it loads the model."""
    made: set[str] = set()
    read: set[str] = set()

    def walk(g: onnx.GraphProto) -> None:
        read.update(output.name for output in g.output)
        for node in g.node:
            if node.op_type == "Constant":
                made.update(node.output)
            read.update(node.input)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)

    walk(graph)
    return made - read


@pytest.mark.parametrize("batch", [1, None], ids=["single target", "batched"])
def test_a_seed_layout_export_has_no_constant_it_does_not_read(
    seed0_network: SiamMaskVOT, batch: int | None
) -> None:
    model = build_model(seed0_network, ExportOptions(batch=batch, with_score=False))
    assert _unread_constants(model.graph) == set()
