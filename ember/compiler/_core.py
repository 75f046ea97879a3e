"""``ember.compile``: capture a function once per specialisation, replay it guarded.

Each call flattens the arguments and checks the guards of the cached captures (input shapes,
dtypes and requires_grad, grad mode, module training flags, parameters' requires_grad, the
Python scalars and tensors the function reads from its globals). A hit replays that capture;
a miss captures again (``ember.export._capture``: the forward, the backward the engine runs and
optimizer updates, as ember core ops), up to ``ember._dynamo.config.cache_size_limit``
captures, then runs eagerly with one warning. A value read into Python (``.item()``,
``if tensor:``) is a graph break (``_breaks``): the capture goes on with the value the
Python code saw and the replay checks it, so each capture is one path through the
function's branches; where that cannot be made safe, or the capture refuses something else,
the state the capture touched is restored and the function runs eagerly from then on with
the modules it calls compiled as regions (``fullgraph=True``: an error naming the line).

A training step (a function whose code calls ``backward``) is first captured on meta tensors
(``_meta_capture``: its inputs, parameters, gradients and optimizer state hold shapes and
dtypes only, so the capture computes nothing; a GPT block's first call took 0.20 s of CPU with
data, 0.13 s so), and its first call runs the compiled program. Whatever a meta capture cannot
record as the capture with data would (a value read, a truth test on values outside an op,
a tensor made outside the dispatcher, a write through a view, tensors sharing memory) makes
it give up, restore what it touched, and capture with data; ``meta_failure`` says why.
This is opt-in (``EMBER_META_CAPTURE=1``): when the refusal comes from code the function
calls (a value read inside a module's forward), the Python that ran before it runs again in
the capture with data, so a side effect there (a counter, a print, a list append) would
happen twice on the first call. The capture with data is the default.

Lowering (``inductor``/``numpy`` backends): constant folding, CSE and DCE (``_passes``);
eager's fused nn kernels where the capture decomposed an op and its backward (layer/batch/
group norm backward in one pass from the forward's statistics, attention forward and backward
over the cores, packed multi-head self-attention without head copies, exact GELU with its
derivative kept: ``_passes.match`` finds them); elementwise fusion into C kernels
(``_codegen``; GELU and erf included, leaves that broadcast along rows or columns too), matmul
and convolution ReLU epilogues, whole-group optimizer steps (SGD and Adam/AdamW as one C loop
each, ``_optim``), convolution columns and max-pooling indices kept for the backward, stacked
matmuls split over threads, softmax rows in C, then one generated Python function over arrays
with a memory arena (``_program``).
"""

from __future__ import annotations

import functools
import sys
import warnings
import weakref

import numpy as np

from .. import _random
from .._tensor import Tensor
from ..export import _capture
from . import _breaks
from ..export._pytree import tree_flatten, tree_unflatten

__all__ = ["compile", "CompiledFunction", "Unsupported", "BACKENDS"]

BACKENDS = ("inductor", "eager", "aot_eager", "numpy")
_ALL: "weakref.WeakSet" = weakref.WeakSet()
_COMPILING = [0]
_DISABLED = [0]


class Unsupported(RuntimeError):
    """``fullgraph=True`` met something that would break the graph (PyTorch's
    ``torch._dynamo.exc.Unsupported``)."""


class _GraphBreak(RuntimeError):
    """Raised inside a capture to abandon it (a disabled function was called)."""


def _log_enabled(what):
    from .. import _logging
    return what in _logging.enabled()


def _config():
    from .._dynamo import config
    return config


