"""Forward-mode automatic differentiation (``ember.autograd.forward_ad``, PyTorch's API).

A *dual tensor* carries a tangent beside its primal value. Inside ``with dual_level():`` every
op that sees a dual input computes its output's tangent too, in the same pass: the
Jacobian-vector product J(x) t with no backward pass.

How it runs. Forward mode is a mode on the one dispatch path (``graph._MODES``), so it costs
nothing while no dual level is open. The same mode object also carries the levels of
``ember.func.vmap``: every transform level (a dual level, a vmap level) is one entry of a
stack, and an op is handled by the innermost level that sees one of its arguments (a tangent
at that level, or a tensor batched at that level). A level handles an op by calling ops again
with its own layer stripped, so the levels compose (``vmap(jvp)``, ``jvp(vmap)``, forward over
reverse).

Tangent rules, per op class:

* ``jvp(ctx, *tangents)`` beside the op's ``backward``: ``ctx.inputs`` are the primal
  arguments, ``ctx.output`` the primal output, ``ctx.kwargs`` the keyword arguments and
  ``ctx.op`` the op class; ``tangents`` line up with the arguments (None where an argument
  has no tangent). It returns the output's tangent (a tuple for several outputs).
* otherwise the exact generic fallback, the "double-vjp trick": every backward is written in
  ember ops and is linear in its output gradient u, so vjp(u) = J^T u and
  jvp(t) = d/du <J^T u, t> = J t: one backward through the op's backward. It is slower (an
  extra recorded forward and two backward passes) and needs a differentiable backward; an op
  whose backward is not differentiable raises PyTorch's error naming the op.

Tangents are keyed by the identity of the primal's backend array (held weakly), so a saved
output that autograd rebuilds for a backward keeps its tangent: forward over reverse (a
Hessian-vector product: the jvp of a gradient) works when the backward is recorded
(``create_graph=True``; the engine's array mode bypasses dispatch). PyTorch allows one dual
level at a time; so does ember.
"""

from __future__ import annotations

import weakref
from collections import namedtuple

from .._tensor import Tensor, _make
from .grad_mode import GradMode, enable_grad
from .graph import _MODES, Function, FunctionCtx, Node, _ScratchCtx

__all__ = ["dual_level", "make_dual", "unpack_dual", "enter_dual_level", "exit_dual_level",
           "UnpackedDualTensor"]

UnpackedDualTensor = namedtuple("UnpackedDualTensor", ["primal", "tangent"])


# ---------------------------------------------------------------------- the transform stack
class _TransformStack:
    """The one mode object serving every transform level (dual levels and vmap levels)."""

    def __init__(self):
        self.levels = []

    def on_op(self, cls, args, kwargs, run):
        for level in reversed(self.levels):
            if level.excluded:
                continue
            if level.claims(args, kwargs):
                return level.process(cls, args, kwargs)
            if getattr(cls, "_fx_impure", False) and getattr(level, "randomness", None) == \
                    "different":  # a random op (dropout's mask) under vmap draws per example
                return level.draw_each(cls.apply, args, kwargs)
        return run()

    def on_inplace(self, cls, target, args, kwargs, run):
        # an in-place op: the innermost level that sees one of its tensors updates the
        # target itself (its tangent; its batch), not a new tensor
        full = (target,) + args
        for level in reversed(self.levels):
            if not level.excluded and level.claims(full, kwargs):
                return level.process_inplace(cls, target, args, kwargs, run)
        return run()


_STACK = _TransformStack()
_next_id = [0]


def push_level(level):
    """Open a transform level (innermost); the mode joins ``_MODES`` with the first one."""
    _next_id[0] += 1
    level.id = _next_id[0]
    _STACK.levels.append(level)
    if _STACK not in _MODES:
        _MODES.append(_STACK)
    return level


def pop_level(level):
    """Close ``level`` (it must be the innermost open level)."""
    if not _STACK.levels or _STACK.levels[-1] is not level:
        raise RuntimeError("transform levels must be closed in the reverse order of opening")
    _STACK.levels.pop()
    if not _STACK.levels and _STACK in _MODES:
        _MODES.remove(_STACK)


def active_levels():
    return list(_STACK.levels)


def _iter_tensors(args, kwargs=None):
    for a in args:
        if isinstance(a, Tensor):
            yield a
        elif type(a) in (tuple, list):
            for b in a:
                if isinstance(b, Tensor):
                    yield b
    if kwargs:
        for a in kwargs.values():
            if isinstance(a, Tensor):
                yield a


