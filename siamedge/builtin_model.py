"""Builds builtin-ncc, the embedded default model: a contract-compatible ONNX graph with fixed
(untrained) features, written with onnx.helper, byte-identical on every run.

A developer and test tool that needs onnx: runtime code must never import this module.

The model (both branches behind one `If` on `first_time`, static shapes throughout):
- init: a colour model of the target (a BGR histogram ratio, target core vs. surroundings of
  the exemplar) and a 7x7 template of stride-8 features (colour probability, luminance, two
  colour opponents, gradient energy, each averaged over 16x16 windows), packed into z_features
  ([1, 16, 7, 7]: 5 template channels, then the 512-bin colour table).
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
BUILDER_REVISION = 2
PRODUCER = f"siamedge.builtin_model/{BUILDER_REVISION}"
OPSET = 17
IR_VERSION = 8

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
FEATURE_SHAPE = (1, FEATURE_CHANNELS + TABLE_CHANNELS, TEMPLATE_SIDE, TEMPLATE_SIDE)
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


def _pixels(g: _Graph, image: str, side: int) -> str:
    """[1, 3, S, S] -> [3, S * S] (channel mixes as one MatMul: cheaper than 1x1 convs)."""
    return g.op("Reshape", image, g.i64([3, side * side]))


def _colour_bins(g: _Graph, image: str, side: int) -> str:
    """[1, 3, S, S] BGR 0..255 -> [1, 1, S, S] int64 histogram bin (B * 64 + G * 8 + R)."""
    levels = g.op("Floor", g.op("Mul", image, g.f32(COLOUR_LEVELS / (PIXEL_MAX + 1.0))))
    levels = g.op("Clip", levels, g.f32(0.0), g.f32(COLOUR_LEVELS - 1.0))
    weights = np.array([[COLOUR_LEVELS**2, COLOUR_LEVELS, 1]], dtype=np.float32)
    bins = g.op("MatMul", g.f32(weights, "bin_weights"), _pixels(g, levels, side))
    bins = g.op("Reshape", bins, g.i64([1, 1, side, side]))
    return g.op("Cast", bins, to=TensorProto.INT64)


def _probability(g: _Graph, table: str, bins: str) -> str:
    """[1, 1, S, S] target probability of each pixel's colour bin (a lookup in the [512] table)."""
    return g.op("Gather", table, bins, axis=0)


def _pooled_features(g: _Graph, image: str, probability: str, side: int) -> str:
    """[1, 3, S, S] image + [1, 1, S, S] probability -> [1, 5, F, F] stride-8 window means."""
    scale = 1.0 / PIXEL_MAX
    # Luminance, red - green, (red + green) / 2 - blue; image channels are B, G, R.
    opponents = np.array(
        [[1 / 3, 1 / 3, 1 / 3], [0.0, -1.0, 1.0], [-1.0, 0.5, 0.5]], dtype=np.float64
    )
    colour = g.op("MatMul", g.f32(opponents * scale, "opponents"), _pixels(g, image, side))
    colour = g.op("Reshape", colour, g.i64([1, 3, side, side]))
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
    """[E, E] float 1 inside the ellipse of half-axes half_wh [2] around the window centre."""
    grid_x, grid_y = _exemplar_grid(g)
    inv_sq = g.op("Reciprocal", g.op("Mul", half_wh, half_wh))
    inv_x = g.op("Gather", inv_sq, g.i64(0), axis=0)
    inv_y = g.op("Gather", inv_sq, g.i64(1), axis=0)
    radius = g.op(
        "Add",
        g.op("Mul", g.op("Mul", grid_x, grid_x), inv_x),
        g.op("Mul", g.op("Mul", grid_y, grid_y), inv_y),
    )
    return g.op("Cast", g.op("Less", radius, g.f32(1.0)), to=TensorProto.FLOAT)


