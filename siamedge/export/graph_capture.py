"""Static check that onnxruntime's CUDA provider can capture a model as one CUDA graph.

Reads the graph only (no GPU, no onnxruntime): never runs or rewrites the model.
"""

from __future__ import annotations

import onnx

from siamedge.export.trt_check import computed_inputs, stored_values

CONTROL_FLOW = frozenset({"If", "Loop", "Scan"})
"""Operators a CUDA graph cannot capture: the launches they make depend on the data."""

HOST_OUTPUTS = frozenset({"Shape", "Size"})
"""Operators whose CUDA kernels write their output in host memory."""

HOST_INPUTS: dict[str, tuple[int, ...]] = {
    "Clip": (1, 2),
    "ConstantOfShape": (0,),
    "Expand": (1,),
    "OneHot": (1,),
    "Pad": (1, 2, 3),
    "Range": (0, 1, 2),
    "ReduceL1": (1,),
    "ReduceL2": (1,),
    "ReduceMax": (1,),
    "ReduceMean": (1,),
    "ReduceMin": (1,),
    "ReduceProd": (1,),
    "ReduceSum": (1,),
    "Reshape": (1,),
    "Resize": (1, 2, 3),
    "Slice": (1, 2, 3, 4),
    "Split": (1,),
    "Squeeze": (1,),
    "Tile": (1,),
    "TopK": (1,),
    "Unsqueeze": (1,),
    "Upsample": (1,),
}
"""Inputs (by position) that onnxruntime's CUDA kernels read in host memory (their kernel
definitions' OrtMemTypeCPUInput). One computed at run time is copied from the GPU, and
onnxruntime places the nodes computing it on the CPU provider; with `enable_cuda_graph` a model
whose nodes are not all on CUDA is refused when the session opens."""


def graph_capture_problems(model: onnx.ModelProto) -> list[str]:
    """Why the CUDA provider could not capture this model as a CUDA graph; empty when nothing
    stands in the way (every node can run on CUDA with its host inputs constant)."""
    stored = stored_values(model)
    problems = []
    for node in model.graph.node:
        if node.op_type in CONTROL_FLOW:
            problems.append(f"{node.op_type} {node.name!r}: control flow")
        if node.op_type in HOST_OUTPUTS:
            problems.append(f"{node.op_type} {node.name!r}: its output is in host memory")
        problems += [
            f"{node.op_type} {node.name!r}: input {position} ({name!r}) is read in host memory "
            "but computed at run time"
            for position, name in computed_inputs(node, HOST_INPUTS.get(node.op_type, ()), stored)
        ]
    return problems
