"""../shared/reference for the benchmarks: its path and the seed-0 checkpoint it describes.

Reads the reference material in place; never copies it into the project.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def seed0_checkpoint(folder: Path) -> Path:
    """make_checkpoint.py --seed 0, written into folder (the checkpoint of the reference trace)."""
    spec = importlib.util.spec_from_file_location(
        "make_checkpoint", REFERENCE / "make_checkpoint.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = folder / "siammask_seed0.pth"
    torch.save({"state_dict": module.make_state_dict(0)}, path)
    return path
