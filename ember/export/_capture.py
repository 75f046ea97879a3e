"""Dispatch-level capture: record every op that runs into one ``ember.fx.Graph``.

A ``CaptureMode`` sits on the dispatch path's ``_MODES`` list (``ember/autograd/graph.py``)
and sees each ``Node.apply`` (built-in ops and custom ``autograd.Function``s) and each
in-place op (``apply_inplace``). While it is active, what would otherwise run outside
dispatch is routed through it:

* ``backward()``: the engine runs every node's Tensor ``backward`` (not its array formula),
  so the backward ops are recorded like the forward's; gradients reaching a leaf are recorded
  as ``accumulate_grad`` nodes, ``zero_grad`` as ``zero_grads``;
* optimizer steps: each parameter's update is one ``optimizer_param_step`` node that calls the
  optimizer's own update at replay (reading the learning rate then, so schedulers work);
* ``.item()``, ``bool()``, ``.tolist()``, ``.numpy()``, ``int()``/``float()`` of a tensor that
  depends on the inputs raise ``DataDependentError`` naming the user's line;
* random functions (``ember.randn``, ``ember.rand_like``, ... ``RANDOM_FUNCTIONS``) are
  recorded as ``random_op`` nodes and dropout draws its mask in a dispatched op, so both are
  re-drawn on every replay (from the default generator: same seed, same draws as eager);
  any other draw (``uniform_``, ``generator=``) raises, since it would become a constant.

The graph: inputs are placeholders; parameters and buffers are ``get_attr`` nodes (or lifted
placeholders for ``export``); other tensors met on the way are constants (``get_attr`` of
``_tensor_constantN``); Python scalars, shapes and dtypes are literal arguments. Ops are
``call_function`` nodes whose targets are ember op classes' ``apply`` (``core_ops()``), an op's
in-place form (``inplace(cls)``), or the few helpers of this module. Python control flow is
specialised: only the branch that ran is recorded. ``Guards`` record what the specialisation
assumed (input shapes, dtypes, requires_grad, module training flags, grad mode).

Replay (``run_graph``) executes the nodes in order with eager semantics: in-place nodes mutate
their targets (a view's base sees the write, a BatchNorm's running stats are written back).
"""

from __future__ import annotations

import operator
import os
import traceback

import numpy as np

from .._meta import MetaArray
from .._tensor import Tensor, _make
from ..autograd import engine as _engine
from ..autograd import graph as _dispatch
from ..autograd.grad_mode import GradMode

__all__ = ["CaptureMode", "Capture", "capture", "run_graph", "core_ops", "Guards",
           "DataDependentError", "GuardError", "inplace", "accumulate_grad", "zero_grads",
           "optimizer_param_step", "set_grad_enabled", "sym_size"]


class DataDependentError(RuntimeError):
    """A captured region read a tensor's value into Python (``.item()``, ``bool()``, ...)."""


class GuardError(RuntimeError):
    """A replay's inputs or state differ from what the capture specialised on."""


class MetaCaptureError(RuntimeError):
    """A meta capture met something only a capture with data can record faithfully."""


# ---------------------------------------------------------------------- graph helpers
def set_grad_enabled(mode):
    """Graph node: switch grad mode (the capture records each change of grad mode)."""
    GradMode.enabled = bool(mode)


set_grad_enabled._fx_impure = True


def sym_size(t, dim):
    """Graph node: the size of ``t`` along ``dim`` (a dynamic dimension of an input)."""
    return t.shape[dim]


_INPLACE: dict = {}


def inplace(cls):
    """The in-place form of op ``cls`` as a graph target: ``f(target, *args)`` writes
    ``cls(target, *args)`` into ``target`` and returns it (eager ``apply_inplace``)."""
    f = _INPLACE.get(cls)
    if f is None:
        def f(target, *args, **kwargs):
            return _dispatch.apply_inplace(cls, target, *args, **kwargs)
        f.__name__ = f"{cls.__name__.lower()}_"
        f.__qualname__ = f.__name__
        f.op = cls
        f._fx_impure = True
        _INPLACE[cls] = f
    return f


def accumulate_grad(p, g):
    """Graph node: the engine storing ``g`` into leaf ``p``'s ``.grad`` (set when there is
    none, else add in place, as eager does)."""
    old = p._grad
    if old is None:
        p._grad = _make(g._data.copy())
    else:
        old._data += g._data
    return p._grad


accumulate_grad._fx_impure = True


def zero_grads(params, set_to_none=True):
    """Graph node: ``zero_grad`` of an optimizer or a module over ``params``."""
    for p in params:
        if p._grad is None:
            continue
        if set_to_none:
            p._grad = None
        else:
            p._grad._data[...] = 0


zero_grads._fx_impure = True


RANDOM_FUNCTIONS = ("rand", "randn", "randint", "randperm", "rand_like", "randn_like",
                    "randint_like", "normal", "bernoulli", "poisson", "multinomial")


def random_op(name, *args, **kwargs):
    """Graph node: ``ember.<name>(*args, **kwargs)``, one of ``RANDOM_FUNCTIONS``, drawn anew
    from the default generator on every replay."""
    if name not in RANDOM_FUNCTIONS:
        raise ValueError(f"random_op: {name!r} is not one of ember's random functions")
    from ..ops import random as _r
    return getattr(_r, name)(*args, **kwargs)


random_op._fx_impure = True


# Tensor factories whose sizes may be read from an input's shape (``ember.zeros(x.shape[0],
# 4)``, ``arange(x.size(1))``). Captures made for dynamic dimensions record them as
# ``creation_op`` nodes, so that their size arguments can be fitted to the dimensions like any
# other integer argument (``ember.export._generalise``); other captures keep today's constants.
CREATION_FUNCTIONS = ("zeros", "ones", "full", "empty", "arange", "linspace", "eye",
                      "zeros_like", "ones_like", "full_like", "empty_like", "tensor",
                      "scalar_tensor")
CREATION_METHODS = ("new_zeros", "new_ones", "new_full", "new_empty")
# the ones whose first argument is a tensor read for its shape, dtype and device only
_LIKE = frozenset(n for n in CREATION_FUNCTIONS if n.endswith("_like")) | \
    frozenset(CREATION_METHODS)


