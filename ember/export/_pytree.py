"""Flatten nested tuples, lists and dicts to leaves and back, with a JSON-able spec.

A spec is a nested list: ``["leaf"]``, ``["tuple", [child specs]]``, ``["list", [...]]`` or
``["dict", [keys], [child specs]]`` (keys are strings or ints). Everything that is not a
tuple, list or dict (Tensors, numbers, None, strings) is a leaf.
"""

from __future__ import annotations

__all__ = ["tree_flatten", "tree_unflatten", "tree_map_spec"]


def tree_flatten(obj):
    """``(leaves, spec)`` of ``obj``."""
    leaves = []
    return leaves, _walk(obj, leaves)


# (module-level recursion, not nested closures: a closure that calls itself is a reference
# cycle, which kept each call's leaves -- a compiled function's outputs -- alive until the
# cyclic garbage collector ran)
def _walk(o, leaves):
    if type(o) is tuple or (isinstance(o, tuple) and not hasattr(o, "_fields")):
        return ["tuple", [_walk(x, leaves) for x in o]]
    if isinstance(o, list):
        return ["list", [_walk(x, leaves) for x in o]]
    if isinstance(o, dict):
        keys = list(o)
        for k in keys:
            if not isinstance(k, (str, int)):
                raise TypeError(f"export: dict keys must be str or int, got {k!r}")
        return ["dict", keys, [_walk(o[k], leaves) for k in keys]]
    leaves.append(o)
    return ["leaf"]


def tree_unflatten(leaves, spec):
    """The nested object ``spec`` describes, filled with ``leaves`` in order."""
    return _build(spec, iter(leaves))


def _build(s, it):
    kind = s[0]
    if kind == "leaf":
        return next(it)
    if kind == "tuple":
        return tuple(_build(c, it) for c in s[1])
    if kind == "list":
        return [_build(c, it) for c in s[1]]
    if kind == "dict":
        return {k: _build(c, it) for k, c in zip(s[1], s[2])}
    raise ValueError(f"unknown pytree spec kind {kind!r}")


def tree_map_spec(obj, spec_tree, fn, path="inputs"):
    """Walk ``obj`` and a user structure ``spec_tree`` side by side (as ``dynamic_shapes``
    mirrors the inputs), calling ``fn(leaf, spec, path)`` at each leaf of ``obj``."""
    if isinstance(obj, (tuple, list)):
        if spec_tree is None:
            spec_tree = [None] * len(obj)
        if not isinstance(spec_tree, (tuple, list)) or len(spec_tree) != len(obj):
            raise ValueError(f"dynamic_shapes: {path} is a sequence of {len(obj)} elements but "
                             f"its spec is {spec_tree!r}")
        for i, (o, s) in enumerate(zip(obj, spec_tree)):
            tree_map_spec(o, s, fn, f"{path}[{i}]")
        return
    if isinstance(obj, dict):
        if spec_tree is None:
            spec_tree = {}
        if not isinstance(spec_tree, dict):
            raise ValueError(f"dynamic_shapes: {path} is a dict but its spec is {spec_tree!r}")
        for k, o in obj.items():
            tree_map_spec(o, spec_tree.get(k), fn, f"{path}[{k!r}]")
        return
    fn(obj, spec_tree, path)