def _colour_table(g: _Graph, hp: HyperParameters, exemplar: str, half_wh: str) -> str:
    """[512] P(target | colour bin) from the exemplar, the target box having half-size half_wh."""
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
    outside_x = g.op("Greater", g.op("Abs", grid_x), g.op("Gather", reach, g.i64(0), axis=0))
    outside_y = g.op("Greater", g.op("Abs", grid_y), g.op("Gather", reach, g.i64(1), axis=0))
    surround = g.op(
        "Max",
        g.op("Cast", outside_x, to=TensorProto.FLOAT),
        g.op("Cast", outside_y, to=TensorProto.FLOAT),
    )
    pixels = EXEMPLAR_SIZE * EXEMPLAR_SIZE
    # One-hot levels per channel: [3, N, L]; the joint histogram is (B x G)^T @ (R * weight).
    levels = g.op("Floor", g.op("Mul", exemplar, g.f32(COLOUR_LEVELS / (PIXEL_MAX + 1.0))))
    levels = g.op("Clip", levels, g.f32(0.0), g.f32(COLOUR_LEVELS - 1.0))
    levels = g.op("Reshape", levels, g.i64([3, pixels, 1]))
    one_hot = g.op(
        "Cast",
        g.op("Equal", levels, g.f32(np.arange(COLOUR_LEVELS).reshape(1, 1, -1), "levels")),
        to=TensorProto.FLOAT,
    )
    blue = g.op("Gather", one_hot, g.i64(0), axis=0)
    green = g.op("Gather", one_hot, g.i64(1), axis=0)
    red = g.op("Gather", one_hot, g.i64(2), axis=0)
    blue_green = g.op(
        "Reshape",
        g.op("Mul", g.op("Unsqueeze", blue, g.i64([2])), g.op("Unsqueeze", green, g.i64([1]))),
        g.i64([pixels, COLOUR_LEVELS**2]),
    )
    blue_green_t = g.op("Transpose", blue_green, perm=[1, 0])

    def histogram(weights: str) -> tuple[str, str]:
        column = g.op("Reshape", weights, g.i64([pixels, 1]))
        counts = g.op("MatMul", blue_green_t, g.op("Mul", red, column))
        total = g.op("Max", g.op("ReduceSum", weights, keepdims=0), g.f32(1.0))
        return g.op("Div", g.op("Reshape", counts, g.i64([COLOUR_BINS])), total), total

    target_freq, target_total = histogram(target)
    surround_freq, _ = histogram(surround)
    # Spread each surrounding colour over its neighbour bins (one axis at a time): a background
    # colour unseen in the exemplar but next to seen ones must not look like the target.
    spread = g.op("Reshape", surround_freq, g.i64([COLOUR_LEVELS] * 3))
    blur = g.f32(_blur_matrix(hp.bg_blur), "colour_blur")
    for _ in range(3):
        spread = g.op("Transpose", g.op("MatMul", spread, blur), perm=[2, 0, 1])
    surround_freq = g.op("Max", surround_freq, g.op("Reshape", spread, g.i64([COLOUR_BINS])))
    floor = g.op("Div", g.f32(hp.fg_min_count), target_total)
    surround_freq = g.op("Mul", surround_freq, g.f32(hp.bg_weight))
    denominator = g.op("Add", g.op("Add", target_freq, surround_freq), floor)
    return g.op("Div", target_freq, denominator)


def _mask_extent(g: _Graph, mask: str, seg_thr: float) -> tuple[str, str, str]:
    """[E, E] probabilities -> (centre [2] xy, size [2] wh, found []) of the thresholded pixels.

    Exemplar-window pixels; found is a bool, false when no pixel passes the threshold.
    """
    last = EXEMPLAR_SIZE - 1
    ramp = np.arange(EXEMPLAR_SIZE, dtype=np.float32).reshape(1, -1)
    on = g.op("Cast", g.op("Greater", mask, g.f32(seg_thr)), to=TensorProto.FLOAT)
    along_x = g.op("ReduceMax", on, axes=[0], keepdims=1)
    along_y = g.op("Transpose", g.op("ReduceMax", on, axes=[1], keepdims=1), perm=[1, 0])
    occupied = g.op("Concat", along_x, along_y, axis=0)  # [2, E]
    high = g.op("ReduceMax", g.op("Mul", occupied, g.f32(ramp, "ramp")), axes=[1], keepdims=0)
    low_from_end = g.op(
        "ReduceMax", g.op("Mul", occupied, g.f32(last - ramp, "ramp_down")), axes=[1], keepdims=0
    )
    low = g.op("Sub", g.f32(float(last)), low_from_end)
    centre = g.op("Mul", g.op("Add", low, high), g.f32(0.5))
    size = g.op("Add", g.op("Sub", high, low), g.f32(1.0))
    found = g.op("Greater", g.op("ReduceMax", occupied, keepdims=0), g.f32(0.5))
    return centre, size, found


