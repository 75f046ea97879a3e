"""Graph passes run on a captured graph before code generation.

Each pass is a plain loop over ``graph.nodes`` that edits the graph in place and returns how
many nodes it changed. Their order in ``optimize``: constant folding, common-subexpression
elimination, dead-code elimination (the first two leave dead nodes behind).

What makes a node safe to touch (the rules every pass shares):

* *pure*: a ``call_function`` node that is not impure (``Node.is_impure``: in-place writes,
  gradient and optimizer updates, grad-mode switches, graph breaks, random draws);
* *not aliased by a write*: no in-place node writes into its value or into a view of it
  (``mutated_aliases``), since folding or merging it would let the write reach the other uses;
* *not an output*: two outputs that eager returns as distinct tensors stay distinct.
"""

from __future__ import annotations

import operator

from .._tensor import Tensor
from ..export import _capture

__all__ = ["optimize", "constant_fold", "cse", "dce", "mutated_aliases", "is_pure"]


def is_pure(n):
    """Whether ``n`` only computes a value (see the module doc)."""
    return n.op == "call_function" and not n.is_impure(True)


def _is_view(n):
    cls = getattr(n.target, "__self__", None)
    return n.target is operator.getitem or bool(isinstance(cls, type) and
                                                getattr(cls, "view", False))


def mutated_aliases(graph):
    """Nodes whose value may be written in place after it is computed: targets of in-place
    nodes and of ``set_grad`` (the stored gradient is accumulated into later), with every
    node they are views of and every view taken of them."""
    roots = []
    for n in graph.nodes:
        if n.op != "call_function":
            continue
        t = n.target
        if getattr(t, "op", None) is not None and _capture._INPLACE.get(t.op) is t:
            roots.append(n.args[0])
        elif t is _capture.set_grad:
            roots.append(n.args[1])
        elif t is _capture.accumulate_grad:
            roots.append(n)  # the grad it returns is accumulated into by later steps
    from ..fx import Node
    out, stack = set(), [r for r in roots if isinstance(r, Node)]
    while stack:
        n = stack.pop()
        if n in out:
            continue
        out.add(n)
        if _is_view(n) and n.args and isinstance(n.args[0], Node):
            stack.append(n.args[0])         # the base a view writes through to
        stack.extend(u for u in n.users if _is_view(u))  # views that see the write
    return out


def _outputs(graph):
    from ..fx import Node, map_arg
    found = set()
    map_arg(graph.output_node().args, lambda a: found.add(a) or a)
    return {a for a in found if isinstance(a, Node)}


# ---------------------------------------------------------------------- constant folding
def constant_fold(graph, attrs, foldable):
    """Evaluate pure nodes whose inputs are all constants once, now, and replace each by a
    new constant (``get_attr`` of ``_folded_constantN`` in ``attrs``). ``foldable(name)``
    says whether ``get_attr`` target ``name`` is a constant that never changes (not a
    parameter, buffer or optimizer state, which replays update)."""
    from ..autograd.grad_mode import no_grad
    from ..fx import map_arg
    skip = mutated_aliases(graph) | _outputs(graph)
    const = {}   # node -> value
    for n in graph.nodes:
        if n.op == "get_attr" and n not in skip and foldable(n.target):
            v = attrs.get(n.target)
            if isinstance(v, Tensor) and not v.requires_grad:
                const[n] = v
    changed = 0
    for n in list(graph.nodes):
        if not is_pure(n) or n in skip or n.target is _capture.sym_size:
            continue
        ins = n.all_input_nodes
        if not all(a in const for a in ins):
            continue
        if not ins and not _creates_tensor(n):
            continue
        try:
            with no_grad():
                v = n.target(*map_arg(n.args, const.__getitem__),
                             **map_arg(n.kwargs, const.__getitem__))
        except Exception:  # noqa: BLE001 - an op that fails now fails at replay too
            continue
        if not isinstance(v, Tensor):
            continue
        name = f"_folded_constant{sum(1 for k in attrs if k.startswith('_folded_constant'))}"
        attrs[name] = v
        with graph.inserting_before(n):
            new = graph.get_attr(name)
        new.meta.update(n.meta)
        n.replace_all_uses_with(new)
        graph.erase_node(n)
        const[new] = v
        changed += 1
    return changed


def _creates_tensor(n):
    """An op with no tensor inputs (``arange``, ``full``): foldable when it is an op class."""
    cls = getattr(n.target, "__self__", None)
    return isinstance(cls, type)


# ---------------------------------------------------------------------- CSE
def _key(a):
    from ..fx import Node
    if isinstance(a, Node):
        return ("node", a)
    if isinstance(a, (list, tuple)):
        return (type(a).__name__,) + tuple(_key(x) for x in a)
    if isinstance(a, dict):
        return ("dict",) + tuple(sorted((k, _key(v)) for k, v in a.items()))
    if isinstance(a, slice):
        return ("slice", _key(a.start), _key(a.stop), _key(a.step))
    if isinstance(a, float):
        return ("float", a.hex())  # 0.0 and -0.0 differ; nan equals itself here
    return (type(a).__name__, a)


def cse(graph):
    """Merge pure nodes that compute the same function of the same arguments."""
    skip = mutated_aliases(graph) | _outputs(graph)
    seen, changed = {}, 0
    for n in list(graph.nodes):
        if n.op == "call_function" and not is_pure(n):
            seen.clear()  # a write or an update: values computed after it may differ
            continue
        if n.op != "call_function" or n in skip:
            continue
        try:
            k = (n.target, _key(n.args), _key(n.kwargs))
            hash(k)
        except TypeError:  # an unhashable literal argument
            continue
        first = seen.get(k)
        if first is None:
            seen[k] = n
            continue
        n.replace_all_uses_with(first)
        graph.erase_node(n)
        changed += 1
    return changed


# ---------------------------------------------------------------------- DCE
def dce(graph):
    """Remove pure nodes whose values nothing uses (impure ones always stay)."""
    before = len(graph.nodes)
    graph.eliminate_dead_code()
    for n in list(graph.nodes):  # constants nothing reads any more
        if n.op == "get_attr" and not n.users:
            graph.erase_node(n)
    return before - len(graph.nodes)


def optimize(graph, attrs, foldable):
    """Run the passes in order; returns ``{pass name: nodes changed}``."""
    stats = {"constant_fold": constant_fold(graph, attrs, foldable), "cse": cse(graph)}
    stats["dce"] = dce(graph)
    graph.lint()
    return stats
