"""``ember.fx.Graph``: a program as a list of ``Node`` instructions, and its Python code.

A graph is a doubly linked list of nodes in program order, closed by a sentinel ``root``
node (``graph.nodes`` walks it). Nodes are added at the current insertion point (the end,
unless ``inserting_before``/``inserting_after`` say otherwise). Every node gets a unique
name, which is the variable it binds in the generated code: ``python_code()`` renders the
graph as the body of a ``forward(self, ...)`` function that reads as ordinary Python, with
ember functions printed by their public names (``ember.relu(x)``,
``ember.nn.functional.linear(x, w)``) and operators as operators (``x + y``, ``x[0]``).
"""

from __future__ import annotations

import builtins
import inspect
import keyword
import math
import operator
import re
import sys
import types
from dataclasses import dataclass, field

from .node import Node, _ember_path, _format_arg, map_arg

__all__ = ["Graph", "PythonCode"]

_BINARY = {
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
    operator.floordiv: "//", operator.mod: "%", operator.pow: "**", operator.matmul: "@",
    operator.lshift: "<<", operator.rshift: ">>", operator.and_: "&", operator.or_: "|",
    operator.xor: "^", operator.eq: "==", operator.ne: "!=", operator.lt: "<",
    operator.le: "<=", operator.gt: ">", operator.ge: ">=",
}
_UNARY = {operator.neg: "-", operator.pos: "+", operator.invert: "~"}

# Names a node may not take: they would shadow what the generated code needs.
_RESERVED = set(keyword.kwlist) | set(dir(builtins)) | {"self", "ember", "inf", "nan"}


def _snake_case(s):
    """``BatchNorm2d`` -> ``batch_norm2d``, ``layer1.0.conv`` -> ``layer1_0_conv``."""
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", s).lower()
    return s


def _split_name(candidate):
    """``candidate`` made a valid identifier, and split as ``base_num`` (num None if none)."""
    candidate = re.sub(r"[^0-9a-zA-Z_]+", "_", candidate) or "_unnamed"
    if candidate[0].isdigit():
        candidate = "_" + candidate
    m = re.match(r"(.*)_(\d+)$", candidate)
    base, num = (m.group(1), int(m.group(2))) if m else (candidate, None)
    return candidate, base, num


_SPLIT_NAMES: dict = {}


class _Namespace:
    """Unique, valid Python identifiers: ``add``, ``add_1``, ``add_2`` ..."""

    def __init__(self):
        self._used = set()
        self._base_count: dict = {}

    def create_name(self, candidate):
        split = _SPLIT_NAMES.get(candidate)
        if split is None:  # a capture names hundreds of nodes from a few candidates
            if len(_SPLIT_NAMES) > 4096:
                _SPLIT_NAMES.clear()
            split = _SPLIT_NAMES[candidate] = _split_name(candidate)
        candidate, base, num = split
        name = candidate
        if name in self._used or name in _RESERVED:
            num = self._base_count.get(base, num or 0)
            while True:
                num += 1
                name = f"{base}_{num}"
                if name not in self._used and name not in _RESERVED:
                    break
            self._base_count[base] = num
        self._used.add(name)
        return name

    def reserve(self, name):
        self._used.add(name)

    def release(self, name):
        self._used.discard(name)

    def copy(self):
        ns = _Namespace()
        ns._used = set(self._used)
        ns._base_count = dict(self._base_count)
        return ns


class _NodeList:
    """A live view of a graph's nodes in order (``len``, iteration, ``reversed``)."""

    def __init__(self, graph, direction="_next"):
        self._graph = graph
        self._direction = direction

    def __len__(self):
        return self._graph._len

    def __iter__(self):
        root = self._graph._root
        d = self._direction
        cur = getattr(root, d)
        while cur is not root:
            nxt = getattr(cur, d)  # read first: the loop body may erase ``cur``
            if not cur._erased:
                yield cur
            cur = nxt

    def __reversed__(self):
        return _NodeList(self._graph, "_prev" if self._direction == "_next" else "_next")

    def __repr__(self):
        return repr(list(self))


