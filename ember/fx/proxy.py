"""``ember.fx.Proxy``: the stand-in value that symbolic tracing passes through a program.

Every operation on a Proxy records a node in the tracer's graph instead of computing:
operators become ``call_function`` nodes on ``operator.*``, method calls become
``call_method`` nodes, attribute reads become ``getattr`` nodes (``x.shape[0]`` is a
``getattr`` then a ``getitem``, as in torch.fx), and ember functions called on a Proxy are
diverted by the tracer (see ``_symbolic_trace``). A Proxy has no value, so Python control
flow that needs one (``if``, ``bool()``, ``len()``, iteration of unknown length) raises
``TraceError`` naming the user's line.
"""

from __future__ import annotations

import dis
import inspect
import linecache
import operator
import os
import sys
from bisect import bisect_left

__all__ = ["Proxy", "Attribute", "ParameterProxy", "TraceError", "GraphAppendingTracer",
           "annotate"]

_FX_DIR = os.path.dirname(os.path.abspath(__file__))
_EMBER_DIR = os.path.dirname(_FX_DIR)
# ember's own machinery, never the user's line: tracing, ops, autograd, Module.__call__,
# the functional layer and the private top-level files (``_tensor_methods.py`` ...)
_SKIP_DIRS = tuple(os.path.join(_EMBER_DIR, d) + os.sep for d in ("fx", "ops", "autograd"))
_SKIP_FILES = {os.path.join(_EMBER_DIR, *p) for p in (
    ("nn", "modules", "module.py"), ("nn", "functional.py"), ("nn", "_functional_seq.py"),
    ("__init__.py",))}


def _is_internal(fname):
    if fname.startswith("<eval_with_key>") or fname in _SKIP_FILES or \
            fname.startswith(_SKIP_DIRS):
        return True
    return os.path.dirname(fname) == _EMBER_DIR and os.path.basename(fname).startswith("_")


class TraceError(ValueError):
    """A traced program needed a concrete value that a Proxy does not have."""


def _user_frame():
    """The innermost frame outside ember.fx and Module's call machinery: the user's line."""
    f = sys._getframe(1)
    while f is not None:
        if not _is_internal(os.path.abspath(f.f_code.co_filename)):
            return f
        f = f.f_back
    return None


def user_stack_trace():
    """``File "...", line N, in fn`` plus the source line of the user's frame, or None."""
    f = _user_frame()
    if f is None:
        return None
    line = linecache.getline(f.f_code.co_filename, f.f_lineno).strip()
    return f'  File "{f.f_code.co_filename}", line {f.f_lineno}, in {f.f_code.co_name}\n' \
        f"    {line}"


class Proxy:
    """A traced value standing for ``node``; operations on it extend ``tracer``'s graph."""

    def __init__(self, node, tracer=None):
        if tracer is None:
            tracer = GraphAppendingTracer(node.graph)
        self.tracer = tracer
        self.node = node

    def __repr__(self):
        return f"Proxy({self.node.name})"

    __hash__ = object.__hash__

    def __getattr__(self, k):
        if k.startswith("__") and k.endswith("__"):
            # protocols (``__array__``, ``__len__`` ...) probed by hasattr must stay absent
            raise AttributeError(k)
        return Attribute(self, k)

    def __call__(self, *args, **kwargs):
        return self.tracer.create_proxy("call_method", "__call__", (self,) + args, kwargs)

    def __getitem__(self, idx):
        return self.tracer.create_proxy("call_function", operator.getitem, (self, idx), {})

    def __setitem__(self, idx, value):
        self.tracer.create_proxy("call_function", operator.setitem, (self, idx, value), {})

    def __iter__(self):
        # ``a, b = proxy`` unpacks a known number of values: emit that many getitems
        frame = inspect.currentframe().f_back
        insts = list(dis.get_instructions(frame.f_code))
        i = bisect_left(insts, frame.f_lasti, key=lambda ins: ins.offset)
        if i < len(insts) and insts[i].opname == "UNPACK_SEQUENCE":
            return (self[j] for j in range(insts[i].argval))
        return self.tracer.iter(self)

    def __bool__(self):
        return self.tracer.to_bool(self)

    def __len__(self):
        raise RuntimeError("'len' is not supported in symbolic tracing by default. If you "
                           "want this call to be recorded, please call ember.fx.wrap('len') "
                           "at module scope")

    def __index__(self):
        raise TraceError(_control_flow_msg("a symbolically traced value cannot be used as an "
                                           "index or integer"))

    def keys(self):
        return self.tracer.keys(self)


def annotate(val, type):
    """Give the node behind Proxy ``val`` a type annotation (printed in the generated
    code's signature for placeholders); returns ``val``."""
    if isinstance(val, Proxy):
        if val.node.type is not None:
            raise RuntimeError(f"Tried to annotate a value that already had a type on it! "
                               f"Existing type is {val.node.type} and new type is {type}.")
        val.node.type = type
    return val