def _smoothed(g: _Graph, hp: HyperParameters, probability: str, pad: bool = True) -> str:
    """[1, 1, S, S] box-filtered: same size (zero border), or S - k + 1 without `pad`.

    Separable: a row filter, then a column filter.
    """
    k = hp.mask_smooth
    half = k // 2 if pad else 0
    row = g.f32(np.full((1, 1, 1, k), 1.0 / k), "smooth_row")
    column = g.f32(np.full((1, 1, k, 1), 1.0 / k), "smooth_column")
    rows_done = g.op("Conv", probability, row, pads=[0, half, 0, half])
    return g.op("Conv", rows_done, column, pads=[half, 0, half, 0])


def _init_branch(hp: HyperParameters) -> onnx.GraphProto:
    g = _Graph("init/")
    exemplar = g.op(
        "Slice",
        contract.IN_IMAGE,
        g.i64([0, 0]),
        g.i64([EXEMPLAR_SIZE, EXEMPLAR_SIZE]),
        g.i64([2, 3]),
    )
    # The target's half size inside the exemplar: (w, h) * 127 / s_z.
    size = contract.IN_SIZE
    context = g.op("Mul", g.op("ReduceSum", size, keepdims=0), g.f32(CONTEXT_AMOUNT))
    padded = g.op("Add", size, context)
    s_z = g.op(
        "Sqrt",
        g.op(
            "Mul",
            g.op("Gather", padded, g.i64(0), axis=0),
            g.op("Gather", padded, g.i64(1), axis=0),
        ),
    )
    given_half = g.op(
        "Mul", size, g.op("Div", g.f32(EXEMPLAR_SIZE / 2), g.op("Max", s_z, g.f32(NCC_EPS)))
    )
    # A caller that passes no size (zeros) gets a two-pass estimate: a square guess, then the
    # extent of the colours that guess calls target.
    square_half = g.f32([EXEMPLAR_SIZE / 4, EXEMPLAR_SIZE / 4], "square_half")
    bins = _colour_bins(g, exemplar, EXEMPLAR_SIZE)
    first_table = _colour_table(g, hp, exemplar, square_half)
    first_probability = _smoothed(g, hp, _probability(g, first_table, bins))
    _, first_size, first_found = _mask_extent(
        g, g.op("Reshape", first_probability, g.i64([EXEMPLAR_SIZE, EXEMPLAR_SIZE])), hp.seg_thr
    )
    estimated_half = g.op("Where", first_found, g.op("Mul", first_size, g.f32(0.5)), square_half)
    has_size = g.op("Greater", g.op("ReduceMin", size, keepdims=0), g.f32(0.0))
    half = g.op("Max", g.op("Where", has_size, given_half, estimated_half), g.f32(1.0))

    table = _colour_table(g, hp, exemplar, half)
    features = _pooled_features(g, exemplar, _probability(g, table, bins), EXEMPLAR_SIZE)
    end = TEMPLATE_OFFSET + TEMPLATE_SIDE
    template = g.op(
        "Slice", features, g.i64([TEMPLATE_OFFSET] * 2), g.i64([end, end]), g.i64([2, 3])
    )
    packed_table = g.op(
        "Reshape",
        g.op("Pad", table, g.i64([0, TABLE_CHANNELS * TEMPLATE_SIDE**2 - COLOUR_BINS])),
        g.i64([1, TABLE_CHANNELS, TEMPLATE_SIDE, TEMPLATE_SIDE]),
    )

    outputs = {
        contract.OUT_MASK: g.f32(np.zeros((EXEMPLAR_SIZE, EXEMPLAR_SIZE)), "empty_mask"),
        contract.OUT_CENTER: contract.IN_CENTER,
        contract.OUT_SIZE: contract.IN_SIZE,
        contract.OUT_FEATURES: g.op("Concat", template, packed_table, axis=1),
        # No search in the init step: no cell, no score.
        contract.OUT_BEST_CELL: g.i64([0, 0], "no_cell"),
        contract.OUT_SCORE: g.f32(0.0, "no_score"),
    }
    return _branch_graph(g, "init", outputs)


