"""Writes the loaded SiamMask VOT network as ONE contract ONNX model: an If on `first_time`.

Then-branch: template features of im[:, :, :127, :127]. Else-branch: the whole siamese_track
step (heads, anchor decoding, penalty, window, argmax, state update, refine at the best cell).
Weights are stored once in the main graph and shared by both branches; every shape is static.
Never runs the model (validate.py does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from numpy.typing import NDArray
from onnx import TensorProto, helper
from torch import nn

from siamedge import __version__
from siamedge import contract as c
from siamedge.contract import EXEMPLAR_SIZE, INSTANCE_SIZE, SCORE_SIZE
from siamedge.errors import ModelError
from siamedge.export.graph import FLOAT, FLOAT16, INT64, Branch, Initializers
from siamedge.export.network import (
    DECONV_SIDE,
    REFINE_PADS,
    REFINE_STRIDES,
    REFINE_WINDOWS,
    Bottleneck,
    DepthCorr,
    Refine,
    SiamMaskVOT,
)
from siamedge.export.spec import (
    ANCHOR_COUNT,
    DEFAULT_OPSET,
    FEATURE_CHANNELS,
    MASK_SIDE,
    MIN_OPSET,
    MODEL_NAME,
    TEMPLATE_BORDER,
    TEMPLATE_FEATURE_SHAPE,
    TEMPLATE_FEATURE_SIDE,
    HyperParameters,
    anchor_grid,
    cosine_window,
)

PRODUCER = "siamedge-export"
CELLS = SCORE_SIZE * SCORE_SIZE
ANCHOR_CELLS = ANCHOR_COUNT * CELLS

INIT_PREFIX = "init"
TRACK_PREFIX = "track"


@dataclass(frozen=True)
class ExportOptions:
    """What an export bakes in: tracker hyper-parameters, opset, weight precision, outputs.

    fp16: network weights and arithmetic in float16 (inputs, outputs and the tracker arithmetic
    stay float32). with_score: add the `score` output (False: the public export's layout).
    """

    hp: HyperParameters = field(default_factory=HyperParameters)
    opset: int = DEFAULT_OPSET
    fp16: bool = False
    with_score: bool = True


@dataclass(frozen=True)
class TensorDecl:
    """A model input or output: name, ONNX element type and static shape."""

    name: str
    elem_type: int
    shape: tuple[int, ...]

    def value_info(self, name: str | None = None) -> onnx.ValueInfoProto:
        """The declaration as an ONNX value info, optionally under another name."""
        return helper.make_tensor_value_info(name or self.name, self.elem_type, list(self.shape))


INPUTS = (
    TensorDecl(c.IN_IMAGE, FLOAT, (1, 3, INSTANCE_SIZE, INSTANCE_SIZE)),
    TensorDecl(c.IN_CENTER, FLOAT, (2,)),
    TensorDecl(c.IN_SIZE, FLOAT, (2,)),
    TensorDecl(c.IN_SCALE, TensorProto.DOUBLE, ()),
    TensorDecl(c.IN_FEATURES, FLOAT, TEMPLATE_FEATURE_SHAPE),
    TensorDecl(c.IN_FIRST_TIME, TensorProto.BOOL, ()),
)
SEED_OUTPUTS = (
    TensorDecl(c.OUT_MASK, FLOAT, (MASK_SIDE, MASK_SIDE)),
    TensorDecl(c.OUT_CENTER, FLOAT, (2,)),
    TensorDecl(c.OUT_SIZE, FLOAT, (2,)),
    TensorDecl(c.OUT_FEATURES, FLOAT, TEMPLATE_FEATURE_SHAPE),
    TensorDecl(c.OUT_BEST_CELL, INT64, (2,)),
)
SCORE_OUTPUT = TensorDecl(c.OUT_SCORE, FLOAT, ())


def output_decls(with_score: bool) -> tuple[TensorDecl, ...]:
    """The model outputs, in order."""
    return (*SEED_OUTPUTS, SCORE_OUTPUT) if with_score else SEED_OUTPUTS


def _numpy(tensor: torch.Tensor) -> NDArray[np.float64]:
    return np.asarray(tensor.detach().cpu().numpy(), dtype=np.float64)


@dataclass(frozen=True)
class CellValues:
    """Value names ([1] int64 each) of a score-grid cell: flat = row * S + col."""

    flat: str
    row: str
    col: str


@dataclass(frozen=True)
class Levels:
    """Value names of the trunk's levels p0..p3 in a branch."""

    p0: str
    p1: str
    p2: str
    p3: str


class NetworkWriter:
    """Emits the network's layers into branches, reading geometry and weights from the modules.

    BatchNorm is folded into the preceding convolution (in float64, then rounded once).
    """

    def __init__(self, net: SiamMaskVOT, store: Initializers, fp16: bool) -> None:
        self.net = net
        self.store = store
        self.compute = FLOAT16 if fp16 else FLOAT
        self._weight_dtype = np.float16 if fp16 else np.float32
        self._names = {id(module): name for name, module in net.named_modules()}

    def _weights(
        self, conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d | None
    ) -> list[str]:
        key = self._names[id(conv)]
        weight = _numpy(conv.weight)
        bias = None if conv.bias is None else _numpy(conv.bias)
        if bn is not None:
            assert bn.running_mean is not None and bn.running_var is not None
            gain = _numpy(bn.weight) / np.sqrt(_numpy(bn.running_var) + bn.eps)
            weight = weight * gain[:, None, None, None]
            shift = _numpy(bn.bias) - _numpy(bn.running_mean) * gain
            bias = shift if bias is None else bias * gain + shift
            key += "+bn"
        names = [self.store.add(f"{key}.weight", weight.astype(self._weight_dtype))]
        if bias is not None:
            names.append(self.store.add(f"{key}.bias", bias.astype(self._weight_dtype)))
        return names

    def conv(
        self, b: Branch, x: str, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu: bool
    ) -> str:
        """conv (+ folded BN) (+ ReLU) with the module's stride, padding and dilation."""
        kernel = [int(k) for k in conv.kernel_size]
        padding = [int(p) for p in conv.padding]
        out = b.op(
            "Conv",
            [x, *self._weights(conv, bn)],
            kernel_shape=kernel,
            strides=[int(s) for s in conv.stride],
            pads=padding + padding,
            dilations=[int(d) for d in conv.dilation],
            group=int(conv.groups),
        )
        return b.op("Relu", [out]) if relu else out

    def _sequence(self, b: Branch, x: str, layers: nn.Sequential) -> str:
        """Conv / BatchNorm / ReLU sequences as SiamMask writes them (BN right after its conv)."""
        modules = list(layers)
        out = x
        i = 0
        while i < len(modules):
            conv = modules[i]
            if not isinstance(conv, nn.Conv2d):
                raise TypeError(f"expected a Conv2d in {self._names[id(layers)]}, got {conv}")
            bn = modules[i + 1] if i + 1 < len(modules) else None
            bn = bn if isinstance(bn, nn.BatchNorm2d) else None
            i += 1 if bn is None else 2
            relu = i < len(modules) and isinstance(modules[i], nn.ReLU)
            i += 1 if relu else 0
            out = self.conv(b, out, conv, bn, relu)
        return out

    def bottleneck(self, b: Branch, x: str, block: Bottleneck) -> str:
        """One residual bottleneck."""
        out = self.conv(b, x, block.conv1, block.bn1, relu=True)
        out = self.conv(b, out, block.conv2, block.bn2, relu=True)
        out = self.conv(b, out, block.conv3, block.bn3, relu=False)
        if block.downsample is None:
            residual = x
        else:
            assert isinstance(block.downsample, nn.Sequential)
            residual = self._sequence(b, x, block.downsample)
        return b.op("Relu", [b.op("Add", [out, residual])])

    def trunk(self, b: Branch, image: str) -> Levels:
        """The ResNet-50 trunk (to layer3) on an image in the compute type."""
        trunk = self.net.features.features
        p0 = self.conv(b, image, trunk.conv1, trunk.bn1, relu=True)
        pool = trunk.maxpool
        out = b.op(
            "MaxPool",
            [p0],
            kernel_shape=[int(pool.kernel_size)] * 2,  # type: ignore[arg-type]
            strides=[int(pool.stride)] * 2,  # type: ignore[arg-type]
            pads=[int(pool.padding)] * 4,  # type: ignore[arg-type]
        )
        levels = [p0]
        for layer in (trunk.layer1, trunk.layer2, trunk.layer3):
            for block in layer:
                assert isinstance(block, Bottleneck)
                out = self.bottleneck(b, out, block)
            levels.append(out)
        return Levels(*levels)

    def adjust(self, b: Branch, p3: str) -> str:
        """The 1024 -> 256 adjust layer."""
        return self._sequence(b, p3, self.net.features.downsample.downsample)

    def correlate(self, b: Branch, head: DepthCorr, template: str, search: str) -> str:
        """(1, 256, S, S) depth-wise correlation: a grouped Conv whose kernel is the template."""
        kernel = self._sequence(b, template, head.conv_kernel)
        searched = self._sequence(b, search, head.conv_search)
        adjust = head.conv_kernel[0]
        assert isinstance(adjust, nn.Conv2d) and adjust.padding == (0, 0)
        side = TEMPLATE_FEATURE_SIDE - (adjust.kernel_size[0] - 1)
        weight = b.reshape(kernel, FEATURE_CHANNELS, 1, side, side)
        return b.op("Conv", [searched, weight], group=FEATURE_CHANNELS)

    def head(self, b: Branch, head: DepthCorr, correlation: str) -> str:
        """The 1x1 head after a correlation."""
        return self._sequence(b, correlation, head.head)

    def _window(self, b: Branch, level: str, index: int, cell: CellValues) -> str:
        """Refine window of a trunk level at (row, col): Pad, then Gather rows and columns.

        Gather with computed indices keeps the window's shape static (a Slice with computed
        starts would not).
        """
        pad, stride, side = REFINE_PADS[index], REFINE_STRIDES[index], REFINE_WINDOWS[index]
        padded = b.op("Pad", [level, b.ints(0, 0, pad, pad, 0, 0, pad, pad)])
        offsets = b.const(np.arange(side), np.int64, "arange")
        step = b.ints(stride)
        rows = b.op("Add", [b.op("Mul", [cell.row, step]), offsets])
        cols = b.op("Add", [b.op("Mul", [cell.col, step]), offsets])
        return b.op("Gather", [b.op("Gather", [padded, rows], axis=2), cols], axis=3)

    def _upsample(self, b: Branch, x: str, channels: int, side: int) -> str:
        # PyTorch's default nearest mode: source index = floor(dest * in / out).
        return b.op(
            "Resize",
            [x, "", "", b.ints(1, channels, side, side)],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )

    def refine(self, b: Branch, levels: Levels, correlation: str, cell: CellValues) -> str:
        """(1, 1, 127, 127) mask logits at a grid cell."""
        refine: Refine = self.net.refine_model
        p0 = self._window(b, levels.p0, 0, cell)
        p1 = self._window(b, levels.p1, 1, cell)
        p2 = self._window(b, levels.p2, 2, cell)
        flat = b.reshape(correlation, FEATURE_CHANNELS, CELLS)
        p3 = b.reshape(b.op("Gather", [flat, cell.flat], axis=1), 1, FEATURE_CHANNELS, 1, 1)
        deconv = refine.deconv
        out = b.op(
            "ConvTranspose",
            [p3, *self._weights(deconv, None)],
            kernel_shape=[DECONV_SIDE, DECONV_SIDE],
            strides=[DECONV_SIDE, DECONV_SIDE],
        )
        stages = (
            (refine.h2, refine.v2, p2, refine.post0, REFINE_WINDOWS[1]),
            (refine.h1, refine.v1, p1, refine.post1, REFINE_WINDOWS[0]),
            (refine.h0, refine.v0, p0, refine.post2, MASK_SIDE),
        )
        for horizontal, vertical, window, post, side in stages:
            merged = b.op(
                "Add",
                [self._sequence(b, out, horizontal), self._sequence(b, window, vertical)],
            )
            channels = int(post.in_channels)
            out = self.conv(b, self._upsample(b, merged, channels, side), post, None, relu=False)
        return out


def _change(b: Branch, ratio: str) -> str:
    """max(r, 1 / r)."""
    return b.op("Max", [ratio, b.op("Reciprocal", [ratio])])


def _context_side(b: Branch, w: str, h: str) -> str:
    """sqrt((w + p)(h + p)), p = (w + h) / 2."""
    pad = b.op("Mul", [b.op("Add", [w, h]), b.const(0.5, np.float32)])
    return b.op("Sqrt", [b.op("Mul", [b.op("Add", [w, pad]), b.op("Add", [h, pad])])])


def track_arithmetic(
    b: Branch, cls: str, loc: str, hp: HyperParameters
) -> tuple[str, str, str, str]:
    """siamese_track's decoding of the heads' float32 outputs (1, 2A, S, S) and (1, 4A, S, S).

    Returns value names: new centre [2], new size [2] (both unclipped), the best anchor's flat
    index [1] int64 (anchor, row, col order) and its softmax score [].
    """
    one = b.const(1.0, np.float32)
    logits = b.reshape(cls, 2, ANCHOR_CELLS)
    # softmax over (background, foreground) = sigmoid of their difference
    score = b.op("Sigmoid", [b.op("Sub", [b.slice(logits, 0, 1, 2), b.slice(logits, 0, 0, 1)])])
    deltas = b.reshape(loc, 4, ANCHOR_CELLS)
    anchors = anchor_grid()
    anchor_xy = b.const(anchors[:2], np.float32, "anchor_xy")
    anchor_wh = b.const(anchors[2:], np.float32, "anchor_wh")
    box_xy = b.op("Add", [b.op("Mul", [b.slice(deltas, 0, 0, 2), anchor_wh]), anchor_xy])
    box_wh = b.op("Mul", [b.op("Exp", [b.slice(deltas, 0, 2, 4)]), anchor_wh])
    box_w, box_h = b.slice(box_wh, 0, 0, 1), b.slice(box_wh, 0, 1, 2)

    scale = b.op("Cast", [c.IN_SCALE], to=FLOAT)
    size_in_crop = b.op("Mul", [c.IN_SIZE, scale])
    target_w, target_h = b.slice(size_in_crop, 0, 0, 1), b.slice(size_in_crop, 0, 1, 2)
    scale_change = _change(
        b,
        b.op(
            "Div",
            [_context_side(b, box_w, box_h), _context_side(b, target_w, target_h)],
        ),
    )
    ratio_change = _change(
        b,
        b.op("Div", [b.op("Div", [target_w, target_h]), b.op("Div", [box_w, box_h])]),
    )
    excess = b.op("Sub", [b.op("Mul", [ratio_change, scale_change]), one])
    penalty = b.op("Exp", [b.op("Mul", [excess, b.const(-hp.penalty_k, np.float32)])])
    weighted = b.op("Mul", [penalty, score])
    window = (cosine_window() * hp.window_influence).reshape(1, ANCHOR_CELLS)
    pscore = b.op(
        "Add",
        [
            b.op("Mul", [weighted, b.const(1.0 - hp.window_influence, np.float32)]),
            b.const(window, np.float32, "window"),
        ],
    )
    best = b.op("ArgMax", [pscore], axis=1, keepdims=0)  # [1]; first maximum, like np.argmax

    boxes = b.op("Concat", [box_xy, box_wh], axis=0)
    pred = b.op("Div", [b.reshape(b.op("Gather", [boxes, best], axis=1), 4), scale])
    rate = b.op(
        "Mul", [b.reshape(b.op("Gather", [weighted, best], axis=1), 1), b.const(hp.lr, np.float32)]
    )
    center = b.op("Add", [c.IN_CENTER, b.slice(pred, 0, 0, 2)])
    size = b.op(
        "Add",
        [
            b.op("Mul", [c.IN_SIZE, b.op("Sub", [one, rate])]),
            b.op("Mul", [b.slice(pred, 0, 2, 4), rate]),
        ],
    )
    best_score = b.reshape(b.op("Gather", [score, best], axis=1))
    return center, size, best, best_score


def _cell_of(b: Branch, best: str) -> CellValues:
    """The grid cell of a flat (anchor, row, col) index."""
    anchor = b.op("Div", [best, b.ints(CELLS)])
    cell = b.op("Sub", [best, b.op("Mul", [anchor, b.ints(CELLS)])])
    row = b.op("Div", [cell, b.ints(SCORE_SIZE)])
    col = b.op("Sub", [cell, b.op("Mul", [row, b.ints(SCORE_SIZE)])])
    return CellValues(cell, row, col)


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


def init_branch(writer: NetworkWriter, decls: Sequence[TensorDecl]) -> onnx.GraphProto:
    """Template features of the exemplar in the top-left corner of `im`; other outputs neutral."""
    b = Branch(INIT_PREFIX, writer.store)
    exemplar = b.op(
        "Slice",
        [c.IN_IMAGE, b.ints(0, 0), b.ints(EXEMPLAR_SIZE, EXEMPLAR_SIZE), b.ints(2, 3)],
    )
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
    values = {
        c.OUT_MASK: b.const(np.zeros((MASK_SIDE, MASK_SIDE)), np.float32, "zeros_mask"),
        c.OUT_CENTER: c.IN_CENTER,
        c.OUT_SIZE: c.IN_SIZE,
        c.OUT_FEATURES: b.cast(features, writer.compute, FLOAT),
        c.OUT_BEST_CELL: b.const(np.zeros(2), np.int64, "zeros_cell"),
        c.OUT_SCORE: b.const(0.0, np.float32, "zero"),
    }
    return b.graph(_branch_outputs(b, values, decls))


def track_branch(
    writer: NetworkWriter, decls: Sequence[TensorDecl], hp: HyperParameters
) -> onnx.GraphProto:
    """One siamese_track step on the search crop `im`."""
    b = Branch(TRACK_PREFIX, writer.store)
    net = writer.net
    levels = writer.trunk(b, b.cast(c.IN_IMAGE, FLOAT, writer.compute))
    search = writer.adjust(b, levels.p3)
    template = b.cast(c.IN_FEATURES, FLOAT, writer.compute)
    heads = net.rpn_model
    cls = writer.head(b, heads.cls, writer.correlate(b, heads.cls, template, search))
    loc = writer.head(b, heads.loc, writer.correlate(b, heads.loc, template, search))
    correlation = writer.correlate(b, net.mask_model.mask, template, search)
    center, size, best, best_score = track_arithmetic(
        b, b.cast(cls, writer.compute, FLOAT), b.cast(loc, writer.compute, FLOAT), hp
    )
    cell = _cell_of(b, best)
    logits = writer.refine(b, levels, correlation, cell)
    mask = b.op("Sigmoid", [b.reshape(b.cast(logits, writer.compute, FLOAT), MASK_SIDE, MASK_SIDE)])
    values = {
        c.OUT_MASK: mask,
        c.OUT_CENTER: center,
        c.OUT_SIZE: size,
        c.OUT_FEATURES: c.IN_FEATURES,
        c.OUT_BEST_CELL: b.op("Concat", [cell.row, cell.col], axis=0),
        c.OUT_SCORE: best_score,
    }
    return b.graph(_branch_outputs(b, values, decls))


def build_model(net: SiamMaskVOT, options: ExportOptions, source: str = "") -> onnx.ModelProto:
    """The contract model of a loaded network (eval mode). source: shown in the doc string."""
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= options.opset <= newest:
        raise ModelError(
            f"opset {options.opset} is not available: the export needs {MIN_OPSET} to {newest} "
            f"(onnx {onnx.__version__})"
        )
    store = Initializers()
    writer = NetworkWriter(net, store, options.fp16)
    decls = output_decls(options.with_score)
    with torch.inference_mode():
        then_graph = init_branch(writer, decls)
        else_graph = track_branch(writer, decls, options.hp)
    switch = helper.make_node(
        "If",
        [c.IN_FIRST_TIME],
        [decl.name for decl in decls],
        name="first_time_switch",
        then_branch=then_graph,
        else_branch=else_graph,
    )
    graph = helper.make_graph(
        [switch],
        MODEL_NAME,
        [decl.value_info() for decl in INPUTS],
        [decl.value_info() for decl in decls],
        initializer=store.tensors(),
    )
    opsets = [helper.make_opsetid("", options.opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name=PRODUCER,
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
        doc_string=(
            "SiamMask VOT (ResNet-50, depth-wise RPN, refine) in the siamedge model contract"
            + (f", from {source}" if source else "")
        ),
    )
    helper.set_model_props(
        model,
        {
            c.META_MODEL_NAME: MODEL_NAME,
            c.META_PRODUCER: f"{PRODUCER} {__version__}",
            c.META_HYPER_PARAMETERS: options.hp.metadata_json(),
        },
    )
    return model
