"""The SiamMask ONNX model contract: input/output names, dtypes and ranks, and the metadata keys.

Checks a model's declared tensors against the contract; never loads a runtime or runs a model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
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

# The split layout's track model has no `If`: no first_time input, no z_features1 output.
SPLIT_TRACK_ABSENT = (IN_FIRST_TIME, OUT_FEATURES)
# The split layout's init model (docs/model-layouts.md): the exemplar crop alone -> features.
INIT_INPUTS: Mapping[str, tuple[str, int]] = {
    IN_IMAGE: REQUIRED_INPUTS[IN_IMAGE],
    IN_CENTER: REQUIRED_INPUTS[IN_CENTER],
    IN_SIZE: REQUIRED_INPUTS[IN_SIZE],
}
INIT_OUTPUTS: Mapping[str, tuple[str, int]] = {OUT_FEATURES: REQUIRED_OUTPUTS[OUT_FEATURES]}
# Ranks above are the single-target layout's. In the batched layouts every tensor gains a
# leading batch dimension, except these: one flag for the whole call, and the tensors that
# already lead with a batch of 1.
UNBATCHED_INPUTS = (IN_FIRST_TIME,)
ALREADY_BATCHED = (IN_IMAGE, IN_FEATURES, OUT_FEATURES)

# Metadata written by siamedge's exporter and the builtin-model builder (ONNX metadata_props).
META_MODEL_NAME = "siamedge.model"
META_PRODUCER = "siamedge.producer"
META_HYPER_PARAMETERS = "siamedge.hyper_parameters"  # JSON object, see HYPER_PARAMETER_KEYS
META_LAYOUT = "siamedge.layout"  # LAYOUT_IF (default) or LAYOUT_SPLIT
META_INIT_MODEL = "siamedge.init_model"  # split layout: the init model's file, same folder
META_PRECISION = "siamedge.precision"  # PRECISION_FLOAT32 (the default) or PRECISION_FLOAT16
LAYOUT_IF = "if"
LAYOUT_SPLIT = "split"
PRECISION_FLOAT32 = "float32"
PRECISION_FLOAT16 = "float16"
"""The network's weights and convolutions; inputs, outputs and the tracker arithmetic around
the network are float32 either way (`siamedge export --fp16`)."""

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


def _positive_integer(value: float) -> bool:
    return value.is_integer() and value > 0


HYPER_PARAMETER_RANGES: Mapping[str, tuple[str, Callable[[float], bool]]] = {
    "exemplar_size": ("a positive integer", _positive_integer),
    "instance_size": ("a positive integer", _positive_integer),
    "total_stride": ("a positive integer", _positive_integer),
    "score_size": ("a positive integer", _positive_integer),
    "base_size": ("an integer >= 0", lambda value: value.is_integer() and value >= 0),
    "context_amount": ("a finite number > 0", lambda value: value > 0),
    "penalty_k": ("a finite number >= 0", lambda value: value >= 0),
    "window_influence": ("a number in [0, 1]", lambda value: 0 <= value <= 1),
    "lr": ("a number in [0, 1]", lambda value: 0 <= value <= 1),
    "seg_thr": ("a number in (0, 1)", lambda value: 0 < value < 1),
    "lost_score": ("a number in [0, 1]", lambda value: 0 <= value <= 1),
}
"""Numeric hyper-parameter key -> (its allowed values in words, test of a finite value).

