"""Builds builtin-ncc, the embedded default model: a contract-compatible ONNX graph with fixed
(untrained) features, written with onnx.helper, byte-identical on every run.

A developer and test tool that needs onnx: runtime code must never import this module.

The model has the batched layout of docs/model-layouts.md (section 2): every input and output
but `first_time` has a leading symbolic dimension `batch`, one row per target, and row n of the
outputs depends on row n of the inputs only. Both branches sit behind one `If` on `first_time`;
every shape is static except the batch dimension.
- init: a colour model of the target (a BGR histogram ratio, target core vs. surroundings of
  the exemplar) and a 7x7 template of stride-8 features (colour probability, luminance, two
  colour opponents, gradient energy, each averaged over 16x16 windows), packed into z_features
  ([N, 16, 7, 7]: 5 template channels, then the 512-bin colour table).
- track: per-channel normalised cross-correlation of the template over the 31x31 search
  features gives the 25x25 score grid (`score`: the best cell's NCC, 0..1); a cosine window
  favours small moves; the best cell picks the 127x127 mask window of the smoothed
  colour-probability map, cut to an ellipse around the expected target; the mask's extent gives
  the new centre and (smoothed, rate-limited) size. The template is never updated.
It is a colour tracker: a target whose colours also fill its surroundings is not separable.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from siamedge import __version__, contract
from siamedge.contract import (
    BASE_SIZE,
    CONTEXT_AMOUNT,
    EXEMPLAR_SIZE,
    INSTANCE_SIZE,
    SCORE_SIZE,
    TOTAL_STRIDE,
)
from siamedge.models import BUILTIN_FILE

log = logging.getLogger(__name__)

MODEL_NAME = "builtin-ncc"
# Bumped when the graph changes; the version of siamedge is not in the file on purpose, so a
# release does not change the bytes of an unchanged model.
BUILDER_REVISION = 3  # 3: the batched layout (docs/model-layouts.md, section 2)
PRODUCER = f"siamedge.builtin_model/{BUILDER_REVISION}"
OPSET = 17
IR_VERSION = 8
# Leading dimension of every input and output but first_time: one row per target.
BATCH_DIM = "batch"

TEMPLATE_SIDE = 7
# Feature cell i averages pixels [8i, 8i + 16) (two 8x8 blocks; the crop gets one zero column and
# row so the last cell fits). Its centre 8i + 7.5 puts exemplar cell 7 at 63.5 and search cell
# 15 at 127.5, both half a pixel past the crop centres: score cell 12 is zero displacement.
FEATURE_BLOCKS = 2
FEATURE_WINDOW = FEATURE_BLOCKS * TOTAL_STRIDE
SEARCH_CELLS = (INSTANCE_SIZE + 1 - FEATURE_WINDOW) // TOTAL_STRIDE + 1
EXEMPLAR_CELLS = (EXEMPLAR_SIZE + 1 - FEATURE_WINDOW) // TOTAL_STRIDE + 1
TEMPLATE_OFFSET = (EXEMPLAR_CELLS - TEMPLATE_SIDE) // 2
# The mask window of cell (row, col) starts at crop pixel 8 * (col - BASE_SIZE / 2).
WINDOW_SHIFT = TOTAL_STRIDE * BASE_SIZE // 2
SEARCH_CENTER = INSTANCE_SIZE // 2
WINDOW_CENTER = (EXEMPLAR_SIZE - 1) / 2

FEATURE_CHANNELS = 5  # colour probability, luminance, red-green, yellow-blue, gradient energy
COLOUR_LEVELS = 8  # per BGR channel: 512 histogram bins
COLOUR_BINS = COLOUR_LEVELS**3
PIXEL_MAX = 255.0
TABLE_CHANNELS = -(-COLOUR_BINS // TEMPLATE_SIDE**2)
# One target's row of z_features: the template channels, then the packed colour table.
TARGET_FEATURE_SHAPE = (FEATURE_CHANNELS + TABLE_CHANNELS, TEMPLATE_SIDE, TEMPLATE_SIDE)
NCC_EPS = 1e-6


@dataclass(frozen=True)
class HyperParameters:
    """Tunable values baked into the graph (and recorded in its metadata).

    seg_thr: mask threshold the caller applies. lost_score: the caller reports the target lost
    when the score stays below it (tracking scores on the synthetic clip stay above about 0.25,
    an absent target scores about 0.15). window_influence: weight of the cosine window.
    lr / max_size_change: size update rate from the mask extent, and the most it may change per
    step (ratio).
    Colour model, from the exemplar: target samples are the ellipse of fg_core x the box (weight
    1) plus the ellipse of fg_shrink x the box (weight fg_ring_weight); surroundings are outside
    bg_grow x the box. P(target | colour) = t / (t + bg_weight x s + fg_min_count / N) with t, s
    the colour's share of target and surrounding samples (N target samples); bg_blur: each
    surrounding colour also counts this much in its neighbour bins.
    mask_smooth: box filter side before the threshold. prior_scale / prior_margin: mask pixels
    must lie in the ellipse of prior_scale x the box (+ margin, exemplar pixels) around the best
    cell. channel_weights: NCC weight per feature channel. ncc_variance_floor: least feature
    variance of a search window (features are scaled to about 0..1).
    """

    seg_thr: float = 0.45
    lost_score: float = 0.2
    window_influence: float = 0.3
    lr: float = 0.5
    max_size_change: float = 1.03
    fg_shrink: float = 0.7
    fg_core: float = 0.35
    fg_ring_weight: float = 0.5
    bg_grow: float = 1.1
    fg_min_count: float = 2.0
    bg_blur: float = 0.5
    bg_weight: float = 3.0
    mask_smooth: int = 9
    prior_scale: float = 1.5
    prior_margin: float = 8.0
    channel_weights: tuple[float, ...] = (1.0, 0.5, 0.5, 0.5, 0.5)
    ncc_variance_floor: float = 1e-4

    def metadata(self) -> dict[str, object]:
        """The hyper-parameter JSON object (contract keys plus this model's own)."""
        return {
            **contract.geometry_metadata(),
            "feature_window": FEATURE_WINDOW,
            "colour_levels": COLOUR_LEVELS,
            **asdict(self),
        }


Array = NDArray[np.generic]


class _Graph:
    """Collects the nodes of one branch; every node gets a unique, prefixed name.

    Constants are Constant nodes inside the branch (deduplicated by content), so that each
    branch is self-contained and shape inference sees their values: every tensor of the model
    then has a static shape.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.constants: list[onnx.NodeProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self._count = 0
        self._by_content: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def op(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        """Add one single-output node; its output name."""
        name = f"{self.prefix}{self._count:03d}_{op_type}"
        self._count += 1
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], name=name, **attrs))
        return name

    def f32(self, value: float | Sequence[float] | Array, label: str = "") -> str:
        """A float32 constant."""
        return self._constant(np.asarray(value, dtype=np.float32), label)

    def i64(self, value: int | Sequence[int] | Array, label: str = "") -> str:
        """An int64 constant."""
        return self._constant(np.asarray(value, dtype=np.int64), label)

    def _constant(self, array: Array, label: str) -> str:
        key = (array.dtype.str, array.shape, array.tobytes())
        existing = self._by_content.get(key)
        if existing is not None:
            return existing
        name = f"{self.prefix}const{len(self.constants):03d}" + (f"_{label}" if label else "")
        tensor = numpy_helper.from_array(array, name)
        self.constants.append(helper.make_node("Constant", [], [name], name=name, value=tensor))
        self._by_content[key] = name
        return name

    def output(self, source: str, name: str) -> str:
        """Copy `source` to a node output called `name` (a branch output)."""
        self.nodes.append(helper.make_node("Identity", [source], [name], name=name))
        return name


def _cosine_window() -> NDArray[np.float32]:
    # Computed in float64 and rounded once, so that libm differences cannot change the file.
    ramp = np.arange(SCORE_SIZE, dtype=np.float64)
    hanning = 0.5 - 0.5 * np.cos(2.0 * np.pi * ramp / (SCORE_SIZE - 1))
    return np.round(np.outer(hanning, hanning), 7).astype(np.float32)


def _band_indices() -> NDArray[np.int64]:
    """(31, 25) index j - q into a template row padded with one zero (index 7) outside 0..6.

    Gathering a template row [.., 8] with it gives the banded matrix M[j, q] = T[j - q], so that
    (search row @ M)[q] = sum_k T[k] X[q + k]: a 1-D correlation as one MatMul.
    """
    offsets = np.arange(SEARCH_CELLS)[:, None] - np.arange(SCORE_SIZE)[None, :]
    inside = (offsets >= 0) & (offsets < TEMPLATE_SIDE)
    return np.where(inside, offsets, TEMPLATE_SIDE).astype(np.int64)


def _row_indices() -> NDArray[np.int64]:
    """(7, 25) search rows r + k that template row k meets at score row r."""
    ramp = np.arange(TEMPLATE_SIDE)[:, None] + np.arange(SCORE_SIZE)[None, :]
    return ramp.astype(np.int64)


def _blur_matrix(share: float) -> NDArray[np.float32]:
    """(L, L) transposed blur along one colour axis; each source bin keeps its total mass."""
    levels = COLOUR_LEVELS
    spread = np.eye(levels) + share * (np.eye(levels, k=1) + np.eye(levels, k=-1))
    spread /= spread.sum(axis=0, keepdims=True)
    transposed: NDArray[np.float32] = np.round(spread.T, 7).astype(np.float32)
    return transposed


def _column(g: _Graph, pairs: str, index: int) -> str:
    """[N, K] -> [N, 1]: column `index` of every row (keeps the rank, so it broadcasts per row)."""
    return g.op("Gather", pairs, g.i64([index]), axis=1)


def _plane(g: _Graph, pairs: str, index: int) -> str:
    """[N, K] -> [N, 1, 1]: column `index` of every row, to broadcast over [N, E, E] maps."""
    return g.op("Unsqueeze", _column(g, pairs, index), g.i64([2]))


def _per_row(g: _Graph, data: str, indices: str) -> str:
    """GatherND with batch_dims 1: row n of `data` [N, ...] indexed by row n of `indices`.

    data [N, D1, ...], indices [N, ..., k] -> [N, ..., D(k+1), ...]; targets never mix.
    """
    return g.op("GatherND", data, indices, batch_dims=1)


def _batch_size(g: _Graph, like: str) -> str:
    """[1] int64: N, the first dimension of `like` (a shape tensor, for ConstantOfShape)."""
    return g.op("Gather", g.op("Shape", like), g.i64([0]), axis=0)


def _zeros(g: _Graph, batch: str, row_shape: Sequence[int]) -> str:
    """[N, *row_shape] float32 zeros; batch is [1] int64 N.

    float32 even for integer outputs (then cast): TensorRT's ConstantOfShape makes only FP32.
    """
    shape = g.op("Concat", batch, g.i64(list(row_shape)), axis=0) if row_shape else batch
    zero = numpy_helper.from_array(np.zeros(1, dtype=np.float32))
    return g.op("ConstantOfShape", shape, value=zero)


def _pixels(g: _Graph, image: str, side: int) -> str:
    """[N, 3, S, S] -> [N, 3, S * S] (channel mixes as one MatMul: cheaper than 1x1 convs)."""
    return g.op("Reshape", image, g.i64([0, 3, side * side]))


def _colour_bins(g: _Graph, image: str, side: int) -> str:
    """[N, 3, S, S] BGR 0..255 -> [N, S * S] int64 histogram bin (B * 64 + G * 8 + R)."""
    levels = g.op("Floor", g.op("Mul", image, g.f32(COLOUR_LEVELS / (PIXEL_MAX + 1.0))))
    levels = g.op("Clip", levels, g.f32(0.0), g.f32(COLOUR_LEVELS - 1.0))
    weights = np.array([[COLOUR_LEVELS**2, COLOUR_LEVELS, 1]], dtype=np.float32)
    bins = g.op("MatMul", g.f32(weights, "bin_weights"), _pixels(g, levels, side))
    bins = g.op("Reshape", bins, g.i64([0, side * side]))
    return g.op("Cast", bins, to=TensorProto.INT64)


def _probability(g: _Graph, table: str, bins: str, side: int) -> str:
    """[N, 1, S, S] target probability of each pixel's colour: row n looks up its own table.

    table [N, 512], bins [N, S * S]. GatherElements, not GatherND: on onnxruntime's CPU it
    looks up the 65025 pixels of a search crop 15x faster (0.6 ms a target).
    """
    probability = g.op("GatherElements", table, bins, axis=1)
    return g.op("Reshape", probability, g.i64([0, 1, side, side]))


def _pooled_features(g: _Graph, image: str, probability: str, side: int) -> str:
    """[N, 3, S, S] image + [N, 1, S, S] probability -> [N, 5, F, F] stride-8 window means."""
    scale = 1.0 / PIXEL_MAX
    # Luminance, red - green, (red + green) / 2 - blue; image channels are B, G, R.
    opponents = np.array(
        [[1 / 3, 1 / 3, 1 / 3], [0.0, -1.0, 1.0], [-1.0, 0.5, 0.5]], dtype=np.float64
    )
    colour = g.op("MatMul", g.f32(opponents * scale, "opponents"), _pixels(g, image, side))
    colour = g.op("Reshape", colour, g.i64([0, 3, side, side]))
    luminance = g.op("Slice", colour, g.i64([0]), g.i64([1]), g.i64([1]))
    diff = np.zeros((2, 1, 3, 3), dtype=np.float32)
    diff[0, 0, 1, 0], diff[0, 0, 1, 2] = -1.0, 1.0
    diff[1, 0, 0, 1], diff[1, 0, 2, 1] = -1.0, 1.0
    gradients = g.op("Conv", luminance, g.f32(diff, "central_differences"))
    energy = g.op("ReduceSum", g.op("Abs", gradients), g.i64([1]), keepdims=1)
    # Zero gradient on the border row and column, so every channel keeps the crop's size.
    energy = g.op("Pad", energy, g.i64([0, 0, 1, 1, 0, 0, 1, 1]), g.f32(0.0))
    channels = g.op("Concat", probability, colour, energy, axis=1)
    channels = g.op("Pad", channels, g.i64([0, 0, 0, 0, 0, 0, 1, 1]), g.f32(0.0))
    blocks = g.op(
        "AveragePool",
        channels,
        kernel_shape=[TOTAL_STRIDE, TOTAL_STRIDE],
        strides=[TOTAL_STRIDE, TOTAL_STRIDE],
    )
    return g.op("AveragePool", blocks, kernel_shape=[FEATURE_BLOCKS, FEATURE_BLOCKS])


def _exemplar_grid(g: _Graph) -> tuple[str, str]:
    """Offsets from the exemplar centre: ([1, E] along x, [E, 1] along y)."""
    offsets = np.arange(EXEMPLAR_SIZE, dtype=np.float32) - np.float32(WINDOW_CENTER)
    return g.f32(offsets.reshape(1, -1), "grid_x"), g.f32(offsets.reshape(-1, 1), "grid_y")


def _ellipse_inside(g: _Graph, half_wh: str) -> str:
    """[N, E, E] float 1 inside the ellipse of half-axes half_wh [N, 2] around the window centre.

    half_wh may also be [1, 2] (one ellipse for every row): the result is then [1, E, E].
    """
    grid_x, grid_y = _exemplar_grid(g)
    inv_sq = g.op("Reciprocal", g.op("Mul", half_wh, half_wh))
    radius = g.op(
        "Add",
        g.op("Mul", g.op("Mul", grid_x, grid_x), _plane(g, inv_sq, 0)),
        g.op("Mul", g.op("Mul", grid_y, grid_y), _plane(g, inv_sq, 1)),
    )
    return g.op("Cast", g.op("Less", radius, g.f32(1.0)), to=TensorProto.FLOAT)


def _colour_table(g: _Graph, hp: HyperParameters, exemplar: str, half_wh: str) -> str:
    """[N, 512] P(target | colour bin) of each row's exemplar [N, 3, E, E].

    half_wh [N, 2] is the target box's half-size (or [1, 2]: the same box for every row).
    """
    grid_x, grid_y = _exemplar_grid(g)
    # Target samples: the core ellipse counts fully, the rest of the outer ellipse a little
    # (inside a loose box its colours are often background).
    target = g.op(
        "Add",
        _ellipse_inside(g, g.op("Mul", half_wh, g.f32(hp.fg_core))),
        g.op(
            "Mul",
            _ellipse_inside(g, g.op("Mul", half_wh, g.f32(hp.fg_shrink))),
            g.f32(hp.fg_ring_weight),
        ),
    )
    reach = g.op("Mul", half_wh, g.f32(hp.bg_grow))
    outside_x = g.op("Greater", g.op("Abs", grid_x), _plane(g, reach, 0))  # [N, 1, E]
    outside_y = g.op("Greater", g.op("Abs", grid_y), _plane(g, reach, 1))  # [N, E, 1]
    surround = g.op(
        "Max",
        g.op("Cast", outside_x, to=TensorProto.FLOAT),
        g.op("Cast", outside_y, to=TensorProto.FLOAT),
    )
    pixels = EXEMPLAR_SIZE * EXEMPLAR_SIZE
    # One-hot levels per channel: [N, 3, P, L]; each row's joint histogram is
    # (B x G)^T @ (R * weight), a batched MatMul.
    levels = g.op("Floor", g.op("Mul", exemplar, g.f32(COLOUR_LEVELS / (PIXEL_MAX + 1.0))))
    levels = g.op("Clip", levels, g.f32(0.0), g.f32(COLOUR_LEVELS - 1.0))
    levels = g.op("Reshape", levels, g.i64([0, 3, pixels, 1]))
    one_hot = g.op(
        "Cast",
        g.op("Equal", levels, g.f32(np.arange(COLOUR_LEVELS).reshape(1, 1, 1, -1), "levels")),
        to=TensorProto.FLOAT,
    )
    blue = g.op("Gather", one_hot, g.i64(0), axis=1)
    green = g.op("Gather", one_hot, g.i64(1), axis=1)
    red = g.op("Gather", one_hot, g.i64(2), axis=1)
    blue_green = g.op(
        "Reshape",
        g.op("Mul", g.op("Unsqueeze", blue, g.i64([3])), g.op("Unsqueeze", green, g.i64([2]))),
        g.i64([0, pixels, COLOUR_LEVELS**2]),
    )
    blue_green_t = g.op("Transpose", blue_green, perm=[0, 2, 1])

    def histogram(weights: str) -> tuple[str, str]:
        """[N or 1, E, E] sample weights -> ([N, 512] frequencies, [N or 1, 1] total weight)."""
        column = g.op("Reshape", weights, g.i64([0, pixels, 1]))
        counts = g.op("MatMul", blue_green_t, g.op("Mul", red, column))
        total = g.op("Max", g.op("ReduceSum", column, g.i64([1]), keepdims=0), g.f32(1.0))
        return g.op("Div", g.op("Reshape", counts, g.i64([0, COLOUR_BINS])), total), total

    target_freq, target_total = histogram(target)
    surround_freq, _ = histogram(surround)
    # Spread each surrounding colour over its neighbour bins (one axis at a time): a background
    # colour unseen in the exemplar but next to seen ones must not look like the target.
    spread = g.op("Reshape", surround_freq, g.i64([0] + [COLOUR_LEVELS] * 3))
    blur = g.f32(_blur_matrix(hp.bg_blur), "colour_blur")
    for _ in range(3):
        spread = g.op("Transpose", g.op("MatMul", spread, blur), perm=[0, 3, 1, 2])
    surround_freq = g.op("Max", surround_freq, g.op("Reshape", spread, g.i64([0, COLOUR_BINS])))
    floor = g.op("Div", g.f32(hp.fg_min_count), target_total)
    surround_freq = g.op("Mul", surround_freq, g.f32(hp.bg_weight))
    denominator = g.op("Add", g.op("Add", target_freq, surround_freq), floor)
    return g.op("Div", target_freq, denominator)


def _mask_extent(g: _Graph, mask: str, seg_thr: float) -> tuple[str, str, str]:
    """[N, E, E] probabilities -> (centre [N, 2] xy, size [N, 2] wh, found [N, 1]) per row.

    Exemplar-window pixels of the thresholded pixels; found is a bool, false when no pixel of
    the row passes the threshold.
    """
    last = EXEMPLAR_SIZE - 1
    ramp = np.arange(EXEMPLAR_SIZE, dtype=np.float32).reshape(1, -1)
    on = g.op("Cast", g.op("Greater", mask, g.f32(seg_thr)), to=TensorProto.FLOAT)
    along_x = g.op("ReduceMax", on, axes=[1], keepdims=1)  # [N, 1, E]
    along_y = g.op("Transpose", g.op("ReduceMax", on, axes=[2], keepdims=1), perm=[0, 2, 1])
    occupied = g.op("Concat", along_x, along_y, axis=1)  # [N, 2, E]
    high = g.op("ReduceMax", g.op("Mul", occupied, g.f32(ramp, "ramp")), axes=[2], keepdims=0)
    low_from_end = g.op(
        "ReduceMax", g.op("Mul", occupied, g.f32(last - ramp, "ramp_down")), axes=[2], keepdims=0
    )
    low = g.op("Sub", g.f32(float(last)), low_from_end)
    centre = g.op("Mul", g.op("Add", low, high), g.f32(0.5))
    size = g.op("Add", g.op("Sub", high, low), g.f32(1.0))
    any_x = g.op("ReduceMax", along_x, axes=[2], keepdims=0)  # [N, 1]
    found = g.op("Greater", any_x, g.f32(0.5))
    return centre, size, found


def _smoothed(g: _Graph, hp: HyperParameters, probability: str, pad: bool = True) -> str:
    """[N, 1, S, S] box-filtered: same size (zero border), or S - k + 1 without `pad`.

    Separable: a row filter, then a column filter.
    """
    k = hp.mask_smooth
    half = k // 2 if pad else 0
    row = g.f32(np.full((1, 1, 1, k), 1.0 / k), "smooth_row")
    column = g.f32(np.full((1, 1, k, 1), 1.0 / k), "smooth_column")
    rows_done = g.op("Conv", probability, row, pads=[0, half, 0, half])
    return g.op("Conv", rows_done, column, pads=[half, 0, half, 0])


def _target_half_size(g: _Graph, hp: HyperParameters, exemplar: str, bins: str) -> str:
    """[N, 2] half-size (w, h) of each row's target in exemplar pixels, at least 1.

    The given size scaled by 127 / s_z; a row whose size is not positive (a caller that passes
    no size) gets a two-pass estimate: a square guess, then the extent of the colours that guess
    calls target.
    """
    size = contract.IN_SIZE
    context = g.op("Mul", g.op("ReduceSum", size, g.i64([1]), keepdims=1), g.f32(CONTEXT_AMOUNT))
    padded = g.op("Add", size, context)
    s_z = g.op("Sqrt", g.op("Mul", _column(g, padded, 0), _column(g, padded, 1)))  # [N, 1]
    given_half = g.op(
        "Mul", size, g.op("Div", g.f32(EXEMPLAR_SIZE / 2), g.op("Max", s_z, g.f32(NCC_EPS)))
    )
    square_half = g.f32(np.full((1, 2), EXEMPLAR_SIZE / 4), "square_half")  # [1, 2]
    first_table = _colour_table(g, hp, exemplar, square_half)
    first_probability = _smoothed(g, hp, _probability(g, first_table, bins, EXEMPLAR_SIZE))
    _, first_size, first_found = _mask_extent(
        g,
        g.op("Reshape", first_probability, g.i64([0, EXEMPLAR_SIZE, EXEMPLAR_SIZE])),
        hp.seg_thr,
    )
    estimated_half = g.op("Where", first_found, g.op("Mul", first_size, g.f32(0.5)), square_half)
    has_size = g.op("Greater", g.op("ReduceMin", size, axes=[1], keepdims=1), g.f32(0.0))
    return g.op("Max", g.op("Where", has_size, given_half, estimated_half), g.f32(1.0))


def _init_branch(hp: HyperParameters) -> onnx.GraphProto:
    g = _Graph("init/")
    exemplar = g.op(
        "Slice",
        contract.IN_IMAGE,
        g.i64([0, 0]),
        g.i64([EXEMPLAR_SIZE, EXEMPLAR_SIZE]),
        g.i64([2, 3]),
    )
    bins = _colour_bins(g, exemplar, EXEMPLAR_SIZE)
    table = _colour_table(g, hp, exemplar, _target_half_size(g, hp, exemplar, bins))
    features = _pooled_features(
        g, exemplar, _probability(g, table, bins, EXEMPLAR_SIZE), EXEMPLAR_SIZE
    )
    end = TEMPLATE_OFFSET + TEMPLATE_SIDE
    template = g.op(
        "Slice", features, g.i64([TEMPLATE_OFFSET] * 2), g.i64([end, end]), g.i64([2, 3])
    )
    packed_table = g.op(
        "Reshape",
        g.op("Pad", table, g.i64([0, 0, 0, TABLE_CHANNELS * TEMPLATE_SIDE**2 - COLOUR_BINS])),
        g.i64([0, TABLE_CHANNELS, TEMPLATE_SIDE, TEMPLATE_SIDE]),
    )

    batch = _batch_size(g, contract.IN_IMAGE)
    outputs = {
        contract.OUT_MASK: _zeros(g, batch, (EXEMPLAR_SIZE, EXEMPLAR_SIZE)),
        contract.OUT_CENTER: contract.IN_CENTER,
        contract.OUT_SIZE: contract.IN_SIZE,
        contract.OUT_FEATURES: g.op("Concat", template, packed_table, axis=1),
        # No search in the init step: no cell, no score.
        contract.OUT_BEST_CELL: g.op("Cast", _zeros(g, batch, (2,)), to=TensorProto.INT64),
        contract.OUT_SCORE: _zeros(g, batch, ()),
    }
    return _branch_graph(g, "init", outputs)


def _ncc(g: _Graph, hp: HyperParameters, template: str, search: str) -> str:
    """Per-channel NCC [N, 5, 25, 25]: template [N, 5, 7, 7] over search [N, 5, 31, 31], per row.

    sum(T' X) / (|T'| |X - mean X|) over each 7x7 window, T' = T - mean T.

    Written with batched MatMul and constant indices, not a Conv with the template as weights:
    such a Conv would need a group per target, a weight tensor that changes with the batch.
    """
    centred = g.op("Sub", template, g.op("ReduceMean", template, axes=[2, 3], keepdims=1))
    template_norm = g.op(
        "Sqrt", g.op("ReduceSum", g.op("Mul", centred, centred), g.i64([2, 3]), keepdims=1)
    )
    # For each channel c and template row k, the search rows r + k ([N, C, 7, 25, 31]) times
    # the banded matrix of template row k ([N, C, 7, 31, 25]), summed over k.
    rows_k = g.op("Gather", search, g.i64(_row_indices(), "row_indices"), axis=2)
    padded_rows = g.op("Pad", centred, g.i64([0, 0, 0, 0, 0, 0, 0, 1]), g.f32(0.0))
    bands = g.op("Gather", padded_rows, g.i64(_band_indices(), "band_indices"), axis=3)
    dots = g.op("ReduceSum", g.op("MatMul", rows_k, bands), g.i64([2]), keepdims=0)
    window = [TEMPLATE_SIDE, TEMPLATE_SIDE]
    mean = g.op("AveragePool", search, kernel_shape=window)
    mean_sq = g.op("AveragePool", g.op("Mul", search, search), kernel_shape=window)
    # A floor on the window variance: flat windows (the padding of crops that leave the frame)
    # would otherwise divide rounding noise by almost zero.
    variance = g.op(
        "Max", g.op("Sub", mean_sq, g.op("Mul", mean, mean)), g.f32(hp.ncc_variance_floor)
    )
    search_norm = g.op("Sqrt", g.op("Mul", variance, g.f32(float(TEMPLATE_SIDE**2))))
    ncc = g.op("Div", dots, g.op("Add", g.op("Mul", search_norm, template_norm), g.f32(NCC_EPS)))
    return g.op("Clip", ncc, g.f32(-1.0), g.f32(1.0))


def _best_cell(g: _Graph, ranked: str) -> tuple[str, str]:
    """Best cell of each row of ranked [N, 25, 25]: (row [N, 1], col [N, 1]) int64.

    Two ArgMax (the row of the best value, then its column in that row), as the first-found
    maximum of the whole grid would be: no integer division.
    """
    row = g.op("ArgMax", g.op("ReduceMax", ranked, axes=[2], keepdims=0), axis=1, keepdims=1)
    col = g.op("ArgMax", _per_row(g, ranked, row), axis=1, keepdims=1)
    return row, col


def _mask_window(g: _Graph, hp: HyperParameters, probability: str, row: str, col: str) -> str:
    """[N, E, E] smoothed probability window of each row's best cell (zero outside the crop).

    probability [N, 1, S, S], row / col [N, 1]. The window is cut with a margin of half the
    filter first, so only the window gets filtered; rows, then columns are gathered per target.
    """
    margin = hp.mask_smooth // 2
    border = WINDOW_SHIFT + margin
    padded_side = INSTANCE_SIZE + 2 * border
    padded = g.op(
        "Pad", probability, g.i64([0, 0, border, border, 0, 0, border, border]), g.f32(0.0)
    )
    padded = g.op("Reshape", padded, g.i64([0, padded_side, padded_side]))
    span = g.i64(np.arange(EXEMPLAR_SIZE + 2 * margin), "window_span")
    stride = g.i64(TOTAL_STRIDE)

    def starts(cell: str) -> str:
        """[N, 1] cell -> [N, W, 1] padded-map indices of its window (GatherND indices)."""
        return g.op("Unsqueeze", g.op("Add", g.op("Mul", cell, stride), span), g.i64([2]))

    window_rows = _per_row(g, padded, starts(row))  # [N, W, padded_side]
    by_column = g.op("Transpose", window_rows, perm=[0, 2, 1])
    window = g.op("Transpose", _per_row(g, by_column, starts(col)), perm=[0, 2, 1])  # [N, W, W]
    side = EXEMPLAR_SIZE + 2 * margin
    window = _smoothed(g, hp, g.op("Reshape", window, g.i64([0, 1, side, side])), pad=False)
    return g.op("Reshape", window, g.i64([0, EXEMPLAR_SIZE, EXEMPLAR_SIZE]))


def _track_branch(hp: HyperParameters) -> onnx.GraphProto:
    g = _Graph("track/")
    image = contract.IN_IMAGE
    features_in = contract.IN_FEATURES
    scale = g.op("Unsqueeze", g.op("Cast", contract.IN_SCALE, to=TensorProto.FLOAT), g.i64([1]))
    packed_table = g.op(
        "Slice",
        features_in,
        g.i64([FEATURE_CHANNELS]),
        g.i64([TARGET_FEATURE_SHAPE[0]]),
        g.i64([1]),
    )
    table = g.op(
        "Slice",
        g.op("Reshape", packed_table, g.i64([0, TABLE_CHANNELS * TEMPLATE_SIDE**2])),
        g.i64([0]),
        g.i64([COLOUR_BINS]),
        g.i64([1]),
    )
    template = g.op("Slice", features_in, g.i64([0]), g.i64([FEATURE_CHANNELS]), g.i64([1]))
    bins = _colour_bins(g, image, INSTANCE_SIZE)
    probability = _probability(g, table, bins, INSTANCE_SIZE)
    search = _pooled_features(g, image, probability, INSTANCE_SIZE)  # [N, C, 31, 31]
    ncc = _ncc(g, hp, template, search)
    weights = np.asarray(hp.channel_weights, dtype=np.float64)
    kernel = (weights / weights.sum()).reshape(1, FEATURE_CHANNELS, 1, 1)
    raw = g.op(
        "Reshape",
        g.op("Conv", ncc, g.f32(kernel, "channel_weights")),
        g.i64([0, SCORE_SIZE, SCORE_SIZE]),
    )
    wi = hp.window_influence
    ranked = g.op(
        "Add",
        g.op("Mul", raw, g.f32(1.0 - wi)),
        g.f32(_cosine_window() * np.float32(wi), "cosine_window"),
    )
    row, col = _best_cell(g, ranked)
    best_yx = g.op("Concat", row, col, axis=1)
    score = g.op("Relu", _per_row(g, raw, best_yx))
    best_xy = g.op("Cast", g.op("Concat", col, row, axis=1), to=TensorProto.FLOAT)

    # Mask: the window at the best cell, kept inside an ellipse around the expected target.
    expected_half = g.op(
        "Add",
        g.op("Mul", g.op("Mul", contract.IN_SIZE, scale), g.f32(hp.prior_scale / 2)),
        g.f32(hp.prior_margin),
    )
    mask = g.op(
        "Mul", _mask_window(g, hp, probability, row, col), _ellipse_inside(g, expected_half)
    )

    # New state: centre and size of the mask's extent (crop pixels / scale_x = frame pixels);
    # without mask pixels, the best cell's displacement and the old size.
    centre, size, found = _mask_extent(g, mask, hp.seg_thr)
    cell_origin = g.op("Mul", best_xy, g.f32(float(TOTAL_STRIDE)))
    mask_move = g.op(
        "Add", g.op("Sub", cell_origin, g.f32(float(WINDOW_SHIFT + SEARCH_CENTER))), centre
    )
    cell_move = g.op("Sub", cell_origin, g.f32(float(TOTAL_STRIDE * (SCORE_SIZE // 2))))
    move = g.op("Div", g.op("Where", found, mask_move, cell_move), scale)
    new_center = g.op("Add", contract.IN_CENTER, move)
    old_size = contract.IN_SIZE
    measured = g.op("Div", size, scale)
    blended = g.op(
        "Add", g.op("Mul", old_size, g.f32(1.0 - hp.lr)), g.op("Mul", measured, g.f32(hp.lr))
    )
    limit = hp.max_size_change
    bounded = g.op(
        "Min",
        g.op("Max", blended, g.op("Mul", old_size, g.f32(1.0 / limit))),
        g.op("Mul", old_size, g.f32(limit)),
    )
    new_size = g.op("Where", found, bounded, old_size)

    outputs = {
        contract.OUT_MASK: mask,
        contract.OUT_CENTER: new_center,
        contract.OUT_SIZE: new_size,
        contract.OUT_FEATURES: features_in,
        contract.OUT_BEST_CELL: best_yx,
        contract.OUT_SCORE: score,
    }
    return _branch_graph(g, "track", outputs)


# name -> (element type, shape of one target's row); every tensor gets the leading batch dim.
_INPUT_TYPES: dict[str, tuple[int, tuple[int, ...]]] = {
    contract.IN_IMAGE: (TensorProto.FLOAT, (3, INSTANCE_SIZE, INSTANCE_SIZE)),
    contract.IN_CENTER: (TensorProto.FLOAT, (2,)),
    contract.IN_SIZE: (TensorProto.FLOAT, (2,)),
    contract.IN_SCALE: (TensorProto.DOUBLE, ()),
    contract.IN_FEATURES: (TensorProto.FLOAT, TARGET_FEATURE_SHAPE),
}
_OUTPUT_TYPES: dict[str, tuple[int, tuple[int, ...]]] = {
    contract.OUT_MASK: (TensorProto.FLOAT, (EXEMPLAR_SIZE, EXEMPLAR_SIZE)),
    contract.OUT_CENTER: (TensorProto.FLOAT, (2,)),
    contract.OUT_SIZE: (TensorProto.FLOAT, (2,)),
    contract.OUT_FEATURES: (TensorProto.FLOAT, TARGET_FEATURE_SHAPE),
    contract.OUT_BEST_CELL: (TensorProto.INT64, (2,)),
    contract.OUT_SCORE: (TensorProto.FLOAT, ()),
}


def _batched(name: str, dtype: int, row_shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    """A value info of shape [batch, *row_shape]."""
    return helper.make_tensor_value_info(name, dtype, [BATCH_DIM, *row_shape])


def _branch_graph(g: _Graph, branch: str, outputs: dict[str, str]) -> onnx.GraphProto:
    infos = []
    for name, (dtype, shape) in _OUTPUT_TYPES.items():
        infos.append(_batched(g.output(outputs[name], f"{branch}/{name}"), dtype, shape))
    return helper.make_graph(g.constants + g.nodes, f"{branch}_branch", [], infos)


def build_model(hp: HyperParameters | None = None) -> onnx.ModelProto:
    """The builtin-ncc model (checked with onnx.checker)."""
    hp = hp or HyperParameters()
    if len(hp.channel_weights) != FEATURE_CHANNELS:
        raise ValueError(f"channel_weights needs {FEATURE_CHANNELS} values")
    init = _init_branch(hp)
    track = _track_branch(hp)
    inputs = [_batched(name, dtype, shape) for name, (dtype, shape) in _INPUT_TYPES.items()]
    # One flag for the whole batch: init and track steps are separate calls.
    inputs.append(helper.make_tensor_value_info(contract.IN_FIRST_TIME, TensorProto.BOOL, []))
    outputs = [_batched(name, dtype, shape) for name, (dtype, shape) in _OUTPUT_TYPES.items()]
    switch = helper.make_node(
        "If",
        [contract.IN_FIRST_TIME],
        list(_OUTPUT_TYPES),
        name="first_time_switch",
        then_branch=init,
        else_branch=track,
    )
    graph = helper.make_graph([switch], MODEL_NAME, inputs, outputs)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="siamedge",
        producer_version=str(BUILDER_REVISION),
    )
    model.doc_string = (
        "builtin-ncc: normalised cross-correlation of fixed stride-8 features and a colour "
        "model mask, in the SiamMask ONNX contract (batched layout)"
    )
    for key, value in (
        (contract.META_MODEL_NAME, MODEL_NAME),
        (contract.META_PRODUCER, PRODUCER),
        (contract.META_HYPER_PARAMETERS, json.dumps(hp.metadata(), sort_keys=True)),
        (contract.META_LAYOUT, contract.LAYOUT_IF),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model


def model_bytes(hp: HyperParameters | None = None) -> bytes:
    """The serialized model (deterministic: the same bytes on every run)."""
    data: bytes = build_model(hp).SerializeToString(deterministic=True)
    return data


DEFAULT_OUT = Path("models") / BUILTIN_FILE
"""Relative to the working directory: models/ of a source checkout when run from its root."""
PROG = "python -m siamedge.builtin_model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the builder command."""
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"where to write the model (default {DEFAULT_OUT}; its folder is created if "
        "missing, any other folder must exist)",
    )


