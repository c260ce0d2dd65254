"""Execution providers: choice, options, TensorRT cache folder, fallback when one fails to start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from siamedge import providers as p
from siamedge.config import ModelSettings
from siamedge.errors import ModelError


def test_auto_prefers_tensorrt_then_cuda_then_cpu() -> None:
    available = [p.CPU, p.CUDA, p.TENSORRT]
    assert p.choose_providers("auto", available) == [p.TENSORRT, p.CUDA, p.CPU]
    assert p.choose_providers("auto", [p.CPU, p.CUDA]) == [p.CUDA, p.CPU]
    assert p.choose_providers("auto", [p.CPU]) == [p.CPU]


def test_explicit_list_keeps_order_and_drops_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    assert p.choose_providers(["cpu", "cuda"], [p.CPU, p.CUDA]) == [p.CPU, p.CUDA]
    assert p.choose_providers(["tensorrt", "cpu"], [p.CPU]) == [p.CPU]
    assert "tensorrt is not available" in caplog.text


def test_explicit_list_with_nothing_available_is_an_error() -> None:
    with pytest.raises(ModelError, match=r"none of the requested execution providers \['cuda'\]"):
        p.choose_providers(["cuda"], [p.CPU])


def test_tensorrt_options_put_both_caches_in_the_cache_dir(tmp_path: Path) -> None:
    settings = ModelSettings(trt_fp16=False, trt_workspace_mb=512, cuda_device_id=1)
    options = p.provider_options(p.TENSORRT, settings, tmp_path)
    assert options == {
        "device_id": 1,
        "trt_fp16_enable": False,
        "trt_max_workspace_size": 512 * 1024 * 1024,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(tmp_path),
    }
    assert p.provider_options(p.CUDA, settings, tmp_path) == {"device_id": 1}
    assert p.provider_options(p.CPU, settings, tmp_path) == {}


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


class FakeOrt:
    """onnxruntime stand-in whose TensorRT provider fails to start, as on a board whose
    TensorRT libraries do not match the onnxruntime-gpu wheel."""

    def __init__(self) -> None:
        self.attempts: list[list[str]] = []

    def InferenceSession(self, path: str, sess_options: Any, providers: list[Any]) -> str:  # noqa: N802
        names = [name for name, _ in providers]
        self.attempts.append(names)
        if names[0] == p.TENSORRT:
            raise RuntimeError("TensorRT EP could not be created: libnvinfer.so.10 not found")
        return "session"


def test_failing_gpu_provider_falls_back_to_the_next(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeOrt()
    providers = [(p.TENSORRT, {}), (p.CUDA, {}), (p.CPU, {})]
    session = p._open_session(fake, Path("m.onnx"), None, providers)  # type: ignore[arg-type]
    assert session == "session"
    assert fake.attempts == [[p.TENSORRT, p.CUDA, p.CPU], [p.CUDA, p.CPU]]
    assert (
        "TensorrtExecutionProvider failed to start (TensorRT EP could not be created" in caplog.text
    )
