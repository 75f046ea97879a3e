"""``ember.fx.Node``: one instruction of an fx ``Graph``.

A node has an opcode (``op``), a ``target`` (what it calls or reads), ``args``/``kwargs``
(which may hold other nodes, nested in tuples, lists, dicts and slices) and a ``name``, the
variable it binds in the generated Python. The graph keeps nodes in a doubly linked list in
program order; each node also knows its ``users`` (the nodes that read it), so rewrites such
as ``replace_all_uses_with`` stay cheap. ``meta`` is a free dict for passes (shape
propagation writes ``tensor_meta`` and ``val``; tracing writes ``stack_trace``).

The opcodes are PyTorch's six:

========================  ===============================  ==================================
op                        target                           meaning
========================  ===============================  ==================================
``placeholder``           the input's name                 a function input
``get_attr``              dotted path in the root module   read a parameter/buffer/attribute
``call_function``         a callable                       ``target(*args, **kwargs)``
``call_method``           a method name                    ``args[0].target(*args[1:], ...)``
``call_module``           dotted path of a submodule       ``root.<target>(*args, **kwargs)``
``output``                ``"output"``                     ``return args[0]``
========================  ===============================  ==================================
"""

from __future__ import annotations

import builtins
import operator
import sys
import types

__all__ = ["Node", "map_arg", "map_aggregate", "has_side_effect", "Argument"]

Argument = object  # the union of what ``args`` may hold: documentation only

_OPCODES = ("placeholder", "get_attr", "call_function", "call_method", "call_module",
            "output", "root")

# Functions that a dead-code pass must keep even when their result is unused.
_side_effectful_functions: set = {operator.setitem, builtins.print}

# Names of ember functions that draw random numbers: calling them advances a generator, so a
# graph that drops an unused call would change every later draw.
_RANDOM_NAMES = frozenset({
    "rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like",
    "normal", "bernoulli", "poisson", "multinomial", "dropout", "dropout1d", "dropout2d",
    "dropout3d", "alpha_dropout", "feature_alpha_dropout", "rrelu", "gumbel_softmax",
})


def has_side_effect(fn):
    """Mark ``fn`` so that ``Graph.eliminate_dead_code`` never removes a call to it."""
    _side_effectful_functions.add(fn)
    return fn


def map_aggregate(a, fn):
    """Apply ``fn`` to every leaf of ``a``, rebuilding tuples, lists, dicts and slices."""
    t = type(a)
    # exact types first (capture and every pass call this per node): no isinstance chain
    if t is tuple:
        return tuple([map_aggregate(elem, fn) for elem in a])
    if t is Node or t in _LEAVES:
        return fn(a)
    if t is list:
        return [map_aggregate(elem, fn) for elem in a]
    if t is dict:
        return {k: map_aggregate(v, fn) for k, v in a.items()}
    if isinstance(a, tuple):
        t = tuple(map_aggregate(elem, fn) for elem in a)
        # keep named tuples (return types such as ``max``'s) of their own type
        return t if not hasattr(a, "_fields") else type(a)(*t)
    if isinstance(a, list):
        return [map_aggregate(elem, fn) for elem in a]
    if isinstance(a, dict):
        return {k: map_aggregate(v, fn) for k, v in a.items()}
    if isinstance(a, slice):
        return slice(map_aggregate(a.start, fn), map_aggregate(a.stop, fn),
                     map_aggregate(a.step, fn))
    return fn(a)


_LEAVES = frozenset((int, float, bool, str, type(None)))


def map_arg(a, fn):
    """Apply ``fn`` to every ``Node`` inside ``a`` (a nested argument structure)."""
    return map_aggregate(a, lambda x: fn(x) if isinstance(x, Node) else x)


def _ember_path(obj):
    """The public dotted path of an ember function or op (``ember.relu``,
    ``ember.nn.functional.linear``, ``ember.ops.nn.Relu.apply``), or None."""
    if isinstance(obj, types.MethodType) and isinstance(obj.__self__, type):
        owner, attr = obj.__self__, obj.__name__
        path = _ember_path(owner)
        return f"{path}.{attr}" if path is not None else None
    name = getattr(obj, "__name__", None)
    mod = getattr(obj, "__module__", None) or ""
    if name is None or not (mod == "ember" or mod.startswith("ember.")):
        return None
    # prefer the public namespaces users write
    for ns in ("ember", "ember.nn.functional", "ember.special", "ember.linalg", "ember.fft",
               "ember.nn.init", "ember.nn"):
        m = sys.modules.get(ns)
        if m is not None and _same(getattr(m, name, None), obj):
            return f"{ns}.{name}"
    qual = getattr(obj, "__qualname__", name)
    m = sys.modules.get(mod)
    if m is None or "<locals>" in qual:
        return None
    cur = m
    for part in qual.split("."):
        cur = getattr(cur, part, None)
    return f"{mod}.{qual}" if _same(cur, obj) else None


