"""``ember._dynamo``: PyTorch's ``torch._dynamo`` names over ember's compiler: ``config``
(``cache_size_limit``), ``explain``, ``reset``, ``disable``, ``allow_in_graph``, ``exc``."""

from __future__ import annotations

import types

from ..compiler import allow_in_graph, disable, is_compiling, reset
from ..compiler._core import Unsupported
from . import config

__all__ = ["config", "explain", "reset", "disable", "allow_in_graph", "is_compiling", "exc",
           "ExplainOutput"]

exc = types.SimpleNamespace(Unsupported=Unsupported)


class ExplainOutput:
    """What ``explain(fn)(*args)`` found: ``graphs``, ``graph_count``, ``graph_break_count``,
    ``break_reasons``, ``ops_per_graph``, ``out_guards``."""

    def __init__(self, graphs, breaks, guards, graph_count=None):
        self.graphs = graphs
        self.graph_count = len(graphs) if graph_count is None else graph_count
        self.break_reasons = list(breaks)
        self.graph_break_count = len(breaks)
        self.ops_per_graph = [[n.target for n in g.nodes if n.op == "call_function"]
                              for g in graphs]
        self.out_guards = guards

    def __str__(self):
        lines = [f"Graph Count: {self.graph_count}",
                 f"Graph Break Count: {self.graph_break_count}",
                 f"Op Count: {sum(len(o) for o in self.ops_per_graph)}"]
        if self.break_reasons:
            lines.append("Break Reasons:")
            lines += [f"  {r}" for r in self.break_reasons]
        return "\n".join(lines)


def explain(fn, *extra_args, **extra_kwargs):
    """``explain(fn)(*args, **kwargs)``: capture ``fn`` on these inputs (running it once) and
    report the graphs captured and what, if anything, kept it from being one graph.

    A break splits a capture into segments (``graph_count`` counts segments: a capture with
    one break is two graphs); a break that cannot be split safely makes the function run
    eagerly with each module it calls compiled as a region (their graphs are listed too).
    Each reason names the user's line."""
    from ..compiler._core import CompiledFunction

    def inner(*args, **kwargs):
        c = CompiledFunction(fn, backend="aot_eager")
        c.warmed = True  # capture on this call even where an optimizer has no state yet
        c(*args, **kwargs)
        graphs = c.all_graphs()
        splits = sum(len(e.breaks) for e in c.entries)
        splits += sum(len(e.breaks) for r in c.regions.values() for e in r.entries)
        return ExplainOutput(graphs, c.break_reasons(), [e.cap.guards for e in c.entries],
                             graph_count=len(graphs) + splits)
    if extra_args or extra_kwargs:
        return inner(*extra_args, **extra_kwargs)
    return inner


def assume_constant_result(fn):
    """Mark ``fn``'s result as a constant of the compiled graph. ember's capture already runs
    non-tensor Python calls once while tracing and bakes their results into the graph, so
    ``fn`` is returned as it is."""
    return fn


def __getattr__(name):
    # OptimizedModule: the class of ember.compile(module), built on first use
    if name == "OptimizedModule":
        from ..compiler._api import _optimized_module_class
        return _optimized_module_class()
    raise AttributeError(f"module 'ember._dynamo' has no attribute '{name}'")