# ---------------------------------------------------------------------- what fn reads
def _discover(fn, _depth=0):
    """Modules, optimizers and tensors ``fn`` reaches through its closure, its globals and
    its bound ``self`` (what a training step updates and a replay must see by reference),
    and the names of the Python scalar globals it reads (guarded). A compiled function, a
    ``functools.partial`` or a callable object is looked through to what it runs, and the
    plain functions it reaches are searched too (a parameter missed here would be captured
    as a constant copy that the step never updates)."""
    import types

    from ..nn.modules.module import Module
    from ..optim.optimizer import Optimizer
    objs, scalars = [], []
    while True:
        if isinstance(fn, CompiledFunction):
            fn = fn.fn
        elif isinstance(fn, functools.partial):
            objs += list(fn.args) + list(fn.keywords.values())
            fn = fn.func
        elif not isinstance(fn, (types.FunctionType, types.MethodType, Module)) and \
                callable(fn) and hasattr(fn, "__dict__"):
            objs += list(vars(fn).values())
            fn = fn.__call__
        else:
            break
    code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__func__", None),
                                                    "__code__", None)
    if getattr(fn, "__self__", None) is not None:
        objs.append(fn.__self__)
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            objs.append(cell.cell_contents)
        except ValueError:  # an empty cell
            pass
    objs += list(getattr(fn, "__defaults__", None) or ())  # ``def step(x, model=model)``
    objs += list((getattr(fn, "__kwdefaults__", None) or {}).values())
    glb = getattr(fn, "__globals__", {})
    for name in getattr(code, "co_names", ()):
        if name in glb:
            v = glb[name]
            if type(v) in (int, float, bool, str) or v is None:
                scalars.append(name)
            else:
                objs.append(v)
    modules, opts, tensors = [], [], []
    # one level into plain containers and objects (``cfg.model``, ``state["opt"]``): what
    # they hold is updated by reference too (deeper, the capture refuses a parameter it
    # would otherwise copy: ``strict_constants``)
    for o in list(objs):
        if isinstance(o, dict):
            objs += list(o.values())
        elif not isinstance(o, (Module, Optimizer, Tensor, type, types.ModuleType,
                                types.FunctionType, types.MethodType, functools.partial,
                                CompiledFunction)) and isinstance(getattr(o, "__dict__", None),
                                                                  dict):
            objs += list(vars(o).values())
    for o in objs:
        if isinstance(o, Module):
            modules.append(o)
        elif isinstance(o, Optimizer):
            opts.append(o)
        elif isinstance(o, Tensor):
            tensors.append(o)
        elif isinstance(o, (list, tuple)):
            modules += [x for x in o if isinstance(x, Module)]
            tensors += [x for x in o if isinstance(x, Tensor)]
        elif _depth < 3 and isinstance(o, (types.FunctionType, functools.partial,
                                           CompiledFunction)) and o is not fn:
            m, op, t, _ = _discover(o, _depth + 1)
            modules += [x for x in m if all(x is not y for y in modules)]
            opts += [x for x in op if all(x is not y for y in opts)]
            tensors += [x for x in t if all(x is not y for y in tensors)]
    return modules, opts, tensors, scalars


def _meta_left(cap):
    """Whether a meta capture's graph still holds a meta array (a constant, or an argument)."""
    from .._device import META
    from .._meta import MetaArray
    for v in cap.attrs.values():
        if isinstance(v, Tensor) and type(v._data) is MetaArray:
            return True
    for v in cap.created.values():
        if type(v._data) is MetaArray:
            return True

    def meta(a):
        if type(a) in (tuple, list):
            return any(meta(x) for x in a)
        if type(a) is dict:
            return any(meta(x) for x in a.values())
        if type(a) is slice:
            return meta((a.start, a.stop, a.step))
        return type(a) is MetaArray or (isinstance(a, Tensor) and type(a._data) is MetaArray) \
            or a is META or (type(a) is str and a == "meta")
    return any(meta(n.args) or meta(n.kwargs) for n in cap.graph.nodes)


