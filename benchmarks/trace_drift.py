"""How far each provider configuration drifts from the ORIGINAL tracker's reference trace.

The tennis free run (../shared/reference/tennis_trace.json: 69 frames tracked from the init box
by the original SiamMask with the seed-0 checkpoint) is tracked again by siamedge on each
configuration below, the tennis target alone and as target 0 of a batch of 4 (three more targets
elsewhere in the frame, one model call per frame). Prints, side by side, the largest difference
in centre and size (px) from the trace over the run and the frames whose best anchor cell
differs. The parity tests hold the CPU provider to 0.05 px; `siamedge check` compares single
steps instead (each from the CPU provider's state) and fails a provider beyond 0.5 px.

  cpu         the fp32 export on the CPU provider (the reference siamedge is tested with)
  cuda        the fp32 export on the CUDA provider with siamedge's defaults (TF32 off)
  cuda-tf32   the same with model.cuda_tf32: true
  cuda-graph  the fp32 split export with model.cuda_graph: true
  cuda-fp16   the fp16 export on the CUDA provider

    python benchmarks/trace_drift.py [--configs cpu,cuda,...] [--models DIR]
        [--make-checkpoint PY] [--reference DIR]

--reference: the folder holding tennis_trace.json and tennis/ (default ../shared/reference);
--models: where the seed-0 checkpoint and its exports are written and reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray
from shared_reference import EXPORTS, REFERENCE, SPLIT, TENNIS_BOXES_XYWH, seed0_exports

from siamedge.config import ModelSettings, TrackerSettings
from siamedge.engine import Engine, import_onnxruntime
from siamedge.errors import SiamedgeError
from siamedge.providers import CPU, CUDA
from siamedge.tracking.tracker import StepOutcome, Tracker, TrackerParams, step_together


@dataclass(frozen=True)
class Config:
    """A model export (by its stem in EXPORTS) on a provider with its settings."""

    export: str
    settings: ModelSettings

    @property
    def provider(self) -> str:
        return CUDA if self.settings.providers == ["cuda"] else CPU


CUDA_DEFAULTS = ModelSettings(providers=["cuda"])
CONFIGS = {
    "cpu": Config("fp32", ModelSettings(providers=["cpu"])),
    "cuda": Config("fp32", CUDA_DEFAULTS),
    "cuda-tf32": Config("fp32", CUDA_DEFAULTS.model_copy(update={"cuda_tf32": True})),
    "cuda-graph": Config(f"fp32{SPLIT}", CUDA_DEFAULTS.model_copy(update={"cuda_graph": True})),
    "cuda-fp16": Config("fp16", CUDA_DEFAULTS),
}
BATCH = len(TENNIS_BOXES_XYWH)
"""The tennis target and the three others of TENNIS_BOXES_XYWH."""


@dataclass(frozen=True)
class Drift:
    """Largest centre / size difference from the trace (px) and the frames whose cell differs."""

    center_px: float
    size_px: float
    cells_off: list[str]

    def cells(self) -> str:
        if not self.cells_off:
            return "0"
        return f"{len(self.cells_off)} (first {self.cells_off[0]})"


def _largest(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def free_run(
    engine: Engine,
    trace: dict[str, Any],
    frames: dict[str, NDArray[np.uint8]],
    batched: bool,
) -> Drift:
    """Track the trace's init box over its free-run frames (in a batch of BATCH: as row 0)."""
    params = TrackerParams.from_settings(TrackerSettings(), engine.contract)
    boxes = [tuple(trace["init_box_xywh"]), *(TENNIS_BOXES_XYWH[1:] if batched else ())]
    trackers = [Tracker(engine, params) for _ in boxes]
    for tracker, box in zip(trackers, boxes, strict=True):
        tracker.start(frames["00000.jpg"], box)
    center_px = size_px = 0.0
    cells_off = []
    for record in trace["free_run"]:
        outcome = step_together(trackers, frames[record["file"]])[0]
        if not isinstance(outcome, StepOutcome):
            raise outcome
        center_px = max(center_px, _largest(outcome.result.center_xy, record["center"]))
        size_px = max(size_px, _largest(outcome.result.size_wh, record["size"]))
        if tuple(outcome.model.best_cell_yx) != tuple(record["best_cell_yx"]):
            cells_off.append(record["file"])
    return Drift(center_px, size_px, cells_off)


