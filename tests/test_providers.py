"""Execution providers: choice, options, TensorRT profiles and caches, fallback when one fails."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
import pytest
from fixtures.onnxruntime_gpu_text import (
    GRAPH_CAPTURE_EXCEPTION,
    GRAPH_CAPTURE_LOG,
    GRAPH_CAPTURE_REFUSAL,
    REAL_CUDA_FAILURE,
    REAL_FALLBACK_PRINT,
    REAL_TRT_EXCEPTION,
    REAL_TRT_LIBRARY_ERROR,
)
from onnx import TensorProto, helper

from siamedge import contract as c
from siamedge import ort_log
from siamedge import providers as p
from siamedge.config import ModelSettings, settings_from_mapping
from siamedge.engine_cache import engine_dir
from siamedge.errors import ConfigError, ModelError
from siamedge.models import resolve_model_path

MIB = 1024 * 1024


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    available = [p.CPU, p.CUDA, p.TENSORRT]
    assert p.choose_providers("auto", available) == [p.TENSORRT, p.CUDA, p.CPU]
    assert p.choose_providers("auto", [p.CPU, p.CUDA]) == [p.CUDA, p.CPU]
    assert p.choose_providers("auto", [p.CPU]) == [p.CPU]


def test_explicit_list_keeps_order_and_drops_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    assert p.choose_providers(["cpu", "cuda"], [p.CPU, p.CUDA]) == [p.CPU, p.CUDA]
    assert p.choose_providers(["tensorrt", "cpu"], [p.CPU]) == [p.CPU]
    assert p.choose_providers(["cpu", "cuda", "cpu"], [p.CPU, p.CUDA]) == [p.CPU, p.CUDA]
    assert "tensorrt is not available" in caplog.text


def test_explicit_list_with_nothing_available_is_an_error() -> None:
    with pytest.raises(ModelError, match=r"none of the requested execution providers \['cuda'\]"):
        p.choose_providers(["cuda"], [p.CPU])


# --- provider options ---------------------------------------------------------------------


def test_cuda_runs_without_tf32_by_default(tmp_path: Path) -> None:
    assert p.provider_options(p.CUDA, ModelSettings(), tmp_path) == {
        "device_id": 0,
        "use_tf32": 0,
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "arena_extend_strategy": "kNextPowerOfTwo",
        "do_copy_in_default_stream": 1,
    }


def test_cuda_options_follow_each_setting(tmp_path: Path) -> None:
    settings = ModelSettings(
        cuda_device_id=1,
        cuda_tf32=True,
        cuda_conv_algo_search="HEURISTIC",
        cuda_mem_limit_mb=2048,
        cuda_arena_extend_strategy="kSameAsRequested",
        cuda_copy_in_default_stream=False,
        cuda_prefer_nhwc=True,
        cuda_fuse_conv_bias=True,
        cuda_graph=True,
    )
    assert p.provider_options(p.CUDA, settings, tmp_path) == {
        "device_id": 1,
        "use_tf32": 1,
        "cudnn_conv_algo_search": "HEURISTIC",
        "arena_extend_strategy": "kSameAsRequested",
        "do_copy_in_default_stream": 0,
        "prefer_nhwc": 1,
        "fuse_conv_bias": 1,
        "gpu_mem_limit": 2048 * MIB,
        "enable_cuda_graph": 1,
    }


def test_tensorrt_options_put_the_engines_in_their_folder(tmp_path: Path) -> None:
    settings = ModelSettings()
    options = p.provider_options(p.TENSORRT, settings, tmp_path, engine_dir=tmp_path / "m-0")
    assert options["trt_engine_cache_path"] == str(tmp_path / "m-0")
    assert options["trt_timing_cache_path"] == str(tmp_path)


def test_tensorrt_options_put_both_caches_in_the_cache_dir(tmp_path: Path) -> None:
    settings = ModelSettings(trt_fp16=False, trt_workspace_mb=512, cuda_device_id=1)
    options = p.provider_options(p.TENSORRT, settings, tmp_path)
    assert options == {
        "device_id": 1,
        "trt_fp16_enable": False,
        "trt_max_workspace_size": 512 * MIB,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(tmp_path),
    }
    assert p.provider_options(p.CPU, settings, tmp_path) == {}


def test_tensorrt_workspace_zero_leaves_the_limit_to_onnxruntime(tmp_path: Path) -> None:
    options = p.provider_options(p.TENSORRT, ModelSettings(trt_workspace_mb=0), tmp_path)
    assert "trt_max_workspace_size" not in options
    assert options["trt_engine_cache_enable"] is True


def test_tensorrt_dla_builder_level_cuda_graph_and_profiles(tmp_path: Path) -> None:
    settings = ModelSettings(
        trt_fp16=True,
        trt_dla_enable=True,
        trt_dla_core=1,
        trt_builder_optimization_level=5,
        trt_cuda_graph=True,
    )
    profiles = p.TrtProfiles("im:1x3x8x8", "im:4x3x8x8", "im:4x3x8x8")
    options = p.provider_options(p.TENSORRT, settings, tmp_path, profiles)
    assert {key: value for key, value in options.items() if "cache" not in key} == {
        "device_id": 0,
        "trt_fp16_enable": True,
        "trt_max_workspace_size": 1024 * MIB,
        "trt_builder_optimization_level": 5,
        "trt_dla_enable": True,
        "trt_dla_core": 1,
        "trt_cuda_graph_enable": True,
        "trt_profile_min_shapes": "im:1x3x8x8",
        "trt_profile_opt_shapes": "im:4x3x8x8",
        "trt_profile_max_shapes": "im:4x3x8x8",
    }


def test_option_values_reach_onnxruntime_in_the_formats_it_parses(tmp_path: Path) -> None:
    """onnxruntime turns every value into str(): TensorRT wants True/False, CUDA 0/1."""
    settings = ModelSettings(trt_fp16=True, trt_dla_enable=True, cuda_graph=True)
    trt = {
        key: str(value) for key, value in p.provider_options(p.TENSORRT, settings, tmp_path).items()
    }
    assert trt["trt_fp16_enable"] == "True"
    assert trt["trt_dla_enable"] == "True"
    cuda = {
        key: str(value) for key, value in p.provider_options(p.CUDA, settings, tmp_path).items()
    }
    assert (cuda["use_tf32"], cuda["enable_cuda_graph"]) == ("0", "1")


# --- TensorRT optimisation profiles -------------------------------------------------------


def dynamic_batch_model(path: Path, *, extra_symbolic: bool = False) -> Path:
    """Inputs: im [batch, 3, 8, 8], pos [batch, 2], flag [] (scalar), fixed [1, 4]."""
    width: str | int = "width" if extra_symbolic else 8
    specs = [
        ("im", TensorProto.FLOAT, ["batch", 3, 8, width]),
        ("pos", TensorProto.FLOAT, ["batch", 2]),
        ("flag", TensorProto.BOOL, []),
        ("fixed", TensorProto.FLOAT, [1, 4]),
    ]
    inputs = [helper.make_tensor_value_info(name, elem, shape) for name, elem, shape in specs]
    outputs = [
        helper.make_tensor_value_info(f"{name}_out", elem, shape) for name, elem, shape in specs
    ]
    nodes = [helper.make_node("Identity", [info.name], [f"{info.name}_out"]) for info in inputs]
    graph = helper.make_graph(nodes, "dynamic_batch", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_profiles_cover_every_input_with_a_symbolic_batch(tmp_path: Path) -> None:
    inputs = p.read_declaration(ort, dynamic_batch_model(tmp_path / "dyn.onnx")).inputs
    assert inputs == [
        ("im", ["batch", 3, 8, 8]),
        ("pos", ["batch", 2]),
        ("flag", []),
        ("fixed", [1, 4]),
    ]
    assert p.trt_profiles(inputs, max_batch=4) == p.TrtProfiles(
        min_shapes="im:1x3x8x8,pos:1x2",
        opt_shapes="im:4x3x8x8,pos:4x2",
        max_shapes="im:4x3x8x8,pos:4x2",
    )
    assert p.trt_profiles(inputs, max_batch=1) == p.TrtProfiles(
        "im:1x3x8x8,pos:1x2", "im:1x3x8x8,pos:1x2", "im:1x3x8x8,pos:1x2"
    )


def test_a_static_model_needs_no_profile() -> None:
    assert p.trt_profiles([("im", [1, 3, 255, 255]), ("scale_x", [])], max_batch=8) is None
    assert p.trt_profiles([("im", [None, 3, 4, 4])], max_batch=2) == p.TrtProfiles(
        "im:1x3x4x4", "im:2x3x4x4", "im:2x3x4x4"
    )


def test_a_symbolic_dimension_besides_the_batch_has_no_profile(tmp_path: Path) -> None:
    inputs = p.read_declaration(
        ort, dynamic_batch_model(tmp_path / "w.onnx", extra_symbolic=True)
    ).inputs
    with pytest.raises(p.ProfileError, match=r"input 'im' has a symbolic dimension besides"):
        p.trt_profiles(inputs, max_batch=4)
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        p.trt_profiles(inputs, max_batch=0)


# --- caches -------------------------------------------------------------------------------


def test_default_cache_dir_follows_systemd_state_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/state:/other")
    assert p.default_cache_dir() == tmp_path / "state" / "trt"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert p.default_cache_dir() == tmp_path / "xdg" / "siamedge" / "trt"


def test_cache_dir_that_cannot_be_created_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(
        ModelError, match=f"TensorRT cache folder {blocker / 'trt'} cannot be created"
    ):
        p.prepare_cache_dir(blocker / "trt")
    assert p.prepare_cache_dir(tmp_path / "a" / "b").is_dir()


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"cuda_conv_algo_search": "FAST"}, "model.cuda_conv_algo_search: Input should be"),
        ({"cuda_tf32": "sometimes"}, "model.cuda_tf32: Input should be a valid boolean"),
        ({"cuda_mem_limit_mb": 0}, "model.cuda_mem_limit_mb: Input should be greater than 0"),
        ({"cuda_arena_extend_strategy": "grow"}, "model.cuda_arena_extend_strategy: Input should"),
        ({"trt_builder_optimization_level": 6}, "model.trt_builder_optimization_level: Input"),
        ({"trt_dla_core": -1}, "model.trt_dla_core: Input should be greater than or equal to 0"),
        ({"ort_log_level": "debug"}, "model.ort_log_level: Input should be 'error', 'warning'"),
        ({"cuda_tf33": False}, "model.cuda_tf33: Extra inputs are not permitted"),
    ],
)
def test_bad_provider_settings_name_the_key(model: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^site.yaml: {message}"):
        settings_from_mapping({"model": model}, "site.yaml")


def test_shipped_configuration_keeps_parity(repo_root: Path) -> None:
    from siamedge.config import load_settings

    model = load_settings(repo_root / "config" / "siamedge.yaml").model
    assert not model.cuda_tf32
    assert model.cuda_conv_algo_search == "EXHAUSTIVE"
    assert model.ort_log_level == "warning"


# --- opening a session --------------------------------------------------------------------


@pytest.fixture
def default_severity_restored() -> Iterator[None]:
    """onnxruntime's default logger is process-wide: put it back to warning after the test."""
    yield
    ort.set_default_logger_severity(ort_log.severity("warning"))


