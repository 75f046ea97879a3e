"""Layer 1: graph nodes and the one dispatch path every op takes.

An op is a ``Node`` subclass with two static methods side by side:

* ``forward(ctx, *args)`` computes on backend arrays (tensor arguments arrive as arrays);
* ``backward(ctx, *grads)`` returns one gradient per argument, written with ember ops on
  Tensors, so that double backward and tracing come for free.

``Op.apply(*args)`` is the dispatch function. It is the only place that checks grad mode,
records graph nodes, saves tensors with their versions, bumps versions for in-place ops,
and lets active modes (anomaly detection, the profiler, the compiler's tracer) see the call.
With no active mode and no input requiring grad it is: unwrap, forward, wrap.

Class attributes an op may set:
  ``saves``         argument positions whose tensors backward needs (``ctx.saved_tensors``)
  ``saves_output``  also save the output (reconstructed as a Tensor carrying this node)
  ``view``          the output shares its first argument's memory (True) or may ("maybe")
  ``differentiable`` False for ops with no gradient (comparisons, argmax ...)
  ``array_backward`` optional: ``backward``'s formula on backend arrays (``ctx.saved_arrays``),
                    run by the engine when nothing records the backward
"""

from __future__ import annotations

import functools
import itertools
import weakref

import numpy as np

from .._hooks import RemovableHandle, add_hook  # noqa: F401 (RemovableHandle re-exported)
from .._meta import MetaArray, check_same_device
from .._tensor import Tensor, _bump_version, _make, _version_counter
from .grad_mode import GradMode

_ndarray = np.ndarray
_asarray = np.asarray
_partial = functools.partial
_seq = itertools.count()

# Active modes see every dispatched op (profiler, anomaly detection, tracer). Each mode is an
# object with ``on_op(cls, args, kwargs, run)``, where ``run()`` performs the op.
_MODES: list = []
_NO_MODES: list = []  # stays empty (see ``_call_bare``)


def capturing_backward():
    """Whether an active mode records the backward as ops (a graph capture: export,
    jit.trace, compile), so ops computed outside the dispatcher would be lost."""
    return bool(_MODES) and any(getattr(m, "records_backward", False) for m in _MODES)

# Set by ``ember.ops.indexing``: records an in-place op on a view as a write into its base
# (PyTorch's CopySlices). Returns NotImplemented for views it does not handle.
_VIEW_INPLACE: list = [None]


class _ScratchCtx:
    """The throwaway ctx of the fast path: a fresh plain object per call, so a forward may
    also read back what it stored; nothing on it outlives the call."""

    def save_for_backward(self, *tensors):
        pass

    def mark_non_differentiable(self, *tensors):
        pass

    def mark_dirty(self, *tensors):
        pass

    def set_materialize_grads(self, value):
        pass

    needs_input_grad = ()



_FREED_MSG = (
    "Trying to backward through the graph a second time (or directly access saved tensors "
    "after they have already been freed). Saved intermediate values of the graph are freed "
    "when you call .backward() or autograd.grad(). Specify retain_graph=True if you need to "
    "backward through the graph a second time or if you need to access saved tensors after "
    "calling backward.")