class _InsertPoint:
    def __init__(self, graph, fn):
        self.graph = graph
        self.orig, graph._insert = graph._insert, fn

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        self.graph._insert = self.orig


@dataclass
class PythonCode:
    """The generated source of a graph and the globals it needs to run."""
    src: str
    globals: dict = field(default_factory=dict)


class _CodeGen:
    """Renders a graph as the body of ``def forward(self, ...)``."""

    def __init__(self, graph):
        self.graph = graph
        self.ns = graph._namespace.copy()
        self.globals = {"inf": math.inf, "nan": math.nan}
        self._global_ids: dict = {}

    def add_global(self, hint, obj):
        if id(obj) in self._global_ids:
            return self._global_ids[id(obj)]
        path = _ember_path(obj)
        if path is not None:
            import ember
            self.globals["ember"] = ember
            name = path
        elif getattr(builtins, getattr(obj, "__name__", ""), None) is obj:
            name = obj.__name__
        elif getattr(obj, "__module__", None) in ("math", "cmath") and \
                obj.__module__ not in self.ns._used and \
                getattr(sys.modules[obj.__module__], obj.__name__, None) is obj:
            self.globals[obj.__module__] = sys.modules[obj.__module__]
            name = f"{obj.__module__}.{obj.__name__}"
        else:
            name = self.ns.create_name(_snake_case(hint))
            self.globals[name] = obj
        self._global_ids[id(obj)] = name
        return name

    def arg(self, a):
        import ember
        if isinstance(a, Node):
            return a.name
        if isinstance(a, bool) or a is None or isinstance(a, (int, str, bytes)):
            return repr(a)
        if isinstance(a, float):
            if math.isnan(a):
                return "nan"
            if math.isinf(a):
                return "inf" if a > 0 else "-inf"
            return repr(a)
        if isinstance(a, ember.Size):
            return repr(tuple(a))
        if isinstance(a, tuple) and hasattr(a, "_fields"):
            cls = self.add_global(type(a).__name__, type(a))
            return f"{cls}({', '.join(self.arg(x) for x in a)})"
        if isinstance(a, tuple):
            inner = ", ".join(self.arg(x) for x in a)
            return f"({inner},)" if len(a) == 1 else f"({inner})"
        if isinstance(a, list):
            return "[" + ", ".join(self.arg(x) for x in a) + "]"
        if isinstance(a, dict):
            return "{" + ", ".join(f"{self.arg(k)}: {self.arg(v)}" for k, v in a.items()) + "}"
        if isinstance(a, slice):
            return f"slice({self.arg(a.start)}, {self.arg(a.stop)}, {self.arg(a.step)})"
        if a is Ellipsis:
            return "..."
        if isinstance(a, ember.dtype) and getattr(ember, str(a).split(".")[-1], None) is a:
            self.globals["ember"] = ember
            return str(a)
        if isinstance(a, ember.device):
            self.globals["ember"] = ember
            return f"ember.device({str(a)!r})"
        return self.add_global(type(a).__name__, a)

    def index(self, a):
        """An index in subscript syntax: ``x[:, 0:2]`` rather than ``x[(slice(...), ...)]``."""
        def one(i):
            if isinstance(i, slice):
                s = "" if i.start is None else self.arg(i.start)
                s += ":" + ("" if i.stop is None else self.arg(i.stop))
                if i.step is not None:
                    s += ":" + self.arg(i.step)
                return s
            return self.arg(i)
        if isinstance(a, tuple) and a:
            return ", ".join(one(i) for i in a) + ("," if len(a) == 1 else "")
        return one(a)

    def call_args(self, args, kwargs):
        parts = [self.arg(a) for a in args]
        parts += [f"{k} = {self.arg(v)}" for k, v in kwargs.items()]
        return ", ".join(parts)

    @staticmethod
    def module_path(target):
        """``self.layer1`` style access to a dotted path; atoms that are not identifiers
        (``Sequential`` indices) read through ``getattr(..., "0")`` as torch.fx writes them."""
        out = "self"
        for atom in target.split("."):
            if atom.isidentifier() and not keyword.iskeyword(atom):
                out += f".{atom}"
            else:
                out = f"getattr({out}, {atom!r})"
        return out

    def expr(self, node):
        op, target, args, kwargs = node.op, node.target, node.args, node.kwargs
        if op == "get_attr":
            return self.module_path(target)
        if op == "call_module":
            return f"{self.module_path(target)}({self.call_args(args, kwargs)})"
        if op == "call_method":
            return f"{self.arg(args[0])}.{target}({self.call_args(args[1:], kwargs)})"
        # call_function
        if target in _BINARY and len(args) == 2 and not kwargs:
            return f"{self.arg(args[0])} {_BINARY[target]} {self.arg(args[1])}"
        if target in _UNARY and len(args) == 1 and not kwargs:
            return f"{_UNARY[target]}{self.arg(args[0])}"
        if target is operator.getitem and len(args) == 2 and not kwargs:
            return f"{self.arg(args[0])}[{self.index(args[1])}]"
        if target is builtins.getattr and len(args) == 2 and isinstance(args[1], str) \
                and args[1].isidentifier() and not kwargs:
            return f"{self.arg(args[0])}.{args[1]}"
        name = self.add_global(_hint(target), target)
        return f"{name}({self.call_args(args, kwargs)})"

    def annotation(self, n, verbose, include_stride=False):
        """``: "f32[2, 3]"`` from shape propagation's metadata (``verbose``), or the
        placeholder's declared type."""
        if verbose:
            text = _meta_str(n.meta, include_stride)
            if text is not None:
                return f': "{text}"'
        if n.op == "placeholder" and isinstance(n.type, type):
            return ": " + self.add_global(getattr(n.type, "__name__", "type"), n.type)
        return ""

    def render(self, verbose=False, include_stride=False):
        graph = self.graph
        nodes = list(graph.nodes)
        # the last user of each node, so its variable can be released after it
        last_use: dict = {}
        for n in nodes:
            for inp in n.all_input_nodes:
                last_use[inp] = n
        frees: dict = {}
        for value, user in last_use.items():
            frees.setdefault(user, []).append(value)

        params, body = [], []
        wrap_output = None
        for n in nodes:
            if n.op == "placeholder":
                raw = n.target.lstrip("*")
                param = n.target + self.annotation(n, verbose, include_stride)
                if n.args:
                    param += f" = {self.arg(n.args[0])}"
                params.append(param)
                if raw != n.name:
                    body.append(f"{n.name} = {raw}")
                continue
            if n.op == "output":
                wrap_output = n.args[0]
                continue
            line = f"{n.name}{self.annotation(n, verbose, include_stride)} = {self.expr(n)}"
            dead = [v.name for v in frees.get(n, ())]
            if dead:
                line += ";  " + " = ".join(dead) + " = None"
            body.append(line)
        body.append(f"return {self.arg(wrap_output)}")
        src = f"\n\ndef forward(self, {', '.join(params)}):\n" if params else \
            "\n\ndef forward(self):\n"
        src += "".join(f"    {line}\n" for line in body)
        return PythonCode(src, self.globals)


