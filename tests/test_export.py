"""The exporter: strict checkpoint loading, the contract model it writes, and its validation."""

from __future__ import annotations

import argparse
import io
import json
import logging
import pickle
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from fixtures.export_models import CHECKPOINT_SEED, ExportedModels
from onnx import TensorProto, helper

from siamedge import __version__
from siamedge import contract as c
from siamedge.cli import main
from siamedge.errors import ModelError
from siamedge.export import command, exporter
from siamedge.export.builder import ExportOptions, build_model
from siamedge.export.checkpoint import (
    network_from_state_dict,
    read_checkpoint,
    unwrap_state_dict,
)
from siamedge.export.exporter import export_checkpoint
from siamedge.export.network import SiamMaskVOT
from siamedge.export.runners import InitRows, LayoutRunner, TrackRows
from siamedge.export.spec import HyperParameters
from siamedge.export.trt_check import check_tensorrt
from siamedge.export.validate import (
    FP16_TOLERANCES,
    FP32_TOLERANCES,
    SAMPLE_ROWS,
    Comparison,
    StepDiff,
    contract_of,
    sample_frame,
)

pytestmark = pytest.mark.torch

ONE_THREAD = 1


def _graph_only(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path), load_external_data=False)


def _contract(path: Path) -> c.ModelContract:
    return contract_of(path)


# --- checkpoint loading ---------------------------------------------------------------------


def test_state_dict_matches_the_official_manifest(reference_dir: Path) -> None:
    manifest = json.loads((reference_dir / "siammask_vot_manifest.json").read_text())["keys"]
    expected = {entry["key"]: tuple(entry["shape"]) for entry in manifest}
    ours = {key: tuple(value.shape) for key, value in SiamMaskVOT().state_dict().items()}
    assert len(ours) == len(expected) == 356
    assert ours == expected


def test_strict_loading_lists_missing_unexpected_and_mismatched_keys(
    make_checkpoint: ModuleType,
) -> None:
    state = make_checkpoint.make_state_dict(CHECKPOINT_SEED)
    del state["refine_model.post2.bias"]
    state["rpn_model.cls.extra.weight"] = torch.zeros(3)
    state["features.downsample.downsample.0.weight"] = torch.zeros(256, 512, 1, 1)
    with pytest.raises(ModelError) as caught:
        network_from_state_dict(state, "broken.pth")
    message = str(caught.value)
    assert message.startswith("broken.pth: not a SiamMask VOT")
    assert "1 missing key(s): refine_model.post2.bias" in message
    assert "1 unexpected key(s): rpn_model.cls.extra.weight" in message
    assert (
        "1 shape mismatch(es): features.downsample.downsample.0.weight [256, 512, 1, 1] "
        "(expected [256, 1024, 1, 1])" in message
    )


def test_weights_that_are_not_finite_are_named(make_checkpoint: ModuleType) -> None:
    state = make_checkpoint.make_state_dict(CHECKPOINT_SEED)
    state["rpn_model.cls.head.0.weight"][0, 0, 0, 0] = float("nan")
    state["refine_model.post2.bias"][0] = float("inf")
    with pytest.raises(ModelError) as caught:
        network_from_state_dict(state, "diverged.pth")
    assert str(caught.value) == (
        "diverged.pth: 2 weight tensor(s) hold NaN or infinite values (a diverged training "
        "run?): refine_model.post2.bias, rpn_model.cls.head.0.weight"
    )


def test_long_key_lists_are_shortened(make_checkpoint: ModuleType) -> None:
    state = make_checkpoint.make_state_dict(CHECKPOINT_SEED)
    refine_keys = [key for key in state if key.startswith("refine_model.")]
    for key in refine_keys:
        del state[key]
    with pytest.raises(ModelError, match=rf"{len(refine_keys)} missing key\(s\): .*\(\d+ more\)"):
        network_from_state_dict(state, "no_refine.pth")


def test_checkpoint_layouts_all_load(make_checkpoint: ModuleType, tmp_path: Path) -> None:
    state = make_checkpoint.make_state_dict(CHECKPOINT_SEED)
    prefixed = {f"module.{key}": value for key, value in state.items()}
    layouts = {
        "official": {"state_dict": state, "epoch": 20, "arch": "Custom"},
        "bare": state,
        "data_parallel": {"state_dict": prefixed},
        "bare_data_parallel": prefixed,
    }
    for name, loaded in layouts.items():
        tensors = unwrap_state_dict(loaded, name)
        assert tensors.keys() == state.keys(), name
    path = tmp_path / "bare_data_parallel.pth"
    torch.save(prefixed, path)
    net = network_from_state_dict(read_checkpoint(path), str(path))
    assert torch.equal(net.refine_model.post2.bias, state["refine_model.post2.bias"])
    assert not net.training