def _track_branch(hp: HyperParameters) -> onnx.GraphProto:
    g = _Graph("track/")
    image = contract.IN_IMAGE
    features_in = contract.IN_FEATURES
    scale = g.op("Cast", contract.IN_SCALE, to=TensorProto.FLOAT)
    table = g.op(
        "Slice",
        g.op(
            "Reshape",
            g.op(
                "Slice",
                features_in,
                g.i64([FEATURE_CHANNELS]),
                g.i64([FEATURE_SHAPE[1]]),
                g.i64([1]),
            ),
            g.i64([-1]),
        ),
        g.i64([0]),
        g.i64([COLOUR_BINS]),
        g.i64([0]),
    )
    template = g.op("Slice", features_in, g.i64([0]), g.i64([FEATURE_CHANNELS]), g.i64([1]))
    probability = _probability(g, table, _colour_bins(g, image, INSTANCE_SIZE))
    search = _pooled_features(g, image, probability, INSTANCE_SIZE)  # [1, C, 31, 31]

    # Per-channel NCC: sum(T' X) / (|T'| |X - mean X|) over each 7x7 window, T' = T - mean T.
    centred = g.op("Sub", template, g.op("ReduceMean", template, axes=[2, 3], keepdims=1))
    template_norm = g.op(
        "Sqrt", g.op("ReduceSum", g.op("Mul", centred, centred), g.i64([2, 3]), keepdims=1)
    )
    # Correlation as batched MatMul: for each channel c and template row k, the search rows
    # r + k ([C, 7, 25, 31]) times the banded matrix of template row k ([C, 7, 31, 25]), summed
    # over k.
    rows_k = g.op("Gather", search, g.i64(_row_indices(), "row_indices"), axis=2)
    rows_k = g.op(
        "Reshape", rows_k, g.i64([FEATURE_CHANNELS, TEMPLATE_SIDE, SCORE_SIZE, SEARCH_CELLS])
    )
    padded_rows = g.op("Pad", centred, g.i64([0, 0, 0, 0, 0, 0, 0, 1]), g.f32(0.0))
    bands = g.op("Gather", padded_rows, g.i64(_band_indices(), "band_indices"), axis=3)
    bands = g.op(
        "Reshape", bands, g.i64([FEATURE_CHANNELS, TEMPLATE_SIDE, SEARCH_CELLS, SCORE_SIZE])
    )
    dots = g.op("ReduceSum", g.op("MatMul", rows_k, bands), g.i64([1]), keepdims=0)
    dots = g.op("Reshape", dots, g.i64([1, FEATURE_CHANNELS, SCORE_SIZE, SCORE_SIZE]))
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
    ncc = g.op("Clip", ncc, g.f32(-1.0), g.f32(1.0))
    weights = np.asarray(hp.channel_weights, dtype=np.float64)
    weights = (weights / weights.sum()).reshape(1, FEATURE_CHANNELS, 1, 1)
    raw = g.op(
        "Reshape",
        g.op("Conv", ncc, g.f32(weights, "channel_weights")),
        g.i64([SCORE_SIZE, SCORE_SIZE]),
    )
    wi = hp.window_influence
    ranked = g.op(
        "Add",
        g.op("Mul", raw, g.f32(1.0 - wi)),
        g.f32(_cosine_window() * np.float32(wi), "cosine_window"),
    )
    # Best cell as two ArgMax (row of the best value, then its column): no integer division.
    row = g.op("ArgMax", g.op("ReduceMax", ranked, axes=[1], keepdims=0), axis=0, keepdims=0)
    col = g.op("ArgMax", g.op("Gather", ranked, row, axis=0), axis=0, keepdims=0)
    score = g.op("Relu", g.op("Gather", g.op("Gather", raw, row, axis=0), col, axis=0))
    unsq = g.i64([0])
    best_yx = g.op("Concat", g.op("Unsqueeze", row, unsq), g.op("Unsqueeze", col, unsq), axis=0)
    best_xy = g.op(
        "Cast",
        g.op("Concat", g.op("Unsqueeze", col, unsq), g.op("Unsqueeze", row, unsq), axis=0),
        to=TensorProto.FLOAT,
    )

    # Mask: the 127x127 window of the smoothed probability at the best cell (zero outside the
    # crop), kept inside an ellipse around the expected target. The window is cut with a margin
    # of half the filter first, so only the window gets filtered.
    margin = hp.mask_smooth // 2
    border = WINDOW_SHIFT + margin
    padded = g.op(
        "Pad", probability, g.i64([0, 0, border, border, 0, 0, border, border]), g.f32(0.0)
    )
    span = g.i64(np.arange(EXEMPLAR_SIZE + 2 * margin), "window_span")
    stride = g.i64(TOTAL_STRIDE)
    rows = g.op("Add", g.op("Mul", row, stride), span)
    cols = g.op("Add", g.op("Mul", col, stride), span)
    window_probs = g.op("Gather", g.op("Gather", padded, rows, axis=2), cols, axis=3)
    window_probs = _smoothed(g, hp, window_probs, pad=False)
    window_probs = g.op("Reshape", window_probs, g.i64([EXEMPLAR_SIZE, EXEMPLAR_SIZE]))
    expected_half = g.op(
        "Add",
        g.op("Mul", g.op("Mul", contract.IN_SIZE, scale), g.f32(hp.prior_scale / 2)),
        g.f32(hp.prior_margin),
    )
    mask = g.op("Mul", window_probs, _ellipse_inside(g, expected_half))

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


