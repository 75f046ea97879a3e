"""``ember.fx``: the graph IR (``Graph``, ``Node``, ``GraphModule``), symbolic tracing
(``symbolic_trace``, ``Tracer``, ``Proxy``, ``wrap``) and graph passes (``Interpreter``,
``Transformer``, ``replace_pattern``, ``passes.shape_prop.ShapeProp``), with PyTorch's names.

The same IR serves every graph consumer in ember (export, jit, the compiler, ONNX,
quantization); see DESIGN.md, "Graphs: one IR, two ways in, many consumers".

The IR (``Graph``, ``Node``) loads with the package; the rest loads on first use, so that
``ember.compile``'s first call, which only builds graphs, does not compile the tracer.
"""

from .graph import Graph, PythonCode
from .node import Node, has_side_effect, map_arg

__all__ = ["Graph", "GraphModule", "Node", "PythonCode", "Proxy", "Tracer", "TraceError",
           "PH", "symbolic_trace", "wrap", "is_fx_tracing", "map_arg", "has_side_effect",
           "Interpreter", "Transformer", "replace_pattern", "annotate"]

_LAZY = {"GraphModule": "graph_module", "PH": "_symbolic_trace", "Tracer": "_symbolic_trace",
         "is_fx_tracing": "_symbolic_trace", "symbolic_trace": "_symbolic_trace",
         "wrap": "_symbolic_trace", "Interpreter": "interpreter", "Transformer": "interpreter",
         "Proxy": "proxy", "TraceError": "proxy", "annotate": "proxy",
         "replace_pattern": "subgraph_rewriter"}


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'ember.fx' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
