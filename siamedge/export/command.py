"""`siamedge export`: a SiamMask VOT PyTorch checkpoint to the contract ONNX model, validated.

Imports torch and onnx only when it runs, so `siamedge --help` works without the export extra.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from siamedge.errors import ModelError
from siamedge.export.spec import DEFAULT_OPSET, MIN_OPSET, HyperParameters

log = logging.getLogger(__name__)

EXTRA_HINT = "the exporter needs torch and onnx: pip install 'siamedge[export]'"
EXPORT_MODULES = ("torch", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `siamedge export`."""
    defaults = HyperParameters()
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="SiamMask_VOT.pth (ResNet-50, refine)"
    )
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument(
        "--seed-layout",
        action="store_true",
        help="leave out the `score` output (the public export's exact outputs)",
    )
    parser.add_argument(
        "--fp16", action="store_true", help="float16 weights and network arithmetic (same I/O)"
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset ({MIN_OPSET} or later; TensorRT 10 takes up to 20)",
    )
    parser.add_argument("--penalty-k", type=float, default=defaults.penalty_k)
    parser.add_argument("--window-influence", type=float, default=defaults.window_influence)
    parser.add_argument("--lr", type=float, default=defaults.lr, help="size update rate")
    parser.add_argument(
        "--seg-thr",
        type=float,
        default=defaults.seg_thr,
        help="mask threshold recorded in the metadata (applied by the tracker)",
    )
    parser.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the checker, the onnxruntime comparison and the TensorRT check",
    )


def run(args: argparse.Namespace) -> int:
    """Export, print the report; 1 when a validation check fails."""
    hp = HyperParameters(
        penalty_k=args.penalty_k,
        window_influence=args.window_influence,
        lr=args.lr,
        seg_thr=args.seg_thr,
    )
    try:
        from siamedge.export import builder, exporter  # noqa: PLC0415 - torch/onnx on demand
    except ImportError as exc:
        if (exc.name or "").split(".")[0] in EXPORT_MODULES:
            raise ModelError(f"{EXTRA_HINT} ({exc.name} is missing)") from exc
        raise
    options = builder.ExportOptions(
        hp=hp, opset=args.opset, fp16=args.fp16, with_score=not args.seed_layout
    )
    result = exporter.export_checkpoint(
        args.checkpoint, args.out, options, validate=not args.no_validate
    )
    print("\n".join(result.lines()))
    if not result.ok:
        log.error("%s was written but failed validation", result.path)
        return 1
    return 0