def test_cpu_session_with_verbose_log_goes_through_logging(
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    default_severity_restored: None,
) -> None:
    caplog.set_level(logging.DEBUG, logger="siamedge.onnxruntime")
    settings = ModelSettings(providers=["cpu"], ort_log_level="verbose")
    session = p.open_session(ort, resolve_model_path("builtin"), settings)
    assert session.get_providers() == [p.CPU]
    assert session.get_session_options().log_severity_level == 0
    assert ":onnxruntime:" not in capfd.readouterr().err
    assert any(record.name == "siamedge.onnxruntime" for record in caplog.records)


def test_cpu_threads_do_not_spin_unless_asked() -> None:
    path = resolve_model_path("builtin")
    quiet = p.open_session(ort, path, ModelSettings(providers=["cpu"]))
    assert (
        quiet.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        == "0"
    )
    spinning = p.open_session(ort, path, ModelSettings(providers=["cpu"], intra_op_spinning=True))
    with pytest.raises(Exception, match="does not have configuration with key"):
        spinning.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")


class FakeSession:
    """A real CPU session that reports the providers a GPU session would have started."""

    def __init__(self, session: Any, started: list[str]) -> None:
        self._session = session
        self._started = started
        self.fallback_disabled = False

    def get_providers(self) -> list[str]:
        return self._started

    def get_inputs(self) -> Any:
        return self._session.get_inputs()

    def disable_fallback(self) -> None:
        self.fallback_disabled = True


