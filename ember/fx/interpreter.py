"""``Interpreter`` runs a GraphModule node by node; ``Transformer`` rebuilds it as it runs.

Each opcode has a method of its own (``placeholder``, ``get_attr``, ``call_function``,
``call_method``, ``call_module``, ``output``) taking ``(target, args, kwargs)`` with the
arguments already evaluated, so a pass overrides the one it cares about. ``run_node`` ties
them together and is the place to look at every value (``ShapeProp`` does).
"""

from __future__ import annotations

import inspect

from .graph import Graph
from .graph_module import GraphModule
from .node import map_aggregate, map_arg
from .proxy import Proxy

__all__ = ["Interpreter", "Transformer"]


class Interpreter:
    """Run ``module``'s graph on concrete values: ``Interpreter(gm).run(*args)``.

    With ``garbage_collect_values`` (the default) each value is dropped after its last use,
    as the generated code does."""

    def __init__(self, module, garbage_collect_values=True, graph=None):
        self.module = module
        self.submodules = dict(module.named_modules())
        self.graph = graph if graph is not None else module.graph
        self.env = {}
        self.name = "Interpreter"
        self.garbage_collect_values = garbage_collect_values
        self.extra_traceback = True
        if garbage_collect_values:
            # the nodes whose values die after each node runs
            last_use, self.user_to_last_uses = {}, {}
            for node in reversed(list(self.graph.nodes)):
                for n in node.all_input_nodes:
                    if n not in last_use:
                        last_use[n] = node
                        self.user_to_last_uses.setdefault(node, []).append(n)

    def run(self, *args, initial_env=None, enable_io_processing=True):
        """Run the graph on ``args`` and return what its output node returns."""
        self.env = dict(initial_env) if initial_env is not None else {}
        self.args_iter = iter(args)
        for node in self.graph.nodes:
            if node in self.env:
                continue  # supplied by initial_env
            try:
                self.env[node] = self.run_node(node)
            except Exception as e:
                if self.extra_traceback and not getattr(e, "_fx_noted", False):
                    note = f"While executing {node.format_node()}"
                    if node.stack_trace:
                        note += f"\nOriginal traceback:\n{node.stack_trace}"
                    e.add_note(note)
                    e._fx_noted = True
                raise
            if self.garbage_collect_values:
                for dead in self.user_to_last_uses.get(node, ()):
                    del self.env[dead]
            if node.op == "output":
                return self.env[node]
        return None

    def run_node(self, n):
        """Evaluate node ``n`` with its arguments fetched from the environment."""
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        return getattr(self, n.op)(n.target, args, kwargs)

    # ------------------------------------------------------------------ one per opcode
    def placeholder(self, target, args, kwargs):
        """The next positional input (or the placeholder's default)."""
        if target.startswith("**"):  # ``**kw``: a dict passed as the last positional input
            rest = list(self.args_iter)
            return dict(rest[0]) if rest and isinstance(rest[0], dict) else {}
        if target.startswith("*"):
            return list(self.args_iter)
        try:
            return next(self.args_iter)
        except StopIteration:
            if args:
                return args[0]
            raise RuntimeError(f"Expected positional argument for parameter {target}, but "
                               "one was not passed in!") from None

    def get_attr(self, target, args, kwargs):
        return self.fetch_attr(target)

    def call_function(self, target, args, kwargs):
        return target(*args, **kwargs)

    def call_method(self, target, args, kwargs):
        self_obj, *rest = args
        return getattr(self_obj, target)(*rest, **kwargs)

    def call_module(self, target, args, kwargs):
        return self.fetch_attr(target)(*args, **kwargs)

    def output(self, target, args, kwargs):
        return args[0]

    # ------------------------------------------------------------------ helpers
    def fetch_attr(self, target):
        """The attribute of the module at dotted path ``target``."""
        obj = self.module
        atoms = target.split(".")
        for i, atom in enumerate(atoms):
            if not hasattr(obj, atom):
                raise RuntimeError("Node referenced nonexistent target "
                                   f"{'.'.join(atoms[:i + 1])}")
            obj = getattr(obj, atom)
        return obj

    def fetch_args_kwargs_from_env(self, n):
        """``n``'s args and kwargs with every node replaced by its value."""
        return self.map_nodes_to_values(n.args, n), self.map_nodes_to_values(n.kwargs, n)

    def map_nodes_to_values(self, args, n):
        def load(node):
            if node not in self.env:
                raise RuntimeError(f"Node {n} referenced nonexistent value {node}! Run "
                                   "Graph.lint() to diagnose such issues")
            return self.env[node]
        return map_arg(args, load)


class Transformer(Interpreter):
    """Run the graph on Proxies, building a new graph: override a method to rewrite the
    nodes of that opcode; ``transform()`` returns the new GraphModule."""

    def __init__(self, module):
        super().__init__(module)
        from ._symbolic_trace import Tracer
        self.new_graph = Graph()

        class TransformerTracer(Tracer):
            def __init__(tracer, graph):
                super().__init__()
                tracer.graph = graph
                tracer.root = module
                tracer._tensor_names = {id(t): name for name, t in
                                        list(module.named_parameters())
                                        + list(module.named_buffers())}

            def is_leaf_module(tracer, m, qualname):
                return True

        self.tracer = TransformerTracer(self.new_graph)

    def placeholder(self, target, args, kwargs):
        default = args[0] if args else inspect.Signature.empty
        return Proxy(self.new_graph.placeholder(target, default_value=default), self.tracer)

    def get_attr(self, target, args, kwargs):
        return Proxy(self.new_graph.get_attr(target), self.tracer)

    def call_module(self, target, args, kwargs):
        submod = self.fetch_attr(target)
        return self.tracer.call_module(submod, submod.forward, args, kwargs)

    def call_function(self, target, args, kwargs):
        return self.tracer.create_proxy("call_function", target, args, kwargs)

    def call_method(self, target, args, kwargs):
        return self.tracer.create_proxy("call_method", target, args, kwargs)

    def transform(self):
        """Run the rewrite and return the new ``GraphModule``."""
        result = super().run(enable_io_processing=False)
        if result is not None:
            def strip(a):
                return a.node if isinstance(a, Proxy) else a
            self.new_graph.output(map_aggregate(result, strip))
        return GraphModule(self.module, self.new_graph, type(self.module).__name__)