def _same(found, obj):
    # a name may hold a tracer's diverting wrapper of ``obj`` while a trace runs
    return found is obj or getattr(found, "__fx_original__", None) is obj


def _target_name(target):
    """A short readable name of a ``call_function`` target (for printing)."""
    if isinstance(target, str):
        return target
    path = _ember_path(target)
    if path is not None:
        return path
    if isinstance(target, types.MethodType) and isinstance(target.__self__, type):
        return f"{target.__self__.__module__}.{target.__self__.__qualname__}.{target.__name__}"
    mod = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    if name is None:
        return repr(target)
    if mod in (None, "builtins"):
        return name
    if mod == "_operator":
        mod = "operator"
    return f"{mod}.{name}"


def _format_arg(arg, max_list_len=float("inf")):
    if isinstance(arg, Node):
        return "%" + arg.name
    if isinstance(arg, (tuple, list)):
        items = ", ".join(_format_arg(a) for i, a in enumerate(arg) if i < max_list_len)
        if len(arg) > max_list_len:
            items += f", ...[total_len={len(arg)}]"
        if isinstance(arg, tuple):
            return f"({items},)" if len(arg) == 1 else f"({items})"
        return f"[{items}]"
    if isinstance(arg, dict):
        return "{" + ", ".join(f"{k}: {_format_arg(v)}" for k, v in arg.items()) + "}"
    return repr(arg)


