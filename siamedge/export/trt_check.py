"""Static TensorRT-friendliness check of an ONNX model: opset, operators, shapes, If branches.

Reads the graph only (TensorRT is not needed): never builds an engine or runs the model.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import onnx
from onnx import TensorProto, shape_inference

from siamedge.export.spec import BATCH_DIM

TRT_PARSER = "TensorRT 10 ONNX parser"
TRT_MIN_OPSET = 9
TRT_MAX_OPSET = 20
"""The opset range onnx-tensorrt's docs/operators.md gives for TensorRT 10.0."""

# Operators onnx-tensorrt's docs/operators.md (TensorRT 10.0) marks as supported.
TRT_OPERATORS = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast CastLike Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh
    CumSum DeformConv DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand
    EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalLpPool
    GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU HardSigmoid HardSwish
    Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu
    Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad
    ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform
    RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence
    RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
    Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan
    Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()  # noqa: SIM905 - reads like the table it comes from
)

# `axes` inputs the parser needs as initializers (op type -> input positions).
CONSTANT_INPUTS = {
    "Slice": (3,),
    "Pad": (3,),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "ReduceSum": (1,),
}
RESIZE_MODES = frozenset({"nearest", "linear"})
RESIZE_TRANSFORMS = frozenset(
    {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
)
RESIZE_NEAREST_MODES = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})