def creation_op(name, *args, **kwargs):
    """Graph node: the tensor factory ``ember.<name>(*args, **kwargs)`` (one of
    ``CREATION_FUNCTIONS``) or the method ``args[0].<name>(*args[1:], **kwargs)`` (one of
    ``CREATION_METHODS``), made anew on every replay with the sizes the graph computes."""
    if name in CREATION_METHODS:
        return getattr(Tensor, name)(*args, **kwargs)
    if name not in CREATION_FUNCTIONS:
        raise ValueError(f"creation_op: {name!r} is not one of ember's tensor factories")
    from ..ops import creation as _c
    return getattr(_c, name)(*args, **kwargs)


def _real_stand_ins(a):
    """``a`` with meta tensors replaced by empty CPU tensors of the same shape, dtype and
    strides (the arguments a factory reads only for those)."""
    if isinstance(a, Tensor) and type(a._data) is MetaArray:
        return _make(np.empty(a._data.shape, a._data.dtype))
    if type(a) is tuple:
        return tuple(_real_stand_ins(x) for x in a)
    if type(a) is list:
        return [_real_stand_ins(x) for x in a]
    if type(a) is dict:
        return {k: _real_stand_ins(v) for k, v in a.items()}
    return a


def _plain(a):
    """``a`` with tuple subclasses (``ember.Size``) made plain tuples, so graphs hold only
    the argument types the archive's JSON schema knows."""
    if isinstance(a, tuple):
        return tuple(_plain(x) for x in a)
    if type(a) is list:
        return [_plain(x) for x in a]
    return a


def set_grad(p, g):
    """Graph node: ``p.grad = g``."""
    p.grad = g
    return g


set_grad._fx_impure = True


def optimizer_param_step(opt, group_index, p):
    """Graph node: ``opt``'s update of parameter ``p`` (its state made on first use), as the
    optimizer template (``Optimizer._step_group``/``_step_one``) does it."""
    group = opt.param_groups[group_index]
    first = not opt.state.get(p)
    if first:
        new = opt._init_state(p, group)
        if new is not None:
            opt.state[p] = new
    opt._prepare(group)
    _ORIG["_step_one"](opt, group, p, first)
    return p


optimizer_param_step._fx_impure = True

_HELPERS = {f.__name__: f for f in (set_grad_enabled, sym_size, accumulate_grad, zero_grads,
                                     set_grad, random_op, optimizer_param_step,
                                     creation_op)}
_HELPERS.update({"operator.getitem": operator.getitem, "operator.add": operator.add,
                 "operator.mul": operator.mul, "operator.sub": operator.sub,
                 "operator.floordiv": operator.floordiv, "operator.neg": operator.neg,
                 "operator.truediv": operator.truediv, "operator.pow": operator.pow})


def core_ops():
    """The core op set: the ember op classes (``Node`` subclasses defined in ember, loaded
    with ``ember.ops`` and ``ember.nn.functional``) whose ``apply`` a captured graph may call,
    by qualified name. Composite functions (``F.gelu``, ``nn.Linear``, losses ...) never
    appear in a captured graph: capture sees only these."""
    import importlib
    import pkgutil

    from .. import ops
    for info in pkgutil.iter_modules(ops.__path__):
        importlib.import_module(f"ember.ops.{info.name}")
    importlib.import_module("ember.nn.functional")
    skip = (_dispatch.Function, _dispatch.AccumulateGrad, _dispatch.FunctionCtx)
    names, stack = set(), list(_dispatch.Node.__subclasses__())
    while stack:
        c = stack.pop()
        stack.extend(c.__subclasses__())
        if c.__module__.startswith("ember.") and not issubclass(c, skip) and \
                "<locals>" not in c.__qualname__ and not c.__name__.startswith("_"):
            names.add(f"{c.__module__}.{c.__qualname__}")
    return sorted(names)


def target_name(target):
    """The stable qualified name of a graph target (used by save/load and in errors)."""
    cls = getattr(target, "__self__", None)
    if isinstance(cls, type) and getattr(target, "__name__", "") == "apply":
        return f"{cls.__module__}.{cls.__qualname__}.apply"
    op = getattr(target, "op", None)
    if op is not None and _INPLACE.get(op) is target:
        return f"{op.__module__}.{op.__qualname__}.inplace"
    for k, v in _HELPERS.items():
        if v is target:
            return k if "." in k else f"ember.export._capture.{k}"
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"


# ---------------------------------------------------------------------- user lines
_EMBER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ``export`` sets this while it captures: each op node then records the user's source line
# in ``meta["source_line"]`` (exporters name it in their errors); a cheap frame walk
_RECORD_LINES = False


def _source_line():
    import linecache
    import sys
    f = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename
        if not os.path.abspath(fn).startswith(_EMBER_DIR + os.sep):
            code = linecache.getline(fn, f.f_lineno).strip()
            return f'File "{fn}", line {f.f_lineno}, in {f.f_code.co_name}: {code}'
        f = f.f_back
    return None


def user_frame():
    """``file:line: code`` of the innermost stack frame outside ember (the user's line)."""
    for fr in reversed(traceback.extract_stack()[:-1]):
        if not os.path.abspath(fr.filename).startswith(_EMBER_DIR + os.sep):
            return f'File "{fr.filename}", line {fr.lineno}, in {fr.name}: {fr.line}'
    return "<unknown line>"


