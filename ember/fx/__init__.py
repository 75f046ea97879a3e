"""``ember.fx``: the graph IR (``Graph``, ``Node``, ``GraphModule``) and symbolic tracing.

The same IR serves every graph consumer in ember (export, jit, the compiler, ONNX,
quantization); see DESIGN.md, "Graphs: one IR, two ways in, many consumers".
"""

from .graph import Graph, PythonCode
from .graph_module import GraphModule
from .node import Node, has_side_effect, map_arg

__all__ = ["Graph", "GraphModule", "Node", "PythonCode", "map_arg", "has_side_effect"]