@dataclass(frozen=True)
class TrtReport:
    """What the check found; `problems` empty means nothing stands in TensorRT's way.

    notes: things TensorRT handles with a cast or a fallback (worth knowing, not blocking).
    """

    opset: int
    operators: tuple[str, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def lines(self) -> list[str]:
        """The report for people."""
        verdict = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        out = [
            f"TensorRT check ({TRT_PARSER}, opset {TRT_MIN_OPSET}-{TRT_MAX_OPSET}): {verdict}",
            f"  opset {self.opset}; operators: {', '.join(self.operators)}",
        ]
        out += [f"  problem: {problem}" for problem in self.problems]
        out += [f"  note: {note}" for note in self.notes]
        return out


def _graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph nested in its nodes' attributes."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None] | None:
    """The value's dims (None entries are unknown); None when it has no shape at all."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return dims


def _is_static(dims: list[int | str | None]) -> bool:
    """Fixed sizes everywhere but an optional leading batch dimension (BATCH_DIM)."""
    return all(
        isinstance(dim, int) or (index == 0 and dim == BATCH_DIM) for index, dim in enumerate(dims)
    )


def _dynamic_values(model: onnx.ModelProto) -> list[str]:
    """Values whose shape shape inference could not pin down to fixed sizes (but the batch).

    A leading symbolic `batch` dimension is the batched layouts' one dynamic dimension
    (TensorRT builds it from an optimization profile); any other unknown size is a problem.
    """
    inferred = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    found = []
    for graph in _graphs(inferred.graph):
        for value in [*graph.input, *graph.output, *graph.value_info]:
            dims = _dims(value)
            if dims is None or not _is_static(dims):
                found.append(f"{value.name} {dims if dims is not None else 'unknown rank'}")
    produced = {
        out for graph in _graphs(inferred.graph) for node in graph.node for out in node.output
    }
    described = {
        value.name
        for graph in _graphs(inferred.graph)
        for value in [*graph.input, *graph.output, *graph.value_info]
    }
    found += [f"{name} (no shape inferred)" for name in sorted(produced - described) if name]
    return found


def _if_problems(node: onnx.NodeProto) -> list[str]:
    branches = {attr.name: attr.g for attr in node.attribute if attr.name.endswith("_branch")}
    then_graph, else_graph = branches.get("then_branch"), branches.get("else_branch")
    if then_graph is None or else_graph is None:
        return [f"If {node.name!r} lacks a branch"]
    if len(then_graph.output) != len(else_graph.output):
        return [f"If {node.name!r}: branches return different numbers of outputs"]
    problems = []
    for then_out, else_out in zip(then_graph.output, else_graph.output, strict=True):
        if then_out.name == else_out.name:
            problems.append(
                f"If {node.name!r}: both branches name an output {then_out.name!r} "
                "(TensorRT needs distinct names)"
            )
        then_type, else_type = then_out.type.tensor_type, else_out.type.tensor_type
        if then_type.elem_type != else_type.elem_type or _dims(then_out) != _dims(else_out):
            problems.append(
                f"If {node.name!r}: outputs {then_out.name!r} {_dims(then_out)} and "
                f"{else_out.name!r} {_dims(else_out)} differ in type or shape"
            )
    return problems


def stored_values(model: onnx.ModelProto) -> set[str]:
    """Names of the values the model stores: initializers and Constant outputs, in the main
    graph and every subgraph."""
    stored: set[str] = set()
    for graph in _graphs(model.graph):
        stored |= {init.name for init in graph.initializer}
        stored |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    return stored


def computed_inputs(
    node: onnx.NodeProto, positions: Sequence[int], stored: set[str]
) -> list[tuple[int, str]]:
    """(position, name) of the node's inputs at `positions` that are computed at run time
    (given, and not among the stored values)."""
    return [
        (position, node.input[position])
        for position in positions
        if position < len(node.input)
        and node.input[position]
        and node.input[position] not in stored
    ]


def _node_problems(node: onnx.NodeProto, constants: set[str]) -> list[str]:
    computed = computed_inputs(node, CONSTANT_INPUTS.get(node.op_type, ()), constants)
    problems = [
        f"{node.op_type} {node.name!r}: input {position} ({name!r}) must be an initializer"
        for position, name in computed
    ]
    attrs = {attr.name: onnx.helper.get_attribute_value(attr) for attr in node.attribute}
    if node.op_type == "Resize":
        checks = (
            ("mode", b"nearest", RESIZE_MODES),
            ("coordinate_transformation_mode", b"half_pixel", RESIZE_TRANSFORMS),
            ("nearest_mode", b"round_prefer_floor", RESIZE_NEAREST_MODES),
        )
        for name, default, allowed in checks:
            value = attrs.get(name, default).decode()
            if value not in allowed:
                problems.append(f"Resize {node.name!r}: {name}={value} is unsupported")
        if attrs.get("antialias", 0):
            problems.append(f"Resize {node.name!r}: antialiasing is unsupported")
    if node.op_type == "MaxPool" and any(d != 1 for d in attrs.get("dilations", [])):
        problems.append(f"MaxPool {node.name!r}: dilations must be 1")
    convolution = node.op_type in ("Conv", "ConvTranspose")
    constant_weights = convolution and node.input[1] in constants
    if constant_weights and len(node.input) > 2 and node.input[2] not in ("", *constants):
        problems.append(f"{node.op_type} {node.name!r}: the bias must be an initializer")
    groups = int(attrs.get("group", 1))
    if convolution and not constant_weights and groups > 1:
        problems.append(
            f"{node.op_type} {node.name!r}: {groups} groups with weights computed at run time "
            f"({node.input[1]!r}): the group count is a fixed attribute, so per-target kernels "
            "cannot follow a batch (and parsers before TensorRT 8.5 need initializer weights); "
            "write the correlation as Slice/Mul/Add"
        )
    if node.op_type == "If":
        problems += _if_problems(node)
    return problems


def check_tensorrt(model: onnx.ModelProto) -> TrtReport:
    """Check a model against the TensorRT ONNX parser's documented support."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    problems = []
    if not TRT_MIN_OPSET <= opset <= TRT_MAX_OPSET:
        problems.append(f"opset {opset} is outside {TRT_MIN_OPSET}-{TRT_MAX_OPSET}")
    constants = stored_values(model)
    operators: set[str] = set()
    for graph in _graphs(model.graph):
        for node in graph.node:
            operators.add(node.op_type)
            if node.domain not in ("", "ai.onnx"):
                problems.append(f"{node.op_type} {node.name!r}: custom domain {node.domain!r}")
            problems += _node_problems(node, constants)
    unsupported = sorted(operators - TRT_OPERATORS)
    if unsupported:
        problems.append(f"operators TensorRT does not parse: {', '.join(unsupported)}")
    problems += [f"dynamic shape: {value}" for value in _dynamic_values(model)]
    notes = [
        f"input {value.name!r} is DOUBLE: TensorRT casts it to FLOAT (or the runtime runs its "
        "Cast outside TensorRT)"
        for value in model.graph.input
        if value.type.tensor_type.elem_type == TensorProto.DOUBLE
    ]
    batched = [
        value.name for value in model.graph.input if (_dims(value) or [None])[0] == BATCH_DIM
    ]
    if batched:
        notes.append(
            f"inputs {', '.join(batched)} lead with the dynamic dimension {BATCH_DIM!r}: "
            "TensorRT builds the engine for an optimization profile (min/opt/max batch)"
        )
    return TrtReport(opset, tuple(sorted(operators)), tuple(problems), tuple(notes))
