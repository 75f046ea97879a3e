"""The ``Optimizer`` base class: PyTorch's param groups and state, MLX's two-method template.

A concrete optimizer writes two small pieces (after MLX):

- ``_init_state(p, group)`` returns a new parameter's state dict (or ``None`` when the options
  need no state, like SGD without momentum);
- ``_update(group, p, g, s, sc, first)`` does the update math on backend arrays in place:
  ``p`` the parameter, ``g`` a private copy of its gradient (free to overwrite), ``s`` the
  state arrays shaped like ``p`` (named in ``_elem_state``), ``sc`` the 0-d state values
  (named in ``_scalar_state``) as python floats, which the update may change, and ``first``
  whether the state was created in this step.

The base class walks the groups and runs the update either once per parameter (the loop
path) or once per group over flat buffers (the ``foreach`` path): on the first step of a
group it moves the parameters and their state into one contiguous buffer per dtype, keeping
every parameter and state tensor as a view into it, so each later step is one gather of the
gradients and a handful of array calls. The buffers are checked by identity every step and
rebuilt when anything was replaced (``p.data = ...``, ``load_state_dict``, another set of
parameters with gradients). A parameter whose array is visible elsewhere (a NumPy array from
``numpy()`` or ``from_numpy``, a view) is never moved: its group takes the loop path, as does
a step where the group's parameters have taken different numbers of steps. Both paths run the
same ``_update``, so they agree to the last bit; an optimizer may also give the flat path a
compiled form of it (``_flat_kernel``: SGD's and Adam's, ``_update_c.py``) with the same
roundings.
"""

from __future__ import annotations

import bisect
import functools
import sys
import warnings
import weakref
from collections import OrderedDict, defaultdict
from copy import deepcopy
from itertools import chain

import numpy as np

from .. import _dtype as D, _parallel as _par
from .._tensor import Tensor, _bump_version, _make
from ..autograd.grad_mode import enable_grad, no_grad
from .._hooks import add_hook

__all__ = ["Optimizer", "required", "register_optimizer_step_pre_hook",
           "register_optimizer_step_post_hook"]


class _RequiredParameter:
    """Marks a default that every param group must set (SGD's ``lr`` in old PyTorch)."""

    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()

_global_pre_hooks: OrderedDict = OrderedDict()
_global_post_hooks: OrderedDict = OrderedDict()

# Elements per call on the foreach path: the flat buffers are updated a chunk at a time, so
# the update's temporaries stay chunk-sized (and in cache) however large the model is. At
# 1M values, chunks of 32K to whole made no measurable difference in time.
_CHUNK = 1 << 16
# Parameters from which a flat update is split over threads: one hand-off per thread and step
# for the whole update, not one per NumPy call (an Adam update costs ~10 ufunc passes, ~0.5 ms
# per 128K values, against a hand-off's tens of microseconds)
_PAR_MIN = 1 << 17


def register_optimizer_step_pre_hook(hook):
    """Register ``hook(optimizer, args, kwargs)`` to run before every optimizer's ``step``."""
    return add_hook(_global_pre_hooks, hook)


def register_optimizer_step_post_hook(hook):
    """Register ``hook(optimizer, args, kwargs)`` to run after every optimizer's ``step``."""
    return add_hook(_global_post_hooks, hook)


def _to_scalar(x):
    """A python number from a float or a one-element tensor (``lr`` may be either)."""
    if isinstance(x, Tensor):
        return x.item()
    return x


def _scalar_dtype():
    """The dtype of 0-d state such as ``step``: float64 when that is the default, else float32."""
    return D.float64 if D.get_default_dtype() is D.float64 else D.float32


def _scalar_state(value):
    return _make(np.array(value, dtype=_scalar_dtype().np))


def _zeros_like(p, fill=0.0):
    # ``like=``: the state lives on the parameter's device (meta parameters get meta state)
    return _make(np.full(p._data.shape, fill, dtype=p._data.dtype, like=p._data))


