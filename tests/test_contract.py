"""The contract check names exactly what is wrong with a model's declared tensors."""

from __future__ import annotations

import json

import pytest

from siamedge import contract as c
from siamedge.builtin_model import HyperParameters as BuiltinHyperParameters
from siamedge.errors import ModelError
from siamedge.export.spec import HyperParameters as ExportHyperParameters

GOOD_INPUTS = [
    c.TensorSpec("im", "float32", (1, 3, 255, 255)),
    c.TensorSpec("target_pos0", "float32", (2,)),
    c.TensorSpec("target_sz0", "float32", (2,)),
    c.TensorSpec("scale_x", "float64", ()),
    c.TensorSpec("z_features0", "float32", (1, 256, 7, 7)),
    c.TensorSpec("first_time", "bool", ()),
]
GOOD_OUTPUTS = [
    c.TensorSpec("output", "float32", (127, 127)),
    c.TensorSpec("target_pos1", "float32", (2,)),
    c.TensorSpec("target_sz1", "float32", (2,)),
    c.TensorSpec("z_features1", "float32", (1, 256, 7, 7)),
    c.TensorSpec("delta_yx", "int64", (2,)),
]


def replaced(specs: list[c.TensorSpec], spec: c.TensorSpec) -> list[c.TensorSpec]:
    return [spec if s.name == spec.name else s for s in specs]


def test_public_export_layout_passes() -> None:
    contract = c.check_contract(GOOD_INPUTS, GOOD_OUTPUTS, {}, "m.onnx")
    assert contract.instance_size == 255
    assert contract.exemplar_size == 127
    assert contract.feature_shape == (1, 256, 7, 7)
    assert contract.score_size == 25
    assert not contract.has_score
    assert contract.seg_thr is None


def test_score_output_and_metadata_are_read() -> None:
    outputs = [*GOOD_OUTPUTS, c.TensorSpec("score", "float32", ())]
    metadata = {
        c.META_MODEL_NAME: "siammask-vot",
        c.META_HYPER_PARAMETERS: json.dumps({"seg_thr": 0.3, "total_stride": 8}),
    }
    contract = c.check_contract(GOOD_INPUTS, outputs, metadata, "m.onnx")
    assert contract.has_score
    assert contract.seg_thr == 0.3
    assert contract.model_name == "siammask-vot"


def test_other_feature_sizes_are_read_from_the_model() -> None:
    inputs = replaced(GOOD_INPUTS, c.TensorSpec("z_features0", "float32", (1, 64, 5, 5)))
    outputs = replaced(GOOD_OUTPUTS, c.TensorSpec("z_features1", "float32", (1, 64, 5, 5)))
    assert c.check_contract(inputs, outputs, {}, "m").feature_shape == (1, 64, 5, 5)


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        (GOOD_INPUTS[:3] + GOOD_INPUTS[4:], GOOD_OUTPUTS, r"m.onnx: missing input\(s\) scale_x"),
        (GOOD_INPUTS, GOOD_OUTPUTS[1:], r"missing output\(s\) output"),
        (
            replaced(GOOD_INPUTS, c.TensorSpec("scale_x", "float32", ())),
            GOOD_OUTPUTS,
            "input 'scale_x' is float32, the contract needs float64",
        ),
        (
            replaced(GOOD_INPUTS, c.TensorSpec("im", "float32", ("batch", 3, 255, 255))),
            GOOD_OUTPUTS,
            "'im' has a dynamic shape",
        ),
        (
            replaced(GOOD_INPUTS, c.TensorSpec("target_pos0", "float32", (1, 2))),
            GOOD_OUTPUTS,
            "input 'target_pos0' has rank 2",
        ),
        (
            replaced(GOOD_INPUTS, c.TensorSpec("im", "float32", (1, 3, 255, 127))),
            GOOD_OUTPUTS,
            r"input 'im' must be \[1, 3, S, S\]",
        ),
        (
            GOOD_INPUTS,
            replaced(GOOD_OUTPUTS, c.TensorSpec("delta_yx", "int32", (2,))),
            "output 'delta_yx' is int32, the contract needs int64",
        ),
        (
            GOOD_INPUTS,
            replaced(GOOD_OUTPUTS, c.TensorSpec("z_features1", "float32", (1, 256, 5, 5))),
            "must have the same shape",
        ),
    ],
)
def test_contract_violations_are_named(
    inputs: list[c.TensorSpec], outputs: list[c.TensorSpec], message: str
) -> None:
    with pytest.raises(ModelError, match=message):
        c.check_contract(inputs, outputs, {}, "m.onnx")