# ---------------------------------------------------------------------- dual levels
class _DualLevel:
    """One forward-mode level: the tangents of the dual tensors made at it."""

    kind = "dual"

    def __init__(self):
        self.excluded = 0
        self.tangents = {}  # id(primal array) -> (weakref to the array, tangent Tensor)

    # -- storage
    def get(self, t):
        entry = self.tangents.get(id(t._data))
        if entry is None or entry[0]() is not t._data:
            return None
        return entry[1]

    def set(self, t, tangent):
        arr = t._data
        key = id(arr)
        tangents = self.tangents

        def drop(_ref, key=key):
            e = tangents.get(key)
            if e is not None and e[0] is _ref:
                del tangents[key]
        tangents[key] = (weakref.ref(arr, drop), tangent)

    # -- dispatch
    def claims(self, args, kwargs):
        tangents = self.tangents
        if not tangents:
            return False
        for a in _iter_tensors(args, kwargs):
            if id(a._data) in tangents and self.get(a) is not None:
                return True
        return False

    def process(self, cls, args, kwargs):
        tangents = [self.get(a) if isinstance(a, Tensor) else None for a in args]
        if not any(t is not None for t in tangents):
            # a tangent inside a list argument (cat, stack take tensors as separate arguments;
            # this is for ops that take a tuple of tensors): the fallback serves them
            tangents = None
        # the tangent keeps a graph only where reverse mode could use it
        keep = GradMode.enabled and (
            any(a._rg for a in _iter_tensors(args, kwargs)) or
            any(t is not None and t._rg for t in (tangents or ())))
        self.excluded += 1
        try:
            if not cls.differentiable:
                return cls.apply(*args, **kwargs)
            if isinstance(cls, type) and issubclass(cls, Function):
                out, tout = _function_jvp(cls, args, kwargs, tangents, keep)
            else:
                jvp = getattr(cls, "jvp", None)
                if jvp is not None and tangents is not None:
                    out = cls.apply(*args, **kwargs)
                    ctx = _JvpCtx(cls, args, kwargs, out)
                    tout = jvp(ctx, *tangents)
                else:
                    out, tout = _double_vjp(cls, args, kwargs, tangents, keep)
        finally:
            self.excluded -= 1
        _attach(self, out, tout)
        return out


    def process_inplace(self, cls, target, args, kwargs, run):
        """``target.op_(*args)`` on dual tensors: the tangent of the out-of-place op, computed
        from the values before the write, becomes the target's tangent (PyTorch's rule)."""
        base = target._base
        if base is not None and not target.__dict__.get("_dual_root", False):
            # a write into a view changes its base (and the base's other views), whose
            # tangents would go stale; make_dual's result (an alias) is a root of its own
            raise NotImplementedError(
                f"forward AD: the in-place {cls.__name__} writes into a view of a dual tensor; "
                "ember does not yet carry the tangent back to the view's base. Write into the "
                "base, or use the out-of-place op")
        out = self.process(cls, (target,) + args, kwargs)
        tout = self.get(out) if isinstance(out, Tensor) else None
        res = run()
        old = self.get(target)
        if tout is None:
            self.tangents.pop(id(target._data), None)
        elif old is not None and old._data.flags.writeable and old.shape == tout.shape:
            # PyTorch updates the target's tangent in place: a tangent handed to make_dual
            # sees the update too
            self.excluded += 1
            try:
                with _no_grad_unless(tout):
                    old.copy_(tout)
            finally:
                self.excluded -= 1
        else:
            self.set(target, tout if tout.dtype == target.dtype else tout.to(target.dtype))
        return res


def _no_grad_unless(t):
    """no_grad, unless ``t`` carries a graph (forward over reverse keeps it)."""
    from .grad_mode import no_grad
    return enable_grad() if t._rg else no_grad()


def _attach(level, out, tout):
    if isinstance(out, tuple):
        if not isinstance(tout, (tuple, list)):
            tout = (tout,) + (None,) * (len(out) - 1)
        for o, t in zip(out, tout):
            _attach(level, o, t)
        return
    if not isinstance(out, Tensor) or tout is None or out._data.dtype.kind not in "fcV":
        return
    if not isinstance(tout, Tensor):
        from .. import full_like
        tout = full_like(out, tout)
    if tout._data.dtype != out._data.dtype:
        tout = tout.to(out.dtype)
    if tuple(tout.shape) != tuple(out.shape):
        tout = tout.expand(out.shape)
    level.set(out, tout)


class _JvpCtx:
    """What an op's ``jvp`` sees: its primal inputs, output, keyword arguments and class."""

    __slots__ = ("op", "inputs", "kwargs", "output")

    def __init__(self, op, inputs, kwargs, output):
        self.op, self.inputs, self.kwargs, self.output = op, inputs, kwargs, output