class FakeGpuOrt:
    """onnxruntime-gpu on a board whose TensorRT libraries are missing (and CUDA's too, when
    cuda_works is false): it writes onnxruntime-gpu 1.31.1's real text to fd 2 and stdout.

    honours_enable_fallback: like onnxruntime 1.31, raise for TensorRT when enable_fallback=0;
    otherwise like older versions, print the EP Error block and retry on its own (without the
    provider options). Sessions run on the real CPU build.
    """

    SessionOptions = ort.SessionOptions
    GraphOptimizationLevel = ort.GraphOptimizationLevel

    def __init__(
        self,
        *,
        honours_enable_fallback: bool,
        cuda_works: bool = True,
        graphs_fail: bool = False,
        cuda_knows: frozenset[str] | None = None,
        tensorrt: Callable[[dict[str, Any]], str | None] | None = None,
        nhwc_kernels: bool = True,
    ) -> None:
        """graphs_fail: refuse a CUDA provider asked for graph capture, as onnxruntime does for
        a model with nodes off the provider. cuda_knows: the CUDA option keys this build
        parses (others: `Unknown provider option`). tensorrt: TensorRT's libraries are there,
        and this says its error for the options it is given (None: it starts). nhwc_kernels:
        False refuses prefer_nhwc, as builds without onnxruntime_USE_CUDA_NHWC_OPS do."""
        self.honours_enable_fallback = honours_enable_fallback
        self.cuda_works = cuda_works
        self.graphs_fail = graphs_fail
        self.cuda_knows = cuda_knows
        self.tensorrt = tensorrt
        self.nhwc_kernels = nhwc_kernels
        self.attempts: list[list[tuple[str, dict[str, Any]]]] = []
        self.severities: list[int] = []
        self.sessions: list[FakeSession] = []

    def get_available_providers(self) -> list[str]:
        return [p.TENSORRT, p.CUDA, p.CPU]

    def set_default_logger_severity(self, level: int) -> None:
        self.severities.append(level)

    def InferenceSession(  # noqa: N802 - onnxruntime's name
        self,
        path: str,
        sess_options: Any = None,
        providers: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        entries = [(entry, {}) if isinstance(entry, str) else entry for entry in providers or []]
        names = [name for name, _ in entries]
        real = ort.InferenceSession(path, sess_options, providers=[p.CPU])
        if "enable_fallback" not in kwargs:  # providers.read_declaration, on the CPU
            return real
        self.attempts.append(entries)
        cuda_options = dict(entries).get(p.CUDA, {})
        unknown = sorted(set(cuda_options) - self.cuda_knows) if self.cuda_knows else []
        refused = None
        if p.CUDA in names and unknown:
            refused = f'Unknown provider option: "{unknown[0]}".'
        elif p.CUDA in names and not self.nhwc_kernels and cuda_options.get("prefer_nhwc"):
            refused = NHWC_REFUSED
        if refused is not None:
            error = refused
            if self.honours_enable_fallback:
                raise RuntimeError(error)
            print(fallback_print(error, names), end="")
            return self._session(real, [p.CUDA, p.CPU])  # onnxruntime's retry: no options
        if p.TENSORRT in names and self.tensorrt is not None:
            refused = self.tensorrt(dict(entries)[p.TENSORRT])
            if refused is not None:
                raise RuntimeError(refused)
            return self._session(real, names)
        if p.TENSORRT in names:
            os.write(2, REAL_TRT_LIBRARY_ERROR.encode())
            if self.honours_enable_fallback and kwargs.get("enable_fallback") == 0:
                raise RuntimeError(REAL_TRT_EXCEPTION)
            print(REAL_FALLBACK_PRINT, end="")
            names = [p.CUDA, p.CPU]
        if p.CUDA in names and self.graphs_fail and cuda_options.get("enable_cuda_graph"):
            os.write(2, GRAPH_CAPTURE_LOG.encode())
            raise RuntimeError(GRAPH_CAPTURE_EXCEPTION)
        if p.CUDA in names and not self.cuda_works:
            os.write(2, REAL_CUDA_FAILURE.encode())
            names.remove(p.CUDA)
        return self._session(real, names)

    def _session(self, real: Any, started: list[str]) -> FakeSession:
        session = FakeSession(real, started)
        self.sessions.append(session)
        return session


NHWC_REFUSED = (
    "/onnxruntime_src/onnxruntime/core/providers/cuda/cuda_execution_provider.cc:285 "
    "onnxruntime::CUDAExecutionProvider::CUDAExecutionProvider(const "
    "onnxruntime::CUDAExecutionProviderInfo&) This build does not support NHWC layout"
)
"""onnxruntime-gpu 1.17-1.20's (PyPI wheels) refusal of prefer_nhwc (an ORT_ENFORCE)."""


def fallback_print(error: str, requested: list[str]) -> str:
    """What onnxruntime before 1.23 prints when it retries a failed session on its own."""
    return (
        "*************** EP Error ***************\n"
        f"EP Error {error} when using {requested}\n"
        "Falling back to ['CUDAExecutionProvider', 'CPUExecutionProvider'] and retrying.\n"
        "****************************************\n"
    )


def warnings_and_up(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.parametrize("honours_enable_fallback", [True, False], ids=["ort-1.31", "older-ort"])
def test_tensorrt_that_cannot_start_gives_one_line_and_siamedge_falls_back(
    honours_enable_fallback: bool,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeGpuOrt(honours_enable_fallback=honours_enable_fallback)
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"), ort_log_level="info")
    session = p.open_session(fake, resolve_model_path("builtin"), settings)  # type: ignore[arg-type]

    assert warnings_and_up(caplog) == [
        "TensorrtExecutionProvider did not start (missing library libcublas.so.13); "
        "CUDAExecutionProvider runs instead"
    ]
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    # siamedge's own retry, with siamedge's CUDA options (TF32 off), runs the model.
    assert [name for name, _ in fake.attempts[-1]] == [p.CUDA, p.CPU]
    assert fake.attempts[-1][0][1]["use_tf32"] == 0
    assert session is fake.sessions[-1]
    assert session.get_providers() == [p.CUDA, p.CPU]
    assert session.fallback_disabled
    assert fake.severities == [1]


def test_cuda_that_onnxruntime_drops_silently_is_named_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeGpuOrt(honours_enable_fallback=True, cuda_works=False)
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"))
    session = p.open_session(fake, resolve_model_path("builtin"), settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.CPU]
    assert warnings_and_up(caplog) == [
        "TensorrtExecutionProvider did not start (missing library libcublas.so.13); "
        "CPUExecutionProvider runs instead",
        "CUDAExecutionProvider did not start (missing library libcublasLt.so.13); "
        "CPUExecutionProvider runs instead",
    ]
    assert capfd.readouterr() == ("", "")


def test_cuda_that_refuses_graph_capture_runs_the_model_without_graphs_and_says_so_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeGpuOrt(honours_enable_fallback=True, graphs_fail=True)
    settings = ModelSettings(providers=["cuda", "cpu"], cuda_graph=True)
    model = resolve_model_path("builtin")
    session = p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.CUDA, p.CPU]  # still on the GPU, not the CPU
    first, second = (
        [options for name, options in attempt if name == p.CUDA] for attempt in fake.attempts
    )
    assert first[0]["enable_cuda_graph"] == 1 and "enable_cuda_graph" not in second[0]
    assert second[0]["use_tf32"] == 0  # the other options kept
    assert warnings_and_up(caplog) == [f"{model} runs without CUDA graphs: {GRAPH_CAPTURE_REFUSAL}"]
    assert capfd.readouterr() == ("", "")


CUDA_1_18_OPTIONS = frozenset(
    {"device_id", "use_tf32", "cudnn_conv_algo_search", "arena_extend_strategy"}
    | {"do_copy_in_default_stream", "gpu_mem_limit", "prefer_nhwc", "enable_cuda_graph"}
)
"""The CUDA options siamedge sets that onnxruntime 1.18 parses (not fuse_conv_bias)."""
CUDA_1_17_OPTIONS = CUDA_1_18_OPTIONS - {"use_tf32"}
"""use_tf32 came with 1.18."""


@pytest.mark.parametrize("honours_enable_fallback", [True, False], ids=["ort-1.31", "older-ort"])
def test_an_option_this_onnxruntime_lacks_is_left_out_not_the_provider(
    honours_enable_fallback: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Older onnxruntime builds (JetPack's) refuse an option they do not know; its own fallback
    # blamed TensorRT, listed first, and siamedge dropped it (and CUDA, with the bad option).
    fake = FakeGpuOrt(
        honours_enable_fallback=honours_enable_fallback,
        cuda_knows=CUDA_1_18_OPTIONS,
        tensorrt=lambda options: None,
    )
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"), cuda_fuse_conv_bias=True)
    model = resolve_model_path("builtin")
    session = p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.TENSORRT, p.CUDA, p.CPU]
    first, second = (dict(attempt) for attempt in fake.attempts)
    assert first[p.CUDA]["fuse_conv_bias"] == 1
    assert second[p.CUDA] == {k: v for k, v in first[p.CUDA].items() if k != "fuse_conv_bias"}
    assert second[p.TENSORRT] == first[p.TENSORRT]
    assert warnings_and_up(caplog) == [
        f"{model}: this onnxruntime (?) does not know the CUDAExecutionProvider option "
        "fuse_conv_bias: running without it"
    ]


@pytest.mark.parametrize("honours_enable_fallback", [True, False], ids=["ort-1.31", "older-ort"])
def test_prefer_nhwc_in_a_build_without_nhwc_kernels_is_left_out_not_the_provider(
    honours_enable_fallback: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The refusal was blamed on TensorRT, listed first, then CUDA went too: the CPU ran.
    fake = FakeGpuOrt(
        honours_enable_fallback=honours_enable_fallback,
        nhwc_kernels=False,
        tensorrt=lambda options: None,
    )
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"), cuda_prefer_nhwc=True)
    model = resolve_model_path("builtin")
    session = p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.TENSORRT, p.CUDA, p.CPU]
    first, second = (dict(attempt) for attempt in fake.attempts)
    assert first[p.CUDA]["prefer_nhwc"] == 1
    assert second[p.CUDA] == {k: v for k, v in first[p.CUDA].items() if k != "prefer_nhwc"}
    assert second[p.TENSORRT] == first[p.TENSORRT]
    assert warnings_and_up(caplog) == [
        f"{model}: this onnxruntime build has no NHWC CUDA kernels: the CUDA provider runs "
        "without model.cuda_prefer_nhwc"
    ]


def test_cuda_without_use_tf32_keeps_tf32_off_through_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # onnxruntime 1.17 (the Jetson Zoo's for JetPack 6) has no use_tf32: the option was left
    # out and an Orin ran float32 convolutions in TF32 (0.64 px centre drift on an H200).
    monkeypatch.setenv(p.TF32_OVERRIDE, "unset")  # recorded, so the test's own change is undone
    monkeypatch.delenv(p.TF32_OVERRIDE)
    fake = FakeGpuOrt(honours_enable_fallback=True, cuda_knows=CUDA_1_17_OPTIONS)
    model = resolve_model_path("builtin")
    settings = ModelSettings(providers=["cuda", "cpu"])
    session = p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.CUDA, p.CPU]
    assert "use_tf32" not in dict(fake.attempts[-1])[p.CUDA]
    assert os.environ[p.TF32_OVERRIDE] == "0"
    assert warnings_and_up(caplog) == [
        f"{model}: this onnxruntime (?) does not know the CUDAExecutionProvider option "
        "use_tf32: NVIDIA_TF32_OVERRIDE=0 keeps TF32 off instead (for the whole process)"
    ]


@pytest.mark.parametrize(("tf32", "environment"), [(True, None), (False, "1")])
def test_cuda_without_use_tf32_leaves_the_environment_when_tf32_is_allowed_or_decided(
    tf32: bool,
    environment: str | None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(p.TF32_OVERRIDE, environment or "unset")
    if environment is None:
        monkeypatch.delenv(p.TF32_OVERRIDE)
    fake = FakeGpuOrt(honours_enable_fallback=True, cuda_knows=CUDA_1_17_OPTIONS)
    model = resolve_model_path("builtin")
    settings = ModelSettings(providers=["cuda", "cpu"], cuda_tf32=tf32)
    p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert os.environ.get(p.TF32_OVERRIDE) == environment
    instead = "running without it" + ("" if tf32 else " (NVIDIA_TF32_OVERRIDE=1 decides TF32)")
    assert warnings_and_up(caplog)[-1] == (
        f"{model}: this onnxruntime (?) does not know the CUDAExecutionProvider option "
        f"use_tf32: {instead}"
    )


@pytest.mark.parametrize(
    ("version", "knows", "left_out"),
    [
        ("1.17.1", CUDA_1_17_OPTIONS, ["use_tf32", "fuse_conv_bias"]),
        ("1.19.2", CUDA_1_18_OPTIONS, ["fuse_conv_bias"]),
        ("1.20.0", CUDA_1_18_OPTIONS | {"fuse_conv_bias"}, []),
    ],
)
def test_options_newer_than_this_onnxruntime_are_left_out_before_the_first_session(
    version: str,
    knows: frozenset[str],
    left_out: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A JetPack 6 board's onnxruntime 1.17 refused the first session for use_tf32, and (before
    # enable_fallback) built a whole CUDA session of its own without options before siamedge
    # tried again; NVIDIA_TF32_OVERRIDE came only after the CUDA provider had loaded.
    monkeypatch.setenv(p.TF32_OVERRIDE, "unset")
    monkeypatch.delenv(p.TF32_OVERRIDE)
    fake = FakeGpuOrt(honours_enable_fallback=False, cuda_knows=knows)
    fake.__version__ = version  # type: ignore[attr-defined]
    model = resolve_model_path("builtin")
    settings = ModelSettings(providers=["cuda", "cpu"], cuda_fuse_conv_bias=True)
    session = p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.CUDA, p.CPU]
    assert len(fake.attempts) == 1  # no session refused for an option
    options = dict(fake.attempts[0])[p.CUDA]
    assert set(options) == knows & set(p.provider_options(p.CUDA, settings, Path("/")))
    assert os.environ.get(p.TF32_OVERRIDE) == ("0" if "use_tf32" in left_out else None)
    instead = {
        "use_tf32": "NVIDIA_TF32_OVERRIDE=0 keeps TF32 off instead (for the whole process)",
        "fuse_conv_bias": "running without it",
    }
    assert warnings_and_up(caplog) == [
        f"{model}: this onnxruntime ({version}) does not know the CUDAExecutionProvider option "
        f"{key}: {instead[key]}"
        for key in left_out
    ]


def test_an_option_this_onnxruntime_lacks_is_warned_of_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The split layout opens two sessions, TensorRT's second try a third: on a 1.17 board
    # each one repeated the warning, the later ones blaming the environment for the override
    # siamedge itself had set.
    monkeypatch.setenv(p.TF32_OVERRIDE, "unset")
    monkeypatch.delenv(p.TF32_OVERRIDE)
    caplog.set_level(logging.DEBUG, logger=p.log.name)
    fake = FakeGpuOrt(honours_enable_fallback=True, cuda_knows=CUDA_1_17_OPTIONS)
    fake.__version__ = "1.17.1"  # type: ignore[attr-defined]
    model = resolve_model_path("builtin")
    settings = ModelSettings(providers=["cuda", "cpu"])
    for _ in range(3):
        p.open_session(fake, model, settings)  # type: ignore[arg-type]
    told = [r for r in caplog.records if "know the CUDAExecutionProvider" in r.getMessage()]
    assert [r.levelno for r in told] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert (
        told[0]
        .getMessage()
        .endswith("NVIDIA_TF32_OVERRIDE=0 keeps TF32 off instead (for the whole process)")
    )
    assert os.environ[p.TF32_OVERRIDE] == "0"
    other = FakeGpuOrt(honours_enable_fallback=True, cuda_knows=CUDA_1_17_OPTIONS)
    p.open_session(other, model, settings)  # type: ignore[arg-type]
    assert warnings_and_up(caplog)[-1].startswith(f"{model}: this onnxruntime (?) does not know")


TRT_GRAPH_REFUSAL = (
    "This session cannot use the CUDA Graph feature as requested by the user as all the graph "
    "nodes have not been assigned to TensorrtExecutionProvider"
)


def test_tensorrt_that_refuses_graph_capture_keeps_tensorrt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # TensorRT words the refusal otherwise than CUDA: it was taken for TensorRT failing.
    fake = FakeGpuOrt(
        honours_enable_fallback=True,
        tensorrt=lambda options: (
            TRT_GRAPH_REFUSAL if options.get("trt_cuda_graph_enable") else None
        ),
    )
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"), trt_cuda_graph=True)
    model = resolve_model_path("builtin")
    session = p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.TENSORRT, p.CUDA, p.CPU]
    assert "trt_cuda_graph_enable" not in dict(fake.attempts[-1])[p.TENSORRT]
    assert warnings_and_up(caplog) == [f"{model} runs without CUDA graphs: {TRT_GRAPH_REFUSAL}"]


PARTIAL_PROFILES = (
    "[ONNXRuntimeError] : 11 : EP_FAIL : User needs to provide all the dynamic shape inputs "
    "with associated profiles if they want to explicitly set profiles through provider "
    "options.\nPlease note that main graph could be partitioned into TRT/CUDA/CPU subgraphs, "
    "in this case, user also needs to provide shape profiles for the TRT subgraph's input if "
    "it's dynamic shape input.\nFollowing input(s) has no associated shape profiles provided: "
    "/track/If_output_0"
)


def test_tensorrt_taking_part_of_the_model_runs_without_explicit_profiles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeGpuOrt(
        honours_enable_fallback=True,
        tensorrt=lambda options: PARTIAL_PROFILES if p.PROFILE_OPTIONS[0] in options else None,
    )
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"))
    model = dynamic_batch_model(tmp_path / "dyn.onnx")
    session = p.open_session(fake, model, settings, max_batch=4)  # type: ignore[arg-type]
    assert session.get_providers() == [p.TENSORRT, p.CUDA, p.CPU]
    first, second = (dict(attempt)[p.TENSORRT] for attempt in fake.attempts)
    assert all(key in first for key in p.PROFILE_OPTIONS)
    assert second == {k: v for k, v in first.items() if k not in p.PROFILE_OPTIONS}
    assert warnings_and_up(caplog) == [
        f"{model}: TensorRT takes only part of the model, whose parts need profiles of their "
        "own (/track/If_output_0): running it with the profiles TensorRT sets from the shapes "
        "it meets"
    ]


STALE_ENGINE_ERROR = (
    "[ONNXRuntimeError] : 11 : EP_FAIL : TensorRT EP could not deserialize engine from cache: "
    "/var/lib/siamedge/trt/model-0123/TensorrtExecutionProvider_TRTKernel_graph_1_fp16.engine"
)


def test_a_cached_engine_tensorrt_cannot_load_is_built_again_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def tensorrt(options: dict[str, Any]) -> str | None:
        folder = Path(options["trt_engine_cache_path"])
        return STALE_ENGINE_ERROR if (folder / "old.engine").exists() else None

    fake = FakeGpuOrt(honours_enable_fallback=True, tensorrt=tensorrt)
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"))
    model = resolve_model_path("builtin")
    p.keep_fp32_exact(settings)
    folder = engine_dir(tmp_path / "trt", model, p.trt_build_key(settings))
    folder.mkdir(parents=True)
    (folder / "old.engine").write_bytes(b"built by another TensorRT")
    session = p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.TENSORRT, p.CUDA, p.CPU]
    assert folder.is_dir() and list(folder.iterdir()) == []
    assert len(fake.attempts) == 2
    (warning,) = warnings_and_up(caplog)
    assert warning == (
        f"{model}: TensorRT cannot load its cached engine (built by another TensorRT?): "
        f"removing {folder} and building it again"
    )
    # An engine that still does not load after that: TensorRT is left out, once.
    fake.tensorrt = lambda options: STALE_ENGINE_ERROR
    caplog.clear()
    session = p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.CUDA, p.CPU]
    assert warnings_and_up(caplog)[-1].startswith("TensorrtExecutionProvider did not start (")