def test_missing_and_tensorless_checkpoints_are_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"missing\.pth: not found"):
        read_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(ModelError, match="is a folder, not a checkpoint file"):
        read_checkpoint(tmp_path)
    with pytest.raises(ModelError, match="holds no tensors"):
        unwrap_state_dict({"state_dict": {"epoch": 3}}, "empty.pth")
    with pytest.raises(ModelError, match="expected a state dict"):
        unwrap_state_dict([torch.zeros(1)], "list.pth")


def _tiny_onnx_bytes() -> bytes:
    node = helper.make_node("Identity", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([node], "tiny", [x], [y]))
    return bytes(model.SerializeToString())


def _torch_saved(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


OBJECTS_REFUSED = (
    "holds objects other than tensors and plain containers, which siamedge does not unpickle"
)
NOT_CHECKPOINTS = {
    "empty.pth": (lambda: b"", "empty file"),
    "garbage.pth": (lambda: b"not a checkpoint", "not a zip or pickle file"),
    "model.onnx": (_tiny_onnx_bytes, "not a zip or pickle file"),
    "object.pth": (
        lambda: _torch_saved({"state_dict": {"a": torch.zeros(1)}, "cfg": argparse.Namespace()}),
        OBJECTS_REFUSED,
    ),
    "object.pkl": (lambda: pickle.dumps(argparse.Namespace(x=1), protocol=2), OBJECTS_REFUSED),
    "protocol4.pkl": (
        lambda: pickle.dumps({"a": [1, 2]}, protocol=4),
        "its pickle uses a protocol or opcodes that safe loading does not read",
    ),
    "plain.pkl": (
        lambda: pickle.dumps({"a": [1, 2]}, protocol=2),
        "a pickle but not a torch.save file, or a truncated one",
    ),
}


@pytest.mark.parametrize("name", NOT_CHECKPOINTS)
def test_files_that_are_not_checkpoints_are_named_in_one_line(name: str, tmp_path: Path) -> None:
    """torch's own message suggests weights_only=False and may hold ANSI escapes; siamedge's
    names the file and the reason only."""
    content, reason = NOT_CHECKPOINTS[name]
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(ModelError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == (
        f"{path}: not a PyTorch checkpoint (torch.save file) siamedge can read: {reason}"
    )


def test_command_line_says_an_onnx_file_is_not_a_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(_tiny_onnx_bytes())
    out = tmp_path / "out.onnx"
    assert main(["export", "--checkpoint", str(model), "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"siamedge: error: {model}: not a PyTorch checkpoint (torch.save file) siamedge can "
        "read: not a zip or pickle file\n"
    )
    assert not out.exists()


# --- the model it writes --------------------------------------------------------------------


def test_models_pass_the_contract(exported_models: ExportedModels) -> None:
    full = _contract(exported_models.full.path)
    seed = _contract(exported_models.seed.path)
    assert full.has_score and not seed.has_score
    assert (full.instance_size, full.exemplar_size, full.score_size) == (255, 127, 25)
    assert full.feature_shape == (1, 256, 7, 7)
    assert full.batched and full.max_batch is None and full.layout == c.LAYOUT_IF
    assert full.seg_thr == pytest.approx(0.35)
    assert full.model_name == "siammask-vot"
    seed_outputs = [o.name for o in _graph_only(exported_models.seed.path).graph.output]
    assert seed_outputs == [
        c.OUT_MASK,
        c.OUT_CENTER,
        c.OUT_SIZE,
        c.OUT_FEATURES,
        c.OUT_BEST_CELL,
    ]


def test_one_if_with_matching_branches_and_weights_stored_once(
    exported_models: ExportedModels, seed0_network: SiamMaskVOT
) -> None:
    model = _graph_only(exported_models.full.path)
    (switch,) = model.graph.node
    assert switch.op_type == "If" and list(switch.input) == [c.IN_FIRST_TIME]
    branches = {attr.name: attr.g for attr in switch.attribute}
    then_out, else_out = branches["then_branch"].output, branches["else_branch"].output
    assert [o.type for o in then_out] == [o.type for o in else_out]
    assert [o.type for o in then_out] == [o.type for o in model.graph.output]
    assert not {o.name for o in then_out} & {o.name for o in else_out}
    assert not branches["then_branch"].initializer and not branches["else_branch"].initializer
    # Each weight once: the file is about the network's size without the unused mask head.
    unused = seed0_network.mask_model.mask.head
    weights = sum(p.numel() for p in seed0_network.parameters())
    weights -= sum(p.numel() for p in unused.parameters())
    assert exported_models.full.size_bytes == pytest.approx(4 * weights, rel=0.02)


def test_correlations_take_a_few_nodes_per_head(exported_models: ExportedModels) -> None:
    """GPU providers pay per node: each head's correlation is a Gather of every window, Mul and
    ReduceSum (the mask head's at the chosen cell only), not a Slice, Mul and Add per tap
    (25 taps a head: 506 nodes in the track branch)."""
    (switch,) = _graph_only(exported_models.full.path).graph.node
    track = next(attr.g for attr in switch.attribute if attr.name == "else_branch")
    ops = Counter(node.op_type for node in track.node if node.op_type != "Constant")
    assert ops["ReduceSum"] == 3  # cls, loc, mask
    assert ops["Slice"] < 25
    assert sum(ops.values()) <= 310


def test_metadata_records_name_producer_and_hyper_parameters(
    exported_models: ExportedModels,
) -> None:
    model = _graph_only(exported_models.full.path)
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata[c.META_MODEL_NAME] == "siammask-vot"
    assert metadata[c.META_PRODUCER] == f"siamedge-export {__version__}"
    params = json.loads(metadata[c.META_HYPER_PARAMETERS])
    assert set(params) == set(c.HYPER_PARAMETER_KEYS)
    assert params["penalty_k"] == 0.04 and params["window_influence"] == 0.4
    assert params["lr"] == 1.0 and params["seg_thr"] == 0.35
    assert params["ratios"] == [0.33, 0.5, 1, 2, 3] and params["scales"] == [8]
    assert metadata[c.META_LAYOUT] == c.LAYOUT_IF and c.META_INIT_MODEL not in metadata
    assert metadata[c.META_PRECISION] == c.PRECISION_FLOAT32


def test_onnxruntime_matches_pytorch_on_both_branches(exported_models: ExportedModels) -> None:
    comparison = exported_models.full.comparison
    assert comparison is not None
    assert comparison.problems == []
    assert comparison.init_outputs_neutral
    assert comparison.features < FP32_TOLERANCES.features
    assert len(comparison.steps) == len(SAMPLE_ROWS)
    assert comparison.rows is not None and comparison.rows.cells_differ == ()
    for step in comparison.steps:
        assert step.same_cell
        assert step.mask < FP32_TOLERANCES.mask
        assert max(step.center_px, step.size_px) < FP32_TOLERANCES.state_px
        assert step.score is not None and step.score < 1e-5


def test_init_branch_passes_the_state_through(exported_models: ExportedModels) -> None:
    runner = LayoutRunner(exported_models.full.path, ONE_THREAD)
    frame = sample_frame().transpose(2, 0, 1).astype(np.float32)
    exemplars = np.stack([frame[:, :127, :127], frame[:, 200:327, 300:427]])
    centers = np.asarray([[12.5, 30.25], [400.0, 7.5]], np.float32)
    sizes = np.asarray([[40.0, 22.0], [10.0, 300.0]], np.float32)
    out = runner.template(InitRows(exemplars, centers, sizes))
    assert out[c.OUT_CENTER].tolist() == centers.tolist()
    assert out[c.OUT_SIZE].tolist() == sizes.tolist()
    assert out[c.OUT_BEST_CELL].tolist() == [[0, 0], [0, 0]]
    assert out[c.OUT_BEST_CELL].dtype == np.int64
    assert not out[c.OUT_MASK].any() and out[c.OUT_MASK].shape == (2, 127, 127)
    assert out[c.OUT_SCORE].shape == (2,) and not out[c.OUT_SCORE].any()
    assert out[c.OUT_FEATURES].shape == (2, 256, 7, 7)
    assert out[c.OUT_FEATURES].any() and not np.array_equal(*out[c.OUT_FEATURES])


def test_export_report_lists_checks_and_numbers(exported_models: ExportedModels) -> None:
    lines = exported_models.full.lines()
    text = "\n".join(lines)
    assert exported_models.full.ok
    assert lines[0].startswith(f"wrote {exported_models.full.path}: ")
    assert "opset 17, float32 weights, with score, if layout, dynamic batch `batch`" in lines[0]
    assert "export time " in text and "onnxruntime (CPU) vs PyTorch: OK" in text
    assert "TensorRT check (TensorRT 10 ONNX parser, opset 9-20): OK" in text


# --- TensorRT-friendliness check ------------------------------------------------------------


def test_tensorrt_check_passes_the_export(exported_models: ExportedModels) -> None:
    report = check_tensorrt(_graph_only(exported_models.full.path))
    assert report.ok, report.problems
    assert report.opset == 17
    assert {"If", "Conv", "ArgMax", "GatherND", "GatherElements", "ConvTranspose"} <= set(
        report.operators
    )
    assert any("scale_x" in note for note in report.notes)
    assert any("dynamic dimension 'batch'" in note for note in report.notes)


def _tiny_model(nodes: list[onnx.NodeProto], opset: int, dims: list[Any]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_tensorrt_check_names_what_would_fail() -> None:
    unique = helper.make_node("Unique", ["x"], ["y"])
    report = check_tensorrt(_tiny_model([unique], opset=21, dims=["n"]))
    assert not report.ok
    text = "\n".join(report.problems)
    assert "opset 21 is outside 9-20" in text
    assert "operators TensorRT does not parse: Unique" in text
    assert "dynamic shape: x ['n']" in text


def test_tensorrt_check_wants_distinct_branch_outputs() -> None:
    def branch(name: str) -> onnx.GraphProto:
        node = helper.make_node("Identity", ["x"], ["out"])
        out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [2])
        return helper.make_graph([node], name, [], [out])

    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    switch = helper.make_node(
        "If", ["cond"], ["y"], then_branch=branch("a"), else_branch=branch("b")
    )
    model = _tiny_model([switch], opset=17, dims=[2])
    model.graph.input.append(cond)
    report = check_tensorrt(model)
    assert any("both branches name an output 'out'" in p for p in report.problems)


# --- options --------------------------------------------------------------------------------


def test_fp16_halves_the_weights_and_keeps_the_interface(
    exported_models: ExportedModels, tmp_path: Path
) -> None:
    result = export_checkpoint(
        exported_models.checkpoint, tmp_path / "fp16.onnx", ExportOptions(fp16=True)
    )
    assert result.ok and result.comparison is not None
    assert result.comparison.tolerances == FP16_TOLERANCES
    assert result.comparison.features < FP16_TOLERANCES.features * result.comparison.features_scale
    assert all(step.same_cell for step in result.comparison.steps)
    model = _graph_only(result.path)
    assert {init.data_type for init in model.graph.initializer} == {TensorProto.FLOAT16}
    full = _graph_only(exported_models.full.path)
    assert model.graph.input == full.graph.input and model.graph.output == full.graph.output
    assert result.size_bytes == pytest.approx(exported_models.full.size_bytes / 2, rel=0.02)
    assert "float16 weights" in result.lines()[0]
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    assert metadata[c.META_PRECISION] == c.PRECISION_FLOAT16


def test_an_interrupt_during_validation_says_the_model_is_unvalidated(
    exported_models: ExportedModels,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM, which the CLI turns into it) lands here

    monkeypatch.setattr(exporter, "compare_with_reference", interrupted)
    out = tmp_path / "model.onnx"
    with (
        caplog.at_level(logging.WARNING, logger=exporter.__name__),
        pytest.raises(KeyboardInterrupt),
    ):
        export_checkpoint(exported_models.checkpoint, out, ExportOptions())
    assert out.stat().st_size == exported_models.full.size_bytes
    assert [r.getMessage() for r in caplog.records] == [
        f"{out} is written but was not validated (interrupted); `siamedge inspect {out}` checks "
        "its contract"
    ]


def test_opset_option(seed0_network: SiamMaskVOT, tmp_path: Path) -> None:
    model = build_model(seed0_network, ExportOptions(opset=13))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert model.ir_version == 7
    path = tmp_path / "opset13.onnx"
    path.write_bytes(model.SerializeToString())
    runner = LayoutRunner(path, ONE_THREAD)
    frame = sample_frame()
    exemplar = frame[:127, :127].transpose(2, 0, 1)[None].astype(np.float32)
    ones = np.ones((1, 2), np.float32)
    out = runner.template(InitRows(exemplar, ones, ones))
    assert np.isfinite(out[c.OUT_FEATURES]).all() and out[c.OUT_FEATURES].any()
    search = np.zeros((1, 3, 255, 255), np.float32)
    step = runner.track(TrackRows(search, ones * 100, ones * 50, np.ones(1), out[c.OUT_FEATURES]))
    assert step[c.OUT_MASK].shape == (1, 127, 127) and np.isfinite(step[c.OUT_MASK]).all()
    with pytest.raises(ModelError, match="opset 12 is not available: the export needs 13 to"):
        build_model(seed0_network, ExportOptions(opset=12))
    newer = check_tensorrt(build_model(seed0_network, ExportOptions(opset=21)))
    assert newer.problems == ("opset 21 is outside 9-20",)


def test_hyper_parameters_are_validated() -> None:
    with pytest.raises(
        ModelError, match=r"window_influence must be a number in \[0, 1\], got 1\.5"
    ):
        HyperParameters(window_influence=1.5)
    with pytest.raises(ModelError, match=r"seg_thr must be a number in \(0, 1\), got 0\.0"):
        HyperParameters(seg_thr=0.0)
    with pytest.raises(ModelError, match="penalty_k must be a finite number >= 0, got nan"):
        HyperParameters(penalty_k=float("nan"))


# --- command line ---------------------------------------------------------------------------


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_command_writes_the_hyper_parameters_it_is_given(
    exported_models: ExportedModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tuned.onnx"
    args = _parse(
        "--checkpoint",
        str(exported_models.checkpoint),
        "--out",
        str(out),
        "--seed-layout",
        "--penalty-k",
        "0.09",
        "--window-influence",
        "0.42",
        "--lr",
        "0.25",
        "--seg-thr",
        "0.3",
        "--no-validate",
    )
    assert command.run(args) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"wrote {out}: ") and "seed layout (no score)" in printed
    contract = _contract(out)
    params = json.loads(contract.metadata[c.META_HYPER_PARAMETERS])
    assert (params["penalty_k"], params["window_influence"], params["lr"]) == (0.09, 0.42, 0.25)
    assert contract.seg_thr == pytest.approx(0.3) and not contract.has_score


def _file_state(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def test_command_refuses_to_write_over_the_checkpoint(
    seed0_checkpoint: Path, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "c.pth"
    shutil.copyfile(seed0_checkpoint, checkpoint)
    before = _file_state(checkpoint)
    link = tmp_path / "link.onnx"
    link.symlink_to(checkpoint.name)
    (tmp_path / "sub").mkdir()
    spellings = (checkpoint, link, tmp_path / "sub" / ".." / "c.pth")
    for out in spellings:
        args = _parse("--checkpoint", str(checkpoint), "--out", str(out), "--no-validate")
        with pytest.raises(ModelError) as caught:
            command.run(args)
        assert str(caught.value) == (
            f"cannot write the model to {out}: it is the checkpoint {checkpoint}; "
            "choose another output file"
        )
    assert _file_state(checkpoint) == before and link.is_symlink()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.pth", "link.onnx", "sub"]


def test_command_names_the_extra_when_torch_is_missing(tmp_path: Path, repo_root: Path) -> None:
    script = (
        "import sys; sys.modules['torch'] = None\n"
        "import argparse\n"
        "from siamedge.export import command\n"
        "p = argparse.ArgumentParser(); command.add_arguments(p)\n"
        f"command.run(p.parse_args(['--checkpoint', 'x.pth', '--out', {str(tmp_path)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(repo_root)},
    )
    assert done.returncode != 0
    assert "ModelError: the exporter needs torch and onnx: pip install 'siamedge[export]'" in (
        done.stderr
    )


def test_comparison_allows_near_ties_only() -> None:
    def step(margin: float) -> StepDiff:
        return StepDiff(((12, 13), (12, 12)), margin, 0.0, 0.0, 0.0, None)

    def comparison(*steps: StepDiff, features: float = 0.0) -> Comparison:
        return Comparison(features, 5.0, True, steps, FP32_TOLERANCES)

    assert comparison(step(FP32_TOLERANCES.cell_margin / 2)).problems == []
    (problem,) = comparison(step(0.01)).problems
    assert problem == "track sample 0: best cell (12, 13) != (12, 12) (margin 0.01)"
    (problem,) = comparison(features=float("nan")).problems
    assert problem.startswith("template features differ by nan")
    relative = Comparison(0.04, 5.0, True, (), FP16_TOLERANCES)
    assert relative.problems == []
