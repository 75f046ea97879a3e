"""Graph breaks: what ``ember.compile`` does where Python reads a tensor's value.

Two mechanisms, tried in this order:

1. **Split in the graph** (``BreakRecorder``). During capture, a data-dependent read
   (``.item()``, ``bool(t)``/``if t:``, ``int()``, ``float()``, ``.tolist()``, ``t`` as an
   index) is not refused: it is recorded as a ``graph_break`` node, the value read is what the
   Python code sees, and capture goes on. The captured graph is therefore a chain of segments
   separated by break nodes; its replay runs segment after segment, and each break node reads
   the value again and compares it with the value the capture saw (the branch taken). A
   different value raises ``BranchMiss``: the segments before it did nothing but compute
   (enforced at capture), so the caller restores the random generator and tries the next
   capture of the same function or captures again: each capture is one path through the
   function's Python control flow, keyed by the values read.
   A value that Python only *returns* (``return loss.item()`` at the end of a training step,
   with no op recorded after it) is not keyed: the break node's value is the output.

2. **Module regions** (``run_with_regions``). Where a split cannot be made safe (a keyed read
   after the step already updated parameters, printing a tensor, ``.numpy()``), the function
   runs eagerly and every module it calls runs as its own compiled function (which may again
   split or fall back to regions for its submodules).

Both are reported by ``ember._dynamo.explain``; ``fullgraph=True`` turns either into an error
naming the user's line.
"""

from __future__ import annotations

import math

from .._tensor import Tensor
from ..export import _capture

__all__ = ["graph_break", "BranchMiss", "BreakRecorder", "Break", "run_with_regions",
           "impure_before", "finish_breaks"]

# readers that return a Python value the replay can read again and compare
_BREAKABLE = {"item": ".item()", "__bool__": "bool()", "__int__": "int()",
              "__float__": "float()", "tolist": ".tolist()", "__index__": "using as an index"}
_RETURNABLE = ("item", "__float__", "__int__")


class BranchMiss(Exception):
    """A replayed ``graph_break`` read a value other than the one its capture saw."""

    def __init__(self, index, value):
        super().__init__(f"graph break {index}: read {value!r}")
        self.index, self.value = index, value


def _same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def graph_break(t, reader, expected, index, keyed=True):
    """Graph node: read ``t``'s value as the Python code did (``reader`` names the Tensor
    method: ``item``, ``__bool__`` ...); with ``keyed``, a value other than ``expected`` raises
    ``BranchMiss`` (the rest of the graph was captured for ``expected``)."""
    value = getattr(Tensor, reader)(t)
    if keyed and not _same(value, expected):
        raise BranchMiss(index, value)
    return value


graph_break._fx_impure = True

# nodes that may run before a keyed break: they only compute (a miss can be retried)
_PURE_EFFECTS = (graph_break, _capture.set_grad_enabled, _capture.random_op)


def _is_effect(n):
    return n.op == "call_function" and n.target not in _PURE_EFFECTS and n.is_impure(False)


class Break:
    """One recorded break: its node, which reader, the user's line, the value read."""

    def __init__(self, node, reader, line, value, after_effect, after_random):
        self.node, self.reader, self.line, self.value = node, reader, line, value
        self.after_effect, self.after_random = after_effect, after_random
        self.keyed = True

    def reason(self):
        kind = "keyed on the value read" if self.keyed else "value returned"
        return f"graph break: {_BREAKABLE[self.reader]} of a tensor ({self.line}) [{kind}]"


class BreakRecorder:
    """The capture's ``on_value_read`` hook: records each data-dependent read as a
    ``graph_break`` node and hands Python the real value."""

    def __init__(self, fullgraph):
        self.fullgraph = fullgraph
        self.breaks: list = []

    def __call__(self, mode, t, reader, what, orig, args, kwargs):
        line = _capture.user_frame()
        if reader not in _BREAKABLE or args or kwargs or mode.in_op:
            mode.check_value_read(t, what)  # raises DataDependentError naming the line
        if self.fullgraph:
            raise _capture.DataDependentError(
                f"graph break: {what} of a tensor that depends on the inputs ({line})")
        value = orig(t)
        t_node = mode.arg(t)
        mode._sync_grad_mode()
        nodes = list(mode.graph.nodes)
        effect = any(_is_effect(n) for n in nodes)
        rand = any(n.op == "call_function" and n.target is _capture.random_op for n in nodes)
        node = mode.graph.call_function(graph_break, (t_node, reader, value, len(self.breaks)))
        self.breaks.append(Break(node, reader, line, value, effect, rand))
        return value


