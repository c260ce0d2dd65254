"""`siamedge export`: a SiamMask VOT PyTorch checkpoint to the contract ONNX model, validated.

Imports torch and onnx only when it runs, so `siamedge --help` works without the export extra.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from siamedge.contract import LAYOUT_IF, LAYOUT_SPLIT
from siamedge.errors import ModelError
from siamedge.export.spec import (
    DEFAULT_BATCH,
    DEFAULT_OPSET,
    INIT_MODEL_SUFFIX,
    MIN_OPSET,
    SINGLE_TARGET_BATCH,
    HyperParameters,
)

log = logging.getLogger(__name__)

EXTRA_HINT = "the exporter needs torch and onnx: pip install 'siamedge[export]'"
EXPORT_MODULES = ("torch", "onnx")

BATCH_DYNAMIC = "dynamic"
BATCH_CHOICES = (BATCH_DYNAMIC, str(SINGLE_TARGET_BATCH))
BATCH_DEFAULT = BATCH_DYNAMIC if DEFAULT_BATCH is None else str(DEFAULT_BATCH)
LAYOUT_CHOICES = (LAYOUT_IF, LAYOUT_SPLIT)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `siamedge export`."""
    defaults = HyperParameters()
    parser.add_argument(
        "--checkpoint", type=Path, required=True, help="SiamMask_VOT.pth (ResNet-50, refine)"
    )
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument(
        "--batch",
        choices=BATCH_CHOICES,
        default=BATCH_DEFAULT,
        help=(
            "dynamic: a leading symbolic batch dimension on every tensor but first_time "
            "(N targets per call); 1: the public export's single-target layout "
            f"(default {BATCH_DEFAULT})"
        ),
    )
    parser.add_argument(
        "--layout",
        choices=LAYOUT_CHOICES,
        default=LAYOUT_IF,
        help=(
            "if: one model, an If on first_time; split: OUT is the track model (no If) and "
            f"<OUT stem>{INIT_MODEL_SUFFIX} the init model (needs --batch {BATCH_DYNAMIC}) "
            f"(default {LAYOUT_IF})"
        ),
    )
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
    if args.layout == LAYOUT_SPLIT and args.batch != BATCH_DYNAMIC:
        raise ModelError(
            f"--layout {LAYOUT_SPLIT} writes batched models: add --batch {BATCH_DYNAMIC} "
            f"(got --batch {args.batch})"
        )
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
        hp=hp,
        opset=args.opset,
        fp16=args.fp16,
        with_score=not args.seed_layout,
        batch=None if args.batch == BATCH_DYNAMIC else SINGLE_TARGET_BATCH,
        layout=args.layout,
    )
    result = exporter.export_checkpoint(
        args.checkpoint, args.out, options, validate=not args.no_validate
    )
    print("\n".join(result.lines()))
    if not result.ok:
        log.error("%s was written but failed validation", result.path)
        return 1
    return 0
