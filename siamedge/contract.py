"""The SiamMask ONNX model contract: input/output names, dtypes and ranks, and the metadata keys.

Checks a model's declared tensors against the contract; never loads a runtime or runs a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from siamedge.errors import ModelError

# Input and output names, exactly as the public SiamMask ONNX export declares them.
IN_IMAGE = "im"
IN_CENTER = "target_pos0"
IN_SIZE = "target_sz0"
IN_SCALE = "scale_x"
IN_FEATURES = "z_features0"
IN_FIRST_TIME = "first_time"
OUT_MASK = "output"
OUT_CENTER = "target_pos1"
OUT_SIZE = "target_sz1"
OUT_FEATURES = "z_features1"
OUT_BEST_CELL = "delta_yx"
OUT_SCORE = "score"

# name -> (numpy dtype name, rank)
REQUIRED_INPUTS: Mapping[str, tuple[str, int]] = {
    IN_IMAGE: ("float32", 4),
    IN_CENTER: ("float32", 1),
    IN_SIZE: ("float32", 1),
    IN_SCALE: ("float64", 0),
    IN_FEATURES: ("float32", 4),
    IN_FIRST_TIME: ("bool", 0),
}
REQUIRED_OUTPUTS: Mapping[str, tuple[str, int]] = {
    OUT_MASK: ("float32", 2),
    OUT_CENTER: ("float32", 1),
    OUT_SIZE: ("float32", 1),
    OUT_FEATURES: ("float32", 4),
    OUT_BEST_CELL: ("int64", 1),
}
OPTIONAL_OUTPUTS: Mapping[str, tuple[str, int]] = {OUT_SCORE: ("float32", 0)}

# Metadata written by siamedge's exporter and the builtin-model builder (ONNX metadata_props).
META_MODEL_NAME = "siamedge.model"
META_PRODUCER = "siamedge.producer"
META_HYPER_PARAMETERS = "siamedge.hyper_parameters"  # JSON object, see HYPER_PARAMETER_KEYS

# Keys of the hyper-parameter JSON object. Network constants are in it so a model made for another
# backbone can say so; a model without metadata gets the SiamMask VOT values.
HYPER_PARAMETER_KEYS = (
    "exemplar_size",
    "instance_size",
    "total_stride",
    "base_size",
    "score_size",
    "context_amount",
    "penalty_k",
    "window_influence",
    "lr",
    "seg_thr",
    "ratios",
    "scales",
)

OPTIONAL_HYPER_PARAMETER_KEYS = ("lost_score",)
"""Keys a model may add: `lost_score`, the score below which its target counts as lost."""

# The SiamMask VOT geometry, fixed by the network (CONTRACT.md). A model declares its own crop
# sizes through its shapes; stride, base size and context come from its metadata, else these.
EXEMPLAR_SIZE = 127
INSTANCE_SIZE = 255
TOTAL_STRIDE = 8
BASE_SIZE = 8
CONTEXT_AMOUNT = 0.5
SCORE_SIZE = (INSTANCE_SIZE - EXEMPLAR_SIZE) // TOTAL_STRIDE + 1 + BASE_SIZE


def geometry_metadata() -> dict[str, object]:
    """The geometry keys of the hyper-parameter object, for models of the SiamMask VOT layout."""
    return {
        "exemplar_size": EXEMPLAR_SIZE,
        "instance_size": INSTANCE_SIZE,
        "total_stride": TOTAL_STRIDE,
        "base_size": BASE_SIZE,
        "score_size": SCORE_SIZE,
        "context_amount": CONTEXT_AMOUNT,
    }


Dim = int | str | None


@dataclass(frozen=True)
class TensorSpec:
    """A declared model input or output: name, numpy dtype name and shape (str/None = dynamic)."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]


@dataclass(frozen=True)
class ModelContract:
    """What siamedge needs to know about a model that passed the contract check.

    instance_size / exemplar_size: side of the search crop (`im`) and of the mask window (`output`).
    feature_shape: shape of the template features (`z_features0`).
    """

    instance_size: int
    exemplar_size: int
    feature_shape: tuple[int, ...]
    total_stride: int
    base_size: int
    context_amount: float
    has_score: bool
    seg_thr: float | None
    lost_score: float | None
    model_name: str | None
    metadata: Mapping[str, str]

    @property
    def score_size(self) -> int:
        """Side of the anchor score grid (25 for SiamMask VOT)."""
        return (self.instance_size - self.exemplar_size) // self.total_stride + 1 + self.base_size