def _prepare(out: Path) -> str | None:
    """None when `out` can be written (creating models/ for the default), else why not."""
    if out.is_dir():
        return f"--out {out} is a folder: give the path of the file to write"
    folder = out.parent
    if out == DEFAULT_OUT:
        # models/ may legitimately be missing: a checkout whose only file in it was deleted
        # (git keeps no empty folder) is the case models.py sends people here for.
        try:
            folder.mkdir(exist_ok=True)
        except OSError as exc:
            return f"cannot create the folder {folder}: {exc.strerror or exc}"
    elif not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        return f"--out {out}: the folder {folder} {what}"
    return None


def run(args: argparse.Namespace) -> int:
    """Write the model file; exit status 0, or 1 (one line on stderr) when it cannot.

    --out must not be a folder and its folder must exist, except for the default
    models/builtin-ncc.onnx, whose models/ folder is created when missing.
    """
    out: Path = args.out
    problem = _prepare(out)
    if problem is None:
        data = model_bytes()
        try:
            out.write_bytes(data)
        except OSError as exc:
            problem = f"cannot write {out}: {exc.strerror or exc}"
        else:
            log.info("wrote %s (%d bytes, siamedge %s)", out, len(data), __version__)
            return 0
    print(f"{PROG}: error: {problem}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m siamedge.builtin_model --out models/builtin-ncc.onnx`."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