What the tracker arithmetic needs: crop sizes, stride and score grid count whole pixels or cells,
and score_size divides by the stride; base_size shifts the mask window by whole cells;
context_amount > 0 keeps s_z = sqrt((w + p)(h + p)) real and the context a margin; penalty_k >= 0
so that exp(-penalty_k x change) only lowers scores; window_influence and lr weigh two values
(a x (1 - t) + b x t); seg_thr thresholds mask probabilities (0 or 1 would keep all or nothing);
lost_score compares with a score in [0, 1]. export/spec.py's HyperParameters checks with these;
the thresholds match config.py's TrackerSettings. Every value must be a finite JSON number;
integers may be written as 8.0.
"""
ANCHOR_KEYS = ("ratios", "scales")
"""Hyper-parameter keys holding a non-empty list of finite numbers > 0."""
NULLABLE_HYPER_PARAMETER_KEYS = ("seg_thr", "lost_score")
"""Keys whose null means "not recorded", as if absent."""


def hyper_parameter_problem(key: str, value: object) -> str | None:
    """What is wrong with one hyper-parameter value, e.g. "hyper-parameter total_stride must be
    a positive integer, got 0"; None when nothing is, or for keys siamedge does not define (a
    model's own keys are its business).
    """
    if key in ANCHOR_KEYS:
        if isinstance(value, list) and value and all(_positive(item) for item in value):
            return None
        allowed = "a non-empty list of finite numbers > 0"
    elif key in HYPER_PARAMETER_RANGES:
        allowed, admits = HYPER_PARAMETER_RANGES[key]
        number = _finite_number(value)
        if number is not None and admits(number):
            return None
    else:
        return None
    return f"hyper-parameter {key} must be {allowed}, got {value!r}"


def _finite_number(value: object) -> float | None:
    """The value as a float when it is a finite JSON number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        return None
    return number if math.isfinite(number) else None


