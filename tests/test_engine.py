"""The onnxruntime engine: clear errors for bad model files, feeds, warm-up, inspect."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import onnxruntime as ort_module
import pytest
from fixtures.toy_models import TOY_CELL, TOY_METADATA, TOY_SCORE, TOY_SHIFT

from siamedge import engine as e
from siamedge import ort_log, providers
from siamedge.config import ModelSettings
from siamedge.errors import ModelError
from siamedge.tracking.model_io import BatchStep

CPU_ONLY = ModelSettings(providers=["cpu"], warmup=False)
TRT_NAME, CPU_NAME = providers.TENSORRT, providers.CPU


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=f"model file not found: {tmp_path / 'nope.onnx'}"):
        e.Engine.load(str(tmp_path / "nope.onnx"), CPU_ONLY)


def test_a_missing_relative_path_names_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as raised:
        e.Engine.load("models/m.onnx", CPU_ONLY)
    assert str(raised.value) == (
        f"model file not found: models/m.onnx (relative to the working directory {tmp_path})"
    )


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


def rows(*values: tuple[float, float]) -> np.ndarray:
    return np.array(values, np.float64)


def test_engine_feeds_and_reads_back(toy_model: Callable[..., Path]) -> None:
    engine = e.Engine.load(str(toy_model(metadata=TOY_METADATA)), CPU_ONLY)
    assert engine.provider == providers.CPU
    assert engine.contract.seg_thr == 0.4
    assert engine.contract.model_name == "toy"

    exemplar = np.full((1, 127, 127, 3), 255, np.uint8)
    features = engine.template(exemplar, rows((63.0, 63.0)), rows((40.0, 20.0)))
    assert features.shape == (1, 256, 7, 7)
    np.testing.assert_allclose(features, 1.0)

    search = np.full((1, 255, 255, 3), 10, np.uint8)
    step = engine.track(
        search, rows((100.0, 50.0)), rows((40.0, 20.0)), np.array([0.5]), [features]
    ).row(0)
    assert step.center_xy == (100.0 + TOY_SHIFT[0], 50.0 + TOY_SHIFT[1])
    assert step.size_wh == (20.0, 10.0)
    assert step.best_cell_yx == TOY_CELL
    assert step.score == pytest.approx(TOY_SCORE)
    np.testing.assert_allclose(step.mask_probs, 10.0)
    assert step.mask_probs.shape == (127, 127)


def test_init_clears_what_a_previous_search_crop_left(toy_model: Callable[..., Path]) -> None:
    engine = e.Engine.load(str(toy_model()), CPU_ONLY)
    features = np.zeros((1, 256, 7, 7), np.float32)
    searches = np.full((1, 255, 255, 3), 200, np.uint8)
    engine.track(searches, rows((1.0, 1.0)), rows((1.0, 1.0)), np.ones(1), [features])
    engine.template(np.full((1, 127, 127, 3), 255, np.uint8), rows((1.0, 1.0)), rows((1.0, 1.0)))
    fed = engine._images  # the reused input buffer: exemplar top-left, zeros elsewhere
    assert (fed[0, :, :127, :127] == 255).all()
    assert not fed[0, :, 127:, :].any()
    assert not fed[0, :, :, 127:].any()


def test_model_without_score(toy_model: Callable[..., Path]) -> None:
    engine = e.Engine.load(str(toy_model(with_score=False)), CPU_ONLY)
    assert not engine.contract.has_score
    step = engine.track(
        np.zeros((1, 255, 255, 3), np.uint8),
        rows((1.0, 1.0)),
        rows((2.0, 2.0)),
        np.ones(1),
        [np.zeros((1, 256, 7, 7), np.float32)],
    )
    assert step.score is None
    assert step.row(0).score is None


def _three_targets() -> tuple[np.ndarray, ...]:
    searches = np.stack([np.full((255, 255, 3), value, np.uint8) for value in (10, 20, 30)])
    centers = rows((10.0, 20.0), (30.0, 40.0), (50.0, 60.0))
    sizes = rows((4.0, 8.0), (6.0, 10.0), (12.0, 14.0))
    scales = np.array([0.5, 1.0, 2.0])
    return searches, centers, sizes, scales


def _assert_rows_are_their_own(step: BatchStep) -> None:
    _, centers, sizes, scales = _three_targets()
    np.testing.assert_allclose(step.center_xy, centers + TOY_SHIFT)
    np.testing.assert_allclose(step.size_wh, sizes * scales[:, None])
    np.testing.assert_allclose(step.mask_probs[:, 0, 0], [10.0, 20.0, 30.0])
    assert step.mask_probs.shape == (3, 127, 127)
    assert step.best_cell_yx.tolist() == [list(TOY_CELL)] * 3
    assert step.score is not None
    np.testing.assert_allclose(step.score, TOY_SCORE)


def test_single_target_layout_makes_one_call_per_target(toy_model: Callable[..., Path]) -> None:
    engine = e.Engine.load(str(toy_model()), CPU_ONLY)
    assert (engine.contract.batched, engine.contract.max_batch) == (False, 1)
    features = [np.zeros((1, 256, 7, 7), np.float32) for _ in range(3)]
    before = engine.calls
    step = engine.track(*_three_targets(), features)
    assert engine.calls - before == 3
    _assert_rows_are_their_own(step)


def test_batched_layout_runs_every_target_in_one_call(
    batched_toy_model: Callable[..., Path],
) -> None:
    engine = e.Engine.load(str(batched_toy_model()), CPU_ONLY)
    assert (engine.contract.batched, engine.contract.max_batch) == (True, None)
    exemplars = np.zeros((3, 127, 127, 3), np.uint8)
    features = engine.template(exemplars, *_three_targets()[1:3])
    assert features.shape == (3, 256, 7, 7)
    np.testing.assert_allclose(features, 1.0)  # the toy: z_features0 (zeros) + 1
    before = engine.calls
    step = engine.track(*_three_targets(), [features[i : i + 1] for i in range(3)])
    assert engine.calls - before == 1
    _assert_rows_are_their_own(step)


def test_fixed_batch_is_filled_in_chunks_and_padded(
    batched_toy_model: Callable[..., Path],
) -> None:
    engine = e.Engine.load(str(batched_toy_model(batch=2)), CPU_ONLY)
    assert engine.contract.max_batch == 2
    features = [np.zeros((1, 256, 7, 7), np.float32) for _ in range(3)]
    before = engine.calls
    step = engine.track(*_three_targets(), features)
    assert engine.calls - before == 2  # rows 0-1, then row 2 padded to two
    _assert_rows_are_their_own(step)


def test_split_layout_runs_the_init_model_and_the_track_model(
    batched_toy_model: Callable[..., Path],
) -> None:
    engine = e.Engine.load(str(batched_toy_model("split.onnx", split=True)), CPU_ONLY)
    assert engine.contract.layout == "split"
    assert e.describe_layout(engine.contract) == "batch of any size, two models (split)"
    exemplars = np.stack([np.full((127, 127, 3), value, np.uint8) for value in (3, 7, 9)])
    features = engine.template(exemplars, *_three_targets()[1:3])
    np.testing.assert_allclose(features[:, 0, 0, 0], [3.0, 7.0, 9.0])  # the toy init: mean
    step = engine.track(*_three_targets(), [features[i : i + 1] for i in range(3)])
    _assert_rows_are_their_own(step)


def test_split_layout_without_its_init_model_is_named(
    batched_toy_model: Callable[..., Path],
) -> None:
    path = batched_toy_model("split.onnx", split=True)
    path.with_name("split.init.onnx").unlink()
    with pytest.raises(ModelError, match=r"its init model .*split\.init\.onnx.* does not exist"):
        e.Engine.load(str(path), CPU_ONLY)


def test_template_features_stay_bound_while_the_same_targets_step(
    batched_toy_model: Callable[..., Path],
) -> None:
    engine = e.Engine.load(str(batched_toy_model()), CPU_ONLY)
    features = [np.full((1, 256, 7, 7), i, np.float32) for i in range(3)]
    engine.track(*_three_targets(), features)
    (first,) = engine._features_on_device.values()
    engine.track(*_three_targets(), features)
    (again,) = engine._features_on_device.values()
    assert again.value is first.value  # not uploaded again
    engine.track(*_three_targets(), [features[2], features[0], features[1]])
    (reordered,) = engine._features_on_device.values()
    assert reordered.value is not first.value
    np.testing.assert_allclose(reordered.value.numpy()[:, 0, 0, 0], [2.0, 0.0, 1.0])


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


def test_cuda_graph_settings_bind_one_batch_per_size_for_a_split_model(
    batched_toy_model: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    """CUDA graphs replay fixed memory: the track model's inputs and outputs are bound once at
    batches of 1, 2 and 4 (max_batch), each with its own graph id, and updated in place; k
    targets run in the smallest that holds them (exercised here on the CPU provider)."""
    caplog.set_level(logging.INFO, logger="siamedge.engine")
    settings = ModelSettings(providers=["cpu"], warmup=False, cuda_graph=True)
    path = batched_toy_model("split.onnx", split=True)
    engine = e.Engine.load(str(path), settings, max_batch=4)
    graph_ids = {
        batch: buffers.run_options.get_run_config_entry(e.GRAPH_ID_KEY)
        for batch, buffers in engine._fixed.items()
    }
    assert graph_ids == {1: "1", 2: "2", 4: "3"}
    bound = "track model bound at batch 1, 2, 4 for CUDA graphs (one graph each)"
    assert bound in [record.getMessage() for record in caplog.records]
    features = [np.full((1, 256, 7, 7), i, np.float32) for i in range(3)]
    before = engine.calls
    _assert_rows_are_their_own(engine.track(*_three_targets(), features))
    _assert_rows_are_their_own(engine.track(*_three_targets(), features))
    assert engine.calls - before == 2
    bound = engine._fixed[4]._inputs["z_features0"].numpy()
    np.testing.assert_allclose(bound[:, 0, 0, 0], [0.0, 1.0, 2.0, 2.0])  # padded with the last
    one = engine.track(*(value[1:2] for value in _three_targets()), features[1:2])
    np.testing.assert_allclose(one.mask_probs[:, 0, 0], [20.0])
    np.testing.assert_allclose(engine._fixed[1]._inputs["z_features0"].numpy()[:, 0, 0, 0], [1.0])
    six = [np.concatenate(part) for part in zip(_three_targets(), _three_targets(), strict=True)]
    step = engine.track(*six, features + features)
    assert engine.calls - before == 5  # six targets: the batch of four, then the batch of two
    np.testing.assert_allclose(step.mask_probs[:, 0, 0], [10.0, 20.0, 30.0] * 2)
    np.testing.assert_allclose(engine._fixed[2]._inputs["z_features0"].numpy()[:, 0, 0, 0], [1, 2])


def test_cuda_graph_batches_are_powers_of_two_up_to_the_largest() -> None:
    assert e.graph_batches(4, several=True) == (1, 2, 4)
    assert e.graph_batches(6, several=True) == (1, 2, 4, 6)
    assert e.graph_batches(8, several=True) == (1, 2, 4, 8)
    assert e.graph_batches(1, several=True) == (1,)
    assert e.graph_batches(4, several=False) == (4,)


class _Session:
    """The two things several_graphs reads of a session and its onnxruntime."""

    def __init__(self, provider: str, version: str) -> None:
        self.provider, self.__version__ = provider, version

    def get_providers(self) -> list[str]:
        return [self.provider, providers.CPU]


@pytest.mark.parametrize(
    ("provider", "version", "several"),
    [
        (providers.CUDA, "1.18.0", True),
        (providers.CUDA, "1.22.1", True),
        (providers.CUDA, "1.17.3", False),  # one graph per session: any call replays it
        (providers.CUDA, "1.20.0.dev20240801", True),
        (providers.TENSORRT, "1.22.1", False),  # TensorRT's provider captures one graph
        (providers.CPU, "1.16.0", True),
    ],
)
def test_several_graphs_only_where_onnxruntime_keeps_one_per_id(
    provider: str, version: str, several: bool
) -> None:
    session = _Session(provider, version)
    assert e.several_graphs(cast(ModuleType, session), session) is several


def test_warm_up_captures_every_graph_batch_before_the_first_frame(
    batched_toy_model: Callable[..., Path],
) -> None:
    settings = ModelSettings(providers=["cpu"], warmup=False, cuda_graph=True)
    engine = e.Engine.load(str(batched_toy_model("split.onnx", split=True)), settings, max_batch=4)
    engine.warm_up(4)
    # per batch size: the init model once, the track model until its graph is captured
    assert engine.calls == 3 * (1 + e.GRAPH_CAPTURE_CALLS)


def test_cuda_graph_settings_on_a_model_with_if_run_it_without(
    batched_toy_model: Callable[..., Path], caplog: pytest.LogCaptureFixture
) -> None:
    settings = ModelSettings(providers=["cpu"], warmup=False, cuda_graph=True)
    engine = e.Engine.load(str(batched_toy_model()), settings, max_batch=4)
    assert engine._fixed == {}
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "has an If (control flow), which CUDA graphs cannot capture" in warnings[0]
    assert "siamedge export --layout split" in warnings[0]
    _assert_rows_are_their_own(
        engine.track(*_three_targets(), [np.zeros((1, 256, 7, 7), np.float32)] * 3)
    )


def test_first_call_of_a_batch_size_routes_onnxruntime_output_through_logging(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="siamedge.onnxruntime")
    settings = ModelSettings(providers=["cpu"], warmup=False, ort_log_level="verbose")
    engine = e.Engine.load("builtin", settings)
    capfd.readouterr()
    caplog.clear()
    engine.template(
        np.zeros((3, 127, 127, 3), np.uint8), np.full((3, 2), 99.0), np.full((3, 2), 40.0)
    )
    ort_lines = [r.getMessage() for r in caplog.records if r.name == "siamedge.onnxruntime"]
    assert any("Extending BFCArena" in line for line in ort_lines)
    assert "onnxruntime" not in capfd.readouterr().err


@pytest.mark.parametrize("watched", [True, False])
def test_a_failing_call_is_a_model_error_and_prints_nothing(
    batched_toy_model: Callable[..., Path], capfd: pytest.CaptureFixture[str], watched: bool
) -> None:
    # As a GPU provider can fail at run time: onnxruntime printed its own coloured error line
    # on stderr (journald) once the first calls of a batch size were no longer captured.
    path = batched_toy_model("split.onnx", split=True, track_fails_from_x=200)
    engine = e.Engine.load(str(path), CPU_ONLY)
    engine.warm_up()  # the warm-up's targets sit at x = 127.5
    center, size = np.array([[150.0, 60.0]]), np.array([[40.0, 40.0]])
    features = engine.template(np.zeros((1, 127, 127, 3), np.uint8), center, size)
    search = np.zeros((1, 255, 255, 3), np.uint8)
    for _ in range(0 if watched else ort_log.RunCapture.RUNS_WATCHED):
        engine.track(search, center, size, np.ones(1), [features])
    capfd.readouterr()
    with pytest.raises(ModelError) as failed:
        engine.track(search, center + 200.0, size, np.ones(1), [features])
    assert str(failed.value).startswith(f"{path}: inference failed: ")
    assert "indices element out of data bounds, idx=350" in str(failed.value)
    assert capfd.readouterr().err == ""


def test_crops_are_written_as_float_planes_top_left() -> None:
    """(N, H, W, 3) uint8 BGR crops land channel by channel in the top-left of larger planes,
    values exact; the rest of the planes is left as it was."""
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    planes = np.full((3, 3, 9, 11), -1.0, np.float32)
    e.write_planar(crops, planes)
    np.testing.assert_array_equal(planes[:, :, :5, :7], crops.transpose(0, 3, 1, 2))
    assert (planes[:, :, 5:, :] == -1.0).all()
    assert (planes[:, :, :, 7:] == -1.0).all()


TRT_BUILD_FAILED = "[ONNXRuntimeError] : 1 : FAIL : TensorRT EP Failed to Build Engine."
"""What a model with dynamic shapes gets at its first run when TensorRT cannot load or build."""


class _FirstRunSession:
    """A real CPU session that reports the GPU providers a session would have started, and
    fails its runs as TensorRT does at the first run when `fails` says so for its options."""

    def __init__(self, real: object, started: list[str], options: dict[str, Any], fails: bool):
        self._real, self._started, self._options, self._fails = real, started, options, fails

    def get_providers(self) -> list[str]:
        return self._started

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {self._started[0]: {key: str(value) for key, value in self._options.items()}}

    def run_with_iobinding(self, binding: Any, run_options: Any = None) -> None:
        if self._fails:
            raise RuntimeError(TRT_BUILD_FAILED)
        self._real.run_with_iobinding(binding, run_options)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _TrtAtFirstRun:
    """onnxruntime-gpu whose TensorRT opens every session (engines of a model with dynamic
    shapes are built or loaded at the first run) and fails that run when `fails(folder)` says
    so for its engine folder; CUDA runs. Sessions run on the real CPU build."""

    __version__ = "1.23.2"
    """A build that knows every option siamedge sets (not the test run's own onnxruntime, which
    is 1.17 in the oldest-releases run)."""

    def __init__(self, fails: Callable[[Path], bool]) -> None:
        self.fails = fails
        self.opened: list[list[str]] = []

    def get_available_providers(self) -> list[str]:
        return [providers.TENSORRT, providers.CUDA, providers.CPU]

    def InferenceSession(  # noqa: N802 - onnxruntime's name
        self, path: str, sess_options: Any = None, providers: Any = None, **kwargs: Any
    ) -> Any:
        real = ort_module.InferenceSession(path, sess_options, providers=[CPU_NAME])
        if "enable_fallback" not in kwargs:  # reading the model's declaration
            return real
        names = [name for name, _ in providers]
        self.opened.append(names)
        options = dict(providers)[names[0]]
        fails = names[0] == TRT_NAME and self.fails(Path(options["trt_engine_cache_path"]))
        return _FirstRunSession(real, names, options, fails)

    def __getattr__(self, name: str) -> Any:
        return getattr(ort_module, name)


@pytest.fixture
def trt_at_first_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Callable[[Callable[[Path], bool]], _TrtAtFirstRun]:
    """Engine.load on _TrtAtFirstRun, the device buffers on the CPU (no GPU here)."""
    monkeypatch.setattr(e, "_binding_device", lambda session: ("cpu", 0))
    monkeypatch.setenv(providers.TF32_OVERRIDE, "0")

    def make(fails: Callable[[Path], bool]) -> _TrtAtFirstRun:
        fake = _TrtAtFirstRun(fails)
        monkeypatch.setattr(e, "import_onnxruntime", lambda: fake)
        return fake

    return make


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_engine_tensorrt_cannot_load_at_the_first_run_is_built_again_once(
    trt_at_first_run: Callable[[Callable[[Path], bool]], _TrtAtFirstRun],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The usual path of a model with dynamic shapes: the engine is loaded at the first run, not
    # when the session opens, so a stale engine (a JetPack update) failed the warm-up for good.
    fake = trt_at_first_run(lambda folder: (folder / "old.engine").exists())
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"))
    model = e.resolve_model_path("builtin")
    folder = providers.engine_cache.engine_dir(
        tmp_path / "trt", model, providers.trt_build_key(settings)
    )
    folder.mkdir(parents=True)
    (folder / "old.engine").write_bytes(b"built by another TensorRT")
    engine = e.Engine.load("builtin", settings, max_batch=4)
    assert engine.provider == TRT_NAME and list(folder.iterdir()) == []
    assert fake.opened == [[TRT_NAME, providers.CUDA, CPU_NAME]] * 2
    assert _warnings(caplog) == [
        f"{model}: TensorRT failed at its first run (TensorRT EP Failed to Build Engine.): "
        f"removing its engines in {folder} and building them again"
    ]


def test_tensorrt_that_fails_at_the_first_run_again_gives_way_to_cuda_or_is_an_error(
    trt_at_first_run: Callable[[Callable[[Path], bool]], _TrtAtFirstRun],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = trt_at_first_run(lambda folder: True)  # e.g. out of memory building it on a Jetson
    engine = e.Engine.load("builtin", ModelSettings(cache_dir=str(tmp_path / "trt")), max_batch=4)
    assert engine.provider == providers.CUDA
    assert fake.opened[-1] == [providers.CUDA, CPU_NAME] and len(fake.opened) == 3
    assert _warnings(caplog)[1:] == [
        "TensorrtExecutionProvider did not start (failed at its first run: TensorRT EP Failed "
        "to Build Engine.); CUDAExecutionProvider runs instead"
    ]
    alone = ModelSettings(providers=["tensorrt"], cache_dir=str(tmp_path / "trt"))
    with pytest.raises(ModelError) as failed:
        e.Engine.load("builtin", alone)
    assert str(failed.value) == (
        f"{e.resolve_model_path('builtin')}: TensorRT failed at its first run: TensorRT EP Failed "
        "to Build Engine."
    )
