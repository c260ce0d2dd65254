"""Writes the loaded SiamMask VOT network as contract ONNX models, in the layouts of
docs/model-layouts.md: single target or batched, one model with an If or split in two.

Init step: template features of the 127x127 exemplar. Track step: the whole siamese_track step
(heads, anchor decoding, penalty, window, argmax, state update, refine at the best cell), row by
row. Weights are stored once per model; every shape is static but the batch. Never runs a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from siamedge import __version__
from siamedge import contract as c
from siamedge.contract import EXEMPLAR_SIZE, INSTANCE_SIZE
from siamedge.errors import ModelError
from siamedge.export.decode import RowInputs, cell_of, track_arithmetic
from siamedge.export.graph import FLOAT, INT64, Branch, Initializers
from siamedge.export.network import SiamMaskVOT
from siamedge.export.spec import (
    BATCH_DIM,
    DEFAULT_BATCH,
    DEFAULT_OPSET,
    INIT_MODEL_SUFFIX,
    MASK_SIDE,
    MIN_OPSET,
    MODEL_NAME,
    SINGLE_TARGET_BATCH,
    TEMPLATE_BORDER,
    TEMPLATE_FEATURE_SHAPE,
    TEMPLATE_FEATURE_SIDE,
    HyperParameters,
)
from siamedge.export.writer import NetworkWriter

PRODUCER = "siamedge-export"

INIT_PREFIX = "init"
TRACK_PREFIX = "track"

Layout = Literal["if", "split"]
LAYOUTS: tuple[Layout, ...] = ("if", "split")  # contract.LAYOUT_IF, contract.LAYOUT_SPLIT
DEFAULT_INIT_MODEL = MODEL_NAME + INIT_MODEL_SUFFIX


@dataclass(frozen=True)
class ExportOptions:
    """What an export bakes in: tracker hyper-parameters, opset, weight precision, layout.

    fp16: network weights and arithmetic in float16 (inputs, outputs and the tracker arithmetic
    stay float32). with_score: add the `score` output (False: the public export's layout).
    batch: 1 for the single-target layout (the public export's), None for a symbolic leading
    batch dimension `batch` (docs/model-layouts.md section 2). layout: "if" (one model, an If on
    first_time) or "split" (a track model and an init model without If; needs batch None).
    """

    hp: HyperParameters = field(default_factory=HyperParameters)
    opset: int = DEFAULT_OPSET
    fp16: bool = False
    with_score: bool = True
    batch: int | None = DEFAULT_BATCH
    layout: Layout = "if"

    def __post_init__(self) -> None:
        if self.batch is not None and self.batch != SINGLE_TARGET_BATCH:
            raise ModelError(
                f"batch must be {SINGLE_TARGET_BATCH} (single target) or None (dynamic), "
                f"got {self.batch!r}"
            )
        if self.layout not in LAYOUTS:
            raise ModelError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.layout == c.LAYOUT_SPLIT and self.batch is not None:
            raise ModelError(
                "the split layout is batched: export it with a dynamic batch (--batch dynamic)"
            )

    @property
    def batched(self) -> bool:
        """Every tensor but first_time leads with the symbolic batch dimension."""
        return self.batch is None

    def describe(self) -> str:
        """The layout in words, for reports."""
        batch = f"dynamic batch `{BATCH_DIM}`" if self.batched else "single target"
        return f"{self.layout} layout, {batch}"


Dim = int | str


@dataclass(frozen=True)
class TensorDecl:
    """A model input or output: name, ONNX element type and shape (a str dim is symbolic)."""

    name: str
    elem_type: int
    shape: tuple[Dim, ...]

    def value_info(self, name: str | None = None) -> onnx.ValueInfoProto:
        """The declaration as an ONNX value info, optionally under another name."""
        return helper.make_tensor_value_info(name or self.name, self.elem_type, list(self.shape))

    def leading(self, lead: str | None) -> TensorDecl:
        """This per-target declaration in a layout: lead None is the single-target layout,
        where only the tensors the contract calls already batched lead with 1."""
        if lead is not None:
            return TensorDecl(self.name, self.elem_type, (lead, *self.shape))
        if self.name in c.ALREADY_BATCHED:
            return TensorDecl(self.name, self.elem_type, (1, *self.shape))
        return self


# One target's tensors, without the batch dimension.
ROW_INPUTS = (
    TensorDecl(c.IN_IMAGE, FLOAT, (3, INSTANCE_SIZE, INSTANCE_SIZE)),
    TensorDecl(c.IN_CENTER, FLOAT, (2,)),
    TensorDecl(c.IN_SIZE, FLOAT, (2,)),
    TensorDecl(c.IN_SCALE, TensorProto.DOUBLE, ()),
    TensorDecl(c.IN_FEATURES, FLOAT, TEMPLATE_FEATURE_SHAPE[1:]),
)
FIRST_TIME = TensorDecl(c.IN_FIRST_TIME, TensorProto.BOOL, ())
ROW_OUTPUTS = (
    TensorDecl(c.OUT_MASK, FLOAT, (MASK_SIDE, MASK_SIDE)),
    TensorDecl(c.OUT_CENTER, FLOAT, (2,)),
    TensorDecl(c.OUT_SIZE, FLOAT, (2,)),
    TensorDecl(c.OUT_FEATURES, FLOAT, TEMPLATE_FEATURE_SHAPE[1:]),
    TensorDecl(c.OUT_BEST_CELL, INT64, (2,)),
)
ROW_SCORE = TensorDecl(c.OUT_SCORE, FLOAT, ())
ROW_INIT_INPUTS = (
    TensorDecl(c.IN_IMAGE, FLOAT, (3, EXEMPLAR_SIZE, EXEMPLAR_SIZE)),
    TensorDecl(c.IN_CENTER, FLOAT, (2,)),
    TensorDecl(c.IN_SIZE, FLOAT, (2,)),
)
ROW_INIT_OUTPUTS = (TensorDecl(c.OUT_FEATURES, FLOAT, TEMPLATE_FEATURE_SHAPE[1:]),)


def _lead(options: ExportOptions) -> str | None:
    return BATCH_DIM if options.batched else None


def input_decls(options: ExportOptions) -> tuple[TensorDecl, ...]:
    """The model inputs (the track model's, for the split layout), in order."""
    decls = [decl.leading(_lead(options)) for decl in ROW_INPUTS]
    return (*decls, FIRST_TIME) if options.layout == c.LAYOUT_IF else tuple(decls)


def output_decls(options: ExportOptions) -> tuple[TensorDecl, ...]:
    """The model outputs (the track model's, for the split layout), in order."""
    rows = (*ROW_OUTPUTS, ROW_SCORE) if options.with_score else ROW_OUTPUTS
    absent = c.SPLIT_TRACK_ABSENT if options.layout == c.LAYOUT_SPLIT else ()
    return tuple(decl.leading(_lead(options)) for decl in rows if decl.name not in absent)


# --- branches -------------------------------------------------------------------------------


def _row_inputs(b: Branch, options: ExportOptions) -> RowInputs:
    """The track inputs as [N, ...] rows; the single-target layout's vectors gain N = 1."""
    if options.batched:
        return RowInputs(c.IN_IMAGE, c.IN_CENTER, c.IN_SIZE, c.IN_SCALE, c.IN_FEATURES)
    return RowInputs(
        image=c.IN_IMAGE,
        center=b.unsqueeze(c.IN_CENTER, 0),
        size=b.unsqueeze(c.IN_SIZE, 0),
        scale=b.unsqueeze(c.IN_SCALE, 0),
        features=c.IN_FEATURES,
    )


def _layout_values(b: Branch, values: Mapping[str, str], options: ExportOptions) -> dict[str, str]:
    """Batched output values in the layout: the single-target layout drops N = 1 again."""
    if options.batched:
        return dict(values)
    return {
        name: value if name in c.ALREADY_BATCHED else b.squeeze(value, 0)
        for name, value in values.items()
    }


def _rows_of(b: Branch, value: str) -> str:
    """[1] int64: the number of rows of a batched value."""
    return b.slice(b.op("Shape", [value]), 0, 0, 1)


def _zeros(b: Branch, rows: str, tail: Sequence[int], elem_type: int) -> str:
    """Zeros of shape [N, *tail], N given as a [1] int64 value."""
    shape = b.op("Concat", [rows, b.ints(*tail)], axis=0) if tail else rows
    # ConstantOfShape defaults to float32 zeros; a Cast makes other types (TensorRT 8.6 parses
    # only float ConstantOfShape).
    return b.cast(b.op("ConstantOfShape", [shape]), FLOAT, elem_type)


def template_features(writer: NetworkWriter, b: Branch, exemplar: str) -> str:
    """[N, C, h, w] float32 template features of [N, 3, 127, 127] float32 exemplar crops."""
    levels = writer.trunk(b, b.cast(exemplar, FLOAT, writer.compute))
    adjusted = writer.adjust(b, levels.p3)
    inner_end = TEMPLATE_BORDER + TEMPLATE_FEATURE_SIDE
    features = b.op(
        "Slice",
        [
            adjusted,
            b.ints(TEMPLATE_BORDER, TEMPLATE_BORDER),
            b.ints(inner_end, inner_end),
            b.ints(2, 3),
        ],
    )
    return b.cast(features, writer.compute, FLOAT)


def init_values(writer: NetworkWriter, b: Branch, options: ExportOptions) -> dict[str, str]:
    """The If model's init step: features of the exemplar in the top-left corner of `im`, the
    state passed through, zeros for the other outputs (batched: one row of zeros per target)."""
    exemplar = b.op(
        "Slice",
        [c.IN_IMAGE, b.ints(0, 0), b.ints(EXEMPLAR_SIZE, EXEMPLAR_SIZE), b.ints(2, 3)],
    )
    values = {
        c.OUT_CENTER: c.IN_CENTER,
        c.OUT_SIZE: c.IN_SIZE,
        c.OUT_FEATURES: template_features(writer, b, exemplar),
    }
    # The score's zeros only when the model has the output: an unused constant is an initializer
    # no node reads, which onnxruntime warns about (raw, in colour) each time it loads the model.
    if options.batched:
        rows = _rows_of(b, c.IN_IMAGE)
        values[c.OUT_MASK] = _zeros(b, rows, (MASK_SIDE, MASK_SIDE), FLOAT)
        values[c.OUT_BEST_CELL] = _zeros(b, rows, (2,), INT64)
        if options.with_score:
            values[c.OUT_SCORE] = _zeros(b, rows, (), FLOAT)
    else:
        values[c.OUT_MASK] = b.const(np.zeros((MASK_SIDE, MASK_SIDE)), np.float32, "zeros_mask")
        values[c.OUT_BEST_CELL] = b.const(np.zeros(2), np.int64, "zeros_cell")
        if options.with_score:
            values[c.OUT_SCORE] = b.const(0.0, np.float32, "zero")
    return values


def track_values(writer: NetworkWriter, b: Branch, options: ExportOptions) -> dict[str, str]:
    """One siamese_track step on the search crops `im`, every row on its own."""
    rows = _row_inputs(b, options)
    net = writer.net
    levels = writer.trunk(b, b.cast(rows.image, FLOAT, writer.compute))
    search = writer.adjust(b, levels.p3)
    template = b.cast(rows.features, FLOAT, writer.compute)
    heads = net.rpn_model
    cls = writer.head(b, heads.cls, writer.correlate(b, heads.cls, template, search))
    loc = writer.head(b, heads.loc, writer.correlate(b, heads.loc, template, search))
    decision = track_arithmetic(
        b,
        b.cast(cls, writer.compute, FLOAT),
        b.cast(loc, writer.compute, FLOAT),
        rows,
        options.hp,
    )
    cell = cell_of(b, decision.best)
    correlation = writer.correlate_at(b, net.mask_model.mask, template, search, cell)
    logits = b.cast(writer.refine(b, levels, correlation, cell), writer.compute, FLOAT)
    mask = b.op("Sigmoid", [b.reshape_keep(logits, MASK_SIDE, MASK_SIDE)])
    values = {
        c.OUT_MASK: mask,
        c.OUT_CENTER: decision.center,
        c.OUT_SIZE: decision.size,
        c.OUT_FEATURES: rows.features,
        c.OUT_BEST_CELL: b.op("Concat", [cell.row, cell.col], axis=1),
        c.OUT_SCORE: decision.score,
    }
    return _layout_values(b, values, options)


def _branch_outputs(
    b: Branch, values: Mapping[str, str], decls: Sequence[TensorDecl]
) -> list[onnx.ValueInfoProto]:
    """The branch outputs, in model output order, named `<prefix>/<output>`.

    TensorRT needs the two branches' output names to differ; the If node gives them the
    contract names.
    """
    infos = []
    for decl in decls:
        name = b.named("Identity", [values[decl.name]], f"{b.prefix}/{decl.name}")
        infos.append(decl.value_info(name))
    return infos


def _graph_outputs(
    b: Branch, values: Mapping[str, str], decls: Sequence[TensorDecl]
) -> list[onnx.ValueInfoProto]:
    """Model outputs written straight from a branch's nodes (the split layout has no If)."""
    for decl in decls:
        b.named("Identity", [values[decl.name]], decl.name)
    return [decl.value_info() for decl in decls]


# --- models ---------------------------------------------------------------------------------


def _check_opset(opset: int) -> None:
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        raise ModelError(
            f"opset {opset} is not available: the export needs {MIN_OPSET} to {newest} "
            f"(onnx {onnx.__version__})"
        )


def _model(
    graph: onnx.GraphProto, options: ExportOptions, doc: str, metadata: Mapping[str, str]
) -> onnx.ModelProto:
    opsets = [helper.make_opsetid("", options.opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name=PRODUCER,
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
        doc_string=doc,
    )
    helper.set_model_props(
        model,
        {
            c.META_MODEL_NAME: MODEL_NAME,
            c.META_PRODUCER: f"{PRODUCER} {__version__}",
            c.META_HYPER_PARAMETERS: options.hp.metadata_json(),
            c.META_PRECISION: c.PRECISION_FLOAT16 if options.fp16 else c.PRECISION_FLOAT32,
            **metadata,
        },
    )
    return model


def _doc(what: str, options: ExportOptions, source: str) -> str:
    return (
        f"SiamMask VOT (ResNet-50, depth-wise RPN, refine) {what} in the siamedge model "
        f"contract, {options.describe()}" + (f", from {source}" if source else "")
    )


def _if_graph(writer: NetworkWriter, options: ExportOptions) -> onnx.GraphProto:
    decls = output_decls(options)
    init = Branch(INIT_PREFIX, writer.store)
    track = Branch(TRACK_PREFIX, writer.store)
    then_graph = init.graph(_branch_outputs(init, init_values(writer, init, options), decls))
    else_graph = track.graph(_branch_outputs(track, track_values(writer, track, options), decls))
    switch = helper.make_node(
        "If",
        [c.IN_FIRST_TIME],
        [decl.name for decl in decls],
        name="first_time_switch",
        then_branch=then_graph,
        else_branch=else_graph,
    )
    return helper.make_graph(
        [switch],
        MODEL_NAME,
        [decl.value_info() for decl in input_decls(options)],
        [decl.value_info() for decl in decls],
        initializer=writer.store.tensors(),
    )


def _track_graph(writer: NetworkWriter, options: ExportOptions) -> onnx.GraphProto:
    track = Branch(TRACK_PREFIX, writer.store)
    outputs = _graph_outputs(track, track_values(writer, track, options), output_decls(options))
    return helper.make_graph(
        track.nodes,
        MODEL_NAME,
        [decl.value_info() for decl in input_decls(options)],
        outputs,
        initializer=writer.store.tensors(),
    )


def build_model(
    net: SiamMaskVOT,
    options: ExportOptions,
    source: str = "",
    init_model: str = DEFAULT_INIT_MODEL,
) -> onnx.ModelProto:
    """The contract model of a loaded network (eval mode); the track model for "split".

    source: shown in the doc string. init_model: the split layout's init model file name,
    recorded in the metadata (build it with build_init_model).
    """
    _check_opset(options.opset)
    writer = NetworkWriter(net, Initializers(), options.fp16)
    metadata: dict[str, str] = {c.META_LAYOUT: options.layout}
    with torch.inference_mode():
        if options.layout == c.LAYOUT_SPLIT:
            graph = _track_graph(writer, options)
            metadata[c.META_INIT_MODEL] = init_model
        else:
            graph = _if_graph(writer, options)
    what = "track model" if options.layout == c.LAYOUT_SPLIT else "model"
    return _model(graph, options, _doc(what, options, source), metadata)


def build_init_model(net: SiamMaskVOT, options: ExportOptions, source: str = "") -> onnx.ModelProto:
    """The split layout's init model: [N, 3, 127, 127] exemplar crops -> z_features1."""
    if options.layout != c.LAYOUT_SPLIT:
        raise ModelError("only the split layout has an init model of its own")
    _check_opset(options.opset)
    writer = NetworkWriter(net, Initializers(), options.fp16)
    init = Branch(INIT_PREFIX, writer.store)
    with torch.inference_mode():
        values = {c.OUT_FEATURES: template_features(writer, init, c.IN_IMAGE)}
    decls = [decl.leading(BATCH_DIM) for decl in ROW_INIT_OUTPUTS]
    graph = helper.make_graph(
        init.nodes,
        MODEL_NAME + "-init",
        [decl.leading(BATCH_DIM).value_info() for decl in ROW_INIT_INPUTS],
        _graph_outputs(init, values, decls),
        initializer=writer.store.tensors(),
    )
    return _model(graph, options, _doc("init model", options, source), {})
