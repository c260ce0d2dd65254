"""The contract check names exactly what is wrong with a model's declared tensors."""

from __future__ import annotations

import json

import pytest

from siamedge import contract as c
from siamedge.errors import ModelError

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
    with pytest.raises(ModelError, match="'seg_thr' must be a number"):
        c.check_contract(
            GOOD_INPUTS, GOOD_OUTPUTS, {c.META_HYPER_PARAMETERS: '{"seg_thr": "high"}'}, "m"
        )
