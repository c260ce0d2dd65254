"""Runs a contract model with onnxruntime (providers.py picks TensorRT > CUDA > CPU), warm-up.

The only module that imports onnxruntime. Input buffers are allocated once per engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamedge import contract as c
from siamedge import providers
from siamedge.config import ModelSettings
from siamedge.errors import ModelError
from siamedge.models import resolve_model_path
from siamedge.tracking.geometry import PointXY
from siamedge.tracking.model_io import ModelStep

log = logging.getLogger(__name__)

ORT_DTYPES: Mapping[str, str] = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(bool)": "bool",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
}

INSTALL_HINT = (
    "onnxruntime is not installed: pip install 'siamedge[cpu]' (or 'siamedge[gpu]'; "
    "on Jetson install JetPack's onnxruntime-gpu wheel, see the README)"
)


def import_onnxruntime() -> ModuleType:
    """The onnxruntime module, or a ModelError naming the extra to install."""
    try:
        import onnxruntime  # noqa: PLC0415 - optional back-end, imported on first use
    except ImportError as exc:
        raise ModelError(INSTALL_HINT) from exc
    module: ModuleType = onnxruntime
    return module


def _tensor_specs(args: Sequence[Any]) -> list[c.TensorSpec]:
    return [
        c.TensorSpec(arg.name, ORT_DTYPES.get(arg.type, arg.type), tuple(arg.shape)) for arg in args
    ]


def _short_error(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@dataclass(frozen=True)
class ModelInfo:
    """What `siamedge inspect` prints: the checked contract and the declared tensors."""

    path: Path
    contract: c.ModelContract
    inputs: list[c.TensorSpec]
    outputs: list[c.TensorSpec]
    producer: str
    opset_note: str


class Engine:
    """One onnxruntime session of a contract model; implements tracking.model_io.StepModel."""

    def __init__(self, session: Any, contract: c.ModelContract, path: Path) -> None:
        self._session = session
        self._contract = contract
        self.path = path
        size = contract.instance_size
        self._image = np.zeros((1, 3, size, size), dtype=np.float32)
        self._center = np.zeros(2, dtype=np.float32)
        self._size = np.zeros(2, dtype=np.float32)
        self._scale = np.zeros((), dtype=np.float64)
        self._zero_features = np.zeros(contract.feature_shape, dtype=np.float32)
        self._true = np.array(True)
        self._false = np.array(False)
        self._outputs = [c.OUT_MASK, c.OUT_CENTER, c.OUT_SIZE, c.OUT_BEST_CELL]
        if contract.has_score:
            self._outputs.append(c.OUT_SCORE)

    @classmethod
    def load(
        cls,
        model: str,
        settings: ModelSettings,
        cache_dir: Path | None = None,
        max_batch: int = 1,
    ) -> Engine:
        """Open a model (`builtin` or a path) on the best available provider and warm it up."""
        ort = import_onnxruntime()
        path = resolve_model_path(model)
        session = providers.open_session(
            ort, path, settings, cache_dir=cache_dir, max_batch=max_batch
        )
        contract = check_session(session, str(path))
        engine = cls(session, contract, path)
        log.info(
            "model %s (%s) runs on %s",
            path,
            contract.model_name or "unnamed",
            engine.provider,
        )
        if settings.warmup:
            engine.warm_up()
        return engine

    @property
    def contract(self) -> c.ModelContract:
        """The model's checked contract."""
        return self._contract

    @property
    def provider(self) -> str:
        """The execution provider that runs the model (the session's first)."""
        providers: list[str] = self._session.get_providers()
        return providers[0]

    @property
    def session(self) -> Any:
        """The onnxruntime session (benchmarks time session.run alone)."""
        return self._session

    def template(
        self, exemplar: NDArray[np.uint8], center_xy: PointXY, size_wh: PointXY
    ) -> NDArray[np.float32]:
        """Init branch on a (E, E, 3) uint8 BGR exemplar crop: the template features.

        center_xy / size_wh: the start box; SiamMask ignores them here, other models may not.
        """
        size = self._contract.exemplar_size
        if exemplar.shape != (size, size, 3):
            raise ValueError(f"exemplar crop must be ({size}, {size}, 3), got {exemplar.shape}")
        self._image.fill(0.0)
        self._image[0, :, :size, :size] = exemplar.transpose(2, 0, 1)
        self._center[:] = center_xy
        self._size[:] = size_wh
        features = self._run([c.OUT_FEATURES], self._true, self._zero_features)[0]
        return np.asarray(features, dtype=np.float32)

    def track(
        self,
        search: NDArray[np.uint8],
        center_xy: PointXY,
        size_wh: PointXY,
        scale_x: float,
        features: NDArray[np.float32],
    ) -> ModelStep:
        """Track branch on a (S, S, 3) uint8 BGR search crop."""
        self._image[0] = search.transpose(2, 0, 1)
        self._center[:] = center_xy
        self._size[:] = size_wh
        self._scale[()] = scale_x
        outputs = self._run(self._outputs, self._false, features)
        mask, center, size, cell = outputs[:4]
        return ModelStep(
            mask_probs=np.asarray(mask, dtype=np.float32),
            center_xy=(float(center[0]), float(center[1])),
            size_wh=(float(size[0]), float(size[1])),
            best_cell_yx=(int(cell[0]), int(cell[1])),
            score=float(outputs[4]) if self._contract.has_score else None,
        )

    def warm_up(self) -> float:
        """Run both branches once (TensorRT builds or loads its engine here); seconds taken."""
        started = time.monotonic()
        size = self._contract.instance_size
        exemplar = np.zeros((self._contract.exemplar_size,) * 2 + (3,), np.uint8)
        features = self.template(exemplar, (size / 2, size / 2), (64.0, 64.0))
        self.track(
            np.zeros((size, size, 3), np.uint8), (size / 2, size / 2), (64.0, 64.0), 1.0, features
        )
        elapsed = time.monotonic() - started
        log.info("warm-up of both branches took %.2f s", elapsed)
        return elapsed

    def _run(
        self, names: list[str], first_time: NDArray[Any], features: NDArray[np.float32]
    ) -> list[Any]:
        feeds = {
            c.IN_IMAGE: self._image,
            c.IN_CENTER: self._center,
            c.IN_SIZE: self._size,
            c.IN_SCALE: self._scale,
            c.IN_FEATURES: features,
            c.IN_FIRST_TIME: first_time,
        }
        try:
            outputs: list[Any] = self._session.run(names, feeds)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{self.path}: inference failed: {_short_error(exc)}") from exc
        return outputs


def check_session(session: Any, where: str) -> c.ModelContract:
    """The contract of an open session's model (ModelError naming what is wrong)."""
    metadata = session.get_modelmeta().custom_metadata_map
    return c.check_contract(
        _tensor_specs(session.get_inputs()), _tensor_specs(session.get_outputs()), metadata, where
    )


def inspect_model(model: str) -> ModelInfo:
    """Open a model on the CPU and describe it (for `siamedge inspect`)."""
    ort = import_onnxruntime()
    path = resolve_model_path(model)
    try:
        session = ort.InferenceSession(str(path), providers=[providers.CPU])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{path}: cannot load the model: {_short_error(exc)}") from exc
    meta = session.get_modelmeta()
    return ModelInfo(
        path=path,
        contract=check_session(session, str(path)),
        inputs=_tensor_specs(session.get_inputs()),
        outputs=_tensor_specs(session.get_outputs()),
        producer=meta.producer_name,
        opset_note=meta.graph_name,
    )