# ---------------------------------------------------------------------- guards
class Guards:
    """What a capture specialised on, checked before each replay (``check``).

    ``inputs``: per flat input, ``(name, shape, dtype, requires_grad)`` or a Python constant
    ``("const", value)``; ``dynamic``: ``{(input index, dim): (name, min, max)}``;
    ``training``: ``{module path: flag}``; ``grad_enabled``: the grad mode at capture."""

    def __init__(self, inputs, training, grad_enabled, dynamic=None):
        self.inputs = inputs
        self.training = training
        self.grad_enabled = grad_enabled
        self.dynamic = dynamic or {}

    def check(self, flat, modules=None, check_grad_mode=True, check_requires_grad=True):
        if len(flat) != len(self.inputs):
            raise GuardError(f"expected {len(self.inputs)} flat inputs, got {len(flat)}")
        sizes = {}
        for i, (g, v) in enumerate(zip(self.inputs, flat)):
            name = g[0]
            if g[1] == "const":
                if isinstance(v, Tensor) or v != g[2]:
                    raise GuardError(f"guard failed: input {name} was specialised to the constant "
                                     f"{g[2]!r} at capture, got {_short(v)}")
                continue
            _, shape, dtype, rg = g
            if not isinstance(v, Tensor):
                raise GuardError(f"guard failed: input {name} should be a Tensor, got "
                                 f"{type(v).__name__}")
            if v.ndim != len(shape):
                raise GuardError(f"guard failed: input {name} should have {len(shape)} dims "
                                 f"(shape {list(shape)}), got shape {list(v.shape)}")
            for d, (want, got) in enumerate(zip(shape, v.shape)):
                dyn = self.dynamic.get((i, d))
                if dyn is None:
                    if want != got:
                        raise GuardError(
                            f"guard failed: input {name} dim {d} was specialised to {want} (a "
                            f"static dimension) but got {got} (shape {list(v.shape)}); mark it "
                            f"dynamic with dynamic_shapes/Dim or capture again")
                    continue
                dname, lo, hi = dyn
                if got < lo or got > hi:
                    raise GuardError(f"guard failed: input {name} dim {d} ({dname}) must be in "
                                     f"[{lo}, {hi}], got {got}")
                if sizes.setdefault(dname, got) != got:
                    raise GuardError(f"guard failed: dimension {dname} is {sizes[dname]} "
                                     f"elsewhere but input {name} dim {d} is {got}")
            if str(v.dtype) != dtype:
                raise GuardError(f"guard failed: input {name} should have dtype {dtype}, got "
                                 f"{v.dtype}")
            if check_requires_grad and bool(v.requires_grad) != rg:
                raise GuardError(f"guard failed: input {name} had requires_grad={rg} at capture, "
                                 f"got requires_grad={v.requires_grad}")
        if check_grad_mode and GradMode.enabled != self.grad_enabled:
            was, now = ("enabled" if f else "disabled"
                        for f in (self.grad_enabled, GradMode.enabled))
            raise GuardError(f"guard failed: grad mode was {was} at capture, now {now}")
        if modules is not None:
            for path, mod in modules.items():
                want = self.training.get(path)
                if want is not None and mod.training != want:
                    raise GuardError(
                        f"guard failed: module {path or '<root>'} was in "
                        f"{'training' if want else 'eval'} mode at capture, now in "
                        f"{'training' if mod.training else 'eval'} mode (dropout and batch norm "
                        f"differ between the two); capture again in this mode")


def _short(v):
    if isinstance(v, Tensor):
        return f"a Tensor of shape {list(v.shape)}"
    return repr(v)


def training_flags(modules):
    return {path: m.training for path, m in modules.items()}


# ---------------------------------------------------------------------- the mode
class _Const:
    """A tensor met during capture that is neither an input nor a parameter."""

    def __init__(self, tensor, by_reference):
        self.tensor = tensor
        self.by_reference = by_reference


