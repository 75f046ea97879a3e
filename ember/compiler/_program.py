"""Lower a captured graph to one generated Python function over NumPy arrays.

``run_graph`` replays a graph through the dispatcher: a Tensor per value, the dispatch path
per op, an autograd record per op that could need one. ``lower`` writes instead one
straight-line function (readable with ``EMBER_LOGS=graph_code``) in which

* an op that needs no autograd record calls its class's array ``forward`` directly
  (``a7 = Linear_forward(_S(), a3, a4, a5)``): no Tensor, no dispatch, no record;
* everything else (in-place writes, gradient and optimizer updates, random draws, graph
  breaks, ops whose result needs a record) is called with Tensors as ``run_graph`` would;
* fused kernels write into buffers of one preallocated arena (see ``plan_memory``) where
  their result does not outlive the call.

Which ops need a record: in a graph that contains its own backward (a training step:
``accumulate_grad`` nodes), none: every gradient the step needs is an explicit node, so the
outputs come back detached (``loss.requires_grad`` is False; eager's loss carries a graph that
its own ``backward()`` already consumed). Otherwise, those ``requires_grad_map`` marks.
"""

from __future__ import annotations

import operator

import numpy as np

from .._tensor import Tensor, _make
from ..autograd import graph as _dispatch
from ..autograd.grad_mode import GradMode
from ..export import _capture

__all__ = ["lower", "has_backward", "Arena", "accumulate_grad_owned"]

# op classes whose forward always returns a new array (never its input or a view of it)
_FRESH = {"Add", "Sub", "Mul", "Div", "Neg", "Exp", "Log", "Tanh", "Sigmoid", "Relu", "Pow",
          "Gt", "Lt", "Ge", "Le", "Eq", "Ne", "Where", "Matmul", "Linear", "Sum", "Mean",
          "Softmax", "LogSoftmax", "_LinearRelu", "_LinearC", "_LinearReluC", "_ConvRelu",
          "_StackMatmul", "ConvInputGrad", "ConvWeightGrad", "_RowSoftmax", "_GeluGrad",
          "_IndexAddRows", "_CrossEntropyGrad"}


def accumulate_grad_owned(p, g):
    """``accumulate_grad`` for a gradient array the program owns (computed for this use
    alone): stored without the defensive copy."""
    old = p._grad
    if old is None:
        p._grad = _make(g)
    else:
        old._data += g
    return p._grad