def _static_shape(spec: TensorSpec, where: str) -> tuple[int, ...]:
    dims: list[int] = []
    for dim in spec.shape:
        if not isinstance(dim, int) or dim <= 0:
            raise ModelError(
                f"{where}: {spec.name!r} has a dynamic shape {list(spec.shape)}; "
                "the contract needs static shapes (TensorRT builds one engine)"
            )
        dims.append(dim)
    return tuple(dims)


def _check_tensors(
    kind: str,
    specs: Sequence[TensorSpec],
    expected: Mapping[str, tuple[str, int]],
    optional: Mapping[str, tuple[str, int]],
    where: str,
) -> dict[str, tuple[int, ...]]:
    by_name = {spec.name: spec for spec in specs}
    missing = [name for name in expected if name not in by_name]
    if missing:
        present = ", ".join(sorted(by_name)) or "none"
        raise ModelError(
            f"{where}: missing {kind}(s) {', '.join(missing)} "
            f"(the model has: {present}); see CONTRACT.md"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (dtype, rank) in {**expected, **optional}.items():
        spec = by_name.get(name)
        if spec is None:
            continue
        if spec.dtype != dtype:
            raise ModelError(
                f"{where}: {kind} {name!r} is {spec.dtype}, the contract needs {dtype}"
            )
        shape = _static_shape(spec, where)
        scalar_as_vector = rank == 0 and shape == (1,)
        if len(shape) != rank and not scalar_as_vector:
            raise ModelError(
                f"{where}: {kind} {name!r} has rank {len(shape)} (shape {list(shape)}), "
                f"the contract needs rank {rank}"
            )
        shapes[name] = shape
    return shapes


def parse_hyper_parameters(metadata: Mapping[str, str], where: str) -> dict[str, object]:
    """The hyper-parameter JSON object from the model metadata ({} when absent)."""
    raw = metadata.get(META_HYPER_PARAMETERS)
    if raw is None:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: metadata {META_HYPER_PARAMETERS} is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ModelError(f"{where}: metadata {META_HYPER_PARAMETERS} must be a JSON object")
    return parsed


def _number(params: Mapping[str, object], key: str, default: float, where: str) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"{where}: hyper-parameter {key!r} must be a number, got {value!r}")
    return float(value)


def check_contract(
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    metadata: Mapping[str, str],
    where: str,
) -> ModelContract:
    """Check declared tensors against the contract; raise ModelError naming the first problem.

    where: the model's path (or `builtin`), used to prefix every message.
    """
    in_shapes = _check_tensors("input", inputs, REQUIRED_INPUTS, {}, where)
    out_shapes = _check_tensors("output", outputs, REQUIRED_OUTPUTS, OPTIONAL_OUTPUTS, where)

    image = in_shapes[IN_IMAGE]
    if image[0] != 1 or image[1] != 3 or image[2] != image[3]:
        raise ModelError(f"{where}: input 'im' must be [1, 3, S, S], got {list(image)}")
    mask = out_shapes[OUT_MASK]
    if mask[0] != mask[1] or mask[0] > image[2]:
        raise ModelError(
            f"{where}: output 'output' must be a square window no larger than 'im', "
            f"got {list(mask)}"
        )
    for name, expected in (
        (IN_CENTER, (2,)),
        (IN_SIZE, (2,)),
        (OUT_CENTER, (2,)),
        (OUT_SIZE, (2,)),
        (OUT_BEST_CELL, (2,)),
    ):
        shape = in_shapes.get(name) or out_shapes[name]
        if shape != expected:
            raise ModelError(f"{where}: {name!r} must have shape [2], got {list(shape)}")
    if in_shapes[IN_FEATURES] != out_shapes[OUT_FEATURES]:
        raise ModelError(
            f"{where}: z_features0 {list(in_shapes[IN_FEATURES])} and z_features1 "
            f"{list(out_shapes[OUT_FEATURES])} must have the same shape"
        )

    params = parse_hyper_parameters(metadata, where)
    seg_thr = params.get("seg_thr")
    lost_score = params.get("lost_score")
    return ModelContract(
        instance_size=image[2],
        exemplar_size=mask[0],
        feature_shape=in_shapes[IN_FEATURES],
        total_stride=int(_number(params, "total_stride", TOTAL_STRIDE, where)),
        base_size=int(_number(params, "base_size", BASE_SIZE, where)),
        context_amount=_number(params, "context_amount", CONTEXT_AMOUNT, where),
        has_score=OUT_SCORE in out_shapes,
        seg_thr=None if seg_thr is None else _number(params, "seg_thr", 0.0, where),
        lost_score=None if lost_score is None else _number(params, "lost_score", 0.0, where),
        model_name=metadata.get(META_MODEL_NAME),
        metadata=dict(metadata),
    )