class CaptureMode:
    """The mode object on ``_MODES`` that records ops into ``graph`` (see the module doc).

    ``known``: ``{id(array): fx node}`` for inputs and parameters, filled by the caller;
    ``persistent``: tensors (parameters, buffers, optimizer state) that replays must mutate in
    place rather than copy: constants among them are kept by reference."""

    records_backward = True  # the engine runs backward formulas as ops for this mode
    record_creation = False  # record tensor factories as ``creation_op`` nodes (see there)
    # ``hook(mode, tensor, reader_name, what, orig_reader, args, kwargs)``: called instead of
    # refusing a data-dependent value read (``ember.compile`` records a graph break there)
    on_value_read = None
    # ``ember.compile``: a tensor the graph would hold as a copy must be one no step updates
    # (not one that requires grad, not one written in place): a parameter of a model reached
    # some way the compiler did not find would otherwise stay frozen on every replay
    strict_constants = False
    # ``ember.compile``'s meta capture: the inputs and persistent tensors hold ``MetaArray``s
    # (shapes, dtypes and strides, no data), so the ops record without computing. Whatever
    # could make the graph differ from the one a real run records raises instead
    # (``MetaCaptureError`` or the meta device's own errors), and the caller captures for real
    meta_arrays = False

    def __init__(self, graph, persistent=()):
        self.graph = graph
        self.nodes: dict = {}      # id(array) -> fx node
        self.keep: list = []       # arrays kept alive so their ids stay unique
        self.consts: dict = {}     # name -> _Const
        self.persistent = {id(t._data): t for t in persistent}
        self.grad_enabled = GradMode.enabled
        self.phase = "forward"
        self.create_graph = False
        self.in_op = 0
        self.in_zero_grad = 0
        self.mutated: set = set()  # ids of arrays written by recorded in-place nodes
        self.data_dependent: set = set()
        self.objects: dict = {}    # id(obj) -> get_attr node for non-tensor objects
        self.created: dict = {}    # creation_op node -> the tensor it made at capture
        self.copied: set = set()   # ids of arrays the graph holds as copies (strict mode)
        self.meta_values: dict = {}  # id(MetaArray) -> the tensor with data it stands for
        self.group_values: dict = {}  # meta: (id(opt), group index) -> values at the update

    # -- values
    def bind(self, t, node, data_dependent=True):
        arr = t._data
        self.nodes[id(arr)] = node
        self.keep.append(arr)
        if data_dependent:
            self.data_dependent.add(node)

    def _depends(self, fx_args):
        """Whether a value computed from ``fx_args`` depends on inputs or parameters."""
        from ..fx import map_arg
        found = []
        map_arg(fx_args, lambda n: found.append(n) or n)
        return any(n in self.data_dependent for n in found)

    def tensor_node(self, t):
        n = self.nodes.get(id(t._data))
        if n is not None:
            return n
        by_ref = id(t._data) in self.persistent
        if self.meta_arrays and by_ref:
            # the persistent tensor itself (not a wrapper of its array made on the way), whose
            # data is given back after the capture
            t = self.persistent[id(t._data)]
        elif self.meta_arrays and type(t._data) is MetaArray:
            real = self.meta_values.get(id(t._data))
            if real is None:
                raise MetaCaptureError(f"a meta tensor of shape {list(t.shape)} made outside "
                                       "the dispatcher would become a constant")
            node = self.tensor_node(real)  # the constant a real capture records
            self.bind(t, node, data_dependent=False)
            return node
        if self.phase == "backward" and not by_ref:
            a = t._data
            if a.size > 1 and not (a == a.reshape(-1)[0]).all():
                raise NotImplementedError(
                    "capture: a backward formula used an array computed outside the "
                    f"dispatcher (shape {list(a.shape)}, dtype {a.dtype}); it would be baked "
                    "into the graph as a constant. Capture the forward only (export), or run "
                    "this model's training step eagerly")
        if self.strict_constants and not by_ref:
            if t.requires_grad:
                raise NotImplementedError(
                    f"capture: a tensor of shape {list(t.shape)} that requires grad was "
                    "reached neither through the function's arguments, closure or globals nor "
                    "through a module or optimizer found there; the graph would hold a copy "
                    "that no replay updates. Pass the model (or its optimizer) as an argument, "
                    "or reach it through a global or closure variable")
            self.copied.add(id(t._data))
        name = f"_tensor_constant{len(self.consts)}"
        # a constant not kept by reference is copied now, before anything writes into it
        self.consts[name] = _Const(t if by_ref else _make(t._data.copy()), by_ref)
        with self._at_attrs():
            node = self.graph.get_attr(name)
        self.bind(t, node, data_dependent=by_ref)
        return node

    def _at_attrs(self):
        """Insert before the first op, so constants sit with the inputs at the top."""
        for n in self.graph.nodes:
            if n.op not in ("placeholder", "get_attr"):
                return self.graph.inserting_before(n)
        return self.graph.inserting_after(None)

    def object_node(self, obj, hint):
        n = self.objects.get(id(obj))
        if n is None:
            name = f"_{hint}{len(self.objects)}"
            self.consts[name] = _Const(obj, True)
            with self._at_attrs():
                n = self.graph.get_attr(name)
            self.objects[id(obj)] = n
        return n

    def arg(self, a):
        if isinstance(a, Tensor):
            return self.tensor_node(a)
        if type(a) is np.ndarray:
            if id(a) in self.nodes:
                return self.nodes[id(a)]
            return self.tensor_node(_make(a))
        if self.meta_arrays and type(a) is MetaArray:  # never a literal argument
            if id(a) in self.nodes:
                return self.nodes[id(a)]
            return self.tensor_node(_make(a))  # a persistent tensor's, or refused there
        if isinstance(a, np.generic):
            return a.item()
        if isinstance(a, _dispatch.Node):
            raise NotImplementedError(
                f"capture: an op received the autograd context of {a.name()} as an argument "
                "(a backward formula reading arrays its forward kept); a replay could not "
                "rebuild it. Capture the forward only, or run this step eagerly")
        if type(a) is tuple:
            return tuple(self.arg(x) for x in a)
        if type(a) is list:
            return [self.arg(x) for x in a]
        if type(a) is dict:
            return {k: self.arg(v) for k, v in a.items()}
        if type(a) is slice:
            return slice(self.arg(a.start), self.arg(a.stop), self.arg(a.step))
        return a

    def _sync_grad_mode(self):
        # the engine runs a captured backward with grad mode on (so that formulas take their
        # recorded, ops-only form); the graph replays it with grad mode off, as eager runs it
        want = GradMode.enabled and not (self.phase == "backward" and not self.create_graph)
        if want != self.grad_enabled:
            self.grad_enabled = want
            self.graph.call_function(set_grad_enabled, (self.grad_enabled,))

    def _bind_outputs(self, out, node, dd):
        if isinstance(out, Tensor):
            self.bind(out, node, dd)
            self._meta(node, out)
        elif isinstance(out, tuple):
            for i, o in enumerate(out):
                if isinstance(o, Tensor):
                    g = self.graph.call_function(operator.getitem, (node, i))
                    self.bind(o, g, dd)
                    self._meta(g, o)

    @staticmethod
    def _meta(node, t):
        shape, stride = tuple(t.shape), tuple(t.stride())
        node.meta["tensor_meta"] = (shape, t.dtype, stride)
        node.meta["val"] = _fake(shape, t.dtype, stride)

    # -- the _MODES protocol
    def on_op(self, cls, args, kwargs, run):
        fx_args = self.arg(args)
        fx_kwargs = self.arg(kwargs)
        self._sync_grad_mode()
        self.in_op += 1
        try:
            out = run()
        finally:
            self.in_op -= 1
        node = self.graph.call_function(cls.apply, fx_args, fx_kwargs)
        if _RECORD_LINES:
            node.meta["source_line"] = _source_line()
        if self.meta_arrays:  # an op on constants alone (a dropout mask) computed for real
            for o in (out if isinstance(out, tuple) else (out,)):
                if isinstance(o, Tensor):
                    self._as_meta(o)
        # depends on inputs or parameters: one of the node's inputs does (the node knows them)
        self._bind_outputs(out, node, not self.data_dependent.isdisjoint(node._input_nodes))
        return out

    def on_inplace(self, cls, target, args, kwargs, run):
        if self.meta_arrays and target._base is not None:
            # aliasing is where meta arrays are least like NumPy's (which results are views):
            # a write through a view is captured for real
            raise MetaCaptureError("an in-place write into a view")
        fx_target = self.arg(target)
        if self.strict_constants:
            self._refuse_copy_write(target)
        fx_args = self.arg(args)
        fx_kwargs = self.arg(kwargs)
        self._sync_grad_mode()
        self.in_op += 1
        try:
            out = run()
        finally:
            self.in_op -= 1
        node = self.graph.call_function(inplace(cls), (fx_target,) + fx_args, fx_kwargs)
        if _RECORD_LINES:
            node.meta["source_line"] = _source_line()
        self._note_mutation(target)
        self.bind(target, node, not self.data_dependent.isdisjoint(node._input_nodes))
        self._meta(node, target)
        return out

    def _refuse_copy_write(self, t):
        """Strict mode: an in-place write into a tensor the graph holds as a copy is refused
        before it runs (the capture's own run must not write either: the function then runs
        eagerly, once)."""
        if id(t._data) in self.copied or (t._base is not None and
                                          id(t._base._data) in self.copied):
            raise NotImplementedError(
                f"capture: an in-place write into a tensor of shape {list(t.shape)} that the "
                "graph holds as a copy (reached neither through the function's arguments, "
                "closure or globals nor through a module or optimizer found there); a replay "
                "would write into the copy, not into the tensor")

    def _note_mutation(self, t):
        self.mutated.add(id(t._data))
        base = t._base
        if base is not None:
            self.mutated.add(id(base._data))

    # -- engine, optimizer and Tensor hooks (installed by ``capture``)
    def store_grad(self, t, g, create_graph, handed, root_ids):
        p_node = self.arg(t)
        g_node = self.arg(g)
        self._sync_grad_mode()
        _ORIG["_store_grad"](t, g, create_graph, handed, root_ids)
        node = self.graph.call_function(accumulate_grad, (p_node, g_node))
        self.bind(t._grad, node)

    def run_backward(self, tensors, grad_tensors, retain_graph, create_graph, *args, **kwargs):
        prev, self.phase = self.phase, "backward"
        prev_cg, self.create_graph = self.create_graph, bool(create_graph)
        try:
            return _ORIG["run_backward"](tensors, grad_tensors, retain_graph, create_graph,
                                         *args, **kwargs)
        finally:
            self.phase, self.create_graph = prev, prev_cg

    def zero_grad(self, params, set_to_none):
        # every parameter, with or without a gradient now: a replay may find one
        if params:
            self.graph.call_function(zero_grads, ([self.arg(p) for p in params], set_to_none))

    def set_grad(self, t, value):
        """``p.grad = value`` (or None) inside the captured region."""
        if value is None:  # recorded even when there is no gradient now: a replay may have one
            self.graph.call_function(zero_grads, ([self.arg(t)], True))
            return
        node = self.graph.call_function(set_grad, (self.arg(t), self.arg(value)))
        self.bind(value, node)

    def optimizer_step_one(self, opt, group, p, first):
        p_node = self.arg(p)
        if p._grad is not None:
            self.arg(p._grad)
        opt_node = self.object_node(opt, "optimizer")
        gi = next(i for i, g in enumerate(opt.param_groups) if g is group)
        # the optimizer's state tensors must persist across replays: keep them by reference
        for v in opt.state.get(p, {}).values():
            if isinstance(v, Tensor):
                self.persistent[id(v._data)] = v
        if not self.meta_arrays:  # a meta capture only records the update (values only)
            _ORIG["_step_one"](opt, group, p, first)
        else:  # the hyperparameters this call's update reads (a scheduler may change them after)
            self.group_values.setdefault((id(opt), gi), (opt, gi, {
                k: v for k, v in group.items() if k != "params"}))
        self._sync_grad_mode()
        node = self.graph.call_function(optimizer_param_step, (opt_node, gi, p_node))
        self._note_mutation(p)
        self.bind(p, node)

    def random_call(self, name, orig, args, kwargs):
        """``ember.randn(...)`` and the other ``RANDOM_FUNCTIONS`` inside the region."""
        if self.in_op:  # called by another random function (randn_like -> randn): its part
            return orig(*args, **kwargs)
        if kwargs.get("generator") is not None or kwargs.get("out") is not None:
            raise NotImplementedError(
                f"capture: ember.{name} with generator= or out= inside a captured region "
                f"({user_frame()}); use the default generator and the returned tensor")
        fx_args, fx_kwargs = self.arg(args), self.arg(kwargs)
        self._sync_grad_mode()
        self.in_op += 1
        try:
            out = orig(*args, **kwargs)
        finally:
            self.in_op -= 1
        node = self.graph.call_function(random_op, (name,) + fx_args, fx_kwargs)
        if self.meta_arrays:
            self._as_meta(out)
        self.bind(out, node)  # random values are data: reading one into Python is refused
        self._meta(node, out)
        return out

    def creation_call(self, name, orig, args, kwargs):
        """``ember.zeros(...)`` and the other factories (``CREATION_FUNCTIONS``/``_METHODS``)
        inside a region captured with ``record_creation``: a ``creation_op`` node."""
        if self.in_op or kwargs.get("out") is not None:  # part of an op, or writes a tensor
            return orig(*args, **kwargs)
        args, kwargs = _plain(args), {k: _plain(v) for k, v in kwargs.items()}
        fx_args, fx_kwargs = self.arg(args), self.arg(kwargs)
        self._sync_grad_mode()
        self.in_op += 1
        try:
            out = orig(*args, **kwargs)
        finally:
            self.in_op -= 1
        node = self.graph.create_node("call_function", creation_op, (name,) + fx_args,
                                      fx_kwargs, name=name)  # named as PyTorch's: ``zeros``
        if _RECORD_LINES:
            node.meta["source_line"] = _source_line()
        # a factory's values never depend on the data of a tensor it reads the shape of
        values = (fx_args[1:] if name in _LIKE else fx_args, fx_kwargs)
        if self.meta_arrays:
            # the value is made for real (a factory's values never depend on the data of a
            # tensor it reads the shape of): folded back into a constant, it must hold data
            real = out if type(out._data) is not MetaArray else \
                orig(*_real_stand_ins(args), **_real_stand_ins(kwargs))
            if real._data.shape != out._data.shape or real._data.strides != out._data.strides \
                    or real._data.dtype != out._data.dtype:
                raise MetaCaptureError(f"ember.{name} made for real differs in layout")
            self.created[node] = _make(real._data.copy())
            self._as_meta(out)
        else:
            self.created[node] = None
        self.bind(out, node, self._depends(values))
        self._meta(node, out)
        if self.created[node] is None:
            # the value made now: ``_generalise`` turns the nodes whose sizes stay fixed back
            # into constants (later in-place writes to ``out`` must not reach this copy)
            self.created[node] = _make(out._data.copy())
        return out

    @staticmethod
    def _as_meta(t):
        """Turn ``t``, just made for real by a factory or a random function, into a meta
        tensor, so that a meta capture's ops see one device."""
        if not isinstance(t, Tensor):
            raise MetaCaptureError("a factory returned something other than a tensor")
        a = t._data
        if type(a) is not MetaArray:
            t._data = MetaArray(a.shape, a.dtype, a.strides)

    def check_value_read(self, t, what):
        if self.nodes.get(id(t._data)) in self.data_dependent:
            raise DataDependentError(
                f"{what} of a tensor that depends on the captured inputs: the captured graph "
                f"cannot branch on or read tensor values ({user_frame()}). Keep the value a "
                "tensor (e.g. ember.where instead of an if), use jit.trace with inputs that "
                "take the branch you want, or compute it outside the captured region")


