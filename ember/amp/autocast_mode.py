"""Autocast: a mode on the one dispatch path that runs each op in the precision PyTorch's
CPU autocast gives it.

Three lists decide (PyTorch's CPU lists, mapped to ember's op classes here and, for the
ops that are composites in ember, by ``@autocast_function`` on the function):

* ``lower``: matrix products and convolutions. Floating inputs (float64 excepted) are
  rounded to the autocast dtype, the op computes in float32 on those rounded values (NumPy's
  bfloat16/float16 GEMMs are slow or inexact) and the output is rounded to the autocast
  dtype: what PyTorch's kernels do, which accumulate in float32.
* ``fp32``: losses, reductions such as prod, linear algebra, FFTs: float16/bfloat16 inputs
  are cast to float32.
* ``promote``: cat/stack: inputs are cast to the widest floating dtype among them.

Every other op runs in its inputs' dtype. The casts are ordinary recorded ops, so gradients
flow back to float32 parameters in float32. The rounded copies of leaf tensors that require
grad (the parameters) are cached for the life of the outermost autocast region
(``cache_enabled``), as PyTorch caches its casts.
"""

from __future__ import annotations

import functools
import warnings
import weakref

from .. import _autocast
from .._dtype import bfloat16, float16, float32, float64
from .._tensor import Tensor
from ..autograd import graph as _graph

__all__ = ["autocast", "is_autocast_available", "custom_fwd", "custom_bwd"]

_LOW = (bfloat16, float16)

# The state stack: one (enabled, dtype, cache_enabled) per entered autocast region.
_STACK: list = []
# The default dtype per device type when ``dtype`` is not given.
_DEFAULT_DTYPE = {"cpu": bfloat16, "cuda": float16}


def _class_policies():
    """Op class -> policy, PyTorch's CPU lists mapped to ember's op classes."""
    from ..ops import conv as C, linalg as L, nn as NN, reduction as R, shape as S
    from .. import fft as F
    from .._tensor_methods import ToDtype  # noqa: F401 (casts run in their own dtype)
    table = {}
    # einsum is not on PyTorch's list, but it decomposes into bmm there, which is
    for cls in (L.Matmul, L.Einsum, NN.Linear, C.ConvNd, C.ConvInputGrad, C.ConvWeightGrad):
        table[cls] = "lower"
    fp32 = [R.Prod, NN.NllLoss, NN.CrossEntropy, NN.CTCLoss, F.FFT, F.RFFT, F.IRFFT]
    for name in ("Inv", "Det", "Slogdet", "Solve", "Cholesky", "QR", "SVD", "SVDVals", "Eigh",
                 "EigvalsH", "Pinv", "MatrixExp", "SolveTriangular", "Eig", "LU"):
        fp32.append(getattr(L, name))
    for cls in fp32:
        table[cls] = "fp32"
    for cls in (S.Cat, S.Stack):
        table[cls] = "promote"
    return table


_POLICIES: dict = {}


def _eligible(t):
    # PyTorch casts floating tensors other than float64 (``is_eligible`` in autocast_mode.cpp)
    return isinstance(t, Tensor) and t.dtype.is_floating_point and t.dtype is not float64


