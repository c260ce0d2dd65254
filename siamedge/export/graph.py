"""A small ONNX graph writer: named nodes in a branch, and one store of shared initializers.

Writes protobuf objects only: never runs, checks or saves a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT
FLOAT16 = TensorProto.FLOAT16
INT64 = TensorProto.INT64

KEEP_DIM = 0
"""Reshape's `0`: copy that dimension from the input (the batch, whatever its size)."""

NUMPY_OF: dict[int, type[np.generic]] = {FLOAT: np.float32, FLOAT16: np.float16, INT64: np.int64}


class Initializers:
    """Weights stored once in the main graph; both If branches read them from the outer scope."""

    def __init__(self) -> None:
        self._arrays: dict[str, NDArray[Any]] = {}

    def add(self, name: str, array: NDArray[Any]) -> str:
        """Store a named tensor; adding the same name twice keeps the first."""
        if name not in self._arrays:
            self._arrays[name] = np.array(array, order="C")
        return name

    def tensors(self) -> list[onnx.TensorProto]:
        """Every stored tensor as an ONNX initializer, in insertion order."""
        return [numpy_helper.from_array(array, name) for name, array in self._arrays.items()]

    @property
    def nbytes(self) -> int:
        """Total size of the stored tensors."""
        return sum(array.nbytes for array in self._arrays.values())


class Branch:
    """The nodes of one graph (an If branch); value names are `<prefix>/<op><n>`.

    Small constants (shapes, indices, anchors) are Constant nodes inside the branch, so shape
    inference sees their values and every inferred shape stays static; weights live in `store`.
    """

    def __init__(self, prefix: str, store: Initializers) -> None:
        self.prefix = prefix
        self.store = store
        self.nodes: list[onnx.NodeProto] = []
        self._constants: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def _name(self, op_type: str) -> str:
        return f"{self.prefix}/{op_type}{len(self.nodes)}"

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        """Append a one-output node; returns its output's name."""
        return self.ops(op_type, inputs, 1, **attrs)[0]

    def ops(self, op_type: str, inputs: Sequence[str], count: int, **attrs: Any) -> list[str]:
        """Append a node with `count` outputs; returns their names."""
        name = self._name(op_type)
        outputs = [name] if count == 1 else [f"{name}_{i}" for i in range(count)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, name=name, **attrs))
        return outputs

    def named(self, op_type: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        """Append a one-output node whose output has a given name (branch outputs)."""
        self.nodes.append(
            helper.make_node(op_type, list(inputs), [output], name=self._name(op_type), **attrs)
        )
        return output

    def const(self, values: Any, dtype: type[np.generic], hint: str = "const") -> str:
        """A constant of the branch, one Constant node per distinct value."""
        # np.array, not np.ascontiguousarray: the latter turns scalars into shape (1,)
        array = np.array(values, dtype=dtype, order="C")
        key = (array.dtype.str, array.shape, array.tobytes())
        name = self._constants.get(key)
        if name is None:
            name = f"{self.prefix}/{hint}{len(self.nodes)}"
            self._constants[key] = name
            tensor = numpy_helper.from_array(array, name)
            self.nodes.append(helper.make_node("Constant", [], [name], name=name, value=tensor))
        return name

    def ints(self, *values: int) -> str:
        """A 1-D int64 constant (shapes, axes, indices)."""
        return self.const(list(values), np.int64, "ints")

    def cast(self, value: str, current: int, to: int) -> str:
        """value cast to another element type; the value itself when the types agree."""
        return value if current == to else self.op("Cast", [value], to=to)

    def reshape(self, value: str, *shape: int) -> str:
        """value reshaped to a static shape."""
        return self.op("Reshape", [value, self.ints(*shape)])

    def reshape_keep(self, value: str, *shape: int) -> str:
        """value reshaped to [N, *shape], N copied from its first dimension (any batch size)."""
        return self.op("Reshape", [value, self.ints(KEEP_DIM, *shape)])

    def slice(self, value: str, axis: int, start: int, end: int) -> str:
        """value[start:end] along one axis (constant bounds, so the shape stays static)."""
        return self.op("Slice", [value, self.ints(start), self.ints(end), self.ints(axis)])

    def unsqueeze(self, value: str, *axes: int) -> str:
        """value with new axes of size 1 (constant axes, as TensorRT needs)."""
        return self.op("Unsqueeze", [value, self.ints(*axes)])

    def squeeze(self, value: str, *axes: int) -> str:
        """value without the given axes of size 1 (constant axes, as TensorRT needs)."""
        return self.op("Squeeze", [value, self.ints(*axes)])

    def graph(self, outputs: Sequence[onnx.ValueInfoProto]) -> onnx.GraphProto:
        """The branch as a graph with no inputs of its own (it reads the outer scope)."""
        return helper.make_graph(self.nodes, self.prefix, [], list(outputs))