_META_OK: list = []


def _fake(shape, dtype, stride):
    """``node.meta['val']``: a tensor on the ``meta`` device where ember has one (shape, dtype
    and strides, no data), else a stand-in ``_Fake`` with the same three."""
    if not _META_OK:
        try:
            from .. import empty_strided
            _META_OK.append(str(empty_strided((1,), (1,), device="meta").device) == "meta")
        except Exception:  # no meta device in this build
            _META_OK.append(False)
    if _META_OK[0]:
        try:  # what ``empty_strided(shape, stride, dtype=dtype, device="meta")`` makes, in a
            # seventh of its time (a capture makes one per node)
            np_dtype, size = dtype.np, dtype.itemsize
            return _make(MetaArray(shape, np_dtype, tuple(s * size for s in stride)))
        except Exception:  # noqa: BLE001 - a dtype without a NumPy one: the general path
            pass
        try:
            from .. import empty_strided
            return empty_strided(shape, stride, dtype=dtype, device="meta")
        except Exception:  # a layout the meta device does not take
            pass
    return _Fake(shape, dtype, stride)


class _Fake:
    """``node.meta['val']``: a tensor's shape, dtype and stride without its data."""

    __slots__ = ("shape", "dtype", "_stride")

    def __init__(self, shape, dtype, stride):
        self.shape, self.dtype, self._stride = shape, dtype, stride

    def stride(self):
        return self._stride

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"FakeTensor(shape={list(self.shape)}, dtype={self.dtype})"