def measure(
    name: str, models: dict[str, Path], trace: dict[str, Any], frames: dict[str, NDArray[np.uint8]]
) -> tuple[str, Drift, Drift] | str:
    """(the provider that ran, drift alone, drift in a batch), or why the configuration did not
    run."""
    config = CONFIGS[name]
    if config.provider not in import_onnxruntime().get_available_providers():
        return f"{config.provider} not offered"
    try:
        engine = Engine.load(str(models[config.export]), config.settings, max_batch=BATCH)
        if engine.provider != config.provider:
            return f"{config.provider} did not start ({engine.provider} ran)"
        return (
            engine.provider,
            free_run(engine, trace, frames, batched=False),
            free_run(engine, trace, frames, batched=True),
        )
    except (SiamedgeError, ValueError) as exc:
        return f"failed: {exc}"


def print_table(rows: dict[str, tuple[str, Drift, Drift] | str], frame_count: int) -> None:
    """One row per configuration: drift alone | drift as target 0 of BATCH."""
    lead = f"{'config':<11} {'model':<11}"
    half = f"{'centre px':>10} {'size px':>10} {'cells off':<20}"
    titles = [f"{title:^{len(half)}}" for title in ("tennis target alone", f"target 0 of {BATCH}")]
    print(" | ".join([" " * len(lead), *titles]))
    print(f"{lead} | {half} | {half}")
    print("-" * (len(lead) + 2 * len(half) + 6))
    for name, row in rows.items():
        first = f"{name:<11} {CONFIGS[name].export:<11}"
        if isinstance(row, str):
            print(f"{first} | {row}")
            continue
        cells = [
            f"{drift.center_px:10.4f} {drift.size_px:10.4f} {drift.cells():<20}"
            for drift in row[1:]
        ]
        print(" | ".join([first, *cells]))
    print(f"largest difference from the original tracker's free run over {frame_count} frames")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--configs",
        type=lambda text: [item.strip() for item in text.split(",") if item.strip()],
        default=list(CONFIGS),
        help=f"comma list of {', '.join(CONFIGS)} (default: all)",
    )
    parser.add_argument("--models", type=Path, help="folder of the checkpoint and exports")
    parser.add_argument("--make-checkpoint", type=Path, help="make_checkpoint.py (seed-0)")
    parser.add_argument(
        "--reference", type=Path, default=REFERENCE, help="tennis_trace.json and tennis/"
    )
    args = parser.parse_args()
    unknown = [name for name in args.configs if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s) {unknown}; use {', '.join(CONFIGS)}")
    return args


def main() -> None:
    args = parse_args()
    trace = json.loads((args.reference / "tennis_trace.json").read_text())
    names = ["00000.jpg", *(record["file"] for record in trace["free_run"])]
    frames = {name: cv2.imread(str(args.reference / "tennis" / name)) for name in names}
    missing = [name for name, frame in frames.items() if frame is None]
    if missing:
        raise SystemExit(f"{args.reference / 'tennis'}: cannot read {missing[:3]}")
    with tempfile.TemporaryDirectory() as scratch:
        folder: Path = args.models or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        exports = {CONFIGS[name].export for name in args.configs}
        models = seed0_exports(
            folder, {stem: EXPORTS[stem] for stem in exports}, args.make_checkpoint
        )
        rows = {}
        for name in args.configs:
            rows[name] = measure(name, models, trace, frames)
            print(f"ran {name}", file=sys.stderr)
    print(f"onnxruntime {import_onnxruntime().__version__}")
    print_table(rows, len(trace["free_run"]))


if __name__ == "__main__":
    main()