def test_tensorrt_gets_batch_profiles_for_a_dynamic_batch_model(tmp_path: Path) -> None:
    fake = FakeGpuOrt(honours_enable_fallback=True)
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"))
    model = dynamic_batch_model(tmp_path / "dyn.onnx")
    p.open_session(fake, model, settings, max_batch=8)  # type: ignore[arg-type]
    trt_name, trt_options = fake.attempts[0][0]
    assert trt_name == p.TENSORRT
    assert trt_options["trt_profile_min_shapes"] == "im:1x3x8x8,pos:1x2"
    assert trt_options["trt_profile_opt_shapes"] == "im:8x3x8x8,pos:8x2"
    assert trt_options["trt_profile_max_shapes"] == "im:8x3x8x8,pos:8x2"
    # engines in the model's own folder, the timing cache shared
    engines = engine_dir(tmp_path / "trt", model, p.trt_build_key(settings))
    assert trt_options["trt_engine_cache_path"] == str(engines)
    assert trt_options["trt_timing_cache_path"] == str(tmp_path / "trt")
    assert engines.is_dir()
    # A build setting that onnxruntime does not name its engines after gets its own folder.
    other = settings.model_copy(update={"trt_builder_optimization_level": 5})
    tried = len(fake.attempts)
    p.open_session(fake, model, other, max_batch=8)  # type: ignore[arg-type]
    rebuilt = dict(fake.attempts[tried])[p.TENSORRT]["trt_engine_cache_path"]
    assert rebuilt == str(engine_dir(tmp_path / "trt", model, p.trt_build_key(other)))
    assert rebuilt != str(engines)


