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

    def walk(o):
        if type(o) is tuple or (isinstance(o, tuple) and not hasattr(o, "_fields")):
            return ["tuple", [walk(x) for x in o]]
        if isinstance(o, list):
            return ["list", [walk(x) for x in o]]
        if isinstance(o, dict):
            keys = list(o)
            for k in keys:
                if not isinstance(k, (str, int)):
                    raise TypeError(f"export: dict keys must be str or int, got {k!r}")
            return ["dict", keys, [walk(o[k]) for k in keys]]
        leaves.append(o)
        return ["leaf"]
    spec = walk(obj)
    return leaves, spec


def tree_unflatten(leaves, spec):
    """The nested object ``spec`` describes, filled with ``leaves`` in order."""
    it = iter(leaves)

    def build(s):
        kind = s[0]
        if kind == "leaf":
            return next(it)
        if kind == "tuple":
            return tuple(build(c) for c in s[1])
        if kind == "list":
            return [build(c) for c in s[1]]
        if kind == "dict":
            return {k: build(c) for k, c in zip(s[1], s[2])}
        raise ValueError(f"unknown pytree spec kind {kind!r}")
    return build(spec)


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