_OUTPUT_TYPES: dict[str, tuple[int, tuple[int, ...]]] = {
    contract.OUT_MASK: (TensorProto.FLOAT, (EXEMPLAR_SIZE, EXEMPLAR_SIZE)),
    contract.OUT_CENTER: (TensorProto.FLOAT, (2,)),
    contract.OUT_SIZE: (TensorProto.FLOAT, (2,)),
    contract.OUT_FEATURES: (TensorProto.FLOAT, FEATURE_SHAPE),
    contract.OUT_BEST_CELL: (TensorProto.INT64, (2,)),
    contract.OUT_SCORE: (TensorProto.FLOAT, ()),
}


def _branch_graph(g: _Graph, branch: str, outputs: dict[str, str]) -> onnx.GraphProto:
    infos = []
    for name, (dtype, shape) in _OUTPUT_TYPES.items():
        branch_name = g.output(outputs[name], f"{branch}/{name}")
        infos.append(helper.make_tensor_value_info(branch_name, dtype, list(shape)))
    return helper.make_graph(g.constants + g.nodes, f"{branch}_branch", [], infos)


def build_model(hp: HyperParameters | None = None) -> onnx.ModelProto:
    """The builtin-ncc model (checked with onnx.checker)."""
    hp = hp or HyperParameters()
    if len(hp.channel_weights) != FEATURE_CHANNELS:
        raise ValueError(f"channel_weights needs {FEATURE_CHANNELS} values")
    init = _init_branch(hp)
    track = _track_branch(hp)
    inputs = [
        helper.make_tensor_value_info(
            contract.IN_IMAGE, TensorProto.FLOAT, [1, 3, INSTANCE_SIZE, INSTANCE_SIZE]
        ),
        helper.make_tensor_value_info(contract.IN_CENTER, TensorProto.FLOAT, [2]),
        helper.make_tensor_value_info(contract.IN_SIZE, TensorProto.FLOAT, [2]),
        helper.make_tensor_value_info(contract.IN_SCALE, TensorProto.DOUBLE, []),
        helper.make_tensor_value_info(contract.IN_FEATURES, TensorProto.FLOAT, list(FEATURE_SHAPE)),
        helper.make_tensor_value_info(contract.IN_FIRST_TIME, TensorProto.BOOL, []),
    ]
    outputs = [
        helper.make_tensor_value_info(name, dtype, list(shape))
        for name, (dtype, shape) in _OUTPUT_TYPES.items()
    ]
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
        "model mask, in the SiamMask ONNX contract"
    )
    for key, value in (
        (contract.META_MODEL_NAME, MODEL_NAME),
        (contract.META_PRODUCER, PRODUCER),
        (contract.META_HYPER_PARAMETERS, json.dumps(hp.metadata(), sort_keys=True)),
    ):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    return model


def model_bytes(hp: HyperParameters | None = None) -> bytes:
    """The serialized model (deterministic: the same bytes on every run)."""
    data: bytes = build_model(hp).SerializeToString(deterministic=True)
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the builder command."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("models") / BUILTIN_FILE,
        help=f"where to write the model (default models/{BUILTIN_FILE})",
    )


def run(args: argparse.Namespace) -> int:
    """Write the model file; exit status 0."""
    data = model_bytes()
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    log.info("wrote %s (%d bytes, siamedge %s)", out, len(data), __version__)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m siamedge.builtin_model --out models/builtin-ncc.onnx`."""
    parser = argparse.ArgumentParser(prog="python -m siamedge.builtin_model", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