def test_the_dla_with_a_batch_range_is_said_to_run_on_the_gpu(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # NVIDIA: "DLA does not support dynamic dimensions"; onnxruntime asks for GPU fallback.
    fake = FakeGpuOrt(honours_enable_fallback=True, tensorrt=lambda options: None)
    settings = ModelSettings(
        cache_dir=str(tmp_path / "trt"), trt_fp16=True, trt_dla_enable=True, trt_dla_core=1
    )
    model = dynamic_batch_model(tmp_path / "dyn.onnx")
    p.open_session(fake, model, settings, max_batch=1)  # type: ignore[arg-type]
    assert warnings_and_up(caplog) == []
    p.open_session(fake, model, settings, max_batch=4)  # type: ignore[arg-type]
    assert warnings_and_up(caplog) == [
        f"{model}: the DLA takes fixed shapes only, and this model's batch ranges over 1-4 "
        "targets (tracker.max_tracks): TensorRT will run it on the GPU. For the DLA, set "
        "tracker.max_tracks: 1 or export the model with --batch 1"
    ]


def test_cuda_tf32_that_the_tensorrt_override_cancels_is_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(p.TF32_OVERRIDE, raising=False)
    fake = FakeGpuOrt(honours_enable_fallback=True, tensorrt=lambda options: None)
    model = resolve_model_path("builtin")
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"), cuda_tf32=True)
    p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert os.environ[p.TF32_OVERRIDE] == "0"
    assert warnings_and_up(caplog) == [
        "model.cuda_tf32: true has no effect while TensorRT is tried too: TF32 stays off for "
        "the whole process (NVIDIA_TF32_OVERRIDE=0, for TensorRT's float32 layers; "
        "model.trt_tf32: true allows it for both)"
    ]
    caplog.clear()
    p.open_session(fake, model, settings.model_copy(update={"providers": ["cuda"]}))  # type: ignore[arg-type]
    assert warnings_and_up(caplog) == []


def test_a_model_tensorrt_cannot_profile_skips_tensorrt_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeGpuOrt(honours_enable_fallback=True)
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"))
    model = dynamic_batch_model(tmp_path / "w.onnx", extra_symbolic=True)
    session = p.open_session(fake, model, settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.CUDA, p.CPU]
    assert [[name for name, _ in attempt] for attempt in fake.attempts] == [[p.CUDA, p.CPU]]
    assert warnings_and_up(caplog) == [
        "TensorrtExecutionProvider did not start (input 'im' has a symbolic dimension besides "
        "the batch (['batch', 3, 8, 'width'])); CUDAExecutionProvider runs instead"
    ]
    with pytest.raises(ModelError, match="TensorRT cannot run this model: input 'im'"):
        p.open_session(fake, model, settings.model_copy(update={"providers": ["tensorrt"]}))  # type: ignore[arg-type]


def test_tensorrt_cache_folder_that_cannot_be_made_gives_way_to_cuda_with_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("")  # e.g. a full or read-only card: the folder cannot be made
    fake = FakeGpuOrt(honours_enable_fallback=True, tensorrt=lambda options: None)
    settings = ModelSettings(cache_dir=str(blocker / "trt"))
    session = p.open_session(fake, resolve_model_path("builtin"), settings)  # type: ignore[arg-type]
    assert session.get_providers() == [p.CUDA, p.CPU]
    assert [[name for name, _ in attempt] for attempt in fake.attempts] == [[p.CUDA, p.CPU]]
    assert warnings_and_up(caplog) == [
        f"TensorrtExecutionProvider did not start (TensorRT cache folder {blocker / 'trt'} "
        "cannot be created: Not a directory; siamedge runs TensorRT only with its engine "
        "cache); CUDAExecutionProvider runs instead"
    ]
    with pytest.raises(ModelError, match=f"^TensorRT cache folder {blocker / 'trt'} cannot be"):
        p.open_session(
            fake,
            resolve_model_path("builtin"),
            settings.model_copy(update={"providers": ["tensorrt"]}),
        )  # type: ignore[arg-type]


def test_tensorrt_alone_that_cannot_start_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ModelSettings(providers=["tensorrt"], cache_dir=str(tmp_path / "trt"))
    for fake in (
        FakeGpuOrt(honours_enable_fallback=True),
        FakeGpuOrt(honours_enable_fallback=False),
    ):
        with pytest.raises(
            ModelError,
            match=r"TensorrtExecutionProvider did not start: missing library libcublas\.so\.13$",
        ):
            p.open_session(fake, resolve_model_path("builtin"), settings)
    assert warnings_and_up(caplog) == []


def test_a_broken_model_is_not_a_provider_problem(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelError, match=r"notes.onnx: cannot load the model: .*(?i:protobuf)"):
        p.open_session(ort, path, ModelSettings(providers=["cpu"]))


def test_tensorrt_runs_without_tf32_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(p.TF32_OVERRIDE, "unset")  # recorded, so the test's own change is undone
    monkeypatch.delenv(p.TF32_OVERRIDE)
    p.keep_fp32_exact(ModelSettings(trt_tf32=True))
    assert p.TF32_OVERRIDE not in os.environ
    p.keep_fp32_exact(ModelSettings())
    assert os.environ[p.TF32_OVERRIDE] == "0"
    monkeypatch.setenv(p.TF32_OVERRIDE, "1")  # the operator's environment decides
    p.keep_fp32_exact(ModelSettings())
    assert os.environ[p.TF32_OVERRIDE] == "1"


def test_opening_a_session_with_tensorrt_turns_tf32_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(p.TF32_OVERRIDE, "unset")  # recorded, so the test's own change is undone
    monkeypatch.delenv(p.TF32_OVERRIDE)
    fake = FakeGpuOrt(honours_enable_fallback=True)
    settings = ModelSettings(cache_dir=str(tmp_path / "trt"))
    p.open_session(fake, resolve_model_path("builtin"), settings)
    assert os.environ[p.TF32_OVERRIDE] == "0"


def model_declaring(path: Path, precision: str | None) -> Path:
    """The builtin model, saved with a siamedge.precision entry (none: the key left out)."""
    model = onnx.load(str(resolve_model_path("builtin")))
    props = {e.key: e.value for e in model.metadata_props if e.key != c.META_PRECISION}
    if precision is not None:
        props[c.META_PRECISION] = precision
    helper.set_model_props(model, props)  # replaces every entry
    onnx.save(model, str(path))
    return path


def test_a_float16_network_runs_on_cuda_with_tf32_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=p.log.name)
    fake = FakeGpuOrt(honours_enable_fallback=True)
    cuda_only = ModelSettings(providers=["cuda"])
    half = model_declaring(tmp_path / "half.onnx", c.PRECISION_FLOAT16)
    p.open_session(fake, half, cuda_only)  # type: ignore[arg-type]
    p.open_session(fake, model_declaring(tmp_path / "full.onnx", None), cuda_only)  # type: ignore[arg-type]
    p.open_session(fake, model_declaring(tmp_path / "f32.onnx", "float32"), cuda_only)  # type: ignore[arg-type]
    assert [attempt[0][1]["use_tf32"] for attempt in fake.attempts] == [1, 0, 0]
    assert [r.getMessage() for r in caplog.records if r.name == p.log.name] == [
        f"{half}: float16 network: the CUDA provider runs with use_tf32 on (it changes float32 "
        "maths only; off, cuDNN would get no tensor-core engines for the float16 convolutions)"
    ]
    with pytest.raises(ModelError, match=r"half\.onnx: metadata siamedge\.precision is 'fp8'"):
        p.open_session(fake, model_declaring(half, "fp8"), cuda_only)  # type: ignore[arg-type]


def test_tf32_for_float16_networks_only_where_cuda_may_run(tmp_path: Path) -> None:
    settings = ModelSettings()
    half = {c.META_PRECISION: c.PRECISION_FLOAT16}
    assert p.cuda_settings_for(settings, half, "m").cuda_tf32
    assert p.cuda_settings_for(settings, {}, "m") is settings
    allowed = ModelSettings(cuda_tf32=True)
    assert p.cuda_settings_for(allowed, {c.META_PRECISION: "float32"}, "m") is allowed
    # The CPU provider alone: the file is not read twice, and TensorRT keeps its own options.
    fake = FakeGpuOrt(honours_enable_fallback=True)
    half_model = model_declaring(tmp_path / "half.onnx", c.PRECISION_FLOAT16)
    p.open_session(fake, half_model, ModelSettings(providers=["cpu"]))  # type: ignore[arg-type]
    assert fake.attempts == [[(p.CPU, {})]]