class Node:
    """One instruction of a ``Graph`` (see the module docstring for the opcodes)."""

    def __init__(self, graph, name, op, target, args, kwargs, return_type=None):
        if op not in _OPCODES:
            raise ValueError(f"Node: unknown opcode {op!r}; expected one of {_OPCODES[:-1]}")
        if op == "call_function" and not callable(target):
            raise ValueError(f"Node {name!r}: a call_function target must be callable, "
                             f"got {target!r}")
        if op in ("call_method", "call_module", "get_attr", "placeholder") and \
                not isinstance(target, str):
            raise ValueError(f"Node {name!r}: a {op} target must be a str, got {target!r}")
        self.graph = graph
        self.name = name
        self.op = op
        self.target = target
        self._input_nodes: dict = {}   # ordered set of the nodes in args/kwargs
        self.users: dict = {}          # ordered set of the nodes that use this one
        self.type = return_type
        self._prev = self
        self._next = self
        self._erased = False
        self.meta: dict = {}
        self._args = ()
        self._kwargs = {}
        self._update_args_kwargs(tuple(args), dict(kwargs))

    # ------------------------------------------------------------------ linked list
    @property
    def next(self):
        """The node after this one in the graph."""
        return self._next

    @property
    def prev(self):
        """The node before this one in the graph."""
        return self._prev

    def prepend(self, x):
        """Move (or insert) node ``x`` to just before this node."""
        if x is self:
            raise ValueError("Node.prepend: cannot prepend a node to itself")
        if x.graph is not self.graph:
            raise ValueError("Node.prepend: the node belongs to another graph")
        x._remove_from_list()
        p = self._prev
        p._next, x._prev = x, p
        x._next, self._prev = self, x

    def append(self, x):
        """Move (or insert) node ``x`` to just after this node."""
        self._next.prepend(x)

    def _remove_from_list(self):
        p, n = self._prev, self._next
        p._next, n._prev = n, p
        self._prev = self._next = self

    # ------------------------------------------------------------------ arguments
    @property
    def args(self):
        """The positional arguments (a tuple; may contain nodes)."""
        return self._args

    @args.setter
    def args(self, a):
        self._update_args_kwargs(tuple(a), self._kwargs)

    @property
    def kwargs(self):
        """The keyword arguments (a dict; may contain nodes)."""
        return self._kwargs

    @kwargs.setter
    def kwargs(self, k):
        self._update_args_kwargs(self._args, dict(k))

    @property
    def all_input_nodes(self):
        """The distinct nodes this node reads, in the order they first appear."""
        return list(self._input_nodes)

    def update_arg(self, idx, arg):
        """Replace positional argument ``idx``."""
        args = list(self._args)
        args[idx] = arg
        self.args = tuple(args)

    def update_kwarg(self, key, arg):
        """Set keyword argument ``key``."""
        self.kwargs = {**self._kwargs, key: arg}

    def _update_args_kwargs(self, new_args, new_kwargs):
        for old in self._input_nodes:
            old.users.pop(self, None)
        self._input_nodes = {}

        def collect(n):
            if n.graph is not self.graph and self.graph is not None:
                raise ValueError(f"Node {self.name!r}: argument {n.name!r} belongs to another "
                                 "graph")
            self._input_nodes.setdefault(n)
            return n
        self._args = map_arg(new_args, collect)
        self._kwargs = map_arg(new_kwargs, collect)
        for n in self._input_nodes:
            n.users.setdefault(self)

    def replace_all_uses_with(self, replace_with, delete_user_cb=lambda user: True, *,
                              propagate_meta=False):
        """Make every user of this node read ``replace_with`` instead; returns those users.

        ``delete_user_cb(user)`` may return False to keep a user on this node."""
        if propagate_meta:
            if replace_with.meta:
                raise ValueError("Node.replace_all_uses_with: propagate_meta needs a "
                                 "replacement node with an empty meta")
            replace_with.meta.update(self.meta)
        changed = []
        for user in list(self.users):
            if not delete_user_cb(user):
                continue
            user.replace_input_with(self, replace_with)
            changed.append(user)
        return changed

    def replace_input_with(self, old_input, new_input):
        """Replace every occurrence of node ``old_input`` in this node's arguments."""
        def swap(n):
            return new_input if n is old_input else n
        self._update_args_kwargs(map_arg(self._args, swap), map_arg(self._kwargs, swap))

    # ------------------------------------------------------------------ properties
    @property
    def stack_trace(self):
        """The user's source line that created this node (set by tracing), or None."""
        return self.meta.get("stack_trace")

    @stack_trace.setter
    def stack_trace(self, trace):
        self.meta["stack_trace"] = trace

    def is_impure(self, impure_random=True):
        """Whether dead-code elimination must keep this node although nothing uses it:
        inputs, the output, side-effecting functions, in-place calls, random draws (with
        ``impure_random``) and modules marked ``_is_impure``."""
        if self.op in ("placeholder", "output"):
            return True
        if self.op == "call_module":
            owner = self.graph.owning_module
            if owner is None:
                return False
            return bool(getattr(owner.get_submodule(self.target), "_is_impure", False))
        if self.op == "call_method":
            return _is_inplace_name(self.target) or (impure_random and
                                                     self.target.rstrip("_") in _RANDOM_NAMES)
        if self.op == "call_function":
            t = self.target
            if t in _side_effectful_functions:
                return True
            cls = getattr(t, "__self__", None)
            if isinstance(cls, type) and getattr(cls, "_fx_impure", False):
                return True
            name = getattr(t, "__name__", "")
            if _is_inplace_name(name) or getattr(t, "_fx_impure", False):
                return True
            if self.kwargs.get("inplace") is True or self.kwargs.get("out") is not None:
                return True
            return impure_random and name in _RANDOM_NAMES
        return False

    # ------------------------------------------------------------------ printing
    def format_node(self, placeholder_names=None, maybe_return_typename=None):
        """One line describing this node, as ``print(graph)`` shows it."""
        if self.op == "placeholder":
            if placeholder_names is not None:
                placeholder_names.append(self.target)
            default = f" (default={self.args[0]!r})" if self.args else ""
            return (f"%{self.name} : [num_users={len(self.users)}] = "
                    f"placeholder[target={self.target}]{default}")
        if self.op == "output":
            if maybe_return_typename is not None and self.type is not None:
                maybe_return_typename[0] = f" -> {self.type}"
            return f"return {self.args[0]!r}"
        target = self.target if isinstance(self.target, str) else _target_name(self.target)
        return (f"%{self.name} : [num_users={len(self.users)}] = {self.op}[target={target}]"
                f"(args = {_format_arg(self._args)}, kwargs = {_format_arg(self._kwargs)})")

    def __repr__(self):
        return self.name

    def _pretty_print_target(self):
        return self.target if isinstance(self.target, str) else _target_name(self.target)


def _is_inplace_name(name):
    return isinstance(name, str) and name.endswith("_") and not name.endswith("__") and \
        not name.startswith("_")