def test_bad_metadata_is_named() -> None:
    with pytest.raises(ModelError, match=r"siamedge\.hyper_parameters is not JSON"):
        c.check_contract(GOOD_INPUTS, GOOD_OUTPUTS, {c.META_HYPER_PARAMETERS: "{"}, "m")
    with pytest.raises(ModelError, match=r"seg_thr must be a number in \(0, 1\), got 'high'"):
        c.check_contract(
            GOOD_INPUTS, GOOD_OUTPUTS, {c.META_HYPER_PARAMETERS: '{"seg_thr": "high"}'}, "m"
        )


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("total_stride", 0, "total_stride must be a positive integer, got 0"),
        ("total_stride", 0.5, "total_stride must be a positive integer, got 0.5"),
        ("total_stride", 8.5, "total_stride must be a positive integer, got 8.5"),
        ("total_stride", -8, "total_stride must be a positive integer, got -8"),
        ("total_stride", None, "total_stride must be a positive integer, got None"),
        ("exemplar_size", 0, "exemplar_size must be a positive integer, got 0"),
        ("instance_size", "255", "instance_size must be a positive integer, got '255'"),
        ("score_size", INF, "score_size must be a positive integer, got inf"),
        ("base_size", -1, "base_size must be an integer >= 0, got -1"),
        ("base_size", 4.5, "base_size must be an integer >= 0, got 4.5"),
        ("context_amount", NAN, "context_amount must be a finite number > 0, got nan"),
        ("context_amount", INF, "context_amount must be a finite number > 0, got inf"),
        ("context_amount", -1, "context_amount must be a finite number > 0, got -1"),
        ("context_amount", 0, "context_amount must be a finite number > 0, got 0"),
        ("penalty_k", -0.04, "penalty_k must be a finite number >= 0, got -0.04"),
        ("window_influence", 1.5, "window_influence must be a number in [0, 1], got 1.5"),
        ("window_influence", NAN, "window_influence must be a number in [0, 1], got nan"),
        ("lr", -0.25, "lr must be a number in [0, 1], got -0.25"),
        ("lr", True, "lr must be a number in [0, 1], got True"),
        ("seg_thr", 5, "seg_thr must be a number in (0, 1), got 5"),
        ("seg_thr", 0, "seg_thr must be a number in (0, 1), got 0"),
        ("seg_thr", 1.0, "seg_thr must be a number in (0, 1), got 1.0"),
        ("lost_score", -INF, "lost_score must be a number in [0, 1], got -inf"),
        ("lost_score", 1.5, "lost_score must be a number in [0, 1], got 1.5"),
        ("ratios", [], "ratios must be a non-empty list of finite numbers > 0, got []"),
        (
            "ratios",
            [0.5, -1],
            "ratios must be a non-empty list of finite numbers > 0, got [0.5, -1]",
        ),
        ("scales", 8, "scales must be a non-empty list of finite numbers > 0, got 8"),
        ("scales", [NAN], "scales must be a non-empty list of finite numbers > 0, got [nan]"),
    ],
)
def test_hyper_parameters_out_of_range_are_named(key: str, value: object, message: str) -> None:
    metadata = {
        c.META_HYPER_PARAMETERS: json.dumps({**ExportHyperParameters().metadata(), key: value})
    }
    with pytest.raises(ModelError) as caught:
        c.check_contract(GOOD_INPUTS, GOOD_OUTPUTS, metadata, "m.onnx")
    assert str(caught.value) == f"m.onnx: hyper-parameter {message}"


