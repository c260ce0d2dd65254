"""siamese_track's decoding of the RPN heads as ONNX nodes, every target row on its own.

Anchors, penalty, cosine window, argmax and the state update per row of a [N, ...] batch;
writes nodes only (the network's layers are writer.py's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siamedge.contract import SCORE_SIZE
from siamedge.export.graph import FLOAT, Branch
from siamedge.export.spec import ANCHOR_COUNT, HyperParameters, anchor_grid, cosine_window
from siamedge.export.writer import CELLS, CellValues

ANCHOR_CELLS = ANCHOR_COUNT * CELLS
BOX_COMPONENTS = 4
"""(cx, cy, w, h) per anchor."""


@dataclass(frozen=True)
class RowInputs:
    """Value names of the track step's per-row inputs inside a branch.

    image [N, 3, S, S] float32; center, size [N, 2] float32 (cx, cy) and (w, h); scale [N]
    float64 (scale_x); features [N, C, h, w] float32.
    """

    image: str
    center: str
    size: str
    scale: str
    features: str


@dataclass(frozen=True)
class Decision:
    """Value names of the decoded step: center, size [N, 2] (unclipped), best [N, 1] int64
    flat (anchor, row, col) index, score [N] the best anchor's softmax score."""

    center: str
    size: str
    best: str
    score: str


def _change(b: Branch, ratio: str) -> str:
    """max(r, 1 / r)."""
    return b.op("Max", [ratio, b.op("Reciprocal", [ratio])])


def _context_side(b: Branch, w: str, h: str) -> str:
    """sqrt((w + p)(h + p)), p = (w + h) / 2."""
    pad = b.op("Mul", [b.op("Add", [w, h]), b.const(0.5, np.float32)])
    return b.op("Sqrt", [b.op("Mul", [b.op("Add", [w, pad]), b.op("Add", [h, pad])])])


def _pick(b: Branch, values: str, best: str, components: int) -> str:
    """[N, components, 1]: each row's entry at its best index of values [N, components, A*S*S]."""
    if components > 1:
        spread = b.const(np.zeros((1, components, 1)), np.int64, "zeros_components")
        best = b.op("Add", [best, spread])
    return b.op("GatherElements", [values, best], axis=2)


def track_arithmetic(
    b: Branch, cls: str, loc: str, rows: RowInputs, hp: HyperParameters
) -> Decision:
    """Decode the heads' float32 outputs [N, 2A, S, S] and [N, 4A, S, S], row by row."""
    one = b.const(1.0, np.float32)
    logits = b.reshape_keep(cls, 2, ANCHOR_CELLS)
    # softmax over (background, foreground) = sigmoid of their difference; [N, 1, A*S*S]
    score = b.op("Sigmoid", [b.op("Sub", [b.slice(logits, 1, 1, 2), b.slice(logits, 1, 0, 1)])])
    deltas = b.reshape_keep(loc, BOX_COMPONENTS, ANCHOR_CELLS)
    anchors = anchor_grid()
    anchor_xy = b.const(anchors[:2], np.float32, "anchor_xy")
    anchor_wh = b.const(anchors[2:], np.float32, "anchor_wh")
    box_xy = b.op("Add", [b.op("Mul", [b.slice(deltas, 1, 0, 2), anchor_wh]), anchor_xy])
    box_wh = b.op("Mul", [b.op("Exp", [b.slice(deltas, 1, 2, 4)]), anchor_wh])
    box_w, box_h = b.slice(box_wh, 1, 0, 1), b.slice(box_wh, 1, 1, 2)

    scale = b.unsqueeze(b.op("Cast", [rows.scale], to=FLOAT), 1)  # [N, 1]
    size_in_crop = b.unsqueeze(b.op("Mul", [rows.size, scale]), 2)  # [N, 2, 1]
    target_w, target_h = b.slice(size_in_crop, 1, 0, 1), b.slice(size_in_crop, 1, 1, 2)
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
    # [N, 1, 1]; the first maximum of each row, like np.argmax
    best = b.op("ArgMax", [pscore], axis=2, keepdims=1)

    boxes = b.op("Concat", [box_xy, box_wh], axis=1)
    pred = b.op("Div", [b.squeeze(_pick(b, boxes, best, BOX_COMPONENTS), 2), scale])  # [N, 4]
    rate = b.op("Mul", [b.squeeze(_pick(b, weighted, best, 1), 2), b.const(hp.lr, np.float32)])
    center = b.op("Add", [rows.center, b.slice(pred, 1, 0, 2)])
    size = b.op(
        "Add",
        [
            b.op("Mul", [rows.size, b.op("Sub", [one, rate])]),
            b.op("Mul", [b.slice(pred, 1, 2, 4), rate]),
        ],
    )
    best_score = b.squeeze(_pick(b, score, best, 1), 1, 2)
    return Decision(center, size, b.squeeze(best, 2), best_score)


def cell_of(b: Branch, best: str) -> CellValues:
    """The grid cells of flat (anchor, row, col) indices [N, 1]."""
    anchor = b.op("Div", [best, b.ints(CELLS)])
    cell = b.op("Sub", [best, b.op("Mul", [anchor, b.ints(CELLS)])])
    row = b.op("Div", [cell, b.ints(SCORE_SIZE)])
    col = b.op("Sub", [cell, b.op("Mul", [row, b.ints(SCORE_SIZE)])])
    return CellValues(cell, row, col)