# ---------------------------------------------------------------------- installing hooks
_ORIG: dict = {}
_ACTIVE: list = []  # the CaptureMode being recorded, innermost last


def _value_reader(name, what):
    orig = getattr(Tensor, name)

    def reader(self, *args, **kwargs):
        if _ACTIVE:
            mode = _ACTIVE[-1]
            hook = mode.on_value_read
            if hook is not None and mode.nodes.get(id(self._data)) in mode.data_dependent:
                # the compiler turns the read into a graph break instead of an error
                return hook(mode, self, name, what, orig, args, kwargs)
            mode.check_value_read(self, what)
        return orig(self, *args, **kwargs)
    reader.__name__ = name
    return orig, reader


_READERS = (("item", ".item()"), ("tolist", ".tolist()"), ("numpy", ".numpy()"),
            ("__bool__", "bool()"), ("__int__", "int()"), ("__float__", "float()"),
            ("__index__", "using as an index"))


class _RandomGuard:
    """Stands in for a generator's NumPy generator during capture: draws made inside a
    dispatched op (a random op) pass, draws made elsewhere would become constants and raise."""

    def __init__(self, real, mode):
        self._real, self._mode = real, mode

    def __getattr__(self, name):
        if self._mode.in_op == 0:
            raise NotImplementedError(
                f"capture: a random draw outside a dispatched op ({user_frame()}) would be "
                "baked into the graph as a constant; ember records dropout and ember.rand/"
                "randn/randint/normal/... (called as ember.<name>) as random ops, but not this "
                "draw (an in-place filler such as uniform_, or a random function reached by "
                "another path): pass the random tensor as an input instead")
        return getattr(self._real, name)


def _patch_functions(family, names, call):
    """Route each function ``names`` of the op family module ``family`` (and its alias in the
    ``ember`` namespace, where that is the same function) through
    ``call(name, original, args, kwargs)``; returns the ``(namespace, name, original)``
    triples that ``_uninstall`` puts back."""
    import ember
    saved = []
    for name in names:
        orig = getattr(family, name)

        def wrapper(*args, __name=name, __orig=orig, **kwargs):
            return call(__name, __orig, args, kwargs)
        for ns in (family, ember):
            if getattr(ns, name, None) is orig:
                saved.append((ns, name, orig))
                setattr(ns, name, wrapper)
    return saved


