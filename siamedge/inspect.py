"""`siamedge inspect MODEL`: the contract check and the model's metadata, for people.

Read-only: opens the model on the CPU and never runs it.
"""

from __future__ import annotations

import argparse
import json

from siamedge import contract as c
from siamedge.engine import describe_layout, inspect_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `siamedge inspect`."""
    parser.add_argument("model", help="ONNX model file or `builtin`")


def _shape(spec: c.TensorSpec) -> str:
    return "[" + ", ".join(str(dim) for dim in spec.shape) + "]"


def run(args: argparse.Namespace) -> int:
    """Print the report; a contract violation raises ModelError (exit status 1)."""
    info = inspect_model(args.model)
    contract = info.contract
    lines = [f"model: {info.path}", f"producer: {info.producer or 'unknown'}", "inputs:"]
    lines += [f"  {spec.name:<12} {spec.dtype:<8} {_shape(spec)}" for spec in info.inputs]
    lines.append("outputs:")
    lines += [f"  {spec.name:<12} {spec.dtype:<8} {_shape(spec)}" for spec in info.outputs]
    lines += [
        "contract: OK",
        f"  layout: {describe_layout(contract)}",
        f"  network precision: {contract.precision}",
        f"  search crop {contract.instance_size}, exemplar/mask {contract.exemplar_size}, "
        f"score grid {contract.score_size}x{contract.score_size}, stride {contract.total_stride}",
        f"  template features {list(contract.feature_shape)}",
        f"  score output: {'yes (lost-target detection on)' if contract.has_score else 'no'}",
        f"  mask threshold: {contract.seg_thr if contract.seg_thr is not None else 'not recorded'}",
        "metadata:",
    ]
    for key, value in sorted(contract.metadata.items()):
        shown = (
            json.dumps(json.loads(value), sort_keys=True)
            if key == c.META_HYPER_PARAMETERS
            else value
        )
        lines.append(f"  {key}: {shown}")
    if not contract.metadata:
        lines.append("  (none)")
    if contract.init_model is not None:
        lines.append(f"init model: {info.path.parent / contract.init_model}")
    print("\n".join(lines))
    return 0