def _no_forward_ad(cls, why=""):
    name = cls.__name__ if isinstance(cls, type) else str(cls)
    return NotImplementedError(
        f"Trying to use forward AD with {name} that does not support it because it has not "
        f"been implemented yet.{why}")


def _double_vjp(cls, args, kwargs, tangents, keep):
    """The generic jvp: J t = d/du <J^T u, t>, one backward through the op's backward."""
    from .engine import grad
    from .. import zeros_like
    with enable_grad():
        ins = list(args)
        diff = []
        if tangents is None:  # tensors inside list arguments: rebuild them as leaves
            raise _no_forward_ad(cls, " (tangents inside a list argument)")
        for i, (a, t) in enumerate(zip(args, tangents)):
            if t is None:
                continue
            if not (keep and a._rg):
                a = a.detach().requires_grad_(True)
            ins[i] = a
            diff.append(i)
        out = cls.apply(*ins, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        live = [o for o in outs if isinstance(o, Tensor) and o._rg]
        us = [zeros_like(o).requires_grad_(True) for o in live]
        try:
            gs = grad(live, [ins[i] for i in diff], us, create_graph=True, allow_unused=True)
        except RuntimeError as e:
            raise _no_forward_ad(cls, f" (its backward failed: {e})") from None
        pairs = [(g, tangents[i]) for g, i in zip(gs, diff) if g is not None and g._rg]
        if pairs:
            # a batched tangent (vmap of jvp) must go through dispatch: the engine's array
            # mode would read its stand-in array
            record = keep or any(type(t) is not Tensor for _, t in pairs)
            try:
                ts = grad([g for g, _ in pairs], us, [t for _, t in pairs],
                          create_graph=record, allow_unused=True)
            except RuntimeError as e:
                raise _no_forward_ad(cls, f" (its backward is not differentiable: {e})") \
                    from None
        else:
            ts = (None,) * len(us)
    # the primal output, cut from the scratch leaves made above
    res = []
    ti = iter(ts)
    tout = []
    for o in outs:
        if isinstance(o, Tensor) and o._rg:
            t = next(ti)
            t = zeros_like(o) if t is None else t
            tout.append(t if keep or type(t) is not Tensor else t.detach())
            if not (keep and any(isinstance(a, Tensor) and a._rg for a in args)):
                o = _make(o._data)
        else:
            tout.append(None)
        res.append(o)
    if isinstance(out, tuple):
        return tuple(res), tuple(tout)
    return res[0], tout[0]


def _function_jvp(cls, args, kwargs, tangents, keep):
    """A user ``autograd.Function``: its ``jvp`` staticmethod (PyTorch's API)."""
    if cls.jvp is Function.jvp:
        raise NotImplementedError(
            "You must implement the jvp function for custom autograd.Function to use it with "
            "forward mode AD.")
    if tangents is None:
        tangents = [None] * len(args)
    need = keep and any(isinstance(a, Tensor) and a._rg for a in args)
    if need:
        out = cls.apply(*args, **kwargs)
        first = out[0] if isinstance(out, tuple) else out
        ctx = first.grad_fn if isinstance(first, Tensor) else None
        if ctx is None:
            need = False
    if not need:
        from .grad_mode import no_grad
        ctx = object.__new__(cls._backward_cls)
        ctx._saved = None
        ctx._released = False
        ctx.needs_input_grad = tuple(isinstance(a, Tensor) and a._rg for a in args)
        with no_grad():
            if cls.setup_context is Function.setup_context:
                out = cls.forward(ctx, *args, **kwargs)
            else:
                out = cls.forward(*args, **kwargs)
                cls.setup_context(ctx, args, out)
        pending = ctx.__dict__.pop("_saved_pending", None)
        if pending is not None:
            ctx._saved = [(t, [0], 0) for t in pending]
    fw = ctx.__dict__.get("_saved_fw")
    if fw is not None:
        ctx._saved = [(t, [0], 0) for t in fw]
    from .. import zeros_like
    ts = [t if t is not None else (zeros_like(a) if isinstance(a, Tensor) else None)
          for a, t in zip(args, tangents)]
    tout = cls.jvp(ctx, *ts)
    return out, tout


_CURRENT = [None]


def enter_dual_level():
    """Open a dual level and return its index (PyTorch allows one at a time)."""
    if _CURRENT[0] is not None:
        raise RuntimeError("Nested forward mode AD is not supported at the moment")
    level = push_level(_DualLevel())
    _CURRENT[0] = level
    return 0


def exit_dual_level(*, level=None):
    """Close the current dual level; its dual tensors lose their tangents."""
    cur = _CURRENT[0]
    if cur is None:
        raise RuntimeError("Trying to exit a forward AD level that was not the last one that "
                           "was created. This is not supported.")
    pop_level(cur)
    cur.tangents.clear()
    _CURRENT[0] = None


class dual_level:
    """Context manager for a dual level: ``with dual_level(): ...``."""

    def __enter__(self):
        return enter_dual_level()

    def __exit__(self, *exc):
        exit_dual_level()
        return False


def _level(level):
    cur = _CURRENT[0]
    if cur is None:
        return None
    return cur


def make_dual(tensor, tangent, *, level=None):
    """A view of ``tensor`` whose tangent is ``tangent`` (same shape; floating dtypes)."""
    cur = _level(level)
    if cur is None:
        raise RuntimeError("To create a dual Tensor, you must be within a dual_level (use "
                           "`with ember.autograd.forward_ad.dual_level():`).")
    if not isinstance(tensor, Tensor) or not isinstance(tangent, Tensor):
        raise TypeError("make_dual expects Tensors for both the primal and the tangent, got "
                        f"{type(tensor).__name__} and {type(tangent).__name__}")
    if tuple(tensor.shape) != tuple(tangent.shape):
        raise RuntimeError(f"Trying to set a forward gradient that has a different size than "
                           f"that of the original Tensor, this is not supported. Tensor is of "
                           f"size {list(tensor.shape)} while the given forward gradient is of "
                           f"size {list(tangent.shape)}.")
    if tensor._data.dtype.kind not in "fc" or tangent._data.dtype.kind not in "fc":
        raise ValueError(f"Expected both the primal and the tangent to be floating point or "
                         f"complex, but got {tensor.dtype} and {tangent.dtype}")
    cur.excluded += 1
    try:
        dual = tensor.view_as(tensor)  # a new alias: the original keeps no tangent
    finally:
        cur.excluded -= 1
    if dual._data is tensor._data:  # make sure the key is a fresh array object
        dual._data = tensor._data.view()
    if tangent.dtype != tensor.dtype:
        tangent = tangent.to(tensor.dtype)
    cur.set(dual, tangent)
    dual._dual_root = True  # in-place ops on it keep its tangent current (process_inplace)
    return dual


def unpack_dual(tensor, *, level=None):
    """``(primal, tangent)``: the primal as a view without tangent; tangent None if none."""
    cur = _level(level)
    if cur is None or not isinstance(tensor, Tensor):
        return UnpackedDualTensor(tensor, None)
    t = cur.get(tensor)
    if t is None:
        return UnpackedDualTensor(tensor, None)
    cur.excluded += 1
    try:
        primal = tensor.view_as(tensor)
    finally:
        cur.excluded -= 1
    if primal._data is tensor._data:
        primal._data = tensor._data.view()
    return UnpackedDualTensor(primal, t)


# ---------------------------------------------------------------------- helpers for op jvps
def linear_jvp(ctx, *tangents):
    """The jvp of an op linear in its floating tensor arguments (jointly): the op itself
    applied to the tangents (zeros where an argument has none)."""
    from .. import zeros_like
    args = []
    for a, t in zip(ctx.inputs, tangents):
        if t is not None:
            args.append(t)
        elif isinstance(a, Tensor) and a._data.dtype.kind in "fc":
            args.append(zeros_like(a))
        else:
            args.append(a)
    return ctx.op.apply(*args, **ctx.kwargs)


def multilinear_jvp(ctx, *tangents):
    """The jvp of an op linear in each floating tensor argument separately (mul, matmul):
    the sum over arguments of the op with that argument replaced by its tangent."""
    total = None
    for i, t in enumerate(tangents):
        if t is None:
            continue
        args = list(ctx.inputs)
        args[i] = t
        term = ctx.op.apply(*args, **ctx.kwargs)
        total = term if total is None else total + term
    return total


def first_arg_linear_jvp(ctx, *tangents):
    """The jvp of an op linear in its first argument, the others (indices, weights of a loss)
    held constant; a tangent on another floating argument uses the generic fallback."""
    if any(t is not None for t in tangents[1:]):
        return _double_vjp(ctx.op, ctx.inputs, ctx.kwargs, list(tangents), GradMode.enabled)[1]
    if tangents[0] is None:
        return None
    return ctx.op.apply(tangents[0], *ctx.inputs[1:], **ctx.kwargs)


def add_tangents(a, b):
    """``a + b`` where either may be None (no tangent)."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


# Node, FunctionCtx and _ScratchCtx are part of the vocabulary op files use with this module.
_ = (Node, FunctionCtx, _ScratchCtx)
