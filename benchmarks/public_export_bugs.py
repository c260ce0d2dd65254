"""How the public SiamMask ONNX export's two bugs show on the reference trace, measured.

Bug 1: the scale/ratio penalty compares against the size baked in at export time instead of the
input `target_sz0`. Bug 2: the refine mask is taken at the transposed cell (col, row), and that
cell is reported as delta_yx (so the mask is placed consistently, but it is the wrong mask).
Each of the 69 teacher-forced steps of ../shared/reference/tennis_trace.json is run through the
PyTorch network (seed-0 checkpoint) with the original arithmetic, then with each bug emulated,
and compared with what the original tracker recorded.

    python benchmarks/public_export_bugs.py [--checkpoint siammask_seed0.pth]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from benchmark_extras import EXPORT, needs
from shared_reference import REFERENCE, seed0_checkpoint

from siamedge.contract import EXEMPLAR_SIZE, INSTANCE_SIZE
from siamedge.export.spec import HyperParameters
from siamedge.tracking.crop import crop_resized, mean_color
from siamedge.tracking.geometry import (
    CropGeometry,
    exemplar_side,
    mask_placement,
    search_window,
)
from siamedge.tracking.mask import project_mask

with needs(EXPORT):
    import torch

    from siamedge.export.checkpoint import load_network
    from siamedge.export.network import SiamMaskVOT
    from siamedge.export.reference_step import Decision, decide

PUBLIC_EXPORT_SIZE = (179.0, 264.0)
"""The target size the public export script bakes in (its tennis box 301, 104, 179, 264)."""
GEOMETRY = CropGeometry(EXEMPLAR_SIZE, INSTANCE_SIZE, 8, 8, 0.5)
STATE_TOLERANCE_PX = 0.01


def _full_mask(trace_npz: Any, index: int) -> np.ndarray:
    height, width = (int(v) for v in trace_npz["mask_shape"])
    bits = np.unpackbits(trace_npz["masks_packed"][index])[: height * width]
    return bits.reshape(height, width).astype(bool)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _state_error(decision: Decision, record: dict[str, Any]) -> tuple[float, float]:
    center = np.abs(np.subtract(decision.center_xy, record["center_unclipped"])).max()
    size = np.abs(np.subtract(decision.size_wh, record["size_unclipped"])).max()
    return float(center), float(size)


def _summary(name: str, rows: list[tuple[bool, float, float]]) -> str:
    cells = sum(not same for same, _, _ in rows)
    centers = [c for _, c, _ in rows]
    sizes = [s for _, _, s in rows]
    off = sum(max(c, s) > STATE_TOLERANCE_PX for _, c, s in rows)
    return (
        f"{name:<34} {cells:>5} {off:>9} {statistics.median(centers):>10.3g} "
        f"{max(centers):>10.3g} {statistics.median(sizes):>10.3g} {max(sizes):>10.3g}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="default: build the seed-0 stand-in")
    args = parser.parse_args()
    trace = json.loads((REFERENCE / "tennis_trace.json").read_text())
    trace_npz = np.load(REFERENCE / "tennis_trace.npz")
    hp = HyperParameters(**{k: trace["hyper_parameters"][k] for k in ("penalty_k", "lr")})
    with tempfile.TemporaryDirectory() as folder:
        net: SiamMaskVOT = load_network(args.checkpoint or seed0_checkpoint(Path(folder)))

    first = cv2.imread(str(REFERENCE / "tennis" / "00000.jpg"))
    fill = mean_color(first)
    x, y, w, h = trace["init_box_xywh"]
    init_size = (w, h)
    side = exemplar_side(init_size, GEOMETRY.context_amount)
    exemplar = crop_resized(first, (x + w / 2, y + h / 2), side, EXEMPLAR_SIZE, fill)
    with torch.inference_mode():
        template = net.template(torch.from_numpy(exemplar.transpose(2, 0, 1).copy()).float()[None])

    variants = {
        "fixed (target_sz0)": None,
        f"bug 1, size baked {PUBLIC_EXPORT_SIZE}": PUBLIC_EXPORT_SIZE,
        f"bug 1, size baked {init_size}": init_size,
    }
    rows: dict[str, list[tuple[bool, float, float]]] = {name: [] for name in variants}
    transposed: list[tuple[int, float, float, float]] = []
    for index, record in enumerate(trace["steps"]):
        frame = cv2.imread(str(REFERENCE / "tennis" / record["file"]))
        center, size = tuple(record["before"]["center"]), tuple(record["before"]["size"])
        window = search_window(size, GEOMETRY)
        crop = crop_resized(frame, center, window.side, INSTANCE_SIZE, fill)
        with torch.inference_mode():
            out = net.search(
                torch.from_numpy(crop.transpose(2, 0, 1).copy()).float()[None], template
            )
        cls, loc = out.cls.numpy(), out.loc.numpy()
        for name, baked in variants.items():
            decision = decide(
                cls=cls,
                loc=loc,
                center_xy=center,
                size_wh=size,
                scale_x=window.scale_x,
                hp=hp,
                penalty_size_wh=baked,
            )
            same = decision.cell_yx == tuple(record["best_cell_yx"])
            rows[name].append((same, *_state_error(decision, record)))
        row, col = record["best_cell_yx"]
        if row != col:
            with torch.inference_mode():
                wrong = torch.sigmoid(net.refine(out, col, row)).numpy()
            placement = mask_placement(center, window.side, (col, row), GEOMETRY)
            mask, _ = project_mask(wrong, placement, frame.shape[1::-1], hp.seg_thr)
            iou = _iou(mask.to_full(), _full_mask(trace_npz, index))
            prob_diff = float(np.abs(wrong - trace_npz["mask_probs"][index]).max())
            shift = float(np.hypot(*np.subtract((row, col), (col, row)))) * 8 * window.side / 255
            transposed.append((index, prob_diff, iou, shift))

    print(f"reference trace: {len(trace['steps'])} teacher-forced steps (tennis, seed-0 weights)")
    print("\nBug 1 (penalty against a baked size), against the trace's unclipped centre/size:")
    print(
        f"{'variant':<34} {'cells':>5} {'>0.01 px':>9} {'centre med':>10} {'centre max':>10} "
        f"{'size med':>10} {'size max':>10}"
    )
    for name, variant_rows in rows.items():
        print(_summary(name, variant_rows))
    print("  cells: steps whose best cell differs from the trace; >0.01 px: steps off the state")
    print("\nBug 2 (mask taken and placed at the transposed cell):")
    print(f"  steps with row != col: {len(transposed)} of {len(trace['steps'])}")
    if transposed:
        ious = [iou for _, _, iou, _ in transposed]
        print(
            f"  on those: full-frame mask IoU with the trace median {statistics.median(ious):.3f}, "
            f"min {min(ious):.3f}; mask probabilities off by up to "
            f"{max(p for _, p, _, _ in transposed):.3f}; mask window moved by up to "
            f"{max(s for _, _, _, s in transposed):.0f} px"
        )


if __name__ == "__main__":
    main()