class _AutocastMode:
    """The object in ``_MODES`` while an enabled autocast region is innermost."""

    # PyTorch autocasts the ops inside a custom Function's forward (unless ``custom_fwd``
    # says otherwise), so the mode stays on for the body
    sees_function_body = True

    def __init__(self):
        self.dtype = bfloat16
        self.cache_enabled = True
        self.cache = {}

    # ---------------------------------------------------------------- casting
    @staticmethod
    def _cast(t, dtype):
        return t if t.dtype is dtype else t.to(dtype)

    def _lower_args(self, args):
        """Round eligible tensors to the autocast dtype, then hand them to the op in float32."""
        low = self.dtype
        cache = self.cache

        def one(a):
            if not _eligible(a):
                return a
            if a.dtype is low:
                return a.to(float32)
            cacheable = self.cache_enabled and a.requires_grad and a.grad_fn is None
            if cacheable:  # a parameter: its rounded copy is made once per region
                hit = cache.get(id(a))
                if hit is not None and hit[0]() is a and hit[1] == a._version:
                    return hit[2].to(float32)
            low_copy = a.to(low)
            if cacheable:
                cache[id(a)] = (weakref.ref(a), a._version, low_copy)
            # widened per use: each use's gradient reaches the cached low-precision copy
            # rounded to its dtype and they add up there, as PyTorch's (one cast, several
            # uses) do
            return low_copy.to(float32)
        return _map_args(one, args)

    def _fp32_args(self, args):
        return _map_args(lambda a: self._cast(a, float32) if _eligible(a) and
                         a.dtype in _LOW else a, args)

    def _promote_args(self, args):
        # PyTorch's ``prioritize``: start from the autocast dtype; float32 wins over it,
        # float64 tensors are left alone, another low dtype is an error
        widest = self.dtype
        for a in _flat(args):
            if _eligible(a):
                d = a.dtype
                if d is float32 or widest is float32:
                    widest = float32
                elif d is not widest:
                    raise RuntimeError("Unexpected floating ScalarType in "
                                       "at::autocast::prioritize")
        return _map_args(lambda a: self._cast(a, widest) if _eligible(a) else a, args)

    def _round_out(self, out):
        low = self.dtype
        if isinstance(out, Tensor):
            return out.to(low) if out.dtype is float32 else out
        if isinstance(out, tuple) and any(isinstance(o, Tensor) for o in out):
            vals = tuple(o.to(low) if isinstance(o, Tensor) and o.dtype is float32 else o
                         for o in out)
            return type(out)(*vals) if hasattr(out, "_fields") else vals
        return out

    def _prepare(self, policy, args):
        if policy == "lower":
            return self._lower_args(args)
        if policy == "fp32":
            return self._fp32_args(args)
        if policy == "promote":
            return self._promote_args(args)
        return args

    # ---------------------------------------------------------------- the mode hooks
    def on_op(self, cls, args, kwargs, run):
        policy = _POLICIES.get(cls)
        if policy is None:
            return run()
        new = self._prepare(policy, args)
        depth = _graph._MODES.index(self) + 1
        out = _graph._run_modes(cls, new, kwargs, depth)
        return self._round_out(out) if policy == "lower" else out

    def run_function(self, policy, fn, args, kwargs):
        """A composite function with one policy: cast its inputs, run its body with autocast
        suspended (its inner ops are already in the right dtype), round its output."""
        if callable(policy):  # a policy that depends on the arguments (F.pad's mode)
            policy = policy(args, kwargs)
        if policy != "none":
            args = self._prepare(policy, args)
            kwargs = {k: v for k, v in zip(kwargs, self._prepare(policy, tuple(kwargs.values())))}
        with _suspended():
            out = fn(*args, **kwargs)
        return self._round_out(out) if policy == "lower" else out


def _flat(args):
    for a in args:
        if isinstance(a, (list, tuple)) and not isinstance(a, Tensor):
            yield from a
        else:
            yield a


def _map_args(fn, args):
    out = []
    for a in args:
        if isinstance(a, (list, tuple)) and any(isinstance(x, Tensor) for x in a):
            out.append(type(a)(fn(x) for x in a))
        else:
            out.append(fn(a))
    return tuple(out)


_MODE = _AutocastMode()


class _suspended:
    """Run a block with autocast off (the body of a composite that autocast already cast)."""

    def __enter__(self):
        self.was = _autocast.ACTIVE[0] is _MODE
        if self.was:
            _deactivate()

    def __exit__(self, *exc):
        if self.was:
            _activate()
        return False


def _activate():
    if _MODE not in _graph._MODES:
        _graph._MODES.append(_MODE)
    _autocast.ACTIVE[0] = _MODE


def _deactivate():
    if _MODE in _graph._MODES:
        _graph._MODES.remove(_MODE)
    _autocast.ACTIVE[0] = None