def _small_int(v):
    return type(v) is int and -5 <= v <= 256  # CPython shares these objects


def finish_breaks(graph, breaks):
    """After capture: let values that are only returned flow out of the graph unkeyed, and
    refuse (``DataDependentError``) a keyed break that follows a state update, since a miss
    there could not be retried. Returns whether any keyed break needs the random generator
    restored on a miss."""
    if not breaks:
        return False
    out = graph.output_node()
    leaves = list(out.args[0])
    by_id = {id(b.value): b for b in breaks if b.reader in _RETURNABLE
             and not _small_int(b.value) and type(b.value) is not bool}
    returned = set()
    for i, leaf in enumerate(leaves):
        b = by_id.get(id(leaf))
        if b is not None and b.value is leaf:
            leaves[i] = b.node
            returned.add(b)
    out.args = (tuple(leaves),)
    others = any(not isinstance(v, _capture_node_types()) and v is not None for v in leaves)
    order = {n: i for i, n in enumerate(graph.nodes)}
    ops_after = {}
    last_op = -1
    for n in graph.nodes:
        if n.op == "call_function" and n.target not in (graph_break,
                                                        _capture.set_grad_enabled):
            last_op = order[n]
    for b in breaks:
        ops_after[b] = last_op > order[b.node]
        if b in returned and not ops_after[b] and not others:
            b.keyed = False
            b.node.args = b.node.args[:4] + (False,)
    for b in breaks:
        if b.keyed and b.after_effect:
            raise _capture.DataDependentError(
                f"{_BREAKABLE[b.reader]} of a tensor after the function updated state "
                f"(an optimizer step, an in-place write or a gradient) and the result is used "
                f"further ({b.line}); a replay could not retry another branch, so this "
                f"function runs eagerly with its modules compiled")
    return any(b.keyed and b.after_random for b in breaks)


def _capture_node_types():
    from ..fx import Node
    return (Node,)


def impure_before(graph, node):
    """Whether a state-updating node precedes ``node`` in ``graph``."""
    for n in graph.nodes:
        if n is node:
            return False
        if _is_effect(n):
            return True
    return False


# ---------------------------------------------------------------------- module regions
_REGION_CALL: list = []  # the installed Module.__call__ replacement, while one is active


def run_with_regions(owner, args, kwargs):
    """Run ``owner.fn`` eagerly with every module it calls compiled as its own region."""
    from ..nn.modules.module import Module
    from ._core import _DISABLED, CompiledFunction
    if _REGION_CALL:  # an enclosing function already routes module calls
        return owner.fn(*args, **kwargs)
    orig_call = Module.__call__
    regions = owner.regions

    def region_call(mod, *a, **k):
        d = mod.__dict__
        if _capture._ACTIVE or _DISABLED[0] or mod is owner.module or d["_forward_hooks"] \
                or d["_forward_pre_hooks"] or d["_backward_hooks"] \
                or d["_backward_pre_hooks"] or isinstance(mod, _optimized()):
            return orig_call(mod, *a, **k)
        cf = regions.get(id(mod))
        if cf is None or cf.module is not mod:
            cf = CompiledFunction(_region_fn(orig_call, mod), module=mod,
                                  backend=owner.backend, mode=owner.mode,
                                  options=owner.options)
            cf.__qualname__ = f"{type(mod).__name__}.forward"
            regions[id(mod)] = cf
        return cf(*a, **k)

    Module.__call__ = region_call
    _REGION_CALL.append(region_call)
    try:
        return owner.fn(*args, **kwargs)
    finally:
        _REGION_CALL.pop()
        Module.__call__ = orig_call


def _optimized():
    from ._api import _optimized_module_class
    return _optimized_module_class()


def _region_fn(orig_call, mod):
    def region(*a, **k):
        return orig_call(mod, *a, **k)
    return region
