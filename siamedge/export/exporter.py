"""Checkpoint -> ONNX file(s): load strictly, build the contract model(s), save, validate.

The one entry point `siamedge export` calls; it never changes the checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from siamedge import contract as c
from siamedge.export.builder import (
    DEFAULT_INIT_MODEL,
    ExportOptions,
    build_init_model,
    build_model,
)
from siamedge.export.checkpoint import load_network
from siamedge.export.graph_capture import graph_capture_problems
from siamedge.export.outputs import OutputFile, check_outputs, write_all
from siamedge.export.reference_step import ReferenceStep
from siamedge.export.spec import init_model_path
from siamedge.export.trt_check import TrtReport, check_tensorrt
from siamedge.export.validate import Comparison, check_onnx, compare_with_reference

log = logging.getLogger(__name__)

MEGABYTE = 1e6


@dataclass(frozen=True)
class ExportResult:
    """What an export produced and what its checks found.

    export_s: loading, building and saving; validate_s: checker, onnxruntime run, TRT check.
    comparison: None when validation was skipped. init_path / init_size_bytes: the split
    layout's init model (None for one-model layouts); trt_init: its TensorRT check.
    graph_capture: the split track model's CUDA graph check (graph_capture_problems; empty when
    it can be captured), None for the other layouts or without validation.
    """

    path: Path
    size_bytes: int
    export_s: float
    validate_s: float
    options: ExportOptions
    trt: TrtReport | None
    comparison: Comparison | None
    init_path: Path | None = None
    init_size_bytes: int | None = None
    trt_init: TrtReport | None = None
    graph_capture: tuple[str, ...] | None = None

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
            f"{'float16' if opts.fp16 else 'float32'} weights, {layout}, {opts.describe()}",
        ]
        if self.init_path is not None and self.init_size_bytes is not None:
            out.append(
                f"wrote {self.init_path} (its init model): {self.init_size_bytes / MEGABYTE:.1f} MB"
            )
        out += [
            f"export time {self.export_s:.1f} s; validation {self.validate_s:.1f} s",
            f"hyper-parameters: {opts.hp.metadata_json()}",
        ]
        if self.comparison is not None:
            out += self.comparison.lines()
        if self.trt is not None:
            out += self.trt.lines()
        if self.trt_init is not None:
            out += [f"init model: {line}" for line in self.trt_init.lines()]
        if self.graph_capture is not None:
            verdict = f"{len(self.graph_capture)} problem(s)" if self.graph_capture else "OK"
            out.append(f"CUDA graph check (model.cuda_graph): {verdict}")
            out += [f"  problem: {problem}" for problem in self.graph_capture]
        return out


def output_files(out: Path, options: ExportOptions) -> list[OutputFile]:
    """The files an export writes: the model, and for the split layout its init model."""
    files = [OutputFile("the model", out)]
    if options.layout == c.LAYOUT_SPLIT:
        files.append(OutputFile("the split layout's init model", init_model_path(out)))
    return files


def export_checkpoint(
    checkpoint: Path, out: Path, options: ExportOptions, validate: bool = True
) -> ExportResult:
    """Export a SiamMask VOT checkpoint to a contract ONNX model and check the result.

    The split layout writes the track model to `out` and its init model beside it
    (spec.init_model_path). The output paths are checked before any work, and the files are
    written all or none (outputs.write_all).
    """
    files = output_files(out, options)
    check_outputs(checkpoint, files)
    started = time.perf_counter()
    net = load_network(checkpoint)
    split = options.layout == c.LAYOUT_SPLIT
    init_path = init_model_path(out) if split else None
    init_name = init_path.name if init_path is not None else DEFAULT_INIT_MODEL
    model = build_model(net, options, source=checkpoint.name, init_model=init_name)
    contents = [model.SerializeToString]
    init_model = None
    if split:
        init_model = build_init_model(net, options, source=checkpoint.name)
        contents.append(init_model.SerializeToString)
    size, *init_sizes = write_all(list(zip(files, contents, strict=True)))
    init_size = init_sizes[0] if init_sizes else None
    exported = time.perf_counter()
    log.info("exported %s to %s (%.1f MB)", checkpoint, out, size / MEGABYTE)
    trt = trt_init = comparison = graph_capture = None
    if validate:
        try:
            check_onnx(out)
            trt = check_tensorrt(model)
            if init_path is not None and init_model is not None:
                check_onnx(init_path)
                trt_init = check_tensorrt(init_model)
                graph_capture = tuple(graph_capture_problems(model))
                if graph_capture:
                    log.warning("%s cannot run as a CUDA graph: %s", out, "; ".join(graph_capture))
            comparison = compare_with_reference(out, ReferenceStep(net, options.hp), options.fp16)
            for path, report in ((out, trt), (init_path, trt_init)):
                if report is not None and not report.ok:
                    log.warning("%s may not load in TensorRT: %s", path, "; ".join(report.problems))
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM through the CLI
            log.warning(
                "%s is written but was not validated (interrupted); `siamedge inspect %s` checks "
                "its contract",
                out,
                out,
            )
            raise
    return ExportResult(
        path=out,
        size_bytes=size,
        export_s=exported - started,
        validate_s=time.perf_counter() - exported,
        options=options,
        trt=trt,
        comparison=comparison,
        init_path=init_path,
        init_size_bytes=init_size,
        trt_init=trt_init,
        graph_capture=graph_capture,
    )