# The public export's values (CONTRACT.md, the reference trace's header) and the VOT benchmark's.
PUBLIC_EXPORT = {
    **c.geometry_metadata(),
    "penalty_k": 0.04,
    "window_influence": 0.4,
    "lr": 1.0,
    "seg_thr": 0.35,
    "out_size": 127,
    "ratios": [0.33, 0.5, 1, 2, 3],
    "scales": [8],
    "windowing": "cosine",
}
VOT_BENCHMARK = {**PUBLIC_EXPORT, "window_influence": 0.42, "lr": 0.25, "seg_thr": 0.30}
EDGES = {"total_stride": 8.0, "base_size": 0, "penalty_k": 0, "window_influence": 1, "lr": 0}


@pytest.mark.parametrize(
    "params",
    [
        BuiltinHyperParameters().metadata(),
        ExportHyperParameters().metadata(),
        PUBLIC_EXPORT,
        VOT_BENCHMARK,
        {**PUBLIC_EXPORT, **EDGES, "lost_score": 0, "seg_thr": None},
        {**PUBLIC_EXPORT, "lost_score": 1, "seg_thr": 0.999},
    ],
    ids=[
        "builtin",
        "export-default",
        "public-export",
        "vot-benchmark",
        "lower-edges",
        "upper-edges",
    ],
)
def test_real_hyper_parameters_are_accepted(params: dict[str, object]) -> None:
    metadata = {c.META_HYPER_PARAMETERS: json.dumps(params)}
    contract = c.check_contract(GOOD_INPUTS, GOOD_OUTPUTS, metadata, "m.onnx")
    assert contract.total_stride == params["total_stride"]
    assert contract.base_size == params["base_size"]
    assert contract.context_amount == params["context_amount"]
    assert contract.seg_thr == params["seg_thr"]
    assert contract.lost_score == params.get("lost_score")


def batched(specs: list[c.TensorSpec], batch: c.Dim = "batch") -> list[c.TensorSpec]:
    """The batched layout of the same tensors (docs/model-layouts.md)."""
    out = []
    for spec in specs:
        if spec.name == "first_time":
            out.append(spec)
        elif spec.name in {"im", "z_features0", "z_features1"}:
            out.append(c.TensorSpec(spec.name, spec.dtype, (batch, *spec.shape[1:])))
        else:
            out.append(c.TensorSpec(spec.name, spec.dtype, (batch, *spec.shape)))
    return out


SCORE = c.TensorSpec("score", "float32", ())


def test_single_target_layout_takes_one_target_per_call() -> None:
    contract = c.check_contract(GOOD_INPUTS, GOOD_OUTPUTS, {}, "m")
    assert (contract.batched, contract.max_batch, contract.layout) == (False, 1, c.LAYOUT_IF)


def test_batched_layout_with_a_symbolic_batch_takes_any_number() -> None:
    contract = c.check_contract(batched(GOOD_INPUTS), batched([*GOOD_OUTPUTS, SCORE]), {}, "m.onnx")
    assert contract.batched
    assert contract.max_batch is None
    assert contract.feature_shape == (1, 256, 7, 7)
    assert (contract.instance_size, contract.exemplar_size) == (255, 127)
    assert contract.has_score


def test_batched_layout_with_a_fixed_batch_records_it() -> None:
    contract = c.check_contract(batched(GOOD_INPUTS, 4), batched(GOOD_OUTPUTS, 4), {}, "m")
    assert contract.max_batch == 4


def test_batched_tensors_must_agree_on_the_batch() -> None:
    inputs = replaced(batched(GOOD_INPUTS, 4), c.TensorSpec("scale_x", "float64", (2,)))
    with pytest.raises(ModelError, match=r"disagree on the batch size \(.*scale_x 2"):
        c.check_contract(inputs, batched(GOOD_OUTPUTS, 4), {}, "m")


def test_batched_layout_allows_only_the_batch_dimension_to_be_symbolic() -> None:
    inputs = replaced(batched(GOOD_INPUTS), c.TensorSpec("im", "float32", ("b", 3, "s", "s")))
    with pytest.raises(ModelError) as caught:
        c.check_contract(inputs, batched(GOOD_OUTPUTS), {}, "m")
    assert str(caught.value) == (
        "m: 'im' has a dynamic shape ['b', 3, 's', 's']; only the batch dimension may be dynamic; "
        "the others need fixed sizes (TensorRT builds one engine)"
    )