def _run_with_group_values(runner, leaves, group_values):
    """``runner(leaves)`` with each optimizer group's hyperparameters as the function's
    update read them while it was captured on meta, then as the function left them (a
    learning-rate scheduler stepped after ``opt.step()`` in the function: the first call's
    update uses the learning rate before the scheduler's step, as eager's does)."""
    after = []
    for opt, gi, values in group_values:
        group = opt.param_groups[gi]
        now = {k: group[k] for k in values if k in group}
        if any(now.get(k, _MISSING) is not v for k, v in values.items()):
            after.append((group, now))
            group.update(values)
    try:
        return runner(leaves)
    finally:
        for group, now in after:
            group.update(now)


def _byte_span(a):
    """The first and one-past-the-last byte addresses ``a`` covers."""
    lo = hi = a.__array_interface__["data"][0]
    for n, st in zip(a.shape, a.strides):
        if st < 0:
            lo += (n - 1) * st
        else:
            hi += (n - 1) * st
    return lo, hi + a.itemsize


_VALUE_NAMES = frozenset(("item", "tolist", "numpy", "print", "float", "int", "bool"))


def _meta_unsafe(code):
    """Why ``code`` (a compiled function's own body) should be captured with data from the
    start, or "" (see ``CompiledFunction._meta_eligible``)."""
    import dis
    used = _VALUE_NAMES.intersection(code.co_names)
    if used:
        return f"the function's code names {sorted(used)[0]!r} (a value read, probably)"
    for ins in dis.get_instructions(code):
        if ins.opname in ("STORE_GLOBAL", "STORE_DEREF", "DELETE_GLOBAL", "DELETE_DEREF"):
            return f"the function writes the variable {ins.argval!r}"
    return ""


# ---------------------------------------------------------------------- state snapshots
class _Snapshot:
    """The values a capture may write (persistent tensors, their grads, optimizer state, the
    random generator), so that an abandoned capture can be undone before running eagerly."""

    def __init__(self, tensors, opts):
        from .. import _random
        self.tensors = [(t, t._data, t._data.copy(), t._grad, _grad_copy(t._grad))
                        for t in tensors]
        self.opts = [(o, {p: dict(s) for p, s in o.state.items()},
                      [(v, v._data.copy()) for s in o.state.values() for v in s.values()
                       if isinstance(v, Tensor)]) for o in opts]
        self.rng = _random.default_generator.get_state()

    def restore(self):
        from .. import _random
        for t, arr, saved, grad, gsaved in self.tensors:
            t._data = arr
            np.copyto(arr, saved)
            t._grad = grad
            if grad is not None and grad.is_sparse:
                t._grad = gsaved  # (a sparse gradient is replaced, not written, by backward)
            elif grad is not None:
                np.copyto(grad._data, gsaved)
        for o, state, vals in self.opts:
            o.state.clear()
            o.state.update(state)
            for v, saved in vals:
                np.copyto(v._data, saved)
        _random.default_generator.set_state(self.rng)


def _grad_copy(g):
    if g is None:
        return None
    return g.detach().clone() if g.is_sparse else g._data.copy()


# ---------------------------------------------------------------------- one specialisation
class _Entry:
    def __init__(self, cap, in_spec, extra_rg, scalars, runner, source, breaks=(),
                 needs_rng=False):
        self.cap, self.in_spec, self.extra_rg, self.scalars = cap, in_spec, extra_rg, scalars
        self.runner, self._source = runner, source
        self.breaks, self.needs_rng = list(breaks), needs_rng
        self.on_meta = False  # captured on meta tensors (``CompiledFunction._meta_capture``)

    @property
    def source(self):
        """The optimised graph and the generated code (made on first use: printing a graph
        of a thousand nodes costs tens of milliseconds of the first call)."""
        if callable(self._source):
            self._source = self._source()
        return self._source

    def check(self, leaves, in_spec, glb):
        if in_spec != self.in_spec:
            raise _capture.GuardError(f"guard failed: inputs structured as {in_spec}, captured "
                                      f"with {self.in_spec}")
        self.cap.guards.check(leaves, self.cap.modules)
        for t, rg in self.extra_rg:
            if t.requires_grad != rg:
                raise _capture.GuardError(
                    f"guard failed: a parameter of shape {list(t.shape)} had requires_grad={rg}"
                    f" at capture, now {t.requires_grad}")
        for name, value in self.scalars.items():
            if glb.get(name, _MISSING) != value or type(glb.get(name)) is not type(value):
                raise _capture.GuardError(f"guard failed: global {name} was {value!r} at "
                                          f"capture, now {glb.get(name, '<unset>')!r}")