class Node:
    """A node of the backward graph; for ops it doubles as the ``ctx`` of forward."""

    __slots__ = ("next_functions", "_saved", "_seq", "_in_meta", "needs_input_grad",
                 "_node_name", "__dict__", "__weakref__")

    # Rarely set: class-level defaults, so recording an op does not assign them.
    _pre_hooks = _hooks = _tensor_hooks = _anomaly_trace = None
    _materialize = True
    _released = False  # set once backward has freed the saved tensors
    _out_meta = None   # per-output (shape, dtype), for ops with several outputs

    saves = ()
    saves_for = None  # optional {input position: saved positions its gradient reads}
    saves_output = False
    view = False
    differentiable = True
    crosses_devices = False  # True for copies between devices (``to``): no mismatch check
    _raw = True  # forward takes backend arrays
    # Optional ``array_backward(ctx, *grads)``: the backward formula on backend arrays, run
    # by the engine when nothing records the backward (``create_graph=False``); ``backward``
    # stays the definition (double backward, tracing) and tests hold the two equal.
    array_backward = None

    # ---------------------------------------------------------------- user-facing API
    def name(self):
        # An op class serving several PyTorch functions (permute for t/transpose) may set
        # ``ctx._node_name`` in forward to report PyTorch's node name.
        # (a slot, not the ctx dict: naming a node must not build its ``__dict__``, and the
        # name outlives the ctx attributes that backward frees)
        return self._node_name or type(self).__name__ + "Backward0"

    def __repr__(self):
        return f"<{self.name()} object at {hex(id(self))}>"

    def _saved_values(self, arrays):
        """The saved values, versions checked: Tensors (saved outputs rebuilt carrying this
        node) or, with ``arrays``, their backend arrays (for ``array_backward``)."""
        saved = self._saved
        if saved is None:
            if self._released:
                raise RuntimeError(_FREED_MSG)
            return []
        out = []
        for t, vc, version in saved:
            if type(t) is _Packed:  # hooks own what they packed: no version check (PyTorch)
                t = t.unpack(t.value)
            elif vc[0] != version:
                _raise_modified(self, t, vc[0], version)
            if arrays:
                out.append(t._data if isinstance(t, Tensor) else t)
            elif type(t) is _ndarray or type(t) is MetaArray:  # a saved output
                out.append(_make(t, True, self))
            else:
                out.append(t)
        return out

    @property
    def saved_tensors(self):
        return tuple(self._saved_values(False))

    @property
    def saved_arrays(self):
        return self._saved_values(True)

    def save_for_backward(self, *tensors):
        """Save tensors (inputs or outputs of forward) for backward; versions are checked."""
        self._saved_pending = tensors

    def mark_dirty(self, *tensors):
        self._dirty = tensors

    def mark_non_differentiable(self, *tensors):
        self._non_diff = tensors

    def set_materialize_grads(self, value):
        self._materialize = bool(value)

    def register_hook(self, fn):
        """``fn(grad_inputs, grad_outputs)`` runs after this node's backward."""
        if self._hooks is None:
            self._hooks = {}
        return add_hook(self._hooks, fn)

    def register_prehook(self, fn):
        """``fn(grad_outputs)`` runs before this node's backward; may return new grads."""
        if self._pre_hooks is None:
            self._pre_hooks = {}
        return add_hook(self._pre_hooks, fn)

    @property
    def metadata(self):
        d = self.__dict__.get("_metadata")
        if d is None:
            d = self.__dict__["_metadata"] = {}
        return d

    def __getattr__(self, name):
        if name in Node.__slots__:  # an engine slot not set on a node made outside dispatch
            return None
        if object.__getattribute__(self, "_released") and \
                name in self.__dict__.get("_freed_names", ()):
            raise RuntimeError(_FREED_MSG)  # ctx attributes are freed with the saved tensors
        if name.startswith(("_saved_", "_raw_saved_")):  # PyTorch's names for saved values
            from ._saved import saved_attribute
            return saved_attribute(self, name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # An op whose forward cannot run on meta arrays keeps an output-metadata rule
        # ``meta(ctx, *args, **kwargs)`` beside it; the op runs that rule when an argument is
        # a meta array. Only these ops pay for the check (ember/_meta.py).
        if "meta" in cls.__dict__:
            cls.forward = staticmethod(_meta_aware(cls.forward, cls.meta))

    # ---------------------------------------------------------------- dispatch
    @classmethod
    def apply(cls, *args, **kwargs):
        """Run the op: the one dispatch path (see the module docstring)."""
        if _MODES:
            if len(_MODES) == 1:  # one mode (the profiler, autocast): no chain to build
                return _MODES[0].on_op(cls, args, kwargs, _partial(_call_bare, cls, args, kwargs))
            return _run_modes(cls, args, kwargs, 0)
        if len(args) == 1 and type(args[0]) is Tensor and not kwargs:
            a = args[0]  # one plain Tensor argument (sum, unary ops, ...): no list to build
            if a._rg and GradMode.enabled and cls.differentiable:
                return _record(cls, args, [a._data], kwargs)
            out = cls.forward(_ScratchCtx(), a._data)
            if type(out) is _ndarray:
                t = _new(Tensor)
                t._data = out
                if cls.view:
                    _link_view(cls, t, a)
                return t
            if type(out) is tuple:
                return tuple(_wrap_plain(cls, o, args) for o in out)
            return _wrap_plain(cls, out, args)
        need = False
        arrays = []
        for a in args:
            if isinstance(a, Tensor):
                arrays.append(a._data)
                if a._rg:
                    need = True
            else:
                arrays.append(a)
        if need and GradMode.enabled and cls.differentiable:
            return _record(cls, args, arrays, kwargs)
        out = cls.forward(_ScratchCtx(), *arrays, **kwargs)
        if type(out) is not _ndarray or cls.view:
            return _wrap_out(cls, out, args)
        t = _new(Tensor)
        t._data = out
        return t

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError(f"{ctx.name()} has no backward")


_new = object.__new__
_NO_KWARGS: dict = {}  # never written: ``_record``'s keyword arguments on the binary path


def apply_binary(cls, a, b):
    """``cls.apply(a, b)`` for a two-argument op called without keywords (the arithmetic
    operators, matmul): the same dispatch, minus the argument tuple, the keyword dict and
    the loop over arguments. Anything but a plain Tensor ``a`` with a plain Tensor or Python
    scalar ``b``, or an active mode, takes ``apply`` itself."""
    if _MODES or type(a) is not Tensor:
        return cls.apply(a, b)
    tb = type(b)
    if tb is Tensor:
        if (a._rg or b._rg) and GradMode.enabled and cls.differentiable:
            return _record_binary(cls, a, b, b._data, b._rg)
        out = cls.forward(_ScratchCtx(), a._data, b._data)
    elif tb is float or tb is int:
        if a._rg and GradMode.enabled and cls.differentiable:
            return _record_binary(cls, a, b, b, False)
        out = cls.forward(_ScratchCtx(), a._data, b)
    else:
        return cls.apply(a, b)
    if type(out) is not _ndarray or cls.view:
        return _wrap_out(cls, out, (a, b))
    t = _new(Tensor)
    t._data = out
    return t


def apply_unary(cls, a):
    """``cls.apply(a)`` for a one-argument op called without keywords (``sum()``, the unary
    elementwise functions): ``apply``'s one-Tensor path, entered without building the
    argument tuple and keyword dict. Subclasses of Tensor and active modes take ``apply``."""
    if _MODES or type(a) is not Tensor:
        return cls.apply(a)
    if a._rg and GradMode.enabled and cls.differentiable:
        return _record_unary(cls, a)
    out = cls.forward(_ScratchCtx(), a._data)
    if type(out) is _ndarray and not cls.view:
        t = _new(Tensor)
        t._data = out
        return t
    if type(out) is tuple:
        return tuple(_wrap_plain(cls, o, (a,)) for o in out)
    return _wrap_plain(cls, out, (a,))


def apply_with(cls, a, *args):
    """``cls.apply(a, *args)`` for a plain Tensor ``a`` followed by arguments that are not
    Tensors (a shape, dims, an index, flags: the caller knows), without keywords: the view
    ops' and dim reductions' entry. The same dispatch as ``apply``, minus its argument list
    and loop."""
    if _MODES or type(a) is not Tensor:
        return cls.apply(a, *args)
    if a._rg and GradMode.enabled and cls.differentiable:
        return _record_unary(cls, a, args)
    out = cls.forward(_ScratchCtx(), a._data, *args)
    if type(out) is not _ndarray:
        return _wrap_out(cls, out, (a,) + args)
    t = _new(Tensor)
    t._data = out
    view = cls.view
    if view is True:  # always a view: link to the root base (``_link_view``, inlined)
        b = a._base
        t._base = b if b is not None else a
        if a._rg or a._ngview is not None:
            _mark_nograd_view(t, a)
    elif view:
        _link_view(cls, t, a)
    return t


def _wrap_out(cls, out, args):
    """The end of ``apply`` for what is not a plain array result: several outputs, a meta
    array (device check), a NumPy scalar, a view."""
    if type(out) is tuple:
        if out and type(out[0]) is MetaArray:
            check_same_device(cls, args)
        return tuple(_wrap_plain(cls, o, args) for o in out)
    if type(out) is not _ndarray:
        if type(out) is MetaArray:
            check_same_device(cls, args)  # only meta results pay for the device check
        else:
            out = _asarray(out)
    t = _new(Tensor)
    t._data = out
    if cls.view:
        _link_view(cls, t, args[0])
    return t


def _meta_aware(forward, meta):
    def run(ctx, *args, **kwargs):
        for a in args:
            if type(a) is MetaArray:
                return meta(ctx, *args, **kwargs)
        return forward(ctx, *args, **kwargs)
    run.__name__, run.__doc__ = forward.__name__, forward.__doc__
    return run


def named(t, name):
    """Give ``t``'s node PyTorch's name when one op class serves several PyTorch functions
    (one Permute op is PyTorch's TBackward0, TransposeBackward0 and PermuteBackward0)."""
    fn = t.grad_fn
    if fn is not None:
        fn._node_name = name
    return t


def _wrap_plain(cls, out, args):
    if type(out) is not _ndarray and type(out) is not MetaArray:
        if out is None or isinstance(out, Tensor):  # None: an absent optional output
            return out
        out = _asarray(out)
    t = _new(Tensor)
    t._data = out
    if cls.view:
        _link_view(cls, t, args[0])
    return t


def _link_view(cls, t, src):
    if cls.view == "maybe":
        # A NumPy view's ``base`` is the array owning the memory (NumPy collapses chains):
        # ``src``'s array itself, or the owner that array's ``base`` names. That settles
        # the common case without ``may_share_memory`` (0.5 us); anything else asks it.
        d, sd = t._data, src._data
        b = d.base if type(d) is _ndarray else None
        if not (b is not None and (b is sd or b is sd.base)) and \
                not np.may_share_memory(d, sd):
            return
    t._base = src._base if src._base is not None else src
    if src._ngview is not None or (src._rg and t.grad_fn is None):
        _mark_nograd_view(t, src)


def _mark_nograd_view(t, src):
    """PyTorch's view creation meta: a view made under ``no_grad``/``inference_mode`` of a
    tensor that requires grad reports ``requires_grad=True`` (a leaf whose gradient goes
    nowhere: it has no accumulator), and an in-place write to it, or to a view of it, with
    grad mode on is refused (``_check_nograd_view``): the write could not be recorded
    against the base's graph. Views of such a view inherit the mark."""
    mode = src._ngview
    if mode is None:
        if GradMode.enabled:  # a non-differentiable view op in grad mode: a plain alias
            return
        mode = "inference" if GradMode.inference else "no_grad"
    t._ngview = mode
    t._rg = True


def _check_nograd_view(target):
    """Refuse an in-place write, with grad mode on, to a view marked by
    ``_mark_nograd_view`` (the first sentence is PyTorch's, so that searches find it)."""
    inference = target._ngview == "inference"
    what = "inference mode" if inference else "no_grad mode"
    fn = target.grad_fn
    if fn is None:
        head = f"A view was created in {what}"
    else:  # a view, made with grad mode on, of such a view
        name = fn.name()
        name = name[:-9] if name.endswith("Backward0") else name
        head = (f"Output {target._output_nr} of {name} is a view of a view which was created "
                f"in {what}")
    block = "inference_mode" if inference else "no_grad"
    raise RuntimeError(
        f"{head} and is being modified inplace "
        f"{'in normal mode' if inference else 'with grad mode enabled'}. The write cannot "
        "be recorded against the base's graph. Make the view and the in-place write both "
        f"inside the {block} block (the write is not tracked) or both outside it (it is).")


def _differentiable_dtype(arr):
    return arr.dtype.kind in "fcV"


def _unread_saved(saves_for, needs):
    """Saved positions that no input needing a gradient reads (see ``Node.saves_for``)."""
    read = set()
    for i, need in enumerate(needs):
        if need:
            read.update(saves_for.get(i, ()))
    return {p for deps in saves_for.values() for p in deps} - read


_UNREAD: dict = {}  # (op class, needs) -> _unread_saved's answer: a few us per op saved


def _unread_cached(cls, needs):
    key = (cls, needs)
    r = _UNREAD.get(key)
    if r is None:
        r = _UNREAD[key] = frozenset(_unread_saved(cls.saves_for, needs))
    return r


def _record(cls, args, arrays, kwargs):
    """The grad path: run forward with a real node as ctx and link it into the graph."""
    node = _new(cls)
    node._seq = next(_seq)
    if len(args) == 1:  # one Tensor input (it requires grad, or we would not be here)
        a = args[0]
        fn = a.grad_fn
        if fn is not None:
            edges = ((fn, a._output_nr),)
        else:
            acc = a._accum
            edges = ((acc if acc is not None else _accumulator(a), 0),)
        d = a._data
        meta = [(d.shape, d.dtype)]
        needs = _ONE_NEEDED
    elif len(args) == 2 and type(args[0]) is Tensor and type(args[1]) is Tensor and \
            args[0]._rg and args[1]._rg:  # a binary op of two graph tensors: no lists
        a, b = args
        fa, fb = a.grad_fn, b.grad_fn
        edges = ((fa, a._output_nr) if fa is not None else
                 (a._accum if a._accum is not None else _accumulator(a), 0),
                 (fb, b._output_nr) if fb is not None else
                 (b._accum if b._accum is not None else _accumulator(b), 0))
        da, db = a._data, b._data
        meta = [(da.shape, da.dtype), (db.shape, db.dtype)]
        needs = _TWO_NEEDED
    else:
        edges = []
        meta = []
        needs = []
        for a in args:
            if isinstance(a, Tensor) and a._rg:
                fn = a.grad_fn
                if fn is not None:
                    edges.append((fn, a._output_nr))
                else:
                    acc = a._accum
                    edges.append((acc if acc is not None else _accumulator(a), 0))
                d = a._data
                meta.append((d.shape, d.dtype))
                needs.append(True)
            else:
                edges.append(_NO_EDGE)
                meta.append(None)
                needs.append(False)
        needs = tuple(needs)
    node.needs_input_grad = needs
    # Save inputs before forward so that an in-place forward cannot alias them.
    saved = None
    saves = cls.saves
    if saves:
        saved = []
        # ``saves_for`` says which saved positions each input's gradient reads: a tensor
        # only the gradient of a non-differentiated input reads is kept unversioned, so a
        # later in-place write to it does not fail a backward that never reads it (PyTorch
        # saves per formula, too: ``x[:, 1] * 2`` keeps no version of ``x``)
        # (when every input needs its gradient, every saved position is read)
        unread = _unread_cached(cls, needs) if cls.saves_for is not None and \
            False in needs else ()
        for i in (range(len(args)) if saves == "all" else saves):
            t = args[i]
            if i in unread:
                saved.append((t, _ZERO_VC, 0))
            elif isinstance(t, Tensor):
                b = t._base  # the version counter is shared with the base (as in
                if b is None:  # ``_version_counter``, inlined: this runs per saved input)
                    b = t
                vc = b._vc
                if vc is None:
                    vc = b._vc = [0]
                saved.append((t, vc, vc[0]))
            else:
                saved.append((t, _ZERO_VC, 0))
    out = cls.forward(node, *arrays, **kwargs)
    node.next_functions = edges if type(edges) is tuple else tuple(edges)
    node._in_meta = meta
    if _anomaly_enabled[0]:
        import traceback
        node._anomaly_trace = traceback.format_stack()[:-2]
    return _link_output(cls, node, out, args, saved)


def _link_output(cls, node, out, args, saved):
    """The end of the grad path: wrap forward's result(s) as Tensors carrying ``node`` and
    store what backward reads (``saved``, plus the output when the op saves it)."""
    if type(out) is tuple:
        if out and type(out[0]) is MetaArray:
            check_same_device(cls, args)
        outs = []
        for i, o in enumerate(out):
            if o is None:  # an absent optional output (e.g. the gradient of a missing bias)
                outs.append(None)
                continue
            if type(o) is not _ndarray and type(o) is not MetaArray:
                o = _asarray(o)
            t = _new(Tensor)
            t._data = o
            if _differentiable_dtype(o):
                t._rg = True
                t.grad_fn = node
                t._output_nr = i
            outs.append(t)
        node._out_meta = [(o._data.shape, o._data.dtype) if o is not None else None
                          for o in outs]
        if cls.view:
            for t in outs:
                _link_view(cls, t, args[0])
        if cls.saves_output:
            saved = (saved or []) + [(o._data, _version_counter(o), 0) for o in outs
                                     if o is not None]
        node._saved = _pack_saved(saved, node) if _SAVED_HOOKS and saved else saved
        return tuple(outs)
    if type(out) is not _ndarray:
        if type(out) is MetaArray:
            check_same_device(cls, args)
        else:
            out = _asarray(out)
    t = _new(Tensor)
    t._data = out
    if out.dtype.kind in "fcV":
        t._rg = True
        t.grad_fn = node
    if cls.view:
        _link_view(cls, t, args[0])
    if cls.saves_output:
        vc = _version_counter(t)
        saved = (saved or []) + [(out, vc, vc[0])]
    node._saved = _pack_saved(saved, node) if _SAVED_HOOKS and saved else saved
    return t


def _edge(t):
    """The graph edge into Tensor ``t`` (which requires grad): its node, or its leaf sink."""
    fn = t.grad_fn
    if fn is not None:
        return (fn, t._output_nr)
    acc = t._accum
    return (acc if acc is not None else _accumulator(t), 0)


def _saved_entry(t):
    """``(tensor, version counter, version now)``: what ``_saved_values`` checks."""
    b = t._base  # the counter is shared with the base (``_version_counter``, inlined)
    if b is None:
        b = t
    vc = b._vc
    if vc is None:
        vc = b._vc = [0]
    return (t, vc, vc[0])


def _record_unary(cls, a, args=()):
    """``_record`` for one plain Tensor argument that requires grad, followed by ``args``
    that are not Tensors, no keywords: what ``apply_unary`` and ``apply_with`` record,
    without the general loops. The node's edges, metadata and ``needs_input_grad`` have
    one entry per argument, as ``_record`` gives them."""
    k = len(args)
    if k >= len(_FIRST_ONLY):
        return _record(cls, (a,) + args, [a._data, *args], _NO_KWARGS)
    node = _new(cls)
    node._seq = next(_seq)
    fn = a.grad_fn
    if fn is not None:
        edge = (fn, a._output_nr)
    else:
        acc = a._accum
        edge = (acc if acc is not None else _accumulator(a), 0)
    d = a._data
    needs = _FIRST_ONLY[k]
    node.needs_input_grad = needs
    saves = cls.saves
    saved = None
    if saves:
        if not k:  # saves is (0,) or "all": the input
            saved = [_saved_entry(a)]
        else:
            saved = []
            unread = _unread_cached(cls, needs) if cls.saves_for is not None else ()
            for i in (range(k + 1) if saves == "all" else saves):
                t = a if i == 0 else args[i - 1]
                if i in unread or type(t) is not Tensor:
                    saved.append((t, _ZERO_VC, 0))
                else:
                    saved.append(_saved_entry(t))
    if k:
        out = cls.forward(node, d, *args)
        node.next_functions = (edge,) + _NO_EDGES[k]
        node._in_meta = [(d.shape, d.dtype), *_NONES[k]]
    else:
        out = cls.forward(node, d)
        node.next_functions = (edge,)
        node._in_meta = [(d.shape, d.dtype)]
    return _link_plain(cls, node, out, a, args, saved)


def _record_binary(cls, a, b, bd, b_rg):
    """``_record`` for ``apply_binary``: a plain Tensor ``a`` and a plain Tensor or Python
    scalar ``b`` (``bd``: its array, or itself), one of them requiring grad, no keywords."""
    node = _new(cls)
    node._seq = next(_seq)
    ad = a._data
    if a._rg:
        if b_rg:
            edges = (_edge(a), _edge(b))
            meta = [(ad.shape, ad.dtype), (bd.shape, bd.dtype)]
            needs = _TWO_NEEDED
        else:
            edges = (_edge(a), _NO_EDGE)
            meta = [(ad.shape, ad.dtype), None]
            needs = _FIRST_NEEDED
    else:
        edges = (_NO_EDGE, _edge(b))
        meta = [None, (bd.shape, bd.dtype)]
        needs = _SECOND_NEEDED
    node.needs_input_grad = needs
    # Save inputs before forward (as ``_record`` does, with its ``saves_for`` rule)
    saves = cls.saves
    saved = None
    if saves:
        saved = []
        unread = _unread_cached(cls, needs) if cls.saves_for is not None and \
            needs is not _TWO_NEEDED else ()
        for i in ((0, 1) if saves == "all" else saves):
            t = a if i == 0 else b
            if i in unread or type(t) is not Tensor:
                saved.append((t, _ZERO_VC, 0))
            else:
                saved.append(_saved_entry(t))
    out = cls.forward(node, ad, bd)
    node.next_functions = edges
    node._in_meta = meta
    return _link_plain(cls, node, out, a, (b,), saved)


def _link_plain(cls, node, out, a, rest, saved):
    """The end of ``_record_unary``/``_record_binary`` (arguments ``a`` and ``rest``): a
    plain array result becomes the node's Tensor here; anything else, or an op that saves
    its output, or active saved-tensor hooks, take ``_link_output``."""
    if _anomaly_enabled[0]:
        import traceback
        node._anomaly_trace = traceback.format_stack()[:-3]
    if type(out) is not _ndarray or cls.saves_output or _SAVED_HOOKS:
        return _link_output(cls, node, out, (a,) + rest, saved)
    t = _new(Tensor)
    t._data = out
    if out.dtype.kind in "fcV":
        t._rg = True
        t.grad_fn = node
    if cls.view:
        _link_view(cls, t, a)
    node._saved = saved
    return t


_ZERO_VC = [0]
_ONE_NEEDED = (True,)
_FIRST_NEEDED = (True, False)
_SECOND_NEEDED = (False, True)
# by the count of arguments after the first: needs_input_grad, edges and metadata entries
_FIRST_ONLY = tuple((True,) + (False,) * k for k in range(6))
_NONES = tuple((None,) * k for k in range(6))
_TWO_NEEDED = (True, True)
_SAVED_HOOKS: list = []  # (pack, unpack) pairs of active ``saved_tensors_hooks``, innermost last
_HOOKS_DISABLED: list = []  # error messages of active ``disable_saved_tensors_hooks``


class _Packed:
    """A saved tensor as ``pack`` returned it, with the ``unpack`` that restores it."""

    __slots__ = ("value", "unpack")

    def __init__(self, value, unpack):
        self.value, self.unpack = value, unpack


def _pack_saved(saved, node):
    pack, unpack = _SAVED_HOOKS[-1]
    out = []
    for t, vc, version in saved:
        if type(t) is _ndarray or type(t) is MetaArray:  # a saved output: the hook sees it
            t = _make(t, True, node)
        if isinstance(t, Tensor):
            t = _Packed(pack(t), unpack)
        out.append((t, vc, version))
    return out


class saved_tensors_hooks:
    """Context manager: tensors saved for backward inside it go through ``pack_hook(tensor)``
    when saved and ``unpack_hook(packed)`` when backward reads them (PyTorch's API)."""

    def __init__(self, pack_hook, unpack_hook):
        self.pack_hook, self.unpack_hook = pack_hook, unpack_hook

    def __enter__(self):
        if _HOOKS_DISABLED:
            raise RuntimeError(_HOOKS_DISABLED[-1])
        _SAVED_HOOKS.append((self.pack_hook, self.unpack_hook))
        return self

    def __exit__(self, *exc):
        _SAVED_HOOKS.pop()
        return False


class save_on_cpu(saved_tensors_hooks):
    """Keep saved tensors on the CPU (every ember tensor already lives there)."""

    def __init__(self, pin_memory=False, device_type="cuda"):
        super().__init__(lambda t: t, lambda t: t)


class disable_saved_tensors_hooks:
    """Context manager: entering ``saved_tensors_hooks`` inside it raises ``error_message``."""

    def __init__(self, error_message):
        self.error_message = error_message

    def __enter__(self):
        _HOOKS_DISABLED.append(self.error_message)
        return self

    def __exit__(self, *exc):
        _HOOKS_DISABLED.pop()
        return False
_NO_EDGE = (None, 0)  # PyTorch's next_functions entry for an input needing no grad
_NO_EDGES = tuple((_NO_EDGE,) * k for k in range(6))
_anomaly_enabled = [False]  # anomaly mode: nodes keep their forward's traceback
_anomaly_nan = [False]  # and the engine checks each gradient for NaN (``check_nan``)


def _raise_modified(node, t, now, then):
    shape = list(t.shape) if hasattr(t, "shape") else "?"
    dtype = getattr(t, "dtype", None)
    kind = {"float32": "FloatTensor", "float64": "DoubleTensor"}.get(
        getattr(dtype, "name", ""), "Tensor")
    raise RuntimeError(
        "one of the variables needed for gradient computation has been modified by an inplace "
        f"operation: [torch.{kind} {shape}], which is output 0 of {node.name()}, is at version "
        f"{now}; expected version {then} instead. Hint: the backtrace further above can show "
        "the operation that failed to compute its gradient. The variable in question was "
        "changed in there or anywhere later. Good luck!")


def _run_modes(cls, args, kwargs, depth):
    """Let each active mode wrap the op call, outermost first.

    The innermost mode's ``run`` is a ``partial`` of ``_call_bare`` (made in C, no closure
    chain): with one mode active (the profiler alone, autocast alone) an op costs the mode's
    own work plus one list copy."""
    n = len(_MODES)
    if depth >= n:
        return _call_bare(cls, args, kwargs)
    mode = _MODES[depth]
    if depth + 1 == n:
        return mode.on_op(cls, args, kwargs, _partial(_call_bare, cls, args, kwargs))
    return mode.on_op(cls, args, kwargs, lambda: _run_modes(cls, args, kwargs, depth + 1))


def _call_bare(cls, args, kwargs):
    """Run the op itself once every mode has seen it.

    A built-in op's forward computes on arrays, so no mode can see inside it: the modes are
    simply off for the call. A user ``Function``'s forward runs ember ops; the modes whose
    ``sees_function_body`` is true (the profiler, autocast: PyTorch's profiler nests them under
    the Function and autocast casts them) stay on for it, the others (capture, forward AD,
    vmap: they treat the Function as one op) are off."""
    global _MODES
    saved = _MODES
    if cls._raw:
        # this module's name ``_MODES`` points at an empty list for the call (cheaper than
        # emptying and refilling the shared list); the forward cannot reach other modules'
        # references to the shared list, since it computes on arrays
        _MODES = _NO_MODES
        try:
            return cls.apply(*args, **kwargs)
        finally:
            _MODES = saved
            if _NO_MODES:  # a mode started meanwhile (another thread): it joins the real list
                saved.extend(_NO_MODES)
                _NO_MODES.clear()
    saved = _MODES[:]
    _MODES[:] = [m for m in saved if getattr(m, "sees_function_body", False)]
    try:
        return cls._apply_body(*args, **kwargs)
    finally:
        _MODES[:] = saved


# ---------------------------------------------------------------------- leaves
class AccumulateGrad(Node):
    """The sink for a leaf's gradient: hooks, then accumulation into ``.grad``.

    The leaf holds its node (made once, on first use) and the node refers back to the leaf
    weakly, so there is no reference cycle and the node is not rebuilt for every op."""

    def name(self):
        return "torch::autograd::AccumulateGrad"  # PyTorch's name, as programs compare it

    def __repr__(self):
        return f"<AccumulateGrad object at {hex(id(self))}>"

    @property
    def variable(self):
        return self._variable_ref()


def _accumulator(t):
    node = t._accum
    if node is None:
        if t._ngview is not None and t.grad_fn is None:
            return None  # a view made under no_grad: its gradient goes nowhere (PyTorch's)
        node = _new(AccumulateGrad)
        node._seq = -1  # sinks run after every node that feeds them
        node.next_functions = ()
        node._saved = None
        node._released = False
        node._in_meta = [(t._data.shape, t._data.dtype)]
        node._out_meta = None
        node._variable_ref = weakref.ref(t)
        t._accum = node
    return node


# ---------------------------------------------------------------------- in-place ops
def apply_inplace(cls, target, *args, **kwargs):
    """Dispatch an in-place op: compute ``cls(target, *args)`` and write it into ``target``.

    Version counters are bumped; with autograd, ``target`` takes the op's node as grad_fn.
    """
    if not isinstance(target, Tensor):
        raise TypeError(f"in-place {cls.__name__} expects a Tensor, got {type(target).__name__}")
    if _MODES:
        return _run_inplace_modes(cls, target, args, kwargs)
    need = False
    if GradMode.enabled and cls.differentiable:
        if target._rg:
            need = True
        else:
            for a in args:
                if isinstance(a, Tensor) and a._rg:
                    need = True
                    break
    if need:
        if target._ngview is not None:
            _check_nograd_view(target)
        if target._base is not None and _VIEW_INPLACE[0] is not None:
            res = _VIEW_INPLACE[0](cls, target, args, kwargs)
            if res is not NotImplemented:
                return res
        _check_inplace_allowed(target)
        old = target
        if cls.saves == "all" or 0 in cls.saves:  # backward needs the old value: keep a copy
            old = _make(target._data.copy(), target._rg, target.grad_fn)
        else:
            old = _make(target._data, target._rg, target.grad_fn)
        old._output_nr = target._output_nr
        res = _record(cls, (old,) + args, [old._data] + [a._data if isinstance(a, Tensor) else a
                                                         for a in args], kwargs)
        _write(target, res._data, cls)
        _bump_version(target)
        target.grad_fn = res.grad_fn
        target._rg = res._rg
        target._output_nr = 0
        node = res.grad_fn
        if node is not None and cls.saves_output:
            # the saved output is the target itself, at its new version
            vc = _version_counter(target)
            node._saved[-1] = (target._data, vc, vc[0])
        return target
    res = cls.forward(_ScratchCtx(), target._data,
                      *[a._data if isinstance(a, Tensor) else a for a in args], **kwargs)
    _write(target, res if type(res) is _ndarray or type(res) is MetaArray else _asarray(res), cls)
    _bump_version(target)
    return target


def _run_inplace_modes(cls, target, args, kwargs):
    """Let each active mode see an in-place op, outermost first: a mode with
    ``on_inplace(cls, target, args, kwargs, run)`` wraps it; others see it through
    ``on_op`` with the target as first argument."""
    saved, _MODES[:] = _MODES[:], []
    try:
        def run_at(depth):
            if depth == len(saved):
                return apply_inplace(cls, target, *args, **kwargs)
            mode = saved[depth]
            hook = getattr(mode, "on_inplace", None)
            if hook is None:
                return mode.on_op(cls, (target,) + args, kwargs, lambda: run_at(depth + 1))
            return hook(cls, target, args, kwargs, lambda: run_at(depth + 1))
        return run_at(0)
    finally:
        _MODES[:] = saved


def _write(target, result, cls):
    dst = target._data
    if result is dst:
        return
    if result.shape != dst.shape:
        try:
            bshape = np.broadcast_shapes(dst.shape, result.shape)
        except ValueError:
            bshape = result.shape
        if bshape != dst.shape:
            raise RuntimeError(
                f"output with shape {list(dst.shape)} doesn't match the broadcast shape "
                f"{list(bshape)}")
    if result.dtype != dst.dtype:
        from .._dtype import _BY_NP, can_cast
        src_d, dst_d = _BY_NP[result.dtype], _BY_NP[dst.dtype]
        if not can_cast(src_d, dst_d):
            raise RuntimeError(
                f"result type {_pt_name(src_d)} can't be cast to the desired output type "
                f"{_pt_name(dst_d)}")
    np.copyto(dst, result, casting="unsafe")


def _pt_name(d):
    return {"float32": "Float", "float64": "Double", "float16": "Half", "bfloat16": "BFloat16",
            "int64": "Long", "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte",
            "bool": "Bool", "complex64": "ComplexFloat", "complex128": "ComplexDouble"}[d.name]


def _check_inplace_allowed(target):
    if target.grad_fn is None and target._rg:
        if target._base is not None:
            raise RuntimeError(
                "a view of a leaf Variable that requires grad is being used in an in-place "
                "operation.")
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation.")
    base = target._base
    # a detach()ed alias shares memory with its base but not its graph
    if base is not None and (base._rg or target._rg) and \
            not getattr(target, "_nondiff_view", False):
        if base.grad_fn is None and base._rg:
            raise RuntimeError(
                "a view of a leaf Variable that requires grad is being used in an in-place "
                "operation.")
        raise NotImplementedError(
            "ember does not yet record in-place operations on views of tensors that require "
            "grad (PyTorch's CopySlices); write into the base tensor (e.g. base[idx] = value) or "
            "use an out-of-place op")


# ---------------------------------------------------------------------- user Functions
class FunctionCtx(Node):
    """The ``ctx`` object of a user ``Function`` (also its backward node)."""


class _FunctionMeta(type):
    def __init__(cls, name, bases, ns):
        super().__init__(name, bases, ns)
        if ns.get("_forward_cls") is None:
            # The ctx/backward node is an instance of a subclass named like PyTorch's
            # (``type(y.grad_fn).__name__ == "CubeBackward"``), which inherits the methods.
            body = {"_forward_cls": cls}
            if "vjp" in ns and "backward" not in ns:  # ``vjp`` is backward's other name
                body["backward"] = ns["vjp"]
            cls._backward_cls = _FunctionMeta(name + "Backward", (cls,), body)


class Function(Node, metaclass=_FunctionMeta):
    """A user-defined differentiable op (``ember.autograd.Function``).

    Subclasses write ``forward(ctx, *args)`` (on Tensors, under no_grad) and
    ``backward(ctx, *grad_outputs)``; they call ``MyFunc.apply(*args)``.
    """

    _raw = False

    def __init__(self, *args, **kwargs):
        pass

    _forward_cls = None  # set on the generated backward class

    def name(self):
        return type(self).__name__

    @classmethod
    def apply(cls, *args, **kwargs):
        if _MODES:
            return _run_modes(cls, args, kwargs, 0)
        return cls._apply_body(*args, **kwargs)

    @classmethod
    def _apply_body(cls, *args, **kwargs):
        """``apply`` once the modes have seen the call (see ``_call_bare``)."""
        from .grad_mode import no_grad
        need = GradMode.enabled and any(isinstance(a, Tensor) and a._rg for a in args)
        node = _new(cls._backward_cls)
        node._seq = next(_seq)
        node._saved = None
        node._released = False
        node._pre_hooks = node._hooks = node._tensor_hooks = None
        node._materialize = True
        node.needs_input_grad = tuple(isinstance(a, Tensor) and a._rg for a in args)
        with no_grad():
            if cls.setup_context is Function.setup_context:
                out = cls.forward(node, *args, **kwargs)
            else:  # the PyTorch 2 style: forward without ctx, then setup_context
                out = cls.forward(*args, **kwargs)
                cls.setup_context(node, args, out)
        single = not isinstance(out, tuple)
        outs = (out,) if single else out
        dirty = node.__dict__.pop("_dirty", ())
        non_diff = node.__dict__.pop("_non_diff", ())
        pending = node.__dict__.pop("_saved_pending", None)
        if need:
            # edges first: a dirty (in-place modified) input is about to take this node
            edges, meta = [], []
            for a in args:
                if isinstance(a, Tensor) and a._rg:
                    fn = a.grad_fn
                    edges.append((fn, a._output_nr) if fn is not None else (_accumulator(a), 0))
                    meta.append((a._data.shape, a._data.dtype))
                else:
                    edges.append(_NO_EDGE)
                    meta.append(None)
            node.next_functions = tuple(edges)
            node._in_meta = meta
        results = []
        for i, o in enumerate(outs):
            if not isinstance(o, Tensor):
                results.append(o)
                continue
            if any(o is d for d in dirty):
                _bump_version(o)  # PyTorch bumps dirty outputs once more
                r = o
            elif any(o is a for a in args):
                r = _make(o._data)  # an input returned as-is becomes a new alias
                r._base = o._base if o._base is not None else o
            elif o._base is not None or o.grad_fn is not None:
                r = _make(o._data)
                r._base = o._base
            else:
                r = o
            if need and not any(o is n for n in non_diff) and _differentiable_dtype(r._data):
                if any(o is d for d in dirty):
                    _check_inplace_allowed(r)
                r._rg = True
                r.grad_fn = node
                r._output_nr = i
            results.append(r)
        if need:
            node._out_meta = [(r._data.shape, r._data.dtype) if isinstance(r, Tensor) else None
                              for r in results]
            if _anomaly_enabled[0]:
                import traceback
                node._anomaly_trace = traceback.format_stack()[:-1]
            else:
                node._anomaly_trace = None
            if pending is not None:
                saved = []
                for t in pending:
                    if t is None:
                        saved.append((None, _ZERO_VC, 0))
                        continue
                    # an output saved by identity is saved as that output
                    for r, o in zip(results, outs):
                        if t is o:
                            t = r
                    vc = _version_counter(t)
                    saved.append((t, vc, vc[0]))
                node._saved = _pack_saved(saved, node) if _SAVED_HOOKS else saved
        return results[0] if single else tuple(results)

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError("You must implement the forward function for custom "
                                  "autograd.Function.")

    @staticmethod
    def backward(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward mode AD.")

    @staticmethod
    def setup_context(ctx, inputs, output):
        """Optional: with it, ``forward`` takes no ctx and this saves what backward needs."""
        raise NotImplementedError("setup_context is not implemented.")

    @staticmethod
    def vjp(ctx, *grad_outputs):
        raise NotImplementedError("You must implement either the backward or vjp method for "
                                  "your custom autograd.Function to use it with backward mode AD.")

    @staticmethod
    def jvp(ctx, *grad_inputs):
        raise NotImplementedError("You must implement the jvp function for custom "
                                  "autograd.Function to use it with forward mode AD.")

    def save_for_forward(self, *tensors):
        """Save tensors for ``jvp`` (forward-mode AD); ``ctx.saved_tensors`` returns them."""
        self._saved_fw = tensors


def once_differentiable(fn):
    """Run a user backward under no_grad; double backward through it raises."""
    import functools

    @functools.wraps(fn)
    def wrapper(ctx, *grads):
        from .grad_mode import no_grad
        with no_grad():
            out = fn(ctx, *grads)
        if GradMode.enabled and any(isinstance(g, Tensor) and g._rg for g in grads):
            single = not isinstance(out, tuple)
            outs = (out,) if single else out
            outs = tuple(_make(o._data, True, _OnceDiffErr.make()) if isinstance(o, Tensor)
                         else o for o in outs)
            return outs[0] if single else outs
        return out
    return wrapper


class _OnceDiffErr(Node):
    @staticmethod
    def make():
        n = _new(_OnceDiffErr)
        n._seq = next(_seq)
        n.next_functions = ()
        n._saved = None
        n._released = False
        n._pre_hooks = n._hooks = n._tensor_hooks = None
        n._in_meta = []
        n._out_meta = None
        n._anomaly_trace = None
        n._materialize = True
        return n

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("trying to differentiate twice a function that was marked with "
                           "@once_differentiable")





def __getattr__(name):
    # the rest of PyTorch's autograd.graph names live in _graph_api.py (issue 23)
    from . import _graph_api
    if name in _graph_api.__all__:
        return getattr(_graph_api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
