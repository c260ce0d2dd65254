"""Writes the SiamMask VOT network's layers as ONNX nodes, one batch of targets per tensor.

Every tensor leads with the batch dimension N and row n depends on row n only; every other
dimension is static. Reads geometry and weights from the PyTorch modules; never runs anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from siamedge.contract import SCORE_SIZE
from siamedge.export.graph import FLOAT, FLOAT16, Branch, Initializers
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
from siamedge.export.spec import FEATURE_CHANNELS, MASK_SIDE, TEMPLATE_FEATURE_SIDE

CELLS = SCORE_SIZE * SCORE_SIZE
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


def _numpy(tensor: torch.Tensor) -> NDArray[np.float64]:
    return np.asarray(tensor.detach().cpu().numpy(), dtype=np.float64)


@dataclass(frozen=True)
class CellValues:
    """Value names ([N, 1] int64 each) of each row's score-grid cell: flat = row * S + col."""

    flat: str
    row: str
    col: str


@dataclass(frozen=True)
class Levels:
    """Value names of the trunk's levels p0..p3 in a branch ([N, C, H, W] each)."""

    p0: str
    p1: str
    p2: str
    p3: str


def nearest_indices(source: int, target: int) -> NDArray[np.int64]:
    """(target,) source index of each output pixel of a nearest upsampling, as PyTorch's default.

    floor(dest * source / target) in integers: PyTorch's float scale gives the same index for
    the refine sizes (coprime, so no product lands within rounding of an integer but 0).
    """
    return (np.arange(target, dtype=np.int64) * source) // target


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
        """The ResNet-50 trunk (to layer3) on [N, 3, S, S] images in the compute type."""
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

    def _kernel_taps(self, b: Branch, head: DepthCorr, template: str) -> tuple[str, int]:
        """A correlation head's adjusted template as taps, [N, C, k*k], and its side k."""
        kernel = self._sequence(b, template, head.conv_kernel)
        adjust, search_adjust = head.conv_kernel[0], head.conv_search[0]
        assert isinstance(adjust, nn.Conv2d) and adjust.padding == (0, 0)
        assert isinstance(search_adjust, nn.Conv2d) and search_adjust.padding == (0, 0)
        side = TEMPLATE_FEATURE_SIDE - (int(adjust.kernel_size[0]) - 1)
        return b.reshape_keep(kernel, FEATURE_CHANNELS, side * side), side

    def correlate(self, b: Branch, head: DepthCorr, template: str, search: str) -> str:
        """[N, 256, S, S] depth-wise correlation of each row's search with its own template.

        Channels last, one Gather copies each output cell's k x k search window ([N, k*k, S*S,
        C], contiguous runs of C values), Mul by the taps and ReduceSum over them: a handful of
        nodes instead of one Slice, Mul and Add per tap (the GPU providers pay per node). A
        grouped Conv with the template as weights would need group = N * C, an attribute that
        cannot follow a dynamic batch, and TensorRT's parser needs static group counts.
        """
        kernel, side = self._kernel_taps(b, head, template)
        searched = self._sequence(b, search, head.conv_search)
        width = SCORE_SIZE + side - 1  # of the adjusted search
        rows, cols = np.divmod(np.arange(side * side), side)
        offsets = rows * width + cols  # [k*k]: dy * W + dx
        cells = np.arange(SCORE_SIZE)
        corners = (cells[:, None] * width + cells[None, :]).reshape(-1)  # [S*S]
        windows = b.const(offsets[:, None] + corners[None, :], np.int64, "windows")
        flat = b.reshape_keep(searched, FEATURE_CHANNELS, width * width)
        search_last = b.op("Transpose", [flat], perm=[0, 2, 1])  # [N, W*W, C]
        gathered = b.op("Gather", [search_last, windows], axis=1)  # [N, k*k, S*S, C]
        taps_last = b.unsqueeze(b.op("Transpose", [kernel], perm=[0, 2, 1]), 2)
        summed = b.op(
            "ReduceSum", [b.op("Mul", [gathered, taps_last]), b.ints(1)], keepdims=0
        )  # [N, S*S, C]
        channels_first = b.op("Transpose", [summed], perm=[0, 2, 1])
        return b.reshape_keep(channels_first, FEATURE_CHANNELS, SCORE_SIZE, SCORE_SIZE)

    def correlate_at(
        self, b: Branch, head: DepthCorr, template: str, search: str, cell: CellValues
    ) -> str:
        """[N, 256, 1, 1]: each row's depth-wise correlation at its own cell only (all the refine
        module reads of it). Only the search features under that cell's window are adjusted
        (conv_search on the (k + 2) x (k + 2) features there) and multiplied by the taps."""
        kernel, side = self._kernel_taps(b, head, template)
        window = self._cut(b, search, 1, TEMPLATE_FEATURE_SIDE, cell)  # [N, C, k + 2, k + 2]
        searched = self._sequence(b, window, head.conv_search)  # [N, C, k, k]
        flat = b.reshape_keep(searched, FEATURE_CHANNELS, side * side)
        products = b.op("Mul", [flat, kernel])
        return b.unsqueeze(b.op("ReduceSum", [products, b.ints(2)], keepdims=1), 3)

    def head(self, b: Branch, head: DepthCorr, correlation: str) -> str:
        """The 1x1 head after a correlation."""
        return self._sequence(b, correlation, head.head)

    def _window(self, b: Branch, level: str, index: int, cell: CellValues) -> str:
        """[N, C, w, w] refine window of a trunk level at each row's own (row, col)."""
        pad, stride, side = REFINE_PADS[index], REFINE_STRIDES[index], REFINE_WINDOWS[index]
        padded = b.op("Pad", [level, b.ints(0, 0, pad, pad, 0, 0, pad, pad)])
        return self._cut(b, padded, stride, side, cell)

    def _cut(self, b: Branch, x: str, stride: int, side: int, cell: CellValues) -> str:
        """[N, C, side, side] of x [N, C, H, W] from (row * stride, col * stride), each row at its
        own cell.

        GatherND with batch_dims=1 on x in NHWC with a per-row grid of (y, x) indices: the
        window's shape stays static although every row cuts at another place (a Slice with
        computed starts would make it dynamic).
        """
        offsets = b.const(np.arange(side), np.int64, "arange")
        step = b.ints(stride)
        tops = b.op("Add", [b.op("Mul", [cell.row, step]), offsets])  # [N, w]
        lefts = b.op("Add", [b.op("Mul", [cell.col, step]), offsets])  # [N, w]
        # Broadcasting against zeros spreads the rows down and the columns across: [N, w, w, 1].
        spread_down = b.const(np.zeros((1, side, 1, 1)), np.int64, "zeros_grid")
        spread_across = b.const(np.zeros((1, 1, side, 1)), np.int64, "zeros_grid")
        ys = b.op("Add", [b.unsqueeze(tops, 2, 3), spread_across])
        xs = b.op("Add", [b.unsqueeze(lefts, 1, 3), spread_down])
        grid = b.op("Concat", [ys, xs], axis=3)
        nhwc = b.op("Transpose", [x], perm=list(NCHW_TO_NHWC))
        window = b.op("GatherND", [nhwc, grid], batch_dims=1)
        return b.op("Transpose", [window], perm=list(NHWC_TO_NCHW))

    def _upsample(self, b: Branch, x: str, source: int, side: int) -> str:
        """Nearest upsampling of [N, C, source, source] to side x side, PyTorch's way.

        Gather with constant indices rather than Resize: no `sizes` input to compute from the
        batch, and exactly the source pixels PyTorch picks.
        """
        indices = b.const(nearest_indices(source, side), np.int64, "nearest")
        return b.op("Gather", [b.op("Gather", [x, indices], axis=2), indices], axis=3)

    def refine(self, b: Branch, levels: Levels, cell_correlation: str, cell: CellValues) -> str:
        """[N, 1, 127, 127] mask logits, each row at its own grid cell (cell_correlation: the
        mask head's correlation there, [N, 256, 1, 1])."""
        refine: Refine = self.net.refine_model
        p0 = self._window(b, levels.p0, 0, cell)
        p1 = self._window(b, levels.p1, 1, cell)
        p2 = self._window(b, levels.p2, 2, cell)
        deconv = refine.deconv
        out = b.op(
            "ConvTranspose",
            [cell_correlation, *self._weights(deconv, None)],
            kernel_shape=[DECONV_SIDE, DECONV_SIDE],
            strides=[DECONV_SIDE, DECONV_SIDE],
        )
        stages = (
            (refine.h2, refine.v2, p2, refine.post0, REFINE_WINDOWS[2], REFINE_WINDOWS[1]),
            (refine.h1, refine.v1, p1, refine.post1, REFINE_WINDOWS[1], REFINE_WINDOWS[0]),
            (refine.h0, refine.v0, p0, refine.post2, REFINE_WINDOWS[0], MASK_SIDE),
        )
        for horizontal, vertical, window, post, source, side in stages:
            merged = b.op(
                "Add",
                [self._sequence(b, out, horizontal), self._sequence(b, window, vertical)],
            )
            out = self.conv(b, self._upsample(b, merged, source, side), post, None, relu=False)
        return out