def _real(a):
    """A real view of a complex array: PyTorch treats real and imaginary parts independently."""
    if a.dtype.kind == "c":
        if not a.flags.c_contiguous:
            raise NotImplementedError("ember.optim: complex parameters must be contiguous")
        return a.view(a.real.dtype)
    return a


def _check_unsupported(name, differentiable=False, capturable=False):
    if differentiable:
        raise NotImplementedError(f"{name}(differentiable=True) is not supported by ember "
                                  "(the update runs on arrays, outside autograd)")
    if capturable:
        raise NotImplementedError(f"{name}(capturable=True) is for CUDA graph capture, which "
                                  "ember does not have")


def _with_hooks(step):
    """Wrap a subclass's ``step`` so the global and per-optimizer step hooks run around it."""

    @functools.wraps(step)
    def wrapper(self, *args, **kwargs):
        if self._in_step:  # a subclass's step calling super().step(): hooks already ran
            return step(self, *args, **kwargs)
        for hook in chain(_global_pre_hooks.values(), self._optimizer_step_pre_hooks.values()):
            result = hook(self, args, kwargs)
            if result is not None:
                if isinstance(result, tuple) and len(result) == 2:
                    args, kwargs = result
                else:
                    raise RuntimeError(f"{step} must return None or a tuple of "
                                       f"(new_args, new_kwargs), but got {result}.")
        self._in_step = True
        try:
            out = step(self, *args, **kwargs)
        finally:
            self._in_step = False
        self._opt_called = True
        for hook in chain(self._optimizer_step_post_hooks.values(), _global_post_hooks.values()):
            hook(self, args, kwargs)
        return out

    wrapper._hooked = True
    return wrapper


class _Flat:
    """One group's parameters (of one dtype) and their state, as views into flat buffers."""

    __slots__ = ("params", "p", "elem", "scal", "g", "checks", "offsets")


