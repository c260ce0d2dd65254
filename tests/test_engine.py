"""The onnxruntime engine: clear errors for bad model files, feeds, warm-up, inspect."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fixtures.toy_models import TOY_CELL, TOY_METADATA, TOY_SCORE, TOY_SHIFT

from siamedge import engine as e
from siamedge import providers
from siamedge.config import ModelSettings
from siamedge.errors import ModelError

CPU_ONLY = ModelSettings(providers=["cpu"], warmup=False)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"model file not found: {tmp_path / 'nope.onnx'}"):
        e.Engine.load(str(tmp_path / "nope.onnx"), CPU_ONLY)


def test_a_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model path is not a file"):
        e.Engine.load(str(tmp_path), CPU_ONLY)


def test_non_onnx_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelError, match=r"notes.onnx: cannot load the model: .*(?i:protobuf)"):
        e.Engine.load(str(path), CPU_ONLY)


def test_truncated_file_is_named(toy_model: Callable[..., Path]) -> None:
    path = toy_model()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"toy\.onnx: cannot load the model"):
        e.Engine.load(str(path), CPU_ONLY)


def test_missing_input_is_named(toy_model: Callable[..., Path]) -> None:
    path = toy_model(drop_input="scale_x")
    with pytest.raises(ModelError, match=r"missing input\(s\) scale_x"):
        e.Engine.load(str(path), CPU_ONLY)


def test_wrong_dtype_is_named(toy_model: Callable[..., Path]) -> None:
    path = toy_model(retype={"first_time": "float32"})
    with pytest.raises(ModelError, match="input 'first_time' is float32, the contract needs bool"):
        e.Engine.load(str(path), CPU_ONLY)


def test_dynamic_input_is_named(toy_model: Callable[..., Path]) -> None:
    path = toy_model(dynamic_input="im")
    with pytest.raises(ModelError, match="'im' has a dynamic shape"):
        e.Engine.load(str(path), CPU_ONLY)


def test_engine_feeds_and_reads_back(toy_model: Callable[..., Path]) -> None:
    engine = e.Engine.load(str(toy_model(metadata=TOY_METADATA)), CPU_ONLY)
    assert engine.provider == providers.CPU
    assert engine.contract.seg_thr == 0.4
    assert engine.contract.model_name == "toy"

    exemplar = np.full((127, 127, 3), 255, np.uint8)
    features = engine.template(exemplar, (63.0, 63.0), (40.0, 20.0))
    assert features.shape == (1, 256, 7, 7)
    np.testing.assert_allclose(features, 1.0)

    search = np.full((255, 255, 3), 10, np.uint8)
    step = engine.track(search, (100.0, 50.0), (40.0, 20.0), 0.5, features)
    assert step.center_xy == (100.0 + TOY_SHIFT[0], 50.0 + TOY_SHIFT[1])
    assert step.size_wh == (20.0, 10.0)
    assert step.best_cell_yx == TOY_CELL
    assert step.score == pytest.approx(TOY_SCORE)
    np.testing.assert_allclose(step.mask_probs, 10.0)
    assert step.mask_probs.shape == (127, 127)


def test_init_clears_what_a_previous_search_crop_left(toy_model: Callable[..., Path]) -> None:
    engine = e.Engine.load(str(toy_model()), CPU_ONLY)
    features = np.zeros((1, 256, 7, 7), np.float32)
    engine.track(np.full((255, 255, 3), 200, np.uint8), (1.0, 1.0), (1.0, 1.0), 1.0, features)
    engine.template(np.full((127, 127, 3), 255, np.uint8), (1.0, 1.0), (1.0, 1.0))
    fed = engine._image  # the reused input buffer: exemplar top-left, zeros elsewhere
    assert (fed[0, :, :127, :127] == 255).all()
    assert not fed[0, :, 127:, :].any()
    assert not fed[0, :, :, 127:].any()


def test_model_without_score(toy_model: Callable[..., Path]) -> None:
    engine = e.Engine.load(str(toy_model(with_score=False)), CPU_ONLY)
    assert not engine.contract.has_score
    step = engine.track(
        np.zeros((255, 255, 3), np.uint8),
        (1.0, 1.0),
        (2.0, 2.0),
        1.0,
        np.zeros((1, 256, 7, 7), np.float32),
    )
    assert step.score is None


def test_warm_up_runs_both_branches(toy_model: Callable[..., Path]) -> None:
    engine = e.Engine.load(str(toy_model()), ModelSettings(providers=["cpu"], warmup=True))
    assert engine.warm_up() >= 0.0


def test_inspect_describes_the_model(toy_model: Callable[..., Path]) -> None:
    info = e.inspect_model(str(toy_model(metadata=TOY_METADATA)))
    assert [spec.name for spec in info.inputs][:2] == ["im", "target_pos0"]
    assert info.contract.has_score
    assert info.contract.metadata["siamedge.model"] == "toy"


def test_cpu_threads_do_not_spin_unless_asked(toy_model: Callable[..., Path]) -> None:
    path = str(toy_model())
    quiet = e.Engine.load(path, CPU_ONLY).session.get_session_options()
    assert quiet.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = ModelSettings(providers=["cpu"], warmup=False, intra_op_spinning=True)
    options = e.Engine.load(path, spinning).session.get_session_options()
    with pytest.raises(Exception, match="does not have configuration with key"):
        options.get_session_config_entry("session.intra_op.allow_spinning")