_MISSING = object()


def _refuse_printing():
    """While a compiled function is captured, printing or formatting a tensor that depends
    on the inputs is a graph break that only eager Python can serve (the text must be
    produced on every call): it raises ``DataDependentError``. Returns the undo."""
    saved = {k: Tensor.__dict__[k] for k in ("__repr__", "__str__", "__format__")
             if k in Tensor.__dict__}

    def wrap(name, orig):
        def reader(self, *args):
            if _capture._ACTIVE:
                _capture._ACTIVE[-1].check_value_read(self, "printing")
            return orig(self, *args)
        reader.__name__ = name
        return reader
    for k, f in saved.items():
        setattr(Tensor, k, wrap(k, f))

    def undo():
        for k, f in saved.items():
            setattr(Tensor, k, f)
    return undo


class CompiledFunction:
    """What ``ember.compile(fn)`` returns: call it like ``fn``. ``graphs`` holds the captures
    (``ember.fx.Graph``), ``breaks`` why compilation was abandoned, if it was."""

    def __init__(self, fn, module=None, fullgraph=False, dynamic=None, backend="inductor",
                 mode=None, options=None):
        self.fn, self.module = fn, module
        self.fullgraph, self.dynamic, self.backend = fullgraph, dynamic, backend
        self.mode, self.options = mode, dict(options or {})
        self.entries: list = []
        self.breaks: list = []
        self.eager_only = False
        self.limit_warned = False
        self.warmed = False
        self.regions: dict = {}   # id(module) -> CompiledFunction, once eager_only
        self.dynamic_failure = None
        self.meta_failure = None  # why this function is captured with data (_meta_capture)
        functools.update_wrapper(self, fn, updated=())
        _ALL.add(self)

    @property
    def graphs(self):
        return [e.cap.graph for e in self.entries]

    def all_graphs(self):
        """This function's graphs and those of the module regions it runs with."""
        return self.graphs + [g for r in self.regions.values() for g in r.all_graphs()]

    def break_reasons(self):
        """Why the function is not one graph: the breaks recorded inside its captures (the
        graph splits there), why it fell back to module regions, and its regions' reasons."""
        seen, out = set(), []
        for e in self.entries:
            for b in e.breaks:
                if b.reason() not in seen:
                    seen.add(b.reason())
                    out.append(b.reason())
        out += self.breaks
        for r in self.regions.values():
            out += r.break_reasons()
        return out

    def reset(self):
        self.entries.clear()
        self.regions.clear()
        self.breaks.clear()
        self.eager_only = False
        self.limit_warned = False

    def __get__(self, obj, objtype=None):  # as a decorator on a method
        if obj is None:
            return self
        return functools.partial(self.__call__, obj)

    def __call__(self, *args, **kwargs):
        if self.backend == "eager" or _DISABLED[0] or _capture._ACTIVE:
            # eager backend, disabled, or called inside another capture (whose mode records
            # these ops as its own)
            return self.fn(*args, **kwargs)
        if self.eager_only:  # the graph could not be split safely: compile module regions
            return _breaks.run_with_regions(self, args, kwargs)
        leaves, in_spec = tree_flatten((tuple(args), dict(kwargs)))
        glb = getattr(self.fn, "__globals__", {})
        reasons = []
        for e in self.entries:
            try:
                e.check(leaves, in_spec, glb)
            except _capture.GuardError as err:
                reasons.append(str(err))
                continue
            rng = _random.default_generator.get_state() if e.needs_rng else None
            try:
                return e.runner(leaves)
            except _breaks.BranchMiss as miss:
                # a break read another value than at capture: the segments before it only
                # computed (see _breaks), so another capture of this function may serve
                if rng is not None:
                    _random.default_generator.set_state(rng)
                reasons.append(f"graph break {miss.index} read {miss.value!r}, captured with "
                               f"{e.breaks[miss.index].value!r}")
        limit = _config().cache_size_limit
        if len(self.entries) >= limit:
            if not self.limit_warned:
                self.limit_warned = True
                warnings.warn(
                    f"ember.compile: {getattr(self.fn, '__name__', 'fn')} hit the recompile "
                    f"limit (ember._dynamo.config.cache_size_limit = {limit}); running eagerly "
                    f"for inputs no cached graph fits. Last guard failure: "
                    f"{reasons[-1] if reasons else '?'}", RuntimeWarning, stacklevel=2)
            return self.fn(*args, **kwargs)
        return self._capture(args, kwargs, leaves, in_spec, glb)

    # -- capture
    def _capture(self, args, kwargs, leaves, in_spec, glb):
        from ..nn.modules.module import Module
        from ..optim.optimizer import Optimizer
        modules, opts, tensors, scalar_names = _discover(self.fn)
        # modules and optimizers passed as arguments (a compiled method's self, ...) are
        # read and updated by reference too
        modules += [v for v in leaves if isinstance(v, Module) and v not in modules]
        opts += [v for v in leaves if isinstance(v, Optimizer) and v not in opts]
        if self.module is not None:
            modules = [self.module] + [m for m in modules if m is not self.module]
        # stateful optimizers make their state on the first step: take it eagerly, capture
        # the next call (whose graph then updates that state in place)
        if any(not o.state for o in opts) and not self.warmed:
            self.warmed = True
            return self.fn(*args, **kwargs)
        table = {}
        for i, m in enumerate(modules):
            for path, sub in m.named_modules():
                table[f"{i}.{path}" if path else str(i)] = sub
        persistent = list(tensors)
        for m in modules:
            persistent += list(m.parameters()) + list(m.buffers())
        # an optimizer's parameters are updated by reference, whatever module holds them
        seen = {id(t) for t in persistent}
        persistent += [p for o in opts for g in o.param_groups for p in g["params"]
                       if id(p) not in seen and not seen.add(id(p))]
        self._persistent = persistent + [v for o in opts for s in o.state.values()
                                         for v in s.values() if isinstance(v, Tensor)]
        inputs = [v for v in leaves if isinstance(v, Tensor)]
        snap = _Snapshot(persistent + inputs, opts)
        names = [f"arg{i}" for i in range(len(leaves))]

        def unflatten(flat):
            a, k = tree_unflatten(list(flat), in_spec)
            return [a, k]
        box = []

        def run(*a, **k):  # the capture runs fn for real: its result is this call's
            box.append(self.fn(*a, **k))
            return box[-1]
        recorder = _breaks.BreakRecorder(self.fullgraph)
        _COMPILING[0] += 1
        printing = _refuse_printing()
        try:
            # tensor factories are ``creation_op`` nodes: with dynamic=True their sizes read
            # from an input's shape (``zeros(x.shape[0], 4)``) follow the batch on replay;
            # the ones that stay fixed fold back into constants (``export._fold_fixed_creations``)
            from ._concurrent import single_threaded
            cap = None
            if self._meta_eligible():
                with single_threaded():  # the ops' order as in the capture with data
                    cap = self._meta_capture(run, leaves, names, unflatten, persistent, inputs,
                                             snap)
            on_meta = cap is not None
            if not on_meta:
                box.clear()
                with single_threaded():  # a one-off run between recording steps: see there
                    cap = _capture.capture(run, leaves, names, persistent=persistent,
                                           unflatten=unflatten, flatten_out=tree_flatten,
                                           on_value_read=recorder, record_creation=True,
                                           strict_constants=True)
            needs_rng = _breaks.finish_breaks(cap.graph, recorder.breaks)
        except (_capture.DataDependentError, NotImplementedError, _GraphBreak) as err:
            return self._abandon(err, snap, args, kwargs)
        finally:
            printing()
            _COMPILING[0] -= 1
        cap.modules = table
        cap.guards.training = _capture.training_flags(table)
        if self.dynamic and not recorder.breaks:
            self._make_dynamic(cap, run, leaves, names, unflatten, persistent, inputs, opts)
        if not cap.guards.dynamic:  # static sizes: every factory not written to is constant
            from ..export import _fold_fixed_creations
            _fold_fixed_creations(cap, [n for n in cap.graph.nodes if n.op != "output"], ())
        extra_rg = [(t, bool(t.requires_grad)) for t in persistent]
        scalars = {n: glb[n] for n in scalar_names if n in glb}
        log = _log_enabled("graph_code")
        captured = str(cap.graph) if log else None
        runner, source = self._lower(cap)
        entry = _Entry(cap, in_spec, extra_rg, scalars, runner, source, recorder.breaks,
                       needs_rng)
        entry.on_meta = on_meta
        self.entries.append(entry)
        if log:
            print(f"===== ember.compile: captured graph of "
                  f"{getattr(self.fn, '__qualname__', 'fn')} =====\n{captured}\n"
                  f"===== generated source ({self.backend}) =====\n{entry.source}",
                  file=sys.stderr)
        if on_meta:  # nothing was computed yet: this call's values come from the program
            return _run_with_group_values(entry.runner, leaves, cap.group_values)
        return box[0]

    # -- meta capture
    def _meta_eligible(self):
        """Whether to try a meta capture first (see ``_meta_capture``): turned on
        (``EMBER_META_CAPTURE=1``; module docstring), not failed before for this function, a
        lowering backend, static shapes, and no sign in the function's own code of what a
        meta capture would refuse after running part of the function (a value read into
        Python, printing, writing a global or closure variable): Python side effects before
        the refusal would then run twice on the first call."""
        import os
        if os.environ.get("EMBER_META_CAPTURE", "0") != "1" or self.meta_failure is not None \
                or self.backend not in ("inductor", "numpy") or self.dynamic:
            return False
        fn = self.fn
        while isinstance(fn, functools.partial):
            fn = fn.func
        code = getattr(fn, "__code__", None) or getattr(getattr(fn, "__func__", None),
                                                        "__code__", None)
        if code is None:
            return False
        if "backward" not in code.co_names:
            # only a training step gains: its real capture runs the backward's composed
            # formulas (2-3x an eager step); a forward's costs what running the program would
            return False
        reason = _meta_unsafe(code)
        if reason:
            self.meta_failure = reason
            return False
        return True

    def _meta_capture(self, run, leaves, names, unflatten, persistent, inputs, snap):
        """Capture on meta tensors: every input, parameter, buffer, gradient and optimizer
        state tensor holds a ``MetaArray`` (shape, dtype, strides, no data) while the
        function runs, so the ops are recorded without computing (a GPT block's capture
        costs a fifth of a real run's). The graph is the one a real run records: anything
        that could make it differ raises inside the capture (a value read into Python,
        a truth test on array values outside an op, an array made outside the dispatcher,
        an in-place write through a view, tensors sharing memory, ...), and then this
        returns None, with every state restored, and the caller captures for real (and
        never tries meta again for this function: ``meta_failure`` says why). After a meta
        capture the first call's values come from running the compiled program once; the
        state the function touched is restored first (gradients, optimizer state, the
        random generator: the program draws what eager would)."""
        from .._meta import MetaArray
        tensors, seen = [], set()
        for t in list(self._persistent) + list(inputs):
            for u in (t, t._grad):
                if u is not None and id(u) not in seen:
                    seen.add(id(u))
                    tensors.append(u)
        spans = []
        for t in tensors:
            a = t._data
            if type(a) is not np.ndarray:
                self.meta_failure = f"a tensor with {type(a).__name__} data"
                return None
            if a.size:
                spans.append(_byte_span(a))
        spans.sort()
        for (_, hi), (lo, _) in zip(spans, spans[1:]):
            if lo < hi:  # two tensors sharing memory: aliasing needs data
                self.meta_failure = "two tensors the function reaches share memory"
                return None
        real = [(t, t._data) for t in tensors]
        try:
            for t, a in real:
                t._data = MetaArray(a.shape, a.dtype, a.strides)
            cap = _capture.capture(run, leaves, names, persistent=persistent,
                                   unflatten=unflatten, flatten_out=tree_flatten,
                                   record_creation=True, strict_constants=True,
                                   meta_arrays=True)
        except Exception as err:  # noqa: BLE001 - any refusal: capture with data
            import traceback
            self.meta_failure = f"{type(err).__name__}: {err}"
            # where it gave up, for whoever debugs a refusal (the text, not the frames: they
            # hold the state snapshot)
            self.meta_traceback = "".join(traceback.format_exception(err))
            cap = None
        finally:
            for t, a in real:
                t._data = a
            snap.restore()
        if cap is not None and _meta_left(cap):  # belt and braces: nothing meta may remain
            self.meta_failure = "a meta array was left in the graph"
            return None
        return cap

    def _make_dynamic(self, cap, run, leaves, names, unflatten, persistent, inputs, opts):
        """``dynamic=True``: dim 0 of every tensor input (inputs of equal size share one
        symbol) becomes symbolic, so other batch sizes replay without recompiling. The
        function is captured again at two other sizes (with every state it touches
        restored after each) and the integers that follow the size are fitted, as
        ``ember.export`` does for ``Dim``s. Where that fails the capture stays static and
        ``dynamic_failure`` says why."""
        from ..export import Dim, _generalise
        dims, dyn = {}, {}
        for i, v in enumerate(leaves):
            if isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] >= 2:
                dim = dims.setdefault(v.shape[0], Dim(f"s{len(dims)}"))
                dyn[(i, 0)] = dim
        if not dyn:
            return

        def recapture(lv):
            snap = _Snapshot(persistent + inputs + [v for v in lv if isinstance(v, Tensor)],
                             opts)
            try:
                return _capture.capture(run, lv, names, persistent=persistent,
                                        unflatten=unflatten, flatten_out=tree_flatten,
                                        record_creation=True)
            finally:
                snap.restore()
        try:
            _generalise(None, cap, leaves, names, None, dyn, recapture=recapture)
        except Exception as err:  # noqa: BLE001 - any failure: keep the static capture
            self.dynamic_failure = f"{type(err).__name__}: {err}"

    def _abandon(self, err, snap, args, kwargs):
        msg = f"{type(err).__name__}: {err}"
        self.breaks.append(msg)
        snap.restore()
        if self.fullgraph:
            raise Unsupported(f"ember.compile(fullgraph=True): the function cannot be captured "
                              f"as one graph: {msg}") from err
        self.eager_only = True
        if self.backend == "eager":
            return self.fn(*args, **kwargs)
        return _breaks.run_with_regions(self, args, kwargs)

    def _lower(self, cap):
        """The runner of a capture for this backend, and the source it generated."""
        graph, attrs = cap.graph, cap.attrs
        sources = []
        if self.backend in ("inductor", "numpy"):
            from . import _codegen, _passes
            fixed = {id(t) for t in self._persistent}
            self.pass_stats = _passes.optimize(
                graph, attrs, lambda name: id(attrs.get(name)) not in fixed)
            for n in graph.nodes:  # tensors read from closures/globals are fusion leaves too
                v = attrs.get(n.target) if n.op == "get_attr" else None
                if isinstance(v, Tensor) and "tensor_meta" not in n.meta:
                    n.meta["tensor_meta"] = (tuple(v.shape), v.dtype, tuple(v.stride()))
            use_c = self.backend == "inductor" and _codegen.c_compiler() is not None
            rg = _codegen.requires_grad_map(
                graph, [g[3] if g[1] != "const" else False for g in cap.guards.inputs],
                attrs, cap.guards.grad_enabled)
            from . import _program
            drop_records = _program.has_backward(graph)
            if drop_records:  # the step holds its own backward: no op needs a record
                rg = dict.fromkeys(rg, False)
            # eager's fused backward kernels for what the capture decomposed (before fusion
            # takes the composed ops apart)
            self.pass_stats["normalize_grads"] = _passes.fuse_normalize_backward(graph, rg)
            self.pass_stats["residual_adds"] = _passes.fuse_residual_adds(graph, rg)
            self.pass_stats["attention"] = _passes.fuse_attention(graph, rg)
            self.pass_stats["packed_attention"] = _passes.fuse_packed_attention(graph, rg)
            self.pass_stats["gelu_grads"] = _passes.fuse_gelu_backward(graph, rg)
            self.pass_stats["ce_grads"] = _passes.fuse_cross_entropy_backward(graph, rg, use_c)
            kernels = _codegen.fuse(graph, rg, "c" if use_c else "numpy", load=False)
            if use_c:  # every C source of the step compiled at once (cold cache)
                from . import _optim
                _codegen.prebuild([k.c_source for k in kernels] + _optim.sources(graph, attrs))
            for k in kernels:
                k.load()
            self.pass_stats["optimizer_groups"] = _passes.group_optimizer_steps(graph)
            if use_c:
                _optim.prepare(graph, attrs)
            self.pass_stats["matmul_epilogues"] = _passes.fuse_matmul_epilogues(
                graph, rg, use_c)
            self.pass_stats["permuted_copies"] = _passes.share_permuted_copies(graph, rg)
            self.pass_stats["conv_columns"] = _passes.keep_conv_columns(graph, rg)
            self.pass_stats["pool_indices"] = _passes.keep_pool_indices(graph, rg)
            self.pass_stats["conv_epilogues"] = _passes.fuse_conv_relu(graph, rg)
            self.pass_stats["stacked_matmuls"] = _passes.split_stacked_matmuls(graph, rg)
            self.pass_stats["row_softmax"] = _passes.lower_row_softmax(graph, rg)
            self.pass_stats["scatter_rows"] = _passes.lower_scatter_rows(graph, rg, use_c)
            if drop_records:  # the op forwards are called directly: pairs may share cores
                from ._concurrent import pair_independent
                self.pass_stats["concurrent_pairs"] = pair_independent(graph, rg)
                from ._tail import fuse_tail_update
                self.pass_stats["tail_update"] = fuse_tail_update(graph, rg)
            graph.lint()
            sources = [f"// {k.__name__} ({k.backend})\n{k.source}" for k in kernels]
        out_spec = cap.out_spec
        if self.backend in ("inductor", "numpy"):
            program, psrc, arena = _program.lower(graph, attrs, rg, drop_records,
                                                  plan_memory=not cap.guards.dynamic)
            sources.insert(0, psrc)
            self.arena = arena
            if arena is None:
                def runner(leaves):
                    return tree_unflatten(list(program(*leaves)), out_spec)
            else:
                def runner(leaves):
                    if arena.busy:  # another thread is inside: give this call its own
                        return tree_unflatten(list(program(*leaves, _ar=arena._make())),
                                              out_spec)
                    arena.busy = True
                    try:
                        return tree_unflatten(list(program(*leaves, _ar=arena.buffers)),
                                              out_spec)
                    finally:
                        arena.busy = False
            return runner, lambda: str(graph) + "\n" + "\n".join(sources)

        def runner(leaves):
            out = _capture.run_graph(graph, leaves, attrs)
            return tree_unflatten(list(out), out_spec)
        return runner, lambda: str(graph) + "\n" + "\n".join(sources)