def test_batched_layout_names_a_missing_batch_dimension() -> None:
    inputs = replaced(batched(GOOD_INPUTS), c.TensorSpec("target_sz0", "float32", (2,)))
    with pytest.raises(ModelError, match=r"input 'target_sz0' has rank 1.*needs rank 2"):
        c.check_contract(inputs, batched(GOOD_OUTPUTS), {}, "m")


SPLIT_META = {c.META_LAYOUT: c.LAYOUT_SPLIT, c.META_INIT_MODEL: "m.init.onnx"}
SPLIT_INPUTS = [spec for spec in batched(GOOD_INPUTS) if spec.name != "first_time"]
SPLIT_OUTPUTS = [spec for spec in batched(GOOD_OUTPUTS) if spec.name != "z_features1"]
INIT_INPUTS = [
    c.TensorSpec("im", "float32", ("batch", 3, 127, 127)),
    c.TensorSpec("target_pos0", "float32", ("batch", 2)),
    c.TensorSpec("target_sz0", "float32", ("batch", 2)),
]
INIT_OUTPUTS = [c.TensorSpec("z_features1", "float32", ("batch", 256, 7, 7))]


def test_split_track_model_needs_no_if_inputs_and_names_its_init_model() -> None:
    contract = c.check_contract(SPLIT_INPUTS, SPLIT_OUTPUTS, SPLIT_META, "m.onnx")
    assert contract.layout == c.LAYOUT_SPLIT
    assert contract.init_model == "m.init.onnx"
    assert contract.batched
    assert contract.feature_shape == (1, 256, 7, 7)
    c.check_init_contract(INIT_INPUTS, INIT_OUTPUTS, contract, "m.init.onnx")


def test_split_layout_problems_are_named() -> None:
    with pytest.raises(ModelError, match=r"must name its init model in siamedge\.init_model"):
        c.check_contract(SPLIT_INPUTS, SPLIT_OUTPUTS, {c.META_LAYOUT: "split"}, "m")
    with pytest.raises(ModelError, match=r"metadata siamedge\.layout is 'tiled'"):
        c.check_contract(SPLIT_INPUTS, SPLIT_OUTPUTS, {c.META_LAYOUT: "tiled"}, "m")
    track = c.check_contract(SPLIT_INPUTS, SPLIT_OUTPUTS, SPLIT_META, "m.onnx")
    wrong_side = replaced(INIT_INPUTS, c.TensorSpec("im", "float32", ("batch", 3, 255, 255)))
    with pytest.raises(ModelError, match=r"m.init.onnx: input 'im' must be \[N, 3, 127, 127\]"):
        c.check_init_contract(wrong_side, INIT_OUTPUTS, track, "m.init.onnx")
    other_features = [c.TensorSpec("z_features1", "float32", ("batch", 64, 7, 7))]
    with pytest.raises(ModelError, match="does not match the track model's z_features0"):
        c.check_init_contract(INIT_INPUTS, other_features, track, "m.init.onnx")


def test_a_split_init_model_alone_is_named_as_such() -> None:
    with pytest.raises(ModelError, match=r"m\.init\.onnx: this is the init model"):
        c.check_contract(INIT_INPUTS, INIT_OUTPUTS, {}, "m.init.onnx")


def test_network_precision_is_read_from_the_metadata() -> None:
    assert c.check_contract(GOOD_INPUTS, GOOD_OUTPUTS, {}, "m").precision == c.PRECISION_FLOAT32
    half = {c.META_PRECISION: "float16"}
    assert c.check_contract(GOOD_INPUTS, GOOD_OUTPUTS, half, "m").precision == "float16"
    with pytest.raises(ModelError, match=r"m: metadata siamedge\.precision is 'int8'; known"):
        c.check_contract(GOOD_INPUTS, GOOD_OUTPUTS, {c.META_PRECISION: "int8"}, "m")