def _install(mode):
    from .. import _random
    from ..optim import optimizer as _opt
    _ORIG.setdefault("_store_grad", _engine._store_grad)
    _ORIG.setdefault("run_backward", _engine.run_backward)
    _ORIG.setdefault("_step_one", _opt.Optimizer._step_one)
    _ORIG.setdefault("opt_zero_grad", _opt.Optimizer.zero_grad)
    from ..nn.modules.module import Module
    _ORIG.setdefault("mod_zero_grad", Module.zero_grad)
    saved = {"readers": {}}
    for name, what in _READERS:
        orig, reader = _value_reader(name, what)
        saved["readers"][name] = orig
        setattr(Tensor, name, reader)
    _engine._store_grad = mode.store_grad
    _engine.run_backward = mode.run_backward
    _opt.Optimizer._step_one = lambda opt, group, p, first: \
        mode.optimizer_step_one(opt, group, p, first)
    saved["use_flat"] = _opt.Optimizer.__dict__.get("_use_flat")
    _opt.Optimizer._use_flat = lambda self, group: False

    def opt_zero_grad(self, set_to_none=True):
        mode.zero_grad([p for g in self.param_groups for p in g["params"]], set_to_none)
        mode.in_zero_grad += 1
        try:
            return _ORIG["opt_zero_grad"](self, set_to_none)
        finally:
            mode.in_zero_grad -= 1

    def mod_zero_grad(self, set_to_none=True):
        mode.zero_grad(list(self.parameters()), set_to_none)
        mode.in_zero_grad += 1
        try:
            return _ORIG["mod_zero_grad"](self, set_to_none)
        finally:
            mode.in_zero_grad -= 1
    _opt.Optimizer.zero_grad = opt_zero_grad
    Module.zero_grad = mod_zero_grad
    from ..ops import random as _r
    saved["random"] = _patch_functions(_r, RANDOM_FUNCTIONS, mode.random_call)
    grad_prop = Tensor.__dict__["grad"]
    saved["grad"] = grad_prop

    def grad_set(self, value):
        if mode.in_zero_grad:  # zero_grad records itself
            return grad_prop.fset(self, value)
        if value is None:
            mode.set_grad(self, None)
            grad_prop.fset(self, None)
        else:
            grad_prop.fset(self, value)  # validates the value first
            mode.set_grad(self, value)
    Tensor.grad = property(grad_prop.fget, grad_set, doc=grad_prop.__doc__)
    saved["creation"] = []
    if mode.record_creation:
        from ..ops import creation as _c
        saved["creation"] = _patch_functions(_c, CREATION_FUNCTIONS, mode.creation_call)
        for name in CREATION_METHODS:
            orig = getattr(Tensor, name)

            def method(self, *args, __name=name, __orig=orig, **kwargs):
                return mode.creation_call(__name, __orig, (self,) + args, kwargs)
            saved["creation"].append((Tensor, name, orig))
            setattr(Tensor, name, method)
    gen = _random.default_generator
    saved["rng"] = gen._rng
    gen._rng = _RandomGuard(gen._rng, mode)
    saved["meta_bool"] = MetaArray.__dict__["__bool__"]
    _ORIG.setdefault("_make_grads", _engine._make_grads)
    if mode.meta_arrays:
        def make_grads(tensors, grad_tensors):
            # the implicit seed of ``loss.backward()`` (ones, made outside the dispatcher):
            # its values are known, so a meta capture keeps them for the constant
            out = _ORIG["_make_grads"](tensors, grad_tensors)
            for g, given in zip(out, grad_tensors):
                if given is None and g is not None and type(g._data) is MetaArray:
                    a = g._data
                    mode.meta_values[id(a)] = _make(np.ones(a.shape, a.dtype))
                    mode.keep.append(a)
            return out
        _engine._make_grads = make_grads

        def meta_bool(self):
            # inside an op's forward a test of values only validates them or picks a kernel
            # with the same output (ember/_meta.py); outside one, Python code branching on
            # values could record another graph than a run with data
            if mode.in_op:
                return False
            raise MetaCaptureError("Python code tested the truth of an array's values")
        MetaArray.__bool__ = meta_bool
        # outside the ops, the function and ember's Python around the ops see the tensors as
        # the CPU tensors they stand for, and take the path a capture with data records
        # (dropout draws its mask, ``zeros(n, device=x.device)`` is made on the CPU); an op
        # sees the meta arrays it computes on
        is_meta, device = Tensor.__dict__["is_meta"], Tensor.__dict__["device"]
        saved["meta_props"] = (is_meta, device)
        from .._device import CPU
        Tensor.is_meta = property(lambda self: is_meta.fget(self) if mode.in_op else False,
                                  doc=is_meta.__doc__)
        Tensor.device = property(lambda self: device.fget(self) if mode.in_op else CPU,
                                 doc=device.__doc__)
    _ACTIVE.append(mode)
    _dispatch._MODES.append(mode)
    return saved


def _uninstall(mode, saved):
    from .. import _random
    from ..nn.modules.module import Module
    from ..optim import optimizer as _opt
    _dispatch._MODES.remove(mode)
    _ACTIVE.remove(mode)
    for name, orig in saved["readers"].items():
        setattr(Tensor, name, orig)
    _engine._store_grad = _ORIG["_store_grad"]
    _engine.run_backward = _ORIG["run_backward"]
    _opt.Optimizer._step_one = _ORIG["_step_one"]
    _opt.Optimizer.zero_grad = _ORIG["opt_zero_grad"]
    Module.zero_grad = _ORIG["mod_zero_grad"]
    if saved["use_flat"] is not None:
        _opt.Optimizer._use_flat = saved["use_flat"]
    _random.default_generator._rng = saved["rng"]
    MetaArray.__bool__ = saved["meta_bool"]
    if "meta_props" in saved:
        Tensor.is_meta, Tensor.device = saved["meta_props"]
    _engine._make_grads = _ORIG["_make_grads"]
    Tensor.grad = saved["grad"]
    for ns, name, orig in saved["random"] + saved["creation"]:
        setattr(ns, name, orig)


# ---------------------------------------------------------------------- capture
class Capture:
    """The result of ``capture``: the graph, its constants (``attrs``), input names, guards
    and the output structure. ``run(*flat_inputs)`` replays it."""

    def __init__(self, graph, attrs, input_names, guards, out_spec, param_names, modules):
        self.graph = graph
        self.attrs = attrs
        self.input_names = input_names
        self.guards = guards
        self.out_spec = out_spec
        self.param_names = param_names
        self.modules = modules
        self.created = {}  # creation_op node -> its value at capture (``record_creation``)

    def run(self, *flat, check=True):
        """Replay on ``flat`` inputs (guards checked first); returns the captured result's
        structure."""
        if check:
            self.guards.check(list(flat), self.modules)
        out = run_graph(self.graph, list(flat), self.attrs)
        if self.out_spec is None:
            return out[0]
        from ._pytree import tree_unflatten
        return tree_unflatten(list(out), self.out_spec)


def check_not_nested():
    if _ACTIVE:
        raise RuntimeError("capture: a capture (export, jit.trace) cannot start inside another "
                           "one")