def _apply_top():
    """Make the mode match the innermost region."""
    if _STACK and _STACK[-1][0]:
        _, _MODE.dtype, _MODE.cache_enabled = _STACK[-1]
        if not _POLICIES:
            _POLICIES.update(_class_policies())
        _activate()
    else:
        _deactivate()
    if not _STACK:
        _MODE.cache.clear()


class autocast:
    """Run the ops of a region in lower precision where PyTorch's CPU autocast does
    (``ember.autocast(device_type="cpu", dtype=ember.bfloat16)``); a context manager and a
    decorator. Regions nest; ``enabled=False`` turns autocast off inside an enabled one."""

    def __init__(self, device_type="cpu", dtype=None, enabled=True, cache_enabled=None):
        if not isinstance(device_type, str):
            raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        self.device = device_type
        self.fast_dtype = dtype if dtype is not None else get_autocast_dtype(device_type)
        self._enabled = bool(enabled)
        self._cache_enabled = True if cache_enabled is None else bool(cache_enabled)
        if device_type == "cuda":
            if self._enabled:
                warnings.warn("User provided device_type of 'cuda', but CUDA is not available. "
                              "Disabling", stacklevel=2)
            self._enabled = False
        elif device_type != "cpu":
            raise RuntimeError(f"User specified an unsupported autocast device_type "
                               f"'{device_type}'")
        if self._enabled and self.fast_dtype not in _LOW:
            warnings.warn(f"In CPU autocast, but the target dtype is not supported. Disabling "
                          f"autocast.\nCPU Autocast only supports dtype of torch.bfloat16, "
                          f"torch.float16 currently (got {self.fast_dtype}).", stacklevel=2)
            self._enabled = False

    def __enter__(self):
        _STACK.append((self._enabled, self.fast_dtype, self._cache_enabled))
        _apply_top()
        return self

    def __exit__(self, *exc):
        _STACK.pop()
        _apply_top()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with autocast(self.device, self.fast_dtype, self._enabled, self._cache_enabled):
                return fn(*args, **kwargs)
        return wrapper


def is_autocast_available(device_type):
    """Whether autocast supports ``device_type`` here (``cpu``)."""
    return device_type == "cpu"


def is_autocast_enabled(device_type=None):
    """Whether autocast is on for ``device_type``; with no argument PyTorch asks about CUDA."""
    if device_type is None or device_type != "cpu":
        return False
    return bool(_STACK) and _STACK[-1][0]


def is_autocast_cpu_enabled():
    return is_autocast_enabled("cpu")


def get_autocast_dtype(device_type):
    """The dtype autocast uses on ``device_type`` (the innermost region's, else the default)."""
    if device_type == "cpu" and _STACK:
        return _STACK[-1][1]
    try:
        return _DEFAULT_DTYPE[device_type]
    except KeyError:
        raise RuntimeError(f"unsupported autocast device_type '{device_type}'") from None


def get_autocast_cpu_dtype():
    return get_autocast_dtype("cpu")


def get_autocast_gpu_dtype():
    return get_autocast_dtype("cuda")


def is_autocast_cache_enabled():
    return _STACK[-1][2] if _STACK else True


def clear_autocast_cache():
    _MODE.cache.clear()


def custom_fwd(fwd=None, *, device_type="cpu", cast_inputs=None):
    """Decorate a custom ``Function.forward``: with ``cast_inputs``, run it with autocast off
    and its floating inputs cast to that dtype (PyTorch's ``torch.amp.custom_fwd``)."""
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)

    @functools.wraps(fwd)
    def wrapper(*args, **kwargs):
        if cast_inputs is None or not is_autocast_enabled("cpu"):
            return fwd(*args, **kwargs)
        args = tuple(a.to(cast_inputs) if isinstance(a, Tensor) and a.dtype.is_floating_point
                     else a for a in args)
        with autocast(device_type, enabled=False):
            return fwd(*args, **kwargs)
    return wrapper


def custom_bwd(bwd=None, *, device_type="cpu"):
    """Decorate a custom ``Function.backward`` (autocast never runs in backward here)."""
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)
    return bwd
