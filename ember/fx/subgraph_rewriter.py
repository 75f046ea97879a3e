"""``replace_pattern``: find every non-overlapping occurrence of a pattern and replace it.

The pattern and the replacement are functions (or GraphModules) with the same inputs; both
are traced, the pattern's returned node is the *anchor*, and a match grows backwards from a
candidate anchor in the target graph, node by node, until it reaches the pattern's inputs.
A match is rejected when one of its inner nodes is also used outside it (replacing it
would leave that use dangling).
"""

from __future__ import annotations

from typing import NamedTuple

from .graph import Graph
from .graph_module import GraphModule, _copy_attr
from .node import Node

__all__ = ["Match", "replace_pattern"]


class Match(NamedTuple):
    """One occurrence: the target node matching the pattern's output, and the map from
    pattern nodes to target nodes."""
    anchor: Node
    nodes_map: dict


def _as_graph(obj):
    if isinstance(obj, GraphModule):
        return obj.graph, obj
    if isinstance(obj, Graph):
        return obj, None
    from ._symbolic_trace import symbolic_trace
    gm = symbolic_trace(obj)
    return gm.graph, gm


def _has_path(obj, target):
    for atom in target.split("."):
        if not hasattr(obj, atom):
            return False
        obj = getattr(obj, atom)
    return True


def _match(pn, gn, nodes_map):
    """Extend ``nodes_map`` so that pattern node ``pn`` matches graph node ``gn``."""
    if pn in nodes_map:
        return nodes_map[pn] is gn
    if pn.op == "placeholder":
        nodes_map[pn] = gn
        return True
    if pn.op != gn.op or len(pn.args) != len(gn.args) or set(pn.kwargs) != set(gn.kwargs):
        return False
    if pn.op == "call_function" or pn.op == "call_method":
        if pn.target != gn.target:
            return False
    elif pn.target != gn.target:  # call_module / get_attr: the same attribute
        return False
    nodes_map[pn] = gn
    pairs = list(zip(pn.args, gn.args)) + [(pn.kwargs[k], gn.kwargs[k]) for k in pn.kwargs]
    return all(_match_arg(a, b, nodes_map) for a, b in pairs)


def _match_arg(a, b, nodes_map):
    if isinstance(a, Node):
        return isinstance(b, Node) and _match(a, b, nodes_map)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and \
            all(_match_arg(x, y, nodes_map) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and \
            all(_match_arg(a[k], b[k], nodes_map) for k in a)
    return not isinstance(b, Node) and type(a) is type(b) and a == b


def replace_pattern(gm, pattern, replacement):
    """Replace each occurrence of ``pattern`` in ``gm`` by ``replacement``; returns the
    list of ``Match``es (anchor and pattern-to-graph node map). ``gm`` is recompiled."""
    p_graph, _ = _as_graph(pattern)
    r_graph, r_module = _as_graph(replacement)
    p_inputs = [n for n in p_graph.nodes if n.op == "placeholder"]
    r_inputs = [n for n in r_graph.nodes if n.op == "placeholder"]
    if len(p_inputs) != len(r_inputs):
        raise ValueError(f"replace_pattern: the pattern takes {len(p_inputs)} inputs but the "
                         f"replacement takes {len(r_inputs)}")
    p_out = p_graph.output_node().args[0]
    if not isinstance(p_out, Node):
        raise NotImplementedError("replace_pattern: patterns returning several values are "
                                  "not supported; return a single value")
    graph = gm.graph
    matches, taken = [], set()
    for gn in list(graph.nodes):
        nodes_map = {}
        if gn in taken or not _match(p_out, gn, nodes_map):
            continue
        inner = [g for p, g in nodes_map.items() if p.op != "placeholder"]
        if any(g in taken for g in inner):
            continue
        inner_set = set(inner)
        # every inner node other than the anchor may be used only inside the match
        if any(u not in inner_set for g in inner if g is not gn for u in g.users):
            continue
        taken.update(inner)
        matches.append(Match(gn, nodes_map))

    replaced = {}  # an earlier match's anchor -> what replaced it (a later match's input)
    for m in matches:
        def current(n):
            while n in replaced:
                n = replaced[n]
            return n
        val_map = {r: current(m.nodes_map[p]) for p, r in zip(p_inputs, r_inputs)}
        with graph.inserting_before(m.anchor):
            new_out = graph.graph_copy(r_graph, val_map)
        if r_module is not None:
            for n in r_graph.nodes:
                if n.op in ("get_attr", "call_module") and not _has_path(gm, n.target):
                    _copy_attr(r_module, gm, n.target)
        if not isinstance(new_out, Node):
            raise NotImplementedError("replace_pattern: replacements returning several values "
                                      "are not supported; return a single value")
        m.anchor.replace_all_uses_with(new_out)
        replaced[m.anchor] = new_out
        for p in reversed(list(p_graph.nodes)):
            g = m.nodes_map.get(p)
            if p.op != "placeholder" and g is not None and not g.users:
                graph.erase_node(g)
    graph.lint()
    gm.recompile()
    return matches
