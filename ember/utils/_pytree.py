"""``torch.utils._pytree``: nested containers (tuples, lists, dicts, namedtuples, ...) as a
flat list of leaves plus a ``TreeSpec`` that rebuilds them, with PyTorch's names and rules.

Containers are nodes when their type is registered (``register_pytree_node``); everything else
is a leaf (``None`` too, as in PyTorch 2.13). Libraries register their own output classes
(Hugging Face's ``ModelOutput``) and flatten them through here."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, defaultdict, deque, namedtuple
from typing import Any, Callable, NamedTuple

__all__ = ["LeafSpec", "TreeSpec", "register_pytree_node", "tree_all", "tree_any",
           "tree_flatten", "tree_flatten_with_path", "tree_leaves", "tree_map", "tree_map_",
           "tree_map_only", "tree_structure", "tree_unflatten", "treespec_dumps",
           "keystr", "MappingKey", "SequenceKey", "GetAttrKey"]


PyTree = Any
Context = Any


class _Node(NamedTuple):
    flatten_fn: Callable
    unflatten_fn: Callable
    flatten_with_keys_fn: Callable | None = None
    serialized_type_name: str | None = None


SUPPORTED_NODES: dict[type, _Node] = {}


def register_pytree_node(cls, flatten_fn, unflatten_fn, *, serialized_type_name=None,
                         to_dumpable_context=None, from_dumpable_context=None,
                         flatten_with_keys_fn=None):
    """Make ``cls`` a container: ``flatten_fn(obj) -> (children, context)`` and
    ``unflatten_fn(children, context) -> obj``. Registering a type twice is an error, as in
    PyTorch."""
    if cls in SUPPORTED_NODES:
        raise ValueError(f"{cls} is already registered as a pytree node.")
    SUPPORTED_NODES[cls] = _Node(flatten_fn, unflatten_fn, flatten_with_keys_fn,
                                 serialized_type_name)


# ---------------------------------------------------------------------- key paths
@dataclasses.dataclass(frozen=True)
class SequenceKey:
    idx: int

    def __str__(self):
        return f"[{self.idx!r}]"

    def get(self, seq):
        return seq[self.idx]


@dataclasses.dataclass(frozen=True)
class MappingKey:
    key: Any

    def __str__(self):
        return f"[{self.key!r}]"

    def get(self, mapping):
        return mapping[self.key]


@dataclasses.dataclass(frozen=True)
class GetAttrKey:
    name: str

    def __str__(self):
        return f".{self.name}"

    def get(self, obj):
        return getattr(obj, self.name)


def keystr(kp):
    """A key path as the Python accessor it stands for: ``[0]['a'].b``."""
    return "".join(str(k) for k in kp)


# ---------------------------------------------------------------------- built-in nodes
def _seq_flatten(xs):
    return list(xs), None


def _dict_flatten(d):
    return list(d.values()), list(d.keys())


def _dict_flatten_with_keys(d):
    values, context = _dict_flatten(d)
    return [(MappingKey(k), v) for k, v in zip(context, values)], context


def _seq_flatten_with_keys(xs):
    values, context = _seq_flatten(xs)
    return [(SequenceKey(i), v) for i, v in enumerate(values)], context


def _namedtuple_flatten(t):
    return list(t), type(t)


def _namedtuple_flatten_with_keys(t):
    values, context = _namedtuple_flatten(t)
    return [(GetAttrKey(f), v) for f, v in zip(context._fields, values)], context


def _defaultdict_flatten(d):
    values, keys = _dict_flatten(d)
    return values, (d.default_factory, keys)


def _defaultdict_flatten_with_keys(d):
    values, (factory, keys) = _defaultdict_flatten(d)
    return [(MappingKey(k), v) for k, v in zip(keys, values)], (factory, keys)


def _deque_flatten(d):
    return list(d), d.maxlen


register_pytree_node(tuple, _seq_flatten, lambda xs, _: tuple(xs),
                     flatten_with_keys_fn=_seq_flatten_with_keys,
                     serialized_type_name="builtins.tuple")
register_pytree_node(list, _seq_flatten, lambda xs, _: list(xs),
                     flatten_with_keys_fn=_seq_flatten_with_keys,
                     serialized_type_name="builtins.list")
register_pytree_node(dict, _dict_flatten, lambda vs, keys: dict(zip(keys, vs)),
                     flatten_with_keys_fn=_dict_flatten_with_keys,
                     serialized_type_name="builtins.dict")
register_pytree_node(OrderedDict, _dict_flatten, lambda vs, keys: OrderedDict(zip(keys, vs)),
                     flatten_with_keys_fn=_dict_flatten_with_keys,
                     serialized_type_name="collections.OrderedDict")
register_pytree_node(defaultdict, _defaultdict_flatten,
                     lambda vs, c: defaultdict(c[0], zip(c[1], vs)),
                     flatten_with_keys_fn=_defaultdict_flatten_with_keys,
                     serialized_type_name="collections.defaultdict")
register_pytree_node(deque, _deque_flatten, lambda vs, maxlen: deque(vs, maxlen=maxlen),
                     flatten_with_keys_fn=_seq_flatten_with_keys,
                     serialized_type_name="collections.deque")
register_pytree_node(namedtuple, _namedtuple_flatten, lambda vs, cls: cls(*vs),
                     flatten_with_keys_fn=_namedtuple_flatten_with_keys,
                     serialized_type_name="collections.namedtuple")


def _is_namedtuple(obj):
    return isinstance(obj, tuple) and hasattr(type(obj), "_fields")


def _node_type(obj):
    # every namedtuple is the node type ``namedtuple``, registered or not (as in PyTorch)
    if _is_namedtuple(obj):
        return namedtuple
    return type(obj)


_get_node_type = _node_type


# ---------------------------------------------------------------------- specs
class TreeSpec:
    """The structure of a flattened tree: the node type, its context (dict keys, namedtuple
    class, ...) and one spec per child."""

    def __init__(self, type, context, children_specs):
        self.type = type
        self.context = context
        self.children_specs = list(children_specs)
        self.num_children = len(self.children_specs)
        self.num_leaves = sum(c.num_leaves for c in self.children_specs)
        self.num_nodes = 1 + sum(c.num_nodes for c in self.children_specs)

    def is_leaf(self):
        return False

    def child(self, index):
        return self.children_specs[index]

    def unflatten(self, leaves):
        return tree_unflatten(leaves, self)

    def __eq__(self, other):
        return (isinstance(other, TreeSpec) and other.is_leaf() == self.is_leaf()
                and self.type is other.type and self.context == other.context
                and self.children_specs == other.children_specs)

    def __hash__(self):
        return hash((self.type, repr(self.context), tuple(self.children_specs)))

    def __repr__(self):
        name = getattr(self.type, "__name__", str(self.type))
        children = ", ".join(repr(c) for c in self.children_specs)
        return f"TreeSpec({name}, {self.context!r}, [{children}])"


class LeafSpec(TreeSpec):
    """The spec of a single leaf."""

    def __init__(self):
        super().__init__(None, None, [])
        self.num_nodes = 1
        self.num_leaves = 1

    def is_leaf(self):
        return True

    def __hash__(self):
        return hash("LeafSpec")

    def __repr__(self):
        return "*"


def _is_leaf(tree, is_leaf):
    return (is_leaf is not None and is_leaf(tree)) or _node_type(tree) not in SUPPORTED_NODES


def tree_flatten(tree, is_leaf=None):
    """``(leaves, spec)``: the leaves left to right and the structure to rebuild ``tree``."""
    leaves = []

    def walk(node):
        if _is_leaf(node, is_leaf):
            leaves.append(node)
            return LeafSpec()
        ntype = _node_type(node)
        children, context = SUPPORTED_NODES[ntype].flatten_fn(node)
        return TreeSpec(ntype, context, [walk(c) for c in children])

    spec = walk(tree)
    return leaves, spec


def tree_unflatten(leaves, treespec):
    """The tree of ``treespec`` with ``leaves`` in place of its leaves."""
    if not isinstance(treespec, TreeSpec):
        raise TypeError(f"tree_unflatten(leaves, treespec): expected a TreeSpec, got "
                        f"{type(treespec).__name__}")
    leaves = list(leaves)
    if len(leaves) != treespec.num_leaves:
        raise ValueError(f"treespec.unflatten(leaves): `leaves` has length {len(leaves)} but "
                         f"the spec refers to a pytree that holds {treespec.num_leaves} items "
                         f"({treespec}).")
    it = iter(leaves)

    def build(spec):
        if spec.is_leaf():
            return next(it)
        children = [build(c) for c in spec.children_specs]
        return SUPPORTED_NODES[spec.type].unflatten_fn(children, spec.context)

    return build(treespec)


def tree_leaves(tree, is_leaf=None):
    """The leaves of ``tree``, left to right."""
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree, is_leaf=None):
    """The ``TreeSpec`` of ``tree``."""
    return tree_flatten(tree, is_leaf)[1]


def tree_map(func, tree, *rests, is_leaf=None):
    """A tree of ``tree``'s structure whose leaves are ``func(leaf, *matching leaves of
    rests)``; each of ``rests`` must have ``tree``'s structure."""
    leaves, spec = tree_flatten(tree, is_leaf)
    others = []
    for r in rests:
        rl, rs = tree_flatten(r, is_leaf)
        if rs != spec:
            raise ValueError(f"tree_map: tree structures differ: {spec} and {rs}")
        others.append(rl)
    return tree_unflatten([func(*xs) for xs in zip(leaves, *others)], spec)