def capture(fn, flat_inputs, input_names, *, modules=None, lift_params=False, persistent=(),
            unflatten=None, flatten_out=None, on_value_read=None, record_creation=False,
            strict_constants=False, meta_arrays=False):
    """Run ``fn(*structure)`` once with a ``CaptureMode`` active and return a ``Capture``.

    ``flat_inputs``: the flat list of input leaves (Tensors or Python constants), named by
    ``input_names``; ``unflatten(leaves)`` rebuilds ``fn``'s arguments from them (default:
    positional) and ``flatten_out(result)`` returns ``(tensor leaves, spec)``.
    ``modules``: ``{path: module}`` whose parameters and buffers become ``get_attr`` nodes
    named by their dotted path (``lift_params``: placeholders ``p_<path>``/``b_<path>``
    before the user inputs instead, as ``export`` writes them). ``on_value_read``: see
    ``CaptureMode.on_value_read``. ``record_creation``: tensor factories become
    ``creation_op`` nodes instead of constants (captures for dynamic dimensions).
    ``strict_constants``: refuse (``NotImplementedError``) a tensor that requires grad, or an
    in-place write, where the graph would hold a copy (``ember.compile``'s captures).
    ``meta_arrays``: the caller has given the inputs and persistent tensors ``MetaArray`` data;
    record without computing (see ``CaptureMode.meta_arrays``)."""
    from ..fx import Graph
    check_not_nested()
    modules = modules or {}
    graph = Graph()
    persistent = list(persistent)
    root = modules.get("")
    params, buffers = {}, {}
    if root is not None:
        params = dict(root.named_parameters(remove_duplicate=False))
        buffers = dict(root.named_buffers(remove_duplicate=False))
        persistent += list(params.values()) + list(buffers.values())
    mode = CaptureMode(graph, persistent)
    mode.on_value_read = on_value_read
    mode.record_creation = record_creation
    mode.strict_constants = strict_constants
    mode.meta_arrays = meta_arrays
    attrs = {}
    param_names = []
    for kind, table in (("p", params), ("b", buffers)):
        for name, t in table.items():
            if id(t._data) in mode.nodes:
                continue  # a shared (tied) parameter
            if lift_params:
                node = graph.placeholder(f"{kind}_{name.replace('.', '_')}")
            else:
                node = graph.get_attr(name)
                attrs[name] = t
            node.meta["spec"] = (kind, name)
            param_names.append((kind, name, node.name))
            mode.bind(t, node)  # values change with training: reading one is data-dependent
            CaptureMode._meta(node, t)
    for name, v in zip(input_names, flat_inputs):
        node = graph.placeholder(name)
        if isinstance(v, Tensor):
            mode.bind(v, node)
            CaptureMode._meta(node, v)
    guards = Guards(
        [(n, tuple(v.shape), str(v.dtype), bool(v.requires_grad)) if isinstance(v, Tensor)
         else (n, "const", v) for n, v in zip(input_names, flat_inputs)],
        training_flags(modules), GradMode.enabled)
    grad_at_start = GradMode.enabled
    versions = {id(t._data): (t, t._version) for t in persistent}
    saved = _install(mode)
    try:
        args = unflatten(flat_inputs) if unflatten else list(flat_inputs)
        result = fn(*args[0], **args[1]) if unflatten else fn(*args)
        mode._sync_grad_mode()
    finally:
        _uninstall(mode, saved)
        GradMode.enabled = grad_at_start
    # a persistent tensor changed behind the dispatcher's back: a replay would miss it
    for key, (t, v) in versions.items():
        if t._version != v and key not in mode.mutated:
            raise NotImplementedError(
                f"capture: a tensor of shape {list(t.shape)} (a parameter, buffer or optimizer "
                "state) was modified outside the dispatcher during capture, so a replay could "
                "not repeat the write")
    leaves, out_spec = flatten_out(result) if flatten_out else ([result], None)
    out_nodes = []
    for o in leaves:
        out_nodes.append(mode.arg(o) if isinstance(o, Tensor) else o)
    if mode.grad_enabled != grad_at_start:
        graph.call_function(set_grad_enabled, (grad_at_start,))
    graph.output(tuple(out_nodes))
    for name, c in mode.consts.items():
        attrs[name] = c.tensor
    cap = Capture(graph, attrs, list(input_names), guards, out_spec, param_names, modules)
    cap.created = mode.created
    cap.group_values = list(mode.group_values.values())
    return cap


def trace_program(fn, args, *, modules=None, persistent=()):
    """Capture ``fn(*args)`` (any Python: a training step with ``backward()`` and
    ``optimizer.step()`` included) as a ``Capture`` whose ``run(*args)`` replays it.

    ``modules``: modules whose parameters and buffers the program reads (``get_attr`` nodes
    bound to the live tensors, guards on their training flags); ``persistent``: other tensors
    the program updates in place and that must persist across replays. Stateful optimizers
    must have taken a step before capture, so that their state tensors exist."""
    table = {}
    for i, m in enumerate(modules or ()):
        for path, sub in m.named_modules():
            table[f"{i}.{path}" if path else str(i)] = sub
    leaves = list(args)
    names = [f"arg{i}" for i in range(len(leaves))]
    extra = list(persistent)
    for m in modules or ():
        extra += list(m.parameters()) + list(m.buffers())
    cap = capture(fn, leaves, names, modules=None, persistent=extra,
                  flatten_out=lambda r: _flatten_out(r))
    cap.modules = table
    cap.guards.training = training_flags(table)
    return cap


def _flatten_out(r):
    from ._pytree import tree_flatten
    return tree_flatten(r)


def run_graph(graph, inputs, attrs):
    """Execute ``graph`` node by node with eager semantics; returns the output's value.

    ``inputs`` fill the placeholders in order; ``attrs`` resolves ``get_attr`` targets. The
    grad mode is restored afterwards (the graph may switch it)."""
    env = {}
    it = iter(inputs)

    def load(a):
        return env[a]
    from ..fx import map_arg
    prev = GradMode.enabled
    try:
        for n in graph.nodes:
            op = n.op
            if op == "call_function":
                env[n] = n.target(*map_arg(n.args, load), **map_arg(n.kwargs, load))
            elif op == "placeholder":
                env[n] = next(it)
            elif op == "get_attr":
                env[n] = attrs[n.target]
            elif op == "output":
                return map_arg(n.args[0], load)
            else:
                raise RuntimeError(f"run_graph: unsupported node {n.op} {n.target}")
    finally:
        GradMode.enabled = prev
    return None


def module_table(root):
    """``{dotted path: module}`` of ``root`` and its submodules ("" is ``root``)."""
    return dict(root.named_modules()) if root is not None else {}