class Optimizer:
    """Base class of all optimizers: ``param_groups``, lazily created per-parameter ``state``."""

    _elem_state: tuple = ()     # state keys holding arrays shaped like the parameter
    _scalar_state: tuple = ()   # state keys holding 0-d tensors
    _flat_capable = True        # whether the update is elementwise (so the foreach path works)
    _sparse_grads = False       # whether ``_step_sparse`` takes sparse COO gradients
    _in_step = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_hooked", False):
            cls.step = _with_hooks(step)

    def __init__(self, params, defaults):
        self.defaults = defaults
        self._optimizer_step_pre_hooks = OrderedDict()
        self._optimizer_step_post_hooks = OrderedDict()
        self._optimizer_state_dict_pre_hooks = OrderedDict()
        self._optimizer_state_dict_post_hooks = OrderedDict()
        self._optimizer_load_state_dict_pre_hooks = OrderedDict()
        self._optimizer_load_state_dict_post_hooks = OrderedDict()
        self._flat = {}
        if defaults.get("fused") and defaults.get("foreach"):
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__name__}")
        self.state = defaultdict(dict)
        self.param_groups = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    def __getstate__(self):
        return {"defaults": self.defaults, "state": self.state,
                "param_groups": self.param_groups}

    def __setstate__(self, state):
        self.__dict__.update(state)
        for name in ("_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
                     "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
                     "_optimizer_load_state_dict_pre_hooks",
                     "_optimizer_load_state_dict_post_hooks"):
            self.__dict__.setdefault(name, OrderedDict())
        self._flat = {}
        self.defaults.setdefault("differentiable", False)
        # old checkpoints keep 'step' (and other 0-d state) as python numbers
        for st in self.state.values():
            if isinstance(st, dict):
                for k in self._scalar_state:
                    if k in st and not isinstance(st[k], Tensor):
                        st[k] = _scalar_state(float(st[k]))

    def __repr__(self):
        s = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    s += f"    {key}: {group[key]}\n"
        return s + ")"

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group):
        """Add a group of parameters (with its own options) to ``param_groups``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, "
                            "but the ordering of tensors in sets will change between runs. "
                            "Please use a list instead.")
        else:
            params = list(params)
        tensors, names = [], []
        for p in params:
            if isinstance(p, tuple):  # (name, parameter) from named_parameters()
                names.append(p[0])
                tensors.append(p[1])
            else:
                tensors.append(p)
        param_group["params"] = tensors
        if names:
            if len(names) != len(tensors):
                raise ValueError("all optimizer params should be with/without names. Some "
                                 "param names are missing")
            param_group["param_names"] = names
        for p in tensors:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is "
                                f"{type(p).__module__}.{type(p).__name__}")
            if not self.defaults.get("differentiable", None) and not (p.is_leaf
                                                                      or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        if len(tensors) != len(set(tensors)):
            warnings.warn("optimizer contains a parameter group with duplicate parameters; "
                          "in future, this will cause an error; see "
                          "github.com/pytorch/pytorch/issues/40967 for more information",
                          stacklevel=3)
        seen = set()
        for group in self.param_groups:
            seen.update(group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError("all optimizer param groups should be with/without names. "
                                 f"cannot add param group {which} to the optimizer")
        if not seen.isdisjoint(tensors):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of all optimized tensors (to ``None`` by default)."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p.grad
                if g is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    if g.grad_fn is not None:
                        g = p.grad = g.detach()
                    else:
                        g._rg = False
                    if g.is_sparse:  # no entries left, as PyTorch's sparse zero_()
                        g.zero_()
                        continue
                    g._data[...] = 0
                    _bump_version(g)

    # ------------------------------------------------------------------ hooks
    def _hook(self, container, hook, prepend=False):
        handle = add_hook(container, hook)
        if prepend:
            container.move_to_end(handle.id, last=False)
        return handle

    def register_step_pre_hook(self, hook):
        """Run ``hook(optimizer, args, kwargs)`` before ``step``; may return (args, kwargs)."""
        return self._hook(self._optimizer_step_pre_hooks, hook)

    def register_step_post_hook(self, hook):
        """Run ``hook(optimizer, args, kwargs)`` after ``step``."""
        return self._hook(self._optimizer_step_post_hooks, hook)

    def register_state_dict_pre_hook(self, hook, prepend=False):
        """Run ``hook(optimizer)`` before ``state_dict`` builds its result."""
        return self._hook(self._optimizer_state_dict_pre_hooks, hook, prepend)

    def register_state_dict_post_hook(self, hook, prepend=False):
        """Run ``hook(optimizer, state_dict)`` after ``state_dict``; it may return a new dict."""
        return self._hook(self._optimizer_state_dict_post_hooks, hook, prepend)

    def register_load_state_dict_pre_hook(self, hook, prepend=False):
        """Run ``hook(optimizer, state_dict)`` before loading; it may return a new dict."""
        return self._hook(self._optimizer_load_state_dict_pre_hooks, hook, prepend)

    def register_load_state_dict_post_hook(self, hook, prepend=False):
        """Run ``hook(optimizer)`` after ``load_state_dict``."""
        return self._hook(self._optimizer_load_state_dict_post_hooks, hook, prepend)

    # ------------------------------------------------------------------ state dicts
    def state_dict(self):
        """The optimizer's state in PyTorch's layout: state keyed by parameter index, and
        param_groups whose ``params`` list those indices."""
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        index = {}
        start = 0
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                index.setdefault(id(p), i)
            packed["params"] = [index[id(p)] for p in group["params"]]
            start += len(packed["params"])
            groups.append(packed)
        state = {(index[id(k)] if isinstance(k, Tensor) else k): v
                 for k, v in self.state.items()}
        sd = {"state": state, "param_groups": groups}
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, sd)
            if result is not None:
                sd = result
        return sd

    def load_state_dict(self, state_dict):
        """Load a state from ``state_dict()`` (ember's or PyTorch's, tensors converted)."""
        state_dict = state_dict.copy()
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(f"loaded state dict has a different number of parameter groups: "
                             f"the optimizer has {len(groups)}, the state dict "
                             f"{len(saved_groups)}")
        for i, (g, sg) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't "
                                 f"match the size of optimizer's group: group {i} has "
                                 f"{len(g['params'])} parameters in the optimizer but "
                                 f"{len(sg['params'])} in the state dict")
        id_map = {}
        where = {}
        for gi, (g, sg) in enumerate(zip(groups, saved_groups)):
            for pi, (saved_id, p) in enumerate(zip(sg["params"], g["params"])):
                id_map[saved_id] = p
                where[saved_id] = (gi, pi)
        state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                p = id_map[k]
                self._check_loaded(p, v, *where[k])
                state[p] = _cast(p, v)
            else:
                state[k] = v
        new_groups = []
        for g, sg in zip(groups, saved_groups):
            sg["params"] = g["params"]
            if "param_names" in g and "param_names" not in sg:
                sg["param_names"] = g["param_names"]
            new_groups.append(sg)
        self.__setstate__({"state": state, "param_groups": new_groups})
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    def _check_loaded(self, p, value, gi, pi):
        """Refuse state that cannot belong to ``p`` (a changed model), naming what differs."""
        if not isinstance(value, dict):
            return
        for key in self._elem_state:
            t = value.get(key)
            if t is not None and hasattr(t, "shape") and tuple(t.shape) != tuple(p.shape):
                raise ValueError(
                    f"loaded state dict does not fit the optimizer: state '{key}' of parameter "
                    f"{pi} in group {gi} has shape {tuple(t.shape)} but the parameter has shape "
                    f"{tuple(p.shape)}")

    # ------------------------------------------------------------------ stepping
    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        raise NotImplementedError

    def _init_state(self, p, group):
        raise NotImplementedError

    def _update(self, group, p, g, s, sc, first):
        raise NotImplementedError

    def _step_sparse(self, group, params):
        """The update of ``params`` whose ``.grad`` is a sparse COO tensor (optimizers that
        set ``_sparse_grads``)."""
        raise NotImplementedError

    def _prepare(self, group):
        """Hook for per-group checks before the update (e.g. sparse gradients)."""

    def _default_step(self, closure):
        """``step`` for optimizers that follow the template: loss from closure, then update."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for gi, group in enumerate(self.param_groups):
                self._prepare(group)
                self._step_group(gi, group)
        return loss

    def _use_flat(self, group):
        if self.__dict__.get("_swapped"):  # swap_in_optimizer_params_and_state: plain path
            return False
        foreach = group.get("foreach")
        if foreach is None:
            foreach = True
        return (foreach or group.get("fused")) and self._flat_capable

    def _step_group(self, gi, group):
        by_dtype, sparse = {}, []
        for p in group["params"]:
            g = p.grad
            if g is None:
                continue
            if g.is_sparse:
                if not self._sparse_grads:
                    name = type(self).__name__
                    hint = ", please consider SparseAdam instead" if name == "Adam" else ""
                    raise RuntimeError(f"{name} does not support sparse gradients{hint}")
                sparse.append(p)
                continue
            by_dtype.setdefault(p._data.dtype, []).append(p)
        if sparse:
            self._step_sparse(group, sparse)
        flat = self._use_flat(group)
        for dtype, params in by_dtype.items():
            first = []
            for p in params:
                st = self.state.get(p)
                if not st:
                    new = self._init_state(p, group)
                    if new is not None:
                        self.state[p] = new
                    first.append(True)
                else:
                    first.append(False)
            if flat and dtype.kind == "f" and self._step_flat((gi, dtype.str), group, params,
                                                              first):
                continue
            for p, f in zip(params, first):
                self._step_one(group, p, f)

    def _step_one(self, group, p, first):
        st = self.state.get(p, {})
        g = _real(p.grad._data).copy()
        s = {k: _real(st[k]._data) for k in self._elem_state if k in st}
        sc = {k: float(st[k]._data) for k in self._scalar_state if k in st}
        a = _real(p._data)
        if a.ndim == 0:  # NumPy turns 0-d results into scalars; keep arrays to write into
            a, g = a.reshape(1), g.reshape(1)
            s = {k: v.reshape(1) for k, v in s.items()}
        self._update(group, a, g, s, sc, first)
        for k, v in sc.items():
            if k in st:
                st[k]._data[...] = v
        _bump_version(p)

    # -- the foreach path
    def _step_flat(self, key, group, params, first):
        """Run the update once over flat buffers; False when this step must use the loop."""
        if any(first) and not all(first):
            return False
        f = self._flat.get(key)
        if f is None or not self._flat_valid(f, params):
            self._flat.pop(key, None)
            f = self._build_flat(params)
            if f is None:
                return False
            self._flat[key] = f
        sc = {}
        for k, a in f.scal.items():
            v = a[0]
            if a.size > 1 and (a != v).any():  # params took different numbers of steps
                return False
            sc[k] = float(v)
        grads = [p.grad._data.reshape(-1) for p in params]
        offs = f.offsets
        first = first[0]
        n = f.p.size
        update = self._update
        kernel = self._flat_kernel(group, f.p.dtype, tuple(f.elem))

        def kernel_chunks(c0, c1):
            # the C update (``_flat_kernel``) reads each parameter's gradient where it lies
            lo, hi = c0 * _CHUNK, min(c1 * _CHUNK, n)
            c = dict(sc)
            i = bisect.bisect_right(offs, lo) - 1
            while i < len(grads) and offs[i] < hi:
                a, b = max(lo, offs[i]), min(hi, offs[i + 1])
                g = grads[i][a - offs[i]:b - offs[i]]
                if g.dtype != f.p.dtype or not g.flags.c_contiguous:
                    g = np.ascontiguousarray(g, f.p.dtype)
                c = dict(sc)
                kernel(f.p[a:b], g, {k: v[a:b] for k, v in f.elem.items()}, c, first)
                i += 1
            return c

        def chunks(c0, c1):  # the update over chunks c0..c1-1; returns the last's scalars
            for lo in range(c0 * _CHUNK, min(c1 * _CHUNK, n) or 1, _CHUNK):  # one (empty)
                hi = min(lo + _CHUNK, n)  # call for empty parameters
                # the chunk's gradients into the flat buffer here, on this part's thread,
                # right before the update reads them (not one serial copy of them all)
                i = bisect.bisect_right(offs, lo) - 1
                while i < len(grads) and offs[i] < hi:
                    a, b = max(lo, offs[i]), min(hi, offs[i + 1])
                    f.g[a:b] = grads[i][a - offs[i]:b - offs[i]]
                    i += 1
                c = dict(sc)  # every chunk starts from this step's scalars and ends the same
                update(group, f.p[lo:hi], f.g[lo:hi], {k: a[lo:hi] for k, a in f.elem.items()},
                       c, first)
            return c

        # The update is elementwise and chunk by chunk, so the chunks may run on several
        # threads (each thread a contiguous run of chunks, one hand-off per step; NumPy
        # releases the GIL in its loops) with the same result at every thread count.
        n_chunks = -(-n // _CHUNK)
        parts = min(_par.threads_for(n, _PAR_MIN), n_chunks)
        if kernel is not None and n:
            chunks = kernel_chunks
        c = None
        call = getattr(kernel, "call", None) if kernel is not None and n else None
        if parts > 1 and call is not None and _par.blas_batch_ok():
            c = self._step_tasks(call, f, grads, sc, first, _par._bounds(n_chunks, parts))
        if c is None and parts > 1:
            c = _par.run_split(chunks, _par._bounds(n_chunks, parts))[-1]
        elif c is None:
            c = chunks(0, max(n_chunks, 1))
        for k, v in c.items():
            f.scal[k][...] = v
        for p in params:
            _bump_version(p)
        return True

    @staticmethod
    def _step_tasks(call, f, grads, sc, first, bounds):
        """The C update as one batch of tasks on the pool (``_parallel.run_blas``): a task
        per parameter's piece of each part of ``bounds`` (chunks), each ``kernel``'s call on
        it (``kernel.call``'s ``pack`` gives its arguments from addresses), claimed in order
        by whichever thread is free, without the GIL. Returns the last piece's scalars, or
        None when the batch could not run (the caller's split serves)."""
        from .. import _pool_c
        fn, pack = call
        offs, n, dt = f.offsets, f.p.size, f.p.dtype
        size = dt.itemsize
        p0 = f.p.__array_interface__["data"][0]
        s0 = {k: v.__array_interface__["data"][0] for k, v in f.elem.items()}
        g0, keep = [], []
        for g in grads:
            if g.dtype != dt or not g.flags.c_contiguous:
                g = np.ascontiguousarray(g, dt)
                keep.append(g)
            g0.append(g.__array_interface__["data"][0])
        rows, c = [], dict(sc)
        for c0, c1 in bounds:
            lo, hi = c0 * _CHUNK, min(c1 * _CHUNK, n)
            i = bisect.bisect_right(offs, lo) - 1
            while i < len(grads) and offs[i] < hi:
                a, b = max(lo, offs[i]), min(hi, offs[i + 1])
                if b > a:
                    c = dict(sc)
                    rows.append(pack(p0 + a * size, g0[i] + (a - offs[i]) * size,
                                     {k: v + a * size for k, v in s0.items()}, b - a, c, first))
                i += 1
        if not rows:
            return None
        args = np.array(rows, np.int64)
        base, step = args.__array_interface__["data"][0], args.strides[0]
        if not _par.run_blas([_pool_c.call_task(fn, base + j * step)
                              for j in range(len(rows))]):
            return None
        return c

    def _flat_kernel(self, group, dtype, elem_keys):
        """A compiled form of ``_update`` for the flat path, or None (the default: the
        NumPy update runs). When given, ``kernel(p, g, s, sc, first)`` updates contiguous
        1-d ``p`` and state arrays ``s`` from a gradient ``g`` that it must not write, with
        ``_update``'s results bit for bit."""
        return None

    def _flat_valid(self, f, params):
        if len(f.params) != len(params) or any(a is not b for a, b in zip(f.params, params)):
            return False
        keys = tuple(f.elem) + tuple(f.scal)
        state = self.state
        for p, arrays in zip(params, f.checks):
            st = state.get(p)
            if st is None or p._data is not arrays[0]:
                return False
            for k, a in zip(keys, arrays[1:]):
                t = st.get(k)
                if t is None or t._data is not a:
                    return False
        return True

    def _build_flat(self, params):
        """Move ``params`` and their state into flat buffers; None when that is not safe."""
        if len(set(map(id, params))) != len(params):
            return None  # a parameter listed twice is stepped twice, as PyTorch's loop does
        if any(p.is_meta for p in params):
            return None  # meta parameters have no memory to move: the loop serves them
        for p in params:
            a = p._data
            if a.base is not None and _PARAM_BUFFERS.get(id(a.base)) is a.base:
                continue  # a view an optimizer made on an earlier step
            # Moving a parameter's memory is only safe when nothing else can see the old
            # array: no view of it, no NumPy array handed out (``numpy()``, ``from_numpy``).
            # Three references: the tensor's __dict__, the local ``a``, getrefcount's argument.
            if p._base is not None or a.base is not None or sys.getrefcount(a) > 3:
                return None
        for p in params:
            if p.grad._data.shape != p._data.shape:
                raise RuntimeError(f"{type(self).__name__}: gradient of shape "
                                   f"{tuple(p.grad.shape)} does not match parameter of shape "
                                   f"{tuple(p.shape)}")
        states = [self.state.get(p, {}) for p in params]
        st0 = states[0]
        elem_keys = [k for k in self._elem_state if k in st0]
        scal_keys = [k for k in self._scalar_state if k in st0]
        for st in states:
            if any(k not in st for k in elem_keys + scal_keys):
                return None
        dtype = params[0]._data.dtype
        sizes = [p._data.size for p in params]
        f = _Flat()
        f.params = list(params)
        f.g = np.empty(sum(sizes), dtype)
        f.offsets = [0]  # where each parameter starts in the flat buffers, then the end
        for k in sizes:
            f.offsets.append(f.offsets[-1] + k)
        f.p = _rehome(params, sizes, dtype)
        _PARAM_BUFFERS[id(f.p)] = f.p
        f.elem = {k: _rehome([st[k] for st in states], sizes, dtype) for k in elem_keys}
        f.scal = {k: _rehome([st[k] for st in states], [1] * len(params),
                             st0[k]._data.dtype, scalar=True) for k in scal_keys}
        f.checks = [tuple([p._data] + [st[k]._data for k in elem_keys + scal_keys])
                    for p, st in zip(params, states)]
        return f


# Every flat parameter buffer that an optimizer made, so that another optimizer (or a rebuild)
# may move those parameters again; a buffer leaves when nothing uses it any more.
_PARAM_BUFFERS = weakref.WeakValueDictionary()


def _rehome(tensors, sizes, dtype, scalar=False):
    """Copy ``tensors`` into one new flat buffer and make each tensor a view into it."""
    buf = np.empty(sum(sizes), dtype)
    off = 0
    for t, k in zip(tensors, sizes):
        a = t._data
        view = buf[off:off + k]
        view[...] = a.reshape(-1)
        t._data = view.reshape(()) if scalar else view.reshape(a.shape)
        off += k
    return buf


def _cast(p, value, key=None):
    """Copy loaded state for ``p``: tensors take the parameter's floating dtype (not 'step')."""
    if isinstance(value, Tensor):
        if key != "step" and p.is_floating_point() and value.dtype is not p.dtype:
            return _make(value._data.astype(p._data.dtype))
        return value
    if isinstance(value, dict):
        return {k: _cast(p, v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(p, v) for v in value)
    return value


def _sparse_rows(grad, p, coalesce):
    """A sparse COO gradient of ``p`` as (flat row index into ``p`` viewed as (rows, *dense
    dims), values array): entries in their order, or summed per index when ``coalesce``
    (sorted, as ``coalesce()``)."""
    from ..sparse import _flat_index
    idx = _flat_index(grad._idx, grad._size)
    vals = np.asarray(grad._vals._data).astype(p.dtype, copy=False)
    if coalesce and idx.size:
        uniq, inv = np.unique(idx, return_inverse=True)
        if uniq.size != idx.size or (np.diff(idx) < 0).any():
            summed = np.zeros((uniq.size,) + vals.shape[1:], vals.dtype)
            np.add.at(summed, inv.reshape(-1), vals)
            idx, vals = uniq, summed
    return idx, vals


def _rows_view(a, grad):
    """``a`` (a parameter or state array) as (rows, *dense dims) for ``_sparse_rows``."""
    return a.reshape((-1,) + a.shape[grad._idx.shape[0]:])


def _dense_grad(grad, p):
    """A new dense array holding the sparse gradient ``grad`` of ``p``."""
    out = np.zeros(p.shape, p.dtype)
    idx, vals = _sparse_rows(grad, p, False)
    np.add.at(_rows_view(out, grad), idx, vals)
    return out