def tree_map_(func, tree, *rests, is_leaf=None):
    """``tree_map`` for side effects: calls ``func`` on each leaf and returns ``tree``."""
    tree_map(func, tree, *rests, is_leaf=is_leaf)
    return tree


def tree_map_only(type_or_types, func, tree, is_leaf=None):
    """``tree_map`` that applies ``func`` only to leaves of the given type(s)."""
    return tree_map(lambda x: func(x) if isinstance(x, type_or_types) else x, tree,
                    is_leaf=is_leaf)


def tree_all(pred, tree, is_leaf=None):
    """Whether ``pred`` holds for every leaf."""
    return all(map(pred, tree_leaves(tree, is_leaf)))


def tree_any(pred, tree, is_leaf=None):
    """Whether ``pred`` holds for some leaf."""
    return any(map(pred, tree_leaves(tree, is_leaf)))


def tree_flatten_with_path(tree, is_leaf=None):
    """``([(key_path, leaf), ...], spec)``: each leaf with the keys that reach it."""
    out = []

    def walk(node, path):
        if _is_leaf(node, is_leaf):
            out.append((path, node))
            return
        entry = SUPPORTED_NODES[_node_type(node)]
        if entry.flatten_with_keys_fn is None:
            raise ValueError(f"tree_flatten_with_path: {type(node).__name__} was registered "
                             f"without flatten_with_keys_fn")
        keyed, _ = entry.flatten_with_keys_fn(node)
        for k, child in keyed:
            walk(child, path + (k,))

    walk(tree, ())
    return out, tree_structure(tree, is_leaf)


def treespec_dumps(treespec, protocol=None):
    """PyTorch serialises specs to JSON for export; ember's exporter has its own format."""
    raise NotImplementedError("ember.utils._pytree.treespec_dumps: ember does not serialise "
                              "tree specs to PyTorch's JSON schema (ember.export writes its "
                              "own)")