class Arena:
    """The memory plan of one graph: the outputs of fused kernels whose values do not
    outlive the call (not returned, not stored, not saved for a backward outside it) get
    fixed places in one preallocated byte array; two values whose lifetimes do not overlap
    share a place. A call that finds the arena in use (another thread) gets a fresh one."""

    ALIGN = 64

    def __init__(self, graph, need_record):
        from ..fx import map_arg
        from ._codegen import FusedKernel
        order = {n: i for i, n in enumerate(graph.nodes)}
        outputs = set()
        map_arg(graph.output_node().args, lambda a: outputs.add(a) or a)
        self.slots = {}       # node -> (offset, shape, dtype)
        blocks = []           # [offset, size, free_after]
        end = 0
        for n in graph.nodes:
            if n.op != "call_function" or not isinstance(n.target, FusedKernel):
                continue
            group, ok, last = [n], True, order[n]
            i = 0
            while i < len(group) and ok:  # the value and every view taken of it
                for u in group[i].users:
                    cls = getattr(u.target, "__self__", None)
                    name = getattr(cls, "__name__", None) if isinstance(cls, type) else None
                    if u in outputs or need_record(u):
                        ok = False
                    elif isinstance(cls, type) and getattr(cls, "view", False):
                        group.append(u)
                    elif not (isinstance(u.target, FusedKernel) or name in _FRESH or
                              getattr(u.target, "array_tuple", False)):  # run_pair: of _FRESH
                        ok = False  # a helper that may keep it, an op that may alias it
                    last = max(last, order[u])
                ok = ok and group[i] not in outputs
                i += 1
            meta = n.meta.get("tensor_meta")
            if not ok or meta is None:
                continue
            shape, dtype = tuple(meta[0]), np.dtype(str(meta[1]).replace("ember.", ""))
            size = -(-int(np.prod(shape, dtype=np.int64)) * dtype.itemsize // self.ALIGN) \
                * self.ALIGN
            start = order[n]
            for b in blocks:  # first fit among places free before this value is made
                if b[2] < start and b[1] >= size:
                    b[2] = last
                    off = b[0]
                    break
            else:
                off = end
                blocks.append([off, size, last])
                end += size
            self.slots[n] = (off, shape, dtype)
        self.nbytes = end
        self.planned = sum(int(np.prod(s)) * d.itemsize for _, s, d in self.slots.values())
        self.busy = False
        self.buffers = self._make()

    def _make(self):
        raw = np.empty(self.nbytes + self.ALIGN, dtype=np.uint8)
        base = (-raw.ctypes.data) % self.ALIGN
        return [raw[base + off: base + off + int(np.prod(shape)) * dtype.itemsize]
                .view(dtype).reshape(shape) for off, shape, dtype in self.slots.values()]

    def index(self, n):
        return list(self.slots).index(n) if n in self.slots else None


def has_backward(graph):
    """Whether ``graph`` holds its own backward (gradients stored into leaves)."""
    return any(n.op == "call_function" and n.target is _capture.accumulate_grad
               for n in graph.nodes)


def _op_class(n):
    cls = getattr(n.target, "__self__", None)
    if n.op == "call_function" and isinstance(cls, type) and \
            issubclass(cls, _dispatch.Node) and getattr(n.target, "__name__", "") == "apply" \
            and getattr(cls.apply, "__func__", None) is _dispatch.Node.apply.__func__:
        return cls
    return None


_SIMPLE = (int, float, bool, str, type(None))


def _literal(v):
    if type(v) in _SIMPLE and not (type(v) is float and v != v):
        return repr(v) if type(v) is not float or v not in (float("inf"), -float("inf")) \
            else None
    if type(v) in (tuple, list):
        parts = [_literal(x) for x in v]
        if all(p is not None for p in parts):
            inner = ", ".join(parts) + ("," if type(v) is tuple and len(parts) == 1 else "")
            return f"({inner})" if type(v) is tuple else f"[{inner}]"
    return None


class _Writer:
    def __init__(self, graph, attrs, need_record, arena):
        from ..fx import Node
        self.Node = Node
        self.ns = {"_make": _make, "_S": _dispatch._ScratchCtx, "_nd": np.ndarray,
                   "_asarray": np.asarray, "_GM": GradMode}
        self.lines = []
        self.kind = {}     # node -> "A" (array), "T" (Tensor), "O" (other Python value)
        self.name = {}
        self.tensor_form = {}  # node -> name of its Tensor wrapper, once made
        self.array_form = {}   # node -> name of its array, once read
        self.need_record = need_record
        self.arena = arena
        self.attrs = attrs
        from ..fx import map_arg
        self.outputs = set()
        map_arg(graph.output_node().args, lambda a: self.outputs.add(a) or a)
        self.k = 0

    def const(self, v, hint="k"):
        self.k += 1
        name = f"_{hint}{self.k}"
        self.ns[name] = v
        return name

    # -- value forms
    def as_tensor(self, n):
        if self.kind[n] != "A":
            return self.name[n]
        t = self.tensor_form.get(n)
        if t is None:
            t = self.tensor_form[n] = f"t_{self.name[n]}"
            self.lines.append(f"{t} = _make({self.name[n]})")
        return t

    def as_array(self, n):
        if self.kind[n] == "A":
            return self.name[n]
        a = self.array_form.get(n)
        if a is None:
            a = self.array_form[n] = f"a_{self.name[n]}"
            self.lines.append(f"{a} = {self.name[n]}._data")
        return a

    def arg(self, a, form):
        Node = self.Node
        if isinstance(a, Node):
            if self.kind[a] == "O":
                return self.name[a]
            return self.as_array(a) if form == "A" else self.as_tensor(a)
        if type(a) in (tuple, list):
            parts = [self.arg(x, form) for x in a]
            inner = ", ".join(parts) + ("," if type(a) is tuple and len(parts) == 1 else "")
            return f"({inner})" if type(a) is tuple else f"[{inner}]"
        if type(a) is dict:
            return "{" + ", ".join(f"{k!r}: {self.arg(v, form)}" for k, v in a.items()) + "}"
        if type(a) is slice:
            return (f"slice({self.arg(a.start, form)}, {self.arg(a.stop, form)}, "
                    f"{self.arg(a.step, form)})")
        lit = _literal(a)
        return lit if lit is not None else self.const(a)

    def call(self, n, form):
        args = [self.arg(a, form) for a in n.args]
        kwargs = [f"{k}={self.arg(v, form)}" for k, v in n.kwargs.items()]
        return ", ".join(args + kwargs)

    # -- nodes
    def emit(self, n, index):
        nm = self.name[n] = f"v{index}"
        if n.op == "placeholder":  # a tensor, or a Python constant input
            self.kind[n] = "T" if n.meta.get("val") is not None else "O"
            return
        if n.op == "get_attr":
            v = self.attrs[n.target]
            self.kind[n] = "T" if isinstance(v, Tensor) else "O"
            self.lines.append(f"{nm} = {self.const(v, 'attr')}")
            return
        cls = _op_class(n)
        from ._codegen import FusedKernel
        if cls is not None and not self.need_record(n) and not (cls.view and n in self.outputs):
            self.kind[n] = "A"
            f = self.const(cls.forward, cls.__name__)
            self.lines.append(f"{nm} = {f}(_S(), {self.call(n, 'A')})")
            if not self._returns_tuple(n):
                self.lines.append(f"if type({nm}) is not _nd: {nm} = _asarray({nm})")
            return
        if isinstance(n.target, FusedKernel):
            self.kind[n] = "A"
            k = self.const(n.target, "fused")
            idx = self.arena.index(n) if self.arena is not None else None
            out = "None" if idx is None else f"_ar[{idx}]"
            self.lines.append(f"{nm} = {k}.run_arrays({out}, {self.call(n, 'A')})")
            return
        if n.target is operator.getitem and isinstance(n.args[0], self.Node) and \
                self.kind[n.args[0]] in ("A", "O") and self._returns_tuple(n.args[0]):
            src = n.args[0]
            # "opaque": a Python value an op hands to another (conv columns), not an array
            self.kind[n] = "A" if self.kind[src] == "A" and not n.meta.get("opaque") else "O"
            self.lines.append(f"{nm} = {self.name[src]}[{self.arg(n.args[1], 'A')}]")
            if self.kind[n] == "A":
                self.lines.append(f"if type({nm}) is not _nd: {nm} = _asarray({nm})")
            return
        if getattr(n.target, "array_tuple", False):  # takes arrays, returns a tuple of them
            self.kind[n] = "A"
            f = self.const(n.target, n.target.__name__)
            self.lines.append(f"{nm} = {f}({self.call(n, 'A')})")
            return
        target = n.target
        g = n.args[1] if target is _capture.accumulate_grad else None
        if g is not None and isinstance(g, self.Node) and self.kind.get(g) == "A" and \
                len(g.users) == 1 and self._fresh(g):
            # the gradient was computed for this store alone: no copy needed
            self.lines.append(f"{nm} = {self.const(accumulate_grad_owned, 'acc')}("
                              f"{self.as_tensor(n.args[0])}, {self.name[g]})")
            self.kind[n] = "T"
            self.array_form.clear()
            return
        f = self.const(target, getattr(target, "__name__", "f").strip("_") or "f")
        self.lines.append(f"{nm} = {f}({self.call(n, 'T')})")
        returns_tensor = n.meta.get("val") is not None or cls is not None or n.target in (
            _capture.accumulate_grad, _capture.optimizer_param_step, _capture.set_grad)
        self.kind[n] = "T" if returns_tensor and not self._returns_tuple(n) else "O"
        if self._impure(n):
            self.array_form.clear()  # an update may have rebound a tensor's array

    def _fresh(self, g):
        from ._codegen import FusedKernel
        if isinstance(g.target, FusedKernel):
            return self.arena is None or self.arena.index(g) is None
        if g.target is operator.getitem and getattr(g.args[0].target, "array_tuple", False):
            return True  # a value of run_pair: its ops (``_concurrent._HEAVY``) are _FRESH
        cls = _op_class(g)
        return cls is not None and cls.__name__ in _FRESH

    def _returns_tuple(self, n):
        return any(u.target is operator.getitem for u in n.users) and \
            n.meta.get("val") is None

    @staticmethod
    def _impure(n):
        return n.is_impure(False)

    def output(self, n):
        leaves = n.args[0]
        parts = []
        for a in leaves:
            if isinstance(a, self.Node):
                parts.append(self.name[a] if self.kind[a] == "O" else self.as_tensor(a))
            else:
                parts.append(self.arg(a, "T"))
        self.lines.append(f"return ({', '.join(parts)}{',' if len(parts) == 1 else ''})")


def lower(graph, attrs, rg, drop_records, plan_memory=True):
    """The generated function ``f(*flat_inputs, _ar=arena buffers) -> tuple of output
    leaves`` for ``graph``, its source and its ``Arena`` (None without a memory plan).
    ``rg``: ``requires_grad_map``; ``drop_records``: no op needs a record (see the module
    doc); ``plan_memory``: False where shapes may change between calls."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]

    def need_record(n):
        return not drop_records and rg.get(n, True)
    arena = Arena(graph, need_record) if plan_memory else None
    if arena is not None and not arena.slots:
        arena = None
    w = _Writer(graph, attrs, need_record, arena)
    body_start = len(w.lines)
    for i, n in enumerate(graph.nodes):
        if n.op == "output":
            w.output(n)
        else:
            w.emit(n, i)
    body = w.lines[body_start:]
    params = ", ".join([w.name[p] for p in placeholders] + ["_ar=None"])
    src = "\n".join([f"def program({params}):", "    _grad = _GM.enabled", "    try:"]
                    + [f"        {line}" for line in body]
                    + ["    finally:", "        _GM.enabled = _grad", ""])
    ns = dict(w.ns)
    exec(compile(src, "<ember.compile program>", "exec"), ns)
    return ns["program"], src, arena