class ParameterProxy(Proxy):
    """The proxy of a parameter when tracing with ``param_shapes_constant=True``: its
    ``shape``, ``size()``, ``dim()``, ``ndim``, ``numel()`` and ``nelement()`` are the
    parameter's own values (constants in the graph, so tests on them run in Python)."""

    def __init__(self, tracer, node, name, param):
        super().__init__(node, tracer)
        self.param, self.name = param, name

    def __repr__(self):
        return f"ParameterProxy({self.name})"

    @property
    def shape(self):
        return self.param.shape

    @property
    def ndim(self):
        return self.param.ndim

    def size(self, dim=None):
        return self.param.size() if dim is None else self.param.size(dim)

    def dim(self):
        return self.param.dim()

    def numel(self):
        return self.param.numel()

    def nelement(self):
        return self.param.nelement()


class Attribute(Proxy):
    """``proxy.attr``: a ``getattr`` node made on first use, or a ``call_method`` node when
    called (``x.view(...)``)."""

    def __init__(self, root, attr):
        self.root = root
        self.attr = attr
        self.tracer = root.tracer
        self._node = None

    @property
    def node(self):
        if self._node is None:
            self._node = self.tracer.create_proxy("call_function", getattr,
                                                  (self.root, self.attr), {}).node
        return self._node

    def __call__(self, *args, **kwargs):
        return self.tracer.create_proxy("call_method", self.attr, (self.root,) + args, kwargs)


def _control_flow_msg(what):
    where = user_stack_trace()
    return what + (f"\n{where}" if where else "")


class TracerBase:
    """What ``Proxy`` needs from a tracer: node creation and the control-flow hooks."""

    graph = None
    record_stack_traces = True

    def create_node(self, kind, target, args, kwargs, name=None, type_expr=None):
        node = self.graph.create_node(kind, target, args, kwargs, name, type_expr)
        if self.record_stack_traces:
            trace = user_stack_trace()
            if trace is not None:
                node.meta["stack_trace"] = trace
        stack = getattr(self, "module_stack", None)
        if stack:
            node.meta["nn_module_stack"] = dict(stack)
        return node

    def proxy(self, node):
        return Proxy(node, self)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None,
                     proxy_factory_fn=None):
        """Record ``kind``/``target`` on ``args``/``kwargs`` (arguments converted by
        ``create_arg``) and return a Proxy for the new node."""
        args_ = self.create_arg(args)
        kwargs_ = self.create_arg(kwargs)
        node = self.create_node(kind, target, args_, kwargs_, name, type_expr)
        return self.proxy(node) if proxy_factory_fn is None else proxy_factory_fn(node)

    def create_arg(self, a):
        """Turn a traced argument into what a node may hold (Proxies become nodes)."""
        from .node import Node
        if isinstance(a, Proxy):
            return a.node
        if isinstance(a, Node):
            return a
        if isinstance(a, tuple):
            items = tuple(self.create_arg(x) for x in a)
            return type(a)(*items) if hasattr(a, "_fields") else items
        if isinstance(a, list):
            return [self.create_arg(x) for x in a]
        if isinstance(a, dict):
            out = {}
            for k, v in a.items():
                if isinstance(k, Proxy):
                    raise TraceError(_control_flow_msg("a traced value cannot be a dict key"))
                out[k] = self.create_arg(v)
            return out
        if isinstance(a, slice):
            return slice(self.create_arg(a.start), self.create_arg(a.stop),
                         self.create_arg(a.step))
        if isinstance(a, range):
            return range(self.create_arg(a.start), self.create_arg(a.stop),
                         self.create_arg(a.step))
        return a

    def to_bool(self, obj):
        raise TraceError(_control_flow_msg(
            "symbolically traced variables cannot be used as inputs to control flow"))

    def iter(self, obj):
        raise TraceError(_control_flow_msg(
            "Proxy object cannot be iterated. This can be attempted when the Proxy is used "
            "in a loop or as a *args or **kwargs function argument. See the ember.fx docs "
            "on symbolic tracing"))

    def keys(self, obj):
        return Attribute(obj, "keys")()


class GraphAppendingTracer(TracerBase):
    """A tracer that only appends to an existing graph (Proxies built by hand)."""

    def __init__(self, graph):
        self.graph = graph


_BINARY_NAMES = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
                 "lshift", "rshift", "and_", "or_", "xor")
_COMPARE_NAMES = ("eq", "ne", "lt", "le", "gt", "ge")


def _define_magic(name):
    target = getattr(operator, name)
    dunder = name.rstrip("_")

    def forward(self, *rest):
        return self.tracer.create_proxy("call_function", target, (self,) + rest, {})
    forward.__name__ = f"__{dunder}__"
    setattr(Proxy, f"__{dunder}__", forward)


def _define_reflected(name):
    target = getattr(operator, name)
    dunder = name.rstrip("_")

    def reflected(self, other):
        return self.tracer.create_proxy("call_function", target, (other, self), {})
    reflected.__name__ = f"__r{dunder}__"
    setattr(Proxy, f"__r{dunder}__", reflected)


for _name in _BINARY_NAMES + _COMPARE_NAMES + ("neg", "pos", "invert", "abs"):
    _define_magic(_name)
for _name in _BINARY_NAMES:
    _define_reflected(_name)
del _name
