"""../shared/reference for the benchmarks: its path, the seed-0 checkpoint it describes and that
checkpoint's exports.

Reads the reference material in place; never copies it into the project. A machine without
../shared (the GPU machine) passes the script it carried instead.

    python benchmarks/shared_reference.py DIR [--make-checkpoint PY]

writes the checkpoint and every export in EXPORTS into DIR (the GPU run's first step, so that
`siamedge check` and the benchmarks share them).
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmark_extras import EXPORT, needs

from siamedge.tracking.geometry import BoxXYWH

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
CHECKPOINT_NAME = "siammask_seed0.pth"
TENNIS_BOXES_XYWH: tuple[BoxXYWH, ...] = (
    (300.0, 110.0, 165.0, 250.0),
    (40.0, 40.0, 80.0, 60.0),
    (600.0, 300.0, 120.0, 140.0),
    (700.0, 20.0, 50.0, 50.0),
)
"""Targets in the 854x480 tennis frames: the reference trace's init box (the player), then three
places elsewhere (top left, bottom right, top right), as the parity tests place them."""
SPLIT = "-split"
EXPORTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "fp16": {"fp16": True},
    f"fp32{SPLIT}": {"layout": "split"},
    f"fp16{SPLIT}": {"fp16": True, "layout": "split"},
}
"""The GPU benchmarks' exports, by file stem: the batched If layout per precision, and the split
layout (track model without If, for CUDA graphs). ExportOptions keyword arguments: the exporter
(torch, onnx) is imported only to write an export that is not there yet."""


def seed0_checkpoint(folder: Path, make_checkpoint: Path | None = None) -> Path:
    """make_checkpoint.py --seed 0 (the checkpoint of the reference trace), written into folder
    unless it is there already. make_checkpoint: the script (default: ../shared/reference's)."""
    path = folder / CHECKPOINT_NAME
    if path.is_file():
        return path
    with needs(EXPORT, "needed to write the seed-0 checkpoint"):
        import torch
    script = make_checkpoint or REFERENCE / "make_checkpoint.py"
    spec = importlib.util.spec_from_file_location("make_checkpoint", script)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.save({"state_dict": module.make_state_dict(0)}, path)
    return path


def seed0_exports(
    folder: Path, layouts: Mapping[str, Mapping[str, Any]], make_checkpoint: Path | None = None
) -> dict[str, Path]:
    """The seed-0 checkpoint exported as folder/<name>.onnx for every named layout (ExportOptions
    keyword arguments; without validation); files already there are reused, so several
    benchmarks can share one folder, and need no torch then."""
    paths = {name: folder / f"{name}.onnx" for name in layouts}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        with needs(EXPORT, "needed to export the seed-0 checkpoint"):
            from siamedge.export.builder import ExportOptions
            from siamedge.export.exporter import export_checkpoint
        checkpoint = seed0_checkpoint(folder, make_checkpoint)
        for name in missing:
            options = ExportOptions(**layouts[name])
            export_checkpoint(checkpoint, paths[name], options, validate=False)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description="write the seed-0 checkpoint and its exports")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--make-checkpoint", type=Path, help="make_checkpoint.py (seed-0)")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for name, path in seed0_exports(args.folder, EXPORTS, args.make_checkpoint).items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
