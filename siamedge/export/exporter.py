"""Checkpoint -> ONNX file: load strictly, build the contract model, save it, validate it.

The one entry point `siamedge export` calls; it never changes the checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import onnx

from siamedge.errors import ModelError
from siamedge.export.builder import ExportOptions, build_model
from siamedge.export.checkpoint import load_network
from siamedge.export.reference_step import ReferenceStep
from siamedge.export.trt_check import TrtReport, check_tensorrt
from siamedge.export.validate import Comparison, check_onnx, compare_with_reference

log = logging.getLogger(__name__)

MEGABYTE = 1e6


@dataclass(frozen=True)
class ExportResult:
    """What an export produced and what its checks found.

    export_s: loading, building and saving; validate_s: checker, onnxruntime run, TRT check.
    comparison: None when validation was skipped.
    """

    path: Path
    size_bytes: int
    export_s: float
    validate_s: float
    options: ExportOptions
    trt: TrtReport | None
    comparison: Comparison | None

    @property
    def ok(self) -> bool:
        """onnxruntime agrees with PyTorch (or validation was skipped).

        The TensorRT check is advisory: a model for onnxruntime alone may use a newer opset.
        """
        return self.comparison is None or not self.comparison.problems

    def lines(self) -> list[str]:
        """The export report for people."""
        opts = self.options
        layout = "with score" if opts.with_score else "seed layout (no score)"
        out = [
            f"wrote {self.path}: {self.size_bytes / MEGABYTE:.1f} MB, opset {opts.opset}, "
            f"{'float16' if opts.fp16 else 'float32'} weights, {layout}",
            f"export time {self.export_s:.1f} s; validation {self.validate_s:.1f} s",
            f"hyper-parameters: {opts.hp.metadata_json()}",
        ]
        if self.comparison is not None:
            out += self.comparison.lines()
        if self.trt is not None:
            out += self.trt.lines()
        return out


def save_model(model: onnx.ModelProto, out: Path) -> int:
    """Write the model next to `out` and move it into place; returns its size in bytes."""
    partial = out.with_name(out.name + ".partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(model.SerializeToString())
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ModelError(f"cannot write the model to {out}: {exc.strerror}") from None
    return out.stat().st_size


def export_checkpoint(
    checkpoint: Path, out: Path, options: ExportOptions, validate: bool = True
) -> ExportResult:
    """Export a SiamMask VOT checkpoint to a contract ONNX model and check the result."""
    started = time.perf_counter()
    net = load_network(checkpoint)
    model = build_model(net, options, source=checkpoint.name)
    size = save_model(model, out)
    exported = time.perf_counter()
    log.info("exported %s to %s (%.1f MB)", checkpoint, out, size / MEGABYTE)
    trt = comparison = None
    if validate:
        check_onnx(out)
        trt = check_tensorrt(model)
        comparison = compare_with_reference(out, ReferenceStep(net, options.hp), options.fp16)
        if not trt.ok:
            log.warning("%s may not load in TensorRT: %s", out, "; ".join(trt.problems))
    return ExportResult(
        path=out,
        size_bytes=size,
        export_s=exported - started,
        validate_s=time.perf_counter() - exported,
        options=options,
        trt=trt,
        comparison=comparison,
    )