def _positive(value: object) -> bool:
    number = _finite_number(value)
    return number is not None and number > 0


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
    feature_shape: shape of one target's template features, (1, C, h, w).
    batched: every tensor but `first_time` has a leading batch dimension (docs/model-layouts.md);
    False: the public export's single-target layout.
    max_batch: targets per model call: 1 for the single-target layout, None for a symbolic
    batch dimension (any number), k for a fixed batch of k.
    layout: LAYOUT_IF (one model, `If` on first_time) or LAYOUT_SPLIT (track model without
    `If`; init_model names the init model's file, beside it).
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
    batched: bool = False
    max_batch: int | None = 1
    layout: str = LAYOUT_IF
    init_model: str | None = None
    precision: str = PRECISION_FLOAT32

    @property
    def score_size(self) -> int:
        """Side of the anchor score grid (25 for SiamMask VOT)."""
        return (self.instance_size - self.exemplar_size) // self.total_stride + 1 + self.base_size


DYNAMIC_BATCH = -1
"""Stands for a symbolic batch dimension in the shapes the check returns."""


def _static_shape(spec: TensorSpec, where: str, batched: bool) -> tuple[int, ...]:
    """The declared shape; a symbolic leading dimension of a batched tensor is DYNAMIC_BATCH."""
    dims: list[int] = []
    for index, dim in enumerate(spec.shape):
        if isinstance(dim, int) and dim > 0:
            dims.append(dim)
        elif batched and index == 0:
            dims.append(DYNAMIC_BATCH)
        else:
            rule = (
                "only the batch dimension may be dynamic; the others need fixed sizes"
                if batched
                else "the contract needs static shapes"
            )
            raise ModelError(
                f"{where}: {spec.name!r} has a dynamic shape {list(spec.shape)}; "
                f"{rule} (TensorRT builds one engine)"
            )
    return tuple(dims)


def _check_tensors(
    kind: str,
    specs: Sequence[TensorSpec],
    expected: Mapping[str, tuple[str, int]],
    optional: Mapping[str, tuple[str, int]],
    where: str,
    *,
    batched: bool = False,
) -> dict[str, tuple[int, ...]]:
    """Shapes by name; ranks of batched tensors are one more than the single-target ones."""
    by_name = {spec.name: spec for spec in specs}
    missing = [name for name in expected if name not in by_name]
    if missing:
        present = ", ".join(sorted(by_name)) or "none"
        raise ModelError(
            f"{where}: missing {kind}(s) {', '.join(missing)} "
            f"(the model has: {present}); the contract: README, Models, and docs/model-layouts.md"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    for name, (dtype, single_rank) in {**expected, **optional}.items():
        spec = by_name.get(name)
        if spec is None:
            continue
        if spec.dtype != dtype:
            raise ModelError(
                f"{where}: {kind} {name!r} is {spec.dtype}, the contract needs {dtype}"
            )
        has_batch = batched and name not in UNBATCHED_INPUTS
        rank = single_rank + 1 if has_batch and name not in ALREADY_BATCHED else single_rank
        shape = _static_shape(spec, where, has_batch)
        scalar_as_vector = rank == 0 and shape == (1,)
        if len(shape) != rank and not scalar_as_vector:
            raise ModelError(
                f"{where}: {kind} {name!r} has rank {len(shape)} (shape {list(shape)}), "
                f"the contract needs rank {rank}"
            )
        shapes[name] = shape
    return shapes


def parse_hyper_parameters(metadata: Mapping[str, str], where: str) -> dict[str, object]:
    """The hyper-parameter JSON object from the model metadata ({} when absent).

    ModelError names the first value out of its range (hyper_parameter_problem).
    """
    raw = metadata.get(META_HYPER_PARAMETERS)
    if raw is None:
        return {}
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelError(f"{where}: metadata {META_HYPER_PARAMETERS} is not JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ModelError(f"{where}: metadata {META_HYPER_PARAMETERS} must be a JSON object")
    for key, value in parsed.items():
        if value is None and key in NULLABLE_HYPER_PARAMETER_KEYS:
            continue
        problem = hyper_parameter_problem(key, value)
        if problem is not None:
            raise ModelError(f"{where}: {problem}")
    return parsed


def _number(params: Mapping[str, object], key: str) -> float | None:
    """A checked numeric hyper-parameter (parse_hyper_parameters); None when absent or null."""
    return _finite_number(params.get(key))


def _layout(metadata: Mapping[str, str], where: str) -> str:
    layout = metadata.get(META_LAYOUT, LAYOUT_IF)
    if layout not in {LAYOUT_IF, LAYOUT_SPLIT}:
        raise ModelError(
            f"{where}: metadata {META_LAYOUT} is {layout!r}; known: {LAYOUT_IF}, {LAYOUT_SPLIT}"
        )
    return layout


def _is_batched(outputs: Sequence[TensorSpec], layout: str) -> bool:
    """Batched when the mask output has a batch dimension ([N, E, E]); split models always are."""
    mask = next((spec for spec in outputs if spec.name == OUT_MASK), None)
    return layout == LAYOUT_SPLIT or (mask is not None and len(mask.shape) == 3)


def _batch_size(shapes: Mapping[str, tuple[int, ...]], where: str) -> int | None:
    """The common leading dimension of batched tensors: None when symbolic, else its size."""
    sizes = {name: shape[0] for name, shape in shapes.items() if name not in UNBATCHED_INPUTS}
    distinct = set(sizes.values())
    if len(distinct) > 1:
        listed = ", ".join(f"{name} {size if size > 0 else 'N'}" for name, size in sizes.items())
        raise ModelError(f"{where}: batched tensors disagree on the batch size ({listed})")
    size = distinct.pop()
    return None if size == DYNAMIC_BATCH else size


def _without(
    spec: Mapping[str, tuple[str, int]], names: Sequence[str]
) -> dict[str, tuple[str, int]]:
    return {name: value for name, value in spec.items() if name not in names}


def network_precision(metadata: Mapping[str, str], where: str) -> str:
    """The network precision a model's metadata declares (float32 when it declares none)."""
    precision = metadata.get(META_PRECISION, PRECISION_FLOAT32)
    if precision not in (PRECISION_FLOAT32, PRECISION_FLOAT16):
        raise ModelError(
            f"{where}: metadata {META_PRECISION} is {precision!r}; "
            f"known: {PRECISION_FLOAT32}, {PRECISION_FLOAT16}"
        )
    return precision


def check_contract(
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    metadata: Mapping[str, str],
    where: str,
) -> ModelContract:
    """Check declared tensors against the contract; raise ModelError naming the first problem.

    Accepts the three layouts of docs/model-layouts.md (for the split layout, the track model;
    check_init_contract checks its init model). where: the model's path (or `builtin`), used to
    prefix every message.
    """
    if [spec.name for spec in outputs] == [OUT_FEATURES]:
        raise ModelError(
            f"{where}: this is the init model of a split-layout pair (its only output is "
            f"{OUT_FEATURES}); use the track model, whose {META_INIT_MODEL} names this file"
        )
    layout = _layout(metadata, where)
    batched = _is_batched(outputs, layout)
    absent = SPLIT_TRACK_ABSENT if layout == LAYOUT_SPLIT else ()
    in_shapes = _check_tensors(
        "input", inputs, _without(REQUIRED_INPUTS, absent), {}, where, batched=batched
    )
    out_shapes = _check_tensors(
        "output",
        outputs,
        _without(REQUIRED_OUTPUTS, absent),
        OPTIONAL_OUTPUTS,
        where,
        batched=batched,
    )
    max_batch = _batch_size({**in_shapes, **out_shapes}, where) if batched else 1
    row = 1 if batched else 0  # index of the first per-target dimension

    image = in_shapes[IN_IMAGE]
    if (not batched and image[0] != 1) or image[1] != 3 or image[2] != image[3]:
        expected = "[N, 3, S, S]" if batched else "[1, 3, S, S]"
        raise ModelError(f"{where}: input 'im' must be {expected}, got {list(image)}")
    mask = out_shapes[OUT_MASK][row:]
    if mask[0] != mask[1] or mask[0] > image[2]:
        raise ModelError(
            f"{where}: output 'output' must be a square window no larger than 'im', "
            f"got {list(out_shapes[OUT_MASK])}"
        )
    for name in (IN_CENTER, IN_SIZE, OUT_CENTER, OUT_SIZE, OUT_BEST_CELL):
        shape = in_shapes.get(name) or out_shapes[name]
        if shape[row:] != (2,):
            expected = "[N, 2]" if batched else "[2]"
            raise ModelError(f"{where}: {name!r} must have shape {expected}, got {list(shape)}")
    features = in_shapes[IN_FEATURES]
    if OUT_FEATURES in out_shapes and features != out_shapes[OUT_FEATURES]:
        raise ModelError(
            f"{where}: z_features0 {list(features)} and z_features1 "
            f"{list(out_shapes[OUT_FEATURES])} must have the same shape"
        )
    if not batched and features[0] != 1:
        raise ModelError(f"{where}: z_features0 must have batch 1, got {list(features)}")
    init_model = metadata.get(META_INIT_MODEL) if layout == LAYOUT_SPLIT else None
    if layout == LAYOUT_SPLIT and not init_model:
        raise ModelError(
            f"{where}: a split-layout model must name its init model in {META_INIT_MODEL}"
        )

    params = parse_hyper_parameters(metadata, where)
    total_stride = _number(params, "total_stride")
    base_size = _number(params, "base_size")
    context_amount = _number(params, "context_amount")
    return ModelContract(
        instance_size=image[2],
        exemplar_size=mask[0],
        feature_shape=(1, *features[1:]),
        total_stride=TOTAL_STRIDE if total_stride is None else int(total_stride),
        base_size=BASE_SIZE if base_size is None else int(base_size),
        context_amount=CONTEXT_AMOUNT if context_amount is None else context_amount,
        has_score=OUT_SCORE in out_shapes,
        seg_thr=_number(params, "seg_thr"),
        lost_score=_number(params, "lost_score"),
        model_name=metadata.get(META_MODEL_NAME),
        metadata=dict(metadata),
        batched=batched,
        max_batch=max_batch,
        layout=layout,
        init_model=init_model,
        precision=network_precision(metadata, where),
    )


def check_init_contract(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], track: ModelContract, where: str
) -> None:
    """Check a split layout's init model against its track model's contract (ModelError)."""
    in_shapes = _check_tensors("input", inputs, INIT_INPUTS, {}, where, batched=True)
    out_shapes = _check_tensors("output", outputs, INIT_OUTPUTS, {}, where, batched=True)
    exemplar = in_shapes[IN_IMAGE][1:]
    if exemplar != (3, track.exemplar_size, track.exemplar_size):
        raise ModelError(
            f"{where}: input 'im' must be [N, 3, {track.exemplar_size}, {track.exemplar_size}] "
            f"(the exemplar crop), got {list(in_shapes[IN_IMAGE])}"
        )
    features = out_shapes[OUT_FEATURES][1:]
    if features != track.feature_shape[1:]:
        raise ModelError(
            f"{where}: z_features1 {list(out_shapes[OUT_FEATURES])} does not match the track "
            f"model's z_features0 {['N', *track.feature_shape[1:]]}"
        )
