"""Execution providers: which ones to try, their options, and opening a session with fallback.

Never imports onnxruntime: the caller (engine.py) passes the module in as `ort`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from siamedge.config import ModelSettings
from siamedge.errors import ModelError

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDER_BY_NAME: Mapping[str, str] = {"tensorrt": TENSORRT, "cuda": CUDA, "cpu": CPU}
AUTO_ORDER = (TENSORRT, CUDA, CPU)

MEBIBYTE = 1 << 20


def default_cache_dir() -> Path:
    """TensorRT cache folder: $STATE_DIRECTORY/trt under systemd, else ~/.cache/siamedge/trt."""
    state_dir = os.environ.get("STATE_DIRECTORY")
    if state_dir:
        return Path(state_dir.split(":")[0]) / "trt"
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "siamedge" / "trt"


def choose_providers(requested: str | Sequence[str], available: Sequence[str]) -> list[str]:
    """Ordered onnxruntime providers to try.

    requested: "auto" (TensorRT > CUDA > CPU among the available ones) or short names
    ("tensorrt", "cuda", "cpu") in order of preference. Unavailable ones are dropped with a
    warning; ModelError when none is left.
    """
    if requested == "auto":
        return [name for name in AUTO_ORDER if name in available]
    chosen: list[str] = []
    for short in requested:
        name = PROVIDER_BY_NAME.get(short)
        if name is None:
            raise ModelError(f"unknown execution provider {short!r}; use tensorrt, cuda or cpu")
        if name in available:
            chosen.append(name)
        else:
            log.warning("execution provider %s is not available in this onnxruntime build", short)
    if not chosen:
        raise ModelError(
            f"none of the requested execution providers {list(requested)} is available; "
            f"this onnxruntime offers {list(available)}"
        )
    return chosen


def provider_options(name: str, settings: ModelSettings, cache_dir: Path) -> dict[str, Any]:
    """onnxruntime provider options for one provider (TensorRT caches live in cache_dir)."""
    if name == TENSORRT:
        return {
            "device_id": settings.cuda_device_id,
            "trt_fp16_enable": settings.trt_fp16,
            "trt_max_workspace_size": settings.trt_workspace_mb * MEBIBYTE,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache_dir),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache_dir),
        }
    if name == CUDA:
        return {"device_id": settings.cuda_device_id}
    return {}


def prepare_cache_dir(path: Path) -> Path:
    """Create the TensorRT cache folder; ModelError when it cannot be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"TensorRT cache folder {path} cannot be created: {exc.strerror}"
        ) from None
    if not os.access(path, os.W_OK):
        raise ModelError(f"TensorRT cache folder {path} is not writable")
    return path


def open_session(
    ort: ModuleType,
    path: Path,
    settings: ModelSettings,
    *,
    cache_dir: Path | None = None,
    max_batch: int = 1,
) -> Any:
    """An InferenceSession of the model at path on the best provider that starts.

    ort: the onnxruntime module. cache_dir overrides settings.cache_dir for the TensorRT caches.
    max_batch: the largest batch the caller will run (reserved for TensorRT profiles).
    """
    del max_batch  # TensorRT optimisation profiles come in a later change
    chosen = choose_providers(settings.providers, ort.get_available_providers())
    if TENSORRT in chosen:
        cache_dir = prepare_cache_dir(cache_dir or _configured_cache_dir(settings))
    options = ort.SessionOptions()
    if settings.intra_op_threads is not None:
        options.intra_op_num_threads = settings.intra_op_threads
    if not settings.intra_op_spinning:
        # Spinning worker threads burn the cores the capture and MQTT threads need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with_options = [
        (name, provider_options(name, settings, cache_dir or default_cache_dir()))
        for name in chosen
    ]
    return _open_session(ort, path, options, with_options)


def _configured_cache_dir(settings: ModelSettings) -> Path:
    return Path(settings.cache_dir) if settings.cache_dir else default_cache_dir()


def _open_session(
    ort: ModuleType, path: Path, options: Any, providers: list[tuple[str, dict[str, Any]]]
) -> Any:
    """An InferenceSession on the first provider list that works, dropping failing GPU providers."""
    remaining = list(providers)
    while True:
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=remaining)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            message = _short_error(exc)
            if _is_model_problem(message) or len(remaining) == 1:
                raise ModelError(f"{path}: cannot load the model: {message}") from exc
            log.warning(
                "%s failed to start (%s); falling back to %s",
                remaining[0][0],
                message,
                remaining[1][0],
            )
            remaining = remaining[1:]


def _is_model_problem(message: str) -> bool:
    markers = ("INVALID_PROTOBUF", "Protobuf parsing failed", "INVALID_GRAPH", "NO_SUCHFILE")
    return any(marker in message for marker in markers)


def _short_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
