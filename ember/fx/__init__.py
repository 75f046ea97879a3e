"""``ember.fx``: the graph IR (``Graph``, ``Node``, ``GraphModule``), symbolic tracing
(``symbolic_trace``, ``Tracer``, ``Proxy``, ``wrap``) and graph passes (``Interpreter``,
``Transformer``, ``replace_pattern``, ``passes.shape_prop.ShapeProp``), with PyTorch's names.

The same IR serves every graph consumer in ember (export, jit, the compiler, ONNX,
quantization); see DESIGN.md, "Graphs: one IR, two ways in, many consumers".
"""

from ._symbolic_trace import PH, Tracer, is_fx_tracing, symbolic_trace, wrap
from .graph import Graph, PythonCode
from .graph_module import GraphModule
from .interpreter import Interpreter, Transformer
from .node import Node, has_side_effect, map_arg
from .proxy import Proxy, TraceError, annotate
from .subgraph_rewriter import replace_pattern

__all__ = ["Graph", "GraphModule", "Node", "PythonCode", "Proxy", "Tracer", "TraceError",
           "PH", "symbolic_trace", "wrap", "is_fx_tracing", "map_arg", "has_side_effect",
           "Interpreter", "Transformer", "replace_pattern", "annotate"]