_DTYPE_ABBR = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16",
               "int64": "i64", "int32": "i32", "int16": "i16", "int8": "i8", "uint8": "u8",
               "bool": "b8", "complex64": "c64", "complex128": "c128"}


def _meta_str(meta, include_stride=False):
    """``f32[2, 3]`` for a node whose metadata describes one tensor, else None."""
    tm = meta.get("tensor_meta")
    if tm is None:
        tm = meta.get("val")
    shape, dtype = getattr(tm, "shape", None), getattr(tm, "dtype", None)
    if shape is None or dtype is None or isinstance(tm, (tuple, list)) and \
            not hasattr(tm, "_fields"):
        return None
    name = str(dtype).split(".")[-1]
    text = f"{_DTYPE_ABBR.get(name, name)}[{', '.join(str(d) for d in shape)}]"
    if include_stride:
        stride = tm.stride() if callable(getattr(tm, "stride", None)) else \
            getattr(tm, "stride", None)
        if stride is not None:
            text += f"[{', '.join(str(d) for d in stride)}]"
    return text


def _hint(target):
    if isinstance(target, types.MethodType) and isinstance(target.__self__, type):
        return target.__self__.__name__
    return getattr(target, "__name__", None) or type(target).__name__


class Graph:
    """A program as a list of nodes; see the module docstring."""

    def __init__(self, owning_module=None, tracer_cls=None, tracer_extras=None):
        self._root = Node(self, "", "root", "", (), {})
        self._len = 0
        self._namespace = _Namespace()
        self._insert = self._root.prepend
        self._owning_module = owning_module
        self._tracer_cls = tracer_cls
        self._tracer_extras = tracer_extras

    # ------------------------------------------------------------------ access
    @property
    def nodes(self):
        """The nodes in program order (a live view: ``len``, iteration, ``reversed``)."""
        return _NodeList(self)

    @property
    def owning_module(self):
        return self._owning_module

    @owning_module.setter
    def owning_module(self, mod):
        self._owning_module = mod

    def find_nodes(self, *, op, target=None, sort=True):
        """The nodes with opcode ``op`` (and ``target``, when given), in program order."""
        return [n for n in self.nodes if n.op == op and (target is None or n.target == target)]

    def output_node(self):
        """The graph's ``output`` node."""
        for n in reversed(self.nodes):
            if n.op == "output":
                return n
        raise RuntimeError("Graph.output_node: the graph has no output node")

    # ------------------------------------------------------------------ building
    def create_node(self, op, target, args=None, kwargs=None, name=None, type_expr=None):
        """Add a node at the insertion point and return it (``name`` is made unique)."""
        args = () if args is None else tuple(args)
        kwargs = {} if kwargs is None else dict(kwargs)
        candidate = name if name is not None else self._target_to_str(op, target)
        name = self._namespace.create_name(candidate)
        n = Node(self, name, op, target, args, kwargs, type_expr)
        self._insert(n)
        self._len += 1
        return n

    @staticmethod
    def _target_to_str(op, target):
        if isinstance(target, str):
            return _snake_case(target.lstrip("*")) if op != "get_attr" and \
                op != "call_module" else target.replace(".", "_")
        if isinstance(target, types.MethodType) and isinstance(target.__self__, type):
            return _snake_case(target.__self__.__name__)
        return _snake_case(getattr(target, "__name__", None) or type(target).__name__)

    def placeholder(self, name, type_expr=None, default_value=inspect.Signature.empty):
        """An input named ``name``; ``default_value`` (when given) is its default."""
        args = () if default_value is inspect.Signature.empty else (default_value,)
        return self.create_node("placeholder", name, args, {}, name=name.lstrip("*"),
                                type_expr=type_expr)

    def get_attr(self, qualified_name, type_expr=None):
        """Read attribute ``qualified_name`` (dotted) of the owning module."""
        return self.create_node("get_attr", qualified_name, (), {}, type_expr=type_expr)

    def call_module(self, module_name, args=None, kwargs=None, type_expr=None):
        """Call submodule ``module_name`` (dotted) of the owning module."""
        return self.create_node("call_module", module_name, args, kwargs, type_expr=type_expr)

    def call_method(self, method_name, args=None, kwargs=None, type_expr=None):
        """Call method ``method_name`` on ``args[0]``."""
        return self.create_node("call_method", method_name, args, kwargs, type_expr=type_expr)

    def call_function(self, the_function, args=None, kwargs=None, type_expr=None):
        """Call ``the_function(*args, **kwargs)`` (any callable)."""
        return self.create_node("call_function", the_function, args, kwargs,
                                type_expr=type_expr)

    def output(self, result, type_expr=None):
        """Return ``result`` (a node or a nested structure of nodes)."""
        return self.create_node("output", "output", (result,), {}, type_expr=type_expr)

    def inserting_before(self, n=None):
        """Context manager: new nodes go just before ``n`` (the graph start if None)."""
        if n is None:
            return self.inserting_after(self._root)
        return _InsertPoint(self, n.prepend)

    def inserting_after(self, n=None):
        """Context manager: new nodes go just after ``n`` (the graph end if None)."""
        if n is None:
            return self.inserting_before(self._root)
        return _InsertPoint(self, n.append)

    def erase_node(self, to_erase):
        """Remove a node that nothing uses any more."""
        if to_erase.graph is not self:
            raise RuntimeError(f"Graph.erase_node: node {to_erase.name!r} is not in this graph")
        if to_erase._erased:
            return
        if to_erase.users:
            raise RuntimeError(f"Tried to erase Node {to_erase.name} but it still had "
                               f"{len(to_erase.users)} users in the graph: "
                               f"{dict.fromkeys(to_erase.users)}!")
        to_erase._remove_from_list()
        to_erase._erased = True
        self._len -= 1
        self._namespace.release(to_erase.name)
        to_erase._update_args_kwargs((), {})

    def node_copy(self, node, arg_transform=lambda x: x):
        """Copy ``node`` (possibly of another graph) into this one; ``arg_transform`` maps
        each node of its arguments to a node of this graph."""
        args = map_arg(node.args, arg_transform)
        kwargs = map_arg(node.kwargs, arg_transform)
        name = node.name if node.op != "placeholder" else node.target
        new = self.create_node(node.op, node.target, args, kwargs, name, node.type)
        new.meta = dict(node.meta)
        return new

    def graph_copy(self, g, val_map, return_output_node=False):
        """Copy every node of graph ``g`` into this one, filling ``val_map`` (old -> new).
        Returns the copied output's value (or the output node with ``return_output_node``),
        leaving the output itself out."""
        for node in g.nodes:
            if node in val_map:
                continue
            if node.op == "output":
                rv = map_arg(node.args[0], lambda n: val_map[n])
                return (rv, node) if return_output_node else rv
            val_map[node] = self.node_copy(node, lambda n: val_map[n])
        return None

    def __deepcopy__(self, memo=None):
        g = Graph(tracer_cls=self._tracer_cls)
        out = g.graph_copy(self, {}, return_output_node=True)
        if out is not None:
            rv, node = out
            g.output(rv, type_expr=node.type).meta = dict(node.meta)
        return g

    def __reduce__(self):
        # a flat list of node records: pickling the linked list node by node would recurse
        # once per node and overflow on large graphs
        index = {n: i for i, n in enumerate(self.nodes)}
        records = [(n.name, n.op, n.target,
                    map_arg(n.args, lambda a: _NodeRef(index[a])),
                    map_arg(n.kwargs, lambda a: _NodeRef(index[a])), n.type,
                    _picklable_meta(n.meta))
                   for n in self.nodes]
        return _rebuild_graph, (records,)

    # ------------------------------------------------------------------ passes
    def eliminate_dead_code(self, is_impure_node=None):
        """Remove the nodes whose values nothing uses (keeping impure ones); returns
        whether the graph changed. Walks backwards so chains of dead nodes go in one pass."""
        self.lint()
        changed = False
        for node in reversed(self.nodes):
            impure = is_impure_node(node) if is_impure_node is not None else node.is_impure()
            if not node.users and not impure:
                self.erase_node(node)
                changed = True
        return changed

    def lint(self):
        """Check the graph's invariants; raise ``RuntimeError`` naming the broken one.

        Every node belongs to this graph and is used only after it is defined, names are
        unique, users/inputs agree, there is at most one output and it comes last, and
        (with an owning module) ``get_attr``/``call_module`` targets exist."""
        seen, names = set(), set()
        output_seen = False
        for node in self.nodes:
            if node.graph is not self:
                raise RuntimeError(f"Node '{node.name}' does not belong to this Graph!")
            if node.op not in ("placeholder", "get_attr", "call_function", "call_method",
                               "call_module", "output"):
                raise RuntimeError(f"Node '{node.name}' has an unknown opcode {node.op!r}")
            if output_seen:
                raise RuntimeError(f"Node '{node.name}' comes after the output node")
            for arg in node.all_input_nodes:
                if arg.graph is not self:
                    raise RuntimeError(f"Argument '{arg}' of Node '{node}' does not belong "
                                       "to this Graph, but was used as an argument! If you "
                                       "are copying nodes from another graph, make sure to "
                                       "use ``arg_transform`` on node_copy() to remap values")
                if arg not in seen:
                    raise RuntimeError(f"Argument '{arg}' of Node '{node}' was used before "
                                       "it has been defined! Please check that Nodes in the "
                                       "graph are topologically ordered")
                if node not in arg.users:
                    raise RuntimeError(f"Node '{node}' reads '{arg}' but is not among its "
                                       "users")
            if node.name in names:
                raise RuntimeError(f"Node redefined name {node.name}!")
            seen.add(node)
            names.add(node.name)
            if node.op == "output":
                output_seen = True
            mod = self._owning_module
            if mod is not None and node.op in ("get_attr", "call_module"):
                obj = mod
                for i, atom in enumerate(node.target.split(".")):
                    if not hasattr(obj, atom):
                        where = ".".join(node.target.split(".")[:i])
                        raise RuntimeError(f"Node {node.name} target {node.target} references "
                                           f"nonexistent attribute {atom} of "
                                           f"{where or 'the root module'}")
                    obj = getattr(obj, atom)
                if node.op == "call_module":
                    from ..nn import Module
                    if not isinstance(obj, Module):
                        raise RuntimeError(f"Node {node.name} target {node.target} is "
                                           f"{type(obj).__name__}, not a Module")

    # ------------------------------------------------------------------ printing
    def python_code(self, root_module="self", *, verbose=False, include_stride=False):
        """The graph as Python source: ``PythonCode(src, globals)``, where ``src`` defines
        ``forward(self, ...)`` and ``globals`` holds the objects it refers to. ``verbose``
        annotates each value with its shape and dtype (``x: "f32[2, 3]"``) where shape
        propagation has recorded them."""
        if root_module != "self":
            raise NotImplementedError("Graph.python_code: only root_module='self' is supported")
        return _CodeGen(self).render(verbose, include_stride)

    def __str__(self):
        ret = [""]
        lines = [n.format_node(None, ret) for n in self.nodes]
        head = f"graph(){ret[0]}:"
        return "\n".join([head] + ["    " + s for s in lines])

    def print_tabular(self):
        """Print the nodes as a table (opcode, name, target, args, kwargs)."""
        rows = [(n.op, n.name, n._pretty_print_target(), _format_arg(n.args),
                 _format_arg(n.kwargs)) for n in self.nodes]
        heads = ("opcode", "name", "target", "args", "kwargs")
        widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(heads)]
        line = "  ".join(h.ljust(w) for h, w in zip(heads, widths))
        out = [line, "  ".join("-" * w for w in widths)]
        out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
        print("\n".join(s.rstrip() for s in out))

    def __repr__(self):
        return str(self)


def _picklable_meta(meta):
    """``meta`` with ``nn_module_stack``'s module classes as their qualified names (a class
    defined in a function cannot be pickled)."""
    stack = meta.get("nn_module_stack")
    if not stack:
        return meta
    named = {k: (path, t if isinstance(t, str) else f"{t.__module__}.{t.__qualname__}")
             for k, (path, t) in stack.items()}
    return {**meta, "nn_module_stack": named}


class _NodeRef:
    """A node's position, standing in for the node in a pickled graph."""

    __slots__ = ("index",)

    def __init__(self, index):
        self.index = index

    def __reduce__(self):
        return _NodeRef, (self.index,)


def _rebuild_graph(records):
    from .node import map_aggregate
    g = Graph()
    nodes = []

    def resolve(a):
        return nodes[a.index] if isinstance(a, _NodeRef) else a
    for name, op, target, args, kwargs, type_expr, meta in records:
        n = g.create_node(op, target, map_aggregate(args, resolve),
                          map_aggregate(kwargs, resolve), name, type_expr)
        n.meta = meta
        nodes.append(n)
    return g
