"""``ShapeProp``: run a GraphModule on example inputs and record each node's tensor metadata.

After ``ShapeProp(gm).propagate(*args)`` every node that produced tensors has
``node.meta["tensor_meta"]`` (a ``TensorMetadata``, or a structure of them matching the
node's output) and ``node.meta["val"]`` (the value itself, detached: a tensor-like record of
shape, dtype and strides for consumers). The values come from running on the real example
inputs; no meta device is needed.
"""

from __future__ import annotations

from typing import NamedTuple

from ..._tensor import Tensor
from ..interpreter import Interpreter
from ..node import map_aggregate

__all__ = ["ShapeProp", "TensorMetadata", "extract_tensor_metadata"]


class TensorMetadata(NamedTuple):
    """What a graph consumer may rely on about a tensor value."""
    shape: tuple
    dtype: object
    requires_grad: bool
    stride: tuple
    memory_format: object
    is_quantized: bool
    qparams: dict


def extract_tensor_metadata(t):
    """The ``TensorMetadata`` of tensor ``t``."""
    return TensorMetadata(t.shape, t.dtype, t.requires_grad, tuple(t.stride()), None, False,
                          {})


class ShapeProp(Interpreter):
    """An Interpreter that records ``tensor_meta``, ``val`` and ``type`` on every node."""

    def __init__(self, gm, fake_mode=None):
        super().__init__(gm)
        if fake_mode is not None:
            raise NotImplementedError("ShapeProp: fake_mode is not supported; shapes are "
                                      "propagated on the real example inputs")

    def run_node(self, n):
        result = super().run_node(n)
        found = []

        def meta(x):
            if isinstance(x, Tensor):
                found.append(True)
                return extract_tensor_metadata(x)
            return x
        tm = map_aggregate(result, meta)
        if found:
            n.meta["tensor_meta"] = tm
            n.meta["val"] = map_aggregate(
                result, lambda x: x.detach() if isinstance(x, Tensor) else x)
        n.meta["type"] = type(result)
        return result

    def propagate(self, *args):
        """Run the graph on ``args``, filling each node's ``meta``; returns the output."""
        return super().run(*args)
