"""Reductions: sum, mean, prod, amax/amin, max/min, arg-reductions, var/std, logsumexp,
norm, all/any, cumulative sums and products."""

from __future__ import annotations

import builtins
import collections
import warnings

import numpy as np

from .._meta import asarray as xp_asarray
from .. import _dtype as D
from .._tensor import Tensor, _make
from ..autograd.graph import Node, _pt_name, apply_unary, apply_with as _apply_with, named
from ..autograd import forward_ad as _fad
from ._util import dtype_np, norm_dim, norm_dims
from .._dtype import np_finfo as _np_finfo
from .. import _parallel as _par
from . import _reduce_c

_ndarray = np.ndarray
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_add_reduce = np.add.reduce
_true_divide = np.true_divide

__all__ = ["sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin", "var",
           "std", "var_mean", "std_mean", "logsumexp", "norm", "all", "any", "cumsum",
           "cumprod", "count_nonzero", "nansum", "nanmean", "aminmax", "logcumsumexp", "cummax",
           "cummin"]


def _rt(name, fields):
    cls = collections.namedtuple(name, fields)
    cls.__module__ = "ember.return_types"
    return cls


class return_types:
    max = _rt("max", ["values", "indices"])
    min = _rt("min", ["values", "indices"])
    aminmax = _rt("aminmax", ["min", "max"])
    sort = _rt("sort", ["values", "indices"])
    topk = _rt("topk", ["values", "indices"])
    kthvalue = _rt("kthvalue", ["values", "indices"])
    median = _rt("median", ["values", "indices"])
    mode = _rt("mode", ["values", "indices"])
    cummax = _rt("cummax", ["values", "indices"])
    cummin = _rt("cummin", ["values", "indices"])
    var_mean = _rt("var_mean", ["var", "mean"])
    std_mean = _rt("std_mean", ["std", "mean"])
    frexp = _rt("frexp", ["mantissa", "exponent"])
    histogram = _rt("histogram", ["hist", "bin_edges"])
    histogramdd = _rt("histogramdd", ["hist", "bin_edges"])


def _low_precision(a):
    """float16/bfloat16: NumPy accumulates these in their own precision (bfloat16 sums of a
    few hundred values are wrong in the first digit), so reductions run in float32."""
    return a.dtype.itemsize == 2 and a.dtype.kind in "fV"


def _axis(dim, ndim, op):
    dims = norm_dims(dim, ndim, op)
    if dims is not None and (len(dims) == 0 or ndim == 0):
        return None  # dim=() / [] means all dims, as in PyTorch; a 0-d tensor has only "all"
    return dims


def _expand_back_array(g, shape, axis, keepdim):
    """``_expand_back`` on arrays: a read-only broadcast view of the reduced gradient."""
    if axis is None and g.size == 1 and type(g) is np.ndarray:
        # a full reduction: a zero-stride view over the one value (np.broadcast_to's wrapper
        # costs ten times this)
        g = g.reshape(())
        return np.ndarray(shape, g.dtype, g, 0, (0,) * len(shape))
    if not keepdim:
        gshape = list(shape)
        for a in (range(len(shape)) if axis is None else axis):
            gshape[a] = 1
        g = g.reshape(gshape)
    return np.broadcast_to(g, shape)


def _expand_back(g, shape, axis, keepdim):
    """Broadcast a reduced gradient back to the input's shape."""
    if axis is None:
        if g._data.ndim == 0:  # a full reduction: a 0-d gradient expands directly
            from .shape import Expand
            return Expand.apply(g, tuple(shape))
        axis = tuple(range(len(shape)))
    if not keepdim:
        gshape = list(shape)
        for a in axis:
            gshape[a] = 1
        g = g.reshape(gshape)
    return g.expand(shape)


class Sum(Node):
    axis = None  # ctx defaults: forward stores only what differs (a full sum, the common case)
    keepdim = False

    @staticmethod
    def forward(ctx, a, axis=None, keepdim=False, dtype=None):
        # backward takes the input's shape from the node's input metadata
        if axis is None and dtype is None and not keepdim and type(a) is _ndarray:
            dt = a.dtype
            if (dt is _F32 or dt is _F64) and a.size < _par.MIN_SIZE:
                # the usual call, ``x.sum()`` of a small float tensor: the path below, its
                # decisions taken in one test
                return _add_reduce(a, None, None, _empty((), dt))
        if axis is not None:
            ctx.axis = axis
        if keepdim:
            ctx.keepdim = True
        if dtype is None:
            dt = a.dtype
            if dt.kind in "biu":
                dtype = np.int64
            elif dt.itemsize == 2 and dt.kind in "fV":  # see _low_precision
                return np.sum(a, axis=axis, keepdims=keepdim, dtype=np.float32).astype(dt)
        if type(a) is _ndarray:
            if a.size >= _par.MIN_SIZE:  # large: every core
                return _par.reduce(np.add, a, axis, dtype, keepdim)
            if axis is None and not keepdim:  # everything: straight into a 0-d array (the
                # scalar NumPy returns would be wrapped again; same loop, same bits)
                return _add_reduce(a, None, dtype, _empty((), dtype or a.dtype))
        # the ufunc's reduce skips np.sum's Python wrapper (about 1 us per call)
        return _add_reduce(a, axis, dtype, None, keepdim)

    @staticmethod
    def backward(ctx, g):
        shape = ctx._in_meta[0][0]
        return _expand_back(g, shape, ctx.axis, ctx.keepdim), None, None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)

    @staticmethod
    def array_backward(ctx, g):
        shape = ctx._in_meta[0][0]
        return _expand_back_array(g, shape, ctx.axis, ctx.keepdim), None, None, None


class Mean(Node):
    axis = None  # ctx defaults, as in Sum
    keepdim = False

    @staticmethod
    def forward(ctx, a, axis=None, keepdim=False, dtype=None):
        ctx.shape = a.shape
        if axis is None:
            n = a.size
        else:
            ctx.axis = axis
            n = 1
            for i in axis:
                n *= a.shape[i]
        if keepdim:
            ctx.keepdim = True
        ctx.n = n
        if dtype is not None:
            a = a.astype(dtype)
        elif n and type(a) is _ndarray and a.dtype.kind == "f" and a.size < _par.MIN_SIZE \
                and a.dtype.itemsize > 2:
            # np.mean's own steps without its Python wrapper and error-state context (about
            # 4 us): the ufunc's sum, then one division by the count in the sum's dtype (the
            # same bits: np.mean divides in float64 and rounds, which for float32 equals the
            # correctly rounded float32 quotient); n > 0, so nothing to silence
            if axis is None and not keepdim:
                r = _add_reduce(a, None, None, _empty((), a.dtype))
            else:
                r = _add_reduce(a, axis, None, None, keepdim)
                if type(r) is not _ndarray:  # every dim reduced: a NumPy scalar
                    return r / n
            return _true_divide(r, n, out=r)
        with np.errstate(invalid="ignore", divide="ignore"):
            if not n:  # NaN, as PyTorch's (np.mean would warn "Mean of empty slice")
                return _true_divide(np.add.reduce(a, axis=axis, keepdims=keepdim), 0)
            if _low_precision(a):
                return np.mean(a, axis=axis, keepdims=keepdim, dtype=np.float32).astype(a.dtype)
            if type(a) is _ndarray and a.size >= _par.MIN_SIZE and a.dtype.kind in "fc":
                return _par.reduce(np.add, a, axis, None, keepdim) / n  # every core
            return np.mean(a, axis=axis, keepdims=keepdim)

    @staticmethod
    def backward(ctx, g):
        return _expand_back(g / ctx.n, ctx.shape, ctx.axis, ctx.keepdim), None, None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)

    @staticmethod
    def array_backward(ctx, g):
        with np.errstate(invalid="ignore", divide="ignore"):  # the mean of nothing
            g = g / ctx.n
        return _expand_back_array(g, ctx.shape, ctx.axis, ctx.keepdim), None, None, None


class Prod(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, axis, keepdim, dtype):
        ctx.axis, ctx.keepdim = axis, keepdim
        if dtype is None:
            if a.dtype.kind in "biu":
                dtype = np.int64
            elif _low_precision(a):
                return np.prod(a, axis=axis, keepdims=keepdim, dtype=np.float32).astype(a.dtype)
        return np.prod(a, axis=axis, keepdims=keepdim, dtype=dtype)

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        shape, axis, keepdim = x.shape, ctx.axis, ctx.keepdim
        g = _expand_back(g, shape, axis, keepdim)
        out = _expand_back(out, shape, axis, keepdim)
        # product of the others; exact when there are zeros (no division by zero)
        if not bool((x._data == 0).any()):
            return g * _conj(out / x), None, None, None
        return g * _conj(_prod_others(x, axis)), None, None, None


def _prod_others(x, axis):
    """For each element, the product of the other elements along ``axis`` (all if None)."""
    from .shape import movedim
    if axis is None:
        flat = x.reshape(-1)
        return _prod_others(flat, (0,)).reshape(x.shape)
    if len(axis) > 1:
        # merge the reduced dims into one trailing dim
        nd = x.ndim
        keep = [d for d in range(nd) if d not in axis]
        perm = keep + list(axis)
        xp = x.permute(perm)
        kshape = [x.shape[d] for d in keep]
        merged = xp.reshape(kshape + [-1])
        r = _prod_others(merged, (len(keep),))
        r = r.reshape([x.shape[d] for d in perm])
        inv = np.argsort(perm)
        return r.permute(list(inv))
    d = axis[0]
    xm = movedim(x, d, -1)
    ones = _make(np.ones(xm.shape[:-1] + (1,), dtype=xm._data.dtype))
    from .shape import cat
    left = cumprod(cat([ones, xm[..., :-1]], -1), -1)
    right = cumprod(cat([ones, xm.flip(-1)[..., :-1]], -1), -1).flip(-1)
    return movedim(left * right, -1, d)


class _MaxMinAll(Node):
    """amax/amin over dims: gradient split evenly between ties."""

    saves = (0,)
    saves_output = True
    nan_share = False  # full max()/min() share the gradient among NaNs; amax/amin give NaN
    axis = None  # ctx defaults (a full reduction)
    keepdim = False

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        shape, axis, keepdim = x.shape, ctx.axis, ctx.keepdim
        outb = _expand_back(out, shape, axis, keepdim)
        mask = (x == outb)
        if ctx.nan_share and out._data.dtype.kind == "f" and np.isnan(out._data).any():
            from .elementwise import isnan
            mask = mask | (isnan(x) & isnan(outb))
        cnt = mask.sum(dim=axis if axis is not None else None, keepdim=True)
        gb = _expand_back(g, shape, axis, keepdim)
        return gb * mask / cnt, None, None


def _check_nonempty(a, axis, op):
    if a.size == 0:
        if axis is None:
            raise RuntimeError(f"{op}(): Expected reduction dim to be specified for input.numel() "
                               "== 0. Specify the reduction dim with the 'dim' argument.")
        for d in axis:
            if a.shape[d] == 0:
                raise IndexError(f"{op}(): Expected reduction dim {d} to have non-zero size.")


def _extreme(ctx, a, axis, keepdim, ufunc, op):
    """amax/amin's forward: ``ufunc`` is np.maximum or np.minimum."""
    if a.size == 0:
        _check_nonempty(a, axis, op)
    if axis is not None:  # ctx defaults: only what differs from a full reduction is stored
        ctx.axis = axis
    if keepdim:
        ctx.keepdim = True
    if type(a) is _ndarray:
        if a.size >= _par.MIN_SIZE:
            if axis is None and not keepdim and a.flags.c_contiguous and \
                    _reduce_c.available(a.dtype):  # C: chunks over every core, NaN wins
                return _reduce_c.extreme(a.reshape(-1), "max" if ufunc is np.maximum else "min")
            return _par.reduce(ufunc, a, axis, None, keepdim)
        # the ufunc's reduce, as np.max calls it, minus np.max's Python wrapper; a full
        # reduction goes straight into a 0-d array (not a NumPy scalar to wrap again)
        if axis is None and not keepdim:
            return ufunc.reduce(a, None, None, _empty((), a.dtype))
        return ufunc.reduce(a, axis, None, None, keepdim)
    return (np.max if ufunc is np.maximum else np.min)(a, axis=axis, keepdims=keepdim)


class Amax(_MaxMinAll):
    @staticmethod
    def forward(ctx, a, axis=None, keepdim=False):
        return _extreme(ctx, a, axis, keepdim, np.maximum, "amax")


class Amin(_MaxMinAll):
    @staticmethod
    def forward(ctx, a, axis=None, keepdim=False):
        return _extreme(ctx, a, axis, keepdim, np.minimum, "amin")


class MaxAll(Amax):
    """``max(x)``: PyTorch's MaxBackward1."""

    nan_share = True

    def name(self):
        return self._node_name or "MaxBackward1"


class MinAll(Amin):
    nan_share = True

    def name(self):
        return self._node_name or "MinBackward1"


class _MaxMinDim(Node):
    """max/min along one dim, returning (values, indices); gradient to the chosen index."""

    @staticmethod
    def backward(ctx, g, gi):
        if not ctx.shape:  # 0-d input: the value itself was picked
            return g, None, None
        idx = np.expand_dims(ctx.idx, ctx.dim)
        if not ctx.keepdim:
            g = g.unsqueeze(ctx.dim)
        from .indexing import _scatter_into_zeros
        return _scatter_into_zeros(g, ctx.shape, ctx.dim, idx), None, None


def _arg_nan(a, d, fn):
    # PyTorch propagates NaN: the index of the first NaN wins
    if a.dtype.kind in "fc":
        nanmask = np.isnan(a)
        if nanmask.any():
            first_nan = np.argmax(nanmask, axis=d)
            has = nanmask.any(axis=d)
            return np.where(has, first_nan, fn(a, axis=d))
    return fn(a, axis=d)


class MaxDim(_MaxMinDim):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        _check_nonempty(a, (dim,), "max")
        idx = _arg_nan(a, dim, np.argmax) if a.ndim else np.zeros((), np.int64, like=a)
        ctx.shape, ctx.dim, ctx.keepdim = a.shape, dim, keepdim
        ctx.idx = idx
        v = np.take_along_axis(a, np.expand_dims(idx, dim), dim) if a.ndim else a.copy()
        if not keepdim and a.ndim:
            v = np.squeeze(v, dim)
        return v, (np.expand_dims(idx, dim) if keepdim and a.ndim else idx).astype(np.int64)


class MinDim(_MaxMinDim):
    @staticmethod
    def forward(ctx, a, dim, keepdim):
        _check_nonempty(a, (dim,), "min")
        idx = _arg_nan(a, dim, np.argmin) if a.ndim else np.zeros((), np.int64, like=a)
        ctx.shape, ctx.dim, ctx.keepdim = a.shape, dim, keepdim
        ctx.idx = idx
        v = np.take_along_axis(a, np.expand_dims(idx, dim), dim) if a.ndim else a.copy()
        if not keepdim and a.ndim:
            v = np.squeeze(v, dim)
        return v, (np.expand_dims(idx, dim) if keepdim and a.ndim else idx).astype(np.int64)


class Argmax(Node):
    differentiable = False

    @staticmethod
    def forward(ctx, a, dim, keepdim, largest=True):
        if a.dtype == np.bool_:
            raise RuntimeError(f"{'argmax' if largest else 'argmin'}(): does not support bool "
                               "input")
        fn = np.argmax if largest else np.argmin
        if dim is None:
            if a.size == 0:
                raise RuntimeError(f"{'argmax' if largest else 'argmin'}(): Expected reduction "
                                   "dim to be specified for input.numel() == 0.")
            r = _arg_nan(a.reshape(-1), 0, fn).astype(np.int64)
            return r.reshape((1,) * a.ndim) if keepdim else r
        if a.ndim == 0:
            return np.zeros((), np.int64, like=a)
        _check_nonempty(a, (dim,), "argmax" if largest else "argmin")
        r = _arg_nan(a, dim, fn).astype(np.int64)
        return np.expand_dims(r, dim) if keepdim else r


class Var(Node):
    saves = (0,)

    @staticmethod
    def forward(ctx, a, axis, correction, keepdim):
        if a.dtype.kind in "biu":
            raise RuntimeError("std and var only support floating point and complex dtypes")
        ctx.axis, ctx.correction, ctx.keepdim = axis, correction, keepdim
        n = a.size if axis is None else int(np.prod([a.shape[i] for i in axis]))
        ctx.n = n
        with np.errstate(invalid="ignore", divide="ignore"):
            if not n:  # NaN (np.var would warn "Degrees of freedom <= 0")
                return _true_divide(np.add.reduce(a.real if a.dtype.kind == "c" else a,
                                                  axis=axis, keepdims=keepdim), 0)
            v = np.var(a, axis=axis, keepdims=keepdim, ddof=0,
                       dtype=np.float32 if _low_precision(a) else None)
            if correction != 0:
                v = v * (n / builtins.max(n - correction, 0)) if n - correction > 0 else \
                    v * np.float64("inf" if n > 0 else "nan").astype(v.dtype)
        return xp_asarray(v).astype(a.real.dtype if a.dtype.kind == "c" else a.dtype,
                                    copy=False)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return _var_grad(ctx, x, g), None, None, None


def _var_grad(ctx, x, g):
    axis = ctx.axis
    m = x.mean(dim=axis, keepdim=True) if axis is not None else x.mean()
    g = _expand_back(g, x.shape, axis, ctx.keepdim)
    return g * (2.0 / builtins.max(ctx.n - ctx.correction, 0)) * (x - m)


class Std(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, axis, correction, keepdim):
        return np.sqrt(Var.forward(ctx, a, axis, correction, keepdim))

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        from .elementwise import where
        # d std = d var / (2 std); PyTorch takes 0 where std is 0
        gv = where(out == 0, 0.0, g / (2 * out))
        return _var_grad(ctx, x, gv), None, None, None


class Logsumexp(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, axis, keepdim):
        if a.dtype.kind in "biu":
            a = a.astype(D._Defaults.dtype.np)
        ctx.axis, ctx.keepdim = axis, keepdim
        if _low_precision(a):
            return Logsumexp.forward(ctx, a.astype(np.float32), axis, keepdim).astype(a.dtype)
        if a.size == 0:
            return np.log(np.sum(np.exp(a), axis=axis, keepdims=keepdim))
        m = np.max(a, axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        with np.errstate(divide="ignore"):
            r = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
        if not keepdim:
            r = np.squeeze(r, axis=axis) if axis is not None else r.reshape(())
        return r

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        g = _expand_back(g, x.shape, ctx.axis, ctx.keepdim)
        out = _expand_back(out, x.shape, ctx.axis, ctx.keepdim)
        from .elementwise import exp
        return g * _conj(exp(x - out)), None, None


class Cumsum(Node):
    @staticmethod
    def forward(ctx, a, dim, dtype):
        ctx.dim = dim
        if dtype is None:
            if a.dtype.kind in "biu":
                dtype = np.int64
            elif _low_precision(a) and a.ndim:
                return np.cumsum(a, axis=dim, dtype=np.float32).astype(a.dtype)
        if a.ndim == 0:
            return a.astype(dtype or a.dtype)
        return np.cumsum(a, axis=dim, dtype=dtype)

    @staticmethod
    def backward(ctx, g):
        if g.ndim == 0:
            return g, None, None
        d = ctx.dim
        return g.flip(d).cumsum(d).flip(d), None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class Cumprod(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, dim, dtype):
        ctx.dim = dim
        if dtype is None:
            if a.dtype.kind in "biu":
                dtype = np.int64
            elif _low_precision(a) and a.ndim:
                return np.cumprod(a, axis=dim, dtype=np.float32).astype(a.dtype)
        if a.ndim == 0:
            return a.astype(dtype or a.dtype)
        return np.cumprod(a, axis=dim, dtype=dtype)

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        if g.ndim == 0:
            return g, None, None
        d = ctx.dim
        if not bool((x._data == 0).any()):
            return (g * _conj(out)).flip(d).cumsum(d).flip(d) / _conj(x), None, None
        # general case (zeros present): sum_{j>=i} g_j * prod_{k<=j, k!=i} x_k, O(n^2) along d
        from .shape import cat, movedim, stack
        xm = movedim(x, d, -1)
        gm = movedim(g, d, -1)
        cols = []
        for i in range(xm.shape[-1]):
            ones = xm[..., i:i + 1] * 0 + 1  # x_i replaced by 1 (keeps the graph for x)
            cp = cat([xm[..., :i], ones, xm[..., i + 1:]], -1).cumprod(-1)
            cols.append((gm[..., i:] * _conj(cp[..., i:])).sum(-1))
        return movedim(stack(cols, -1), -1, d), None, None


class Logcumsumexp(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, dim):
        ctx.dim = dim
        if a.dtype.kind in "biu":
            a = a.astype(D._Defaults.dtype.np)
        if a.ndim == 0:
            return a.copy()
        if _low_precision(a):
            return np.logaddexp.accumulate(a.astype(np.float32), axis=dim).astype(a.dtype)
        return np.logaddexp.accumulate(a, axis=dim)

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        if g.ndim == 0:
            return g, None
        from .elementwise import abs as _abs, exp, log, where
        d = ctx.dim
        # grad_i = sum_{j >= i} g_j exp(x_i - out_j), summed in log space separately for the
        # positive and negative parts of g so nothing overflows
        floor = float(_np_finfo(x._data.dtype).min)
        log_g = log(_abs(g))
        pos = where(g > 0, log_g, floor) - out
        neg = where(g < 0, log_g, floor) - out

        def rev_lcse(t):
            return logcumsumexp(t.flip(d), d).flip(d)
        return exp(rev_lcse(pos) + x) - exp(rev_lcse(neg) + x), None


class _CumMaxMin(Node):
    """cummax/cummin: (values, indices); the gradient goes to the index each value came from."""

    _ufunc = None

    @classmethod
    def forward(cls, ctx, a, dim):
        ctx.shape, ctx.dim = a.shape, dim
        if a.ndim == 0:
            ctx.idx = np.zeros((), np.int64, like=a)
            return a.copy(), ctx.idx
        vals = cls._ufunc.accumulate(a, axis=dim)
        # an element becomes the running extreme where it equals it (ties: the latest wins)
        # or is NaN (NaN propagates, and each new NaN takes over the index)
        hit = vals == a
        if a.dtype.kind in "fc":
            hit |= np.isnan(a)
        shape = [1] * a.ndim
        shape[dim] = a.shape[dim]
        pos = np.arange(a.shape[dim]).reshape(shape)
        idx = np.maximum.accumulate(np.where(hit, pos, 0), axis=dim).astype(np.int64)
        ctx.idx = idx
        return vals, idx

    @staticmethod
    def backward(ctx, g, gi):
        if not ctx.shape:
            return g, None
        from .indexing import _scatter_into_zeros
        return _scatter_into_zeros(g, ctx.shape, ctx.dim, ctx.idx), None


class Cummax(_CumMaxMin):
    _ufunc = np.maximum


class Cummin(_CumMaxMin):
    _ufunc = np.minimum


class All(Node):
    differentiable = False

    @staticmethod
    def forward(ctx, a, axis, keepdim):
        r = np.all(a, axis=axis, keepdims=keepdim)
        return r if a.dtype != np.uint8 else r.astype(np.uint8)


class Any(Node):
    differentiable = False

    @staticmethod
    def forward(ctx, a, axis, keepdim):
        r = np.any(a, axis=axis, keepdims=keepdim)
        return r if a.dtype != np.uint8 else r.astype(np.uint8)


# ====================================================================== public functions
def _dim_and_keepdim(input, dim, keepdim, op):
    return _axis(dim, input._data.ndim, op), bool(keepdim)


_empty = np.empty


def sum(input, dim=None, keepdim=False, *, dtype=None, out=None):
    """Sum over ``dim`` (int, tuple, or all); integer inputs sum to int64."""
    if dim is None and dtype is None and out is None and input._data.dtype.kind in "fc":
        if keepdim:
            return Sum.apply(input, None, True)
        return apply_unary(Sum, input)  # the common case, checks skipped
    if type(dim) is int and dtype is None and out is None and \
            input._data.dtype.kind in "fc" and -input._data.ndim <= dim < input._data.ndim:
        # one dim in range (the other common case): what the general path passes, sooner
        return named(_apply_with(Sum, input, (dim % input._data.ndim,), bool(keepdim), None),
                     "SumBackward1")
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "sum")
    if input._data.dtype == np.bool_ and dtype is None:
        dtype = D.int64
    r = Sum.apply(input, axis, keepdim, dtype_np(dtype))
    return _out(named(r, "SumBackward1") if dim is not None else r, out)


def nansum(input, dim=None, keepdim=False, *, dtype=None):
    """Sum treating NaN as zero."""
    if input._data.dtype.kind in "fc":
        from .elementwise import isnan, where
        input = where(isnan(input), 0.0, input)
    return sum(input, dim, keepdim, dtype=dtype)


def mean(input, dim=None, keepdim=False, *, dtype=None, out=None):
    """Mean over ``dim``; the input must be floating or complex (or ``dtype`` given)."""
    if dim is None and dtype is None and out is None and not keepdim and \
            input._data.dtype.kind in "fc":
        return apply_unary(Mean, input)  # the common case, checks skipped (as in sum)
    if type(dim) is int and dtype is None and out is None and \
            input._data.dtype.kind in "fc" and -input._data.ndim <= dim < input._data.ndim:
        return named(_apply_with(Mean, input, (dim % input._data.ndim,), bool(keepdim), None),
                     "MeanBackward1")
    dt = dtype_np(dtype) or input._data.dtype
    if dt.kind not in "fcV":
        raise RuntimeError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point "
            f"or complex dtype. Got: {_pt_name(input.dtype)}")
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "mean")
    r = Mean.apply(input, axis, keepdim, dtype_np(dtype))
    return _out(named(r, "MeanBackward1") if dim is not None else r, out)


def nanmean(input, dim=None, keepdim=False, *, dtype=None):
    """Mean over the non-NaN elements."""
    from .elementwise import isnan, logical_not
    notnan = logical_not(isnan(input))
    return nansum(input, dim, keepdim, dtype=dtype) / notnan.sum(dim, keepdim)


def prod(input, dim=None, keepdim=False, *, dtype=None):
    if dim is not None and not isinstance(dim, (int, np.integer)):
        raise TypeError("prod(): argument 'dim' must be int")
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "prod")
    if input._data.dtype == np.bool_ and dtype is None:
        dtype = D.int64
    r = Prod.apply(input, axis, keepdim, dtype_np(dtype))
    return named(r, "ProdBackward1") if dim is not None else r


def amax(input, dim=(), keepdim=False, *, out=None):
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "amax")
    return _out(Amax.apply(input, axis, keepdim), out)


def amin(input, dim=(), keepdim=False, *, out=None):
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "amin")
    return _out(Amin.apply(input, axis, keepdim), out)


def aminmax(input, *, dim=None, keepdim=False):
    return return_types.aminmax(amin(input, dim if dim is not None else (), keepdim),
                                amax(input, dim if dim is not None else (), keepdim))


def _max_min(input, dim, keepdim, other, cls, binary, full, name):
    if isinstance(dim, Tensor):
        return binary(input, dim)
    if other is not None:
        return binary(input, other)
    if dim is None:
        if input._data.size == 0:
            raise RuntimeError(f"{name}(): Expected reduction dim to be specified for "
                               "input.numel() == 0. Specify the reduction dim with the 'dim' "
                               "argument.")
        # PyTorch: max()/min() are MaxBackward1/MinBackward1, the dim forms ...Backward0
        return named(full.apply(input, None, False), name.capitalize() + "Backward1")
    d = norm_dim(dim, input._data.ndim, name)
    v, i = cls.apply(input, d, bool(keepdim))
    return getattr(return_types, name)(named(v, name.capitalize() + "Backward0"), i)


def max(input, dim=None, keepdim=False, *, other=None, out=None):
    """``max(x)`` -> the largest value; ``max(x, dim)`` -> (values, indices); ``max(x, y)``."""
    if dim is None and other is None and type(input) is Tensor and input._data.size:
        return apply_unary(MaxAll, input)  # the common case: the largest value
    from .elementwise import maximum
    return _max_min(input, dim, keepdim, other, MaxDim, maximum, MaxAll, "max")


def min(input, dim=None, keepdim=False, *, other=None, out=None):
    if dim is None and other is None and type(input) is Tensor and input._data.size:
        return apply_unary(MinAll, input)
    from .elementwise import minimum
    return _max_min(input, dim, keepdim, other, MinDim, minimum, MinAll, "min")


def argmax(input, dim=None, keepdim=False):
    d = None if dim is None else norm_dim(dim, input._data.ndim, "argmax")
    return Argmax.apply(input, d, bool(keepdim), True)


def argmin(input, dim=None, keepdim=False):
    d = None if dim is None else norm_dim(dim, input._data.ndim, "argmin")
    return Argmax.apply(input, d, bool(keepdim), False)


def _correction(unbiased, correction, where):
    if correction is not None and unbiased is not None:
        raise RuntimeError(f"{where}: can't specify both correction and unbiased")
    if correction is not None:
        return correction
    if unbiased is None:
        return 1
    return 1 if unbiased else 0


def _warn_dof(x, axis, correction, where):
    """PyTorch's warning when ``correction`` leaves no degrees of freedom (the result is
    NaN or inf)."""
    shape = getattr(x, "shape", ())
    n = _prod_dims(shape, axis)
    if n - correction <= 0:
        warnings.warn(f"{where}(): degrees of freedom is <= 0: the correction ({correction}) "
                      f"is not less than the number of reduced elements ({n})", UserWarning,
                      stacklevel=3)


def _prod_dims(shape, axis):
    n = 1
    for i in (range(len(shape)) if axis is None else axis):
        n *= shape[i]
    return n


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None, out=None):
    """Variance with Bessel's ``correction`` (default 1); ``unbiased`` is the legacy flag."""
    if isinstance(dim, bool):  # var(x, False): the legacy positional ``unbiased``
        unbiased, dim = dim, None
    c = _correction(unbiased, correction, "var")
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "var")
    _warn_dof(input, axis, c, "var")
    return _out(Var.apply(input, axis, c, keepdim), out)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None, out=None):
    """Standard deviation: the square root of ``var`` (same arguments)."""
    if isinstance(dim, bool):
        unbiased, dim = dim, None
    c = _correction(unbiased, correction, "std")
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "std")
    _warn_dof(input, axis, c, "std")
    return _out(Std.apply(input, axis, c, keepdim), out)


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """``(var, mean)`` over the same dims."""
    if isinstance(dim, bool):
        unbiased, dim = dim, None
    return return_types.var_mean(var(input, dim, unbiased, keepdim, correction=correction),
                                 mean(input, dim, keepdim))


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """``(std, mean)`` over the same dims."""
    if isinstance(dim, bool):
        unbiased, dim = dim, None
    return return_types.std_mean(std(input, dim, unbiased, keepdim, correction=correction),
                                 mean(input, dim, keepdim))


def logsumexp(input, dim, keepdim=False, *, out=None):
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "logsumexp")
    return _out(Logsumexp.apply(input, axis, keepdim), out)


def norm(input, p="fro", dim=None, keepdim=False, out=None, dtype=None):
    """Vector p-norm over ``dim`` (all elements by default); ``'fro'`` is the 2-norm."""
    from .elementwise import abs as _abs
    if dtype is not None:
        input = input.to(dtype)
    if input._data.dtype.kind in "biu":
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as "
                           f"input. Got {_pt_name(input.dtype)}")
    if p == "fro" or p is None:
        p = 2
    if p == "nuc":
        from .linalg import matrix_norm
        return matrix_norm(input, "nuc", dim if dim is not None else (-2, -1), keepdim)
    x = _abs(input)
    if p == float("inf"):
        return amax(x, dim if dim is not None else (), keepdim)
    if p == float("-inf"):
        return amin(x, dim if dim is not None else (), keepdim)
    if p == 0:
        # the count of nonzeros, through sign so that it carries PyTorch's zero gradient
        from .elementwise import sign
        return sum(sign(x), dim, keepdim)
    if p == 1:
        return sum(x, dim, keepdim)
    if p == 2:
        from .elementwise import sqrt
        if input._data.dtype.kind == "c":
            return sqrt(sum(x * x, dim, keepdim))
        return _Norm2.apply(input, _axis(dim, input.ndim, "norm"), bool(keepdim))
    return sum(x ** p, dim, keepdim) ** (1.0 / p)


class _Norm2(Node):
    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, axis, keepdim):
        ctx.axis, ctx.keepdim = axis, keepdim
        if _low_precision(a):
            a32 = a.astype(np.float32)
            return np.sqrt(np.sum(a32 * a32, axis=axis, keepdims=keepdim)).astype(a.dtype)
        return np.sqrt(np.sum(a * a, axis=axis, keepdims=keepdim))

    @staticmethod
    def backward(ctx, g):
        x, out = ctx.saved_tensors
        out = _expand_back(out, x.shape, ctx.axis, ctx.keepdim)
        g = _expand_back(g, x.shape, ctx.axis, ctx.keepdim)
        from .elementwise import where
        # the subgradient at 0 is 0, as PyTorch's
        return where(out == 0, 0.0, g * x / out), None, None


def all(input, dim=None, keepdim=False, *, out=None):
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "all")
    return _out(All.apply(input, axis, keepdim), out)


def any(input, dim=None, keepdim=False, *, out=None):
    axis, keepdim = _dim_and_keepdim(input, dim, keepdim, "any")
    return _out(Any.apply(input, axis, keepdim), out)


def cumsum(input, dim, *, dtype=None, out=None):
    d = norm_dim(dim, input._data.ndim, "cumsum")
    return _out(Cumsum.apply(input, d, dtype_np(dtype)), out)


def cumprod(input, dim, *, dtype=None, out=None):
    d = norm_dim(dim, input._data.ndim, "cumprod")
    return _out(Cumprod.apply(input, d, dtype_np(dtype)), out)


def logcumsumexp(input, dim, *, out=None):
    """log(cumsum(exp(input))) along ``dim``, computed stably."""
    d = norm_dim(dim, input._data.ndim, "logcumsumexp")
    return _out(Logcumsumexp.apply(input, d), out)


def cummax(input, dim, *, out=None):
    """Running maximum along ``dim``: (values, indices)."""
    d = norm_dim(dim, input._data.ndim, "cummax")
    return return_types.cummax(*Cummax.apply(input, d))


def cummin(input, dim, *, out=None):
    """Running minimum along ``dim``: (values, indices)."""
    d = norm_dim(dim, input._data.ndim, "cummin")
    return return_types.cummin(*Cummin.apply(input, d))


def count_nonzero(input, dim=None):
    return sum(input != 0, dim)


def _conj(t):
    """Complex inputs take the conjugate derivative (PyTorch's convention); reals pass."""
    return t.conj() if t._data.dtype.kind == "c" else t


def _out(result, out):
    if out is None:
        return result
    from .elementwise import _out as o
    return o(result, out)


# ---------------------------------------------------------------------- composites
def cov(input, *, correction=1, fweights=None, aweights=None):
    """Covariance of the variables in the rows of ``input`` (observations in columns)."""
    if input._data.ndim > 2:
        raise ValueError(f"cov(): expected input to have two or fewer dimensions but got an "
                         f"input with {input._data.ndim} dimensions")
    x = input if input._data.ndim == 2 else input.reshape(1, -1)
    n = x._data.shape[1]
    if not x.is_floating_point() and not x.is_complex():
        x = x.to(D.get_default_dtype())
    w = None
    if fweights is not None:
        if fweights._data.dtype.kind not in "iu":
            raise RuntimeError("cov(): expected fweights to have integral dtype")
        if fweights._data.ndim > 1 or fweights._data.shape[0] != n:
            raise RuntimeError(f"cov(): expected fweights to have one dimension and the same "
                               f"number of elements as the number of observations ({n})")
        if (fweights._data < 0).any():
            raise RuntimeError("cov(): fweights cannot be negative")
        w = fweights
    if aweights is not None:
        if aweights._data.ndim > 1 or aweights._data.shape[0] != n:
            raise RuntimeError(f"cov(): expected aweights to have one dimension and the same "
                               f"number of elements as the number of observations ({n})")
        if (aweights._data < 0).any():
            raise RuntimeError("cov(): aweights cannot be negative")
        w = aweights if w is None else w * aweights
    if w is None:
        w_sum = float(n)
        avg = x.mean(1)
    else:
        w = w.to(x.dtype) if w.is_floating_point() or w._data.dtype.kind in "iu" else w
        w_sum = w.sum()
        avg = (x * w).sum(1) / w_sum
    if aweights is None or correction == 0:
        norm_factor = w_sum - correction
    else:
        norm_factor = w_sum - correction * (w * aweights.to(x.dtype)).sum() / w_sum
    xm = x - avg.unsqueeze(1)
    xw = xm if w is None else xm * w
    c = xw.matmul(xm.t().conj())
    # no degrees of freedom left: PyTorch divides by zero (inf/nan), as here
    if isinstance(norm_factor, Tensor):
        from .elementwise import where
        c = c / where(norm_factor <= 0, 0.0, norm_factor)
    else:
        c = c / (norm_factor if norm_factor > 0 else 0.0)
    return c.squeeze() if input._data.ndim < 2 or c._data.size == 1 else c


def corrcoef(input):
    """Pearson correlation coefficients of the variables in the rows of ``input``."""
    c = cov(input)
    if c._data.ndim == 0:
        return c / c
    d = c.diagonal()
    stddev = d.real.sqrt() if c.is_complex() else d.sqrt()
    c = c / stddev.unsqueeze(1)
    c = c / stddev.unsqueeze(0)
    return c if c.is_complex() else c.clamp(-1, 1)


def dist(input, other, p=2):
    """The ``p``-norm of ``input - other`` (broadcast)."""
    from ..linalg import vector_norm
    return vector_norm(input - other, p)


def _trapezoid_areas(y, x, dx, dim, op):
    """The trapezoids' areas between neighbouring samples of ``y`` along ``dim`` (samples at
    ``x``, or spacing ``dx``, default 1), and the normalised dim; None areas when ``y`` has no
    sample there."""
    d = norm_dim(dim, y._data.ndim, op)
    n = y._data.shape[d]
    if n == 0:
        return None, d
    pairs = y.narrow(d, 0, n - 1) + y.narrow(d, 1, n - 1)
    if x is None:
        return pairs * ((1.0 if dx is None else dx) / 2), d
    if dx is not None:
        raise TypeError(f"{op}() received an invalid combination of arguments: x and dx")
    if x._data.ndim == 1:
        if x._data.shape[0] != n:
            raise RuntimeError(f"{op}: There must be one `x` value for each sample point "
                               f"(x has {x._data.shape[0]}, y has {n} along dim {d})")
        shape = [1] * y._data.ndim
        shape[d] = n - 1
        spacing = (x[1:] - x[:-1]).reshape(shape)
    else:
        spacing = x.diff(dim=dim)
    return pairs * spacing / 2, d


def trapezoid(y, x=None, *, dx=None, dim=-1):
    """Integrate ``y`` along ``dim`` by the trapezoid rule (samples at ``x``, or spacing
    ``dx``, default 1)."""
    areas, d = _trapezoid_areas(y, x, dx, dim, "trapezoid")
    return y.sum(d) if areas is None else areas.sum(d)


def trapz(y, x=None, *, dx=None, dim=-1):
    """Alias of ``trapezoid`` (``trapz(y, x, dim=...)`` or ``trapz(y, dx=..., dim=...)``)."""
    return trapezoid(y, x, dx=dx, dim=dim)


def cumulative_trapezoid(y, x=None, *, dx=None, dim=-1):
    """Running trapezoid-rule integral of ``y`` along ``dim`` (one value fewer than ``y``)."""
    areas, d = _trapezoid_areas(y, x, dx, dim, "cumulative_trapezoid")
    return y.narrow(d, 0, 0) if areas is None else areas.cumsum(d)


def renorm(input, p, dim, maxnorm):
    """Rescale each sub-tensor along ``dim`` whose ``p``-norm exceeds ``maxnorm`` to norm
    ``maxnorm`` (others unchanged)."""
    from ..linalg import vector_norm
    if p <= 0:
        raise RuntimeError("renorm: non-positive-norm not supported")
    if maxnorm < 0:
        raise RuntimeError(f"renorm: expected maxnorm to be >= 0 but got {maxnorm}")
    d = norm_dim(dim, input._data.ndim, "renorm")
    others = tuple(i for i in range(input._data.ndim) if i != d)
    norms = vector_norm(input, p, dim=others, keepdim=True) if others else input.abs()
    # PyTorch's factor: maxnorm / (norm + 1e-7) where the norm exceeds maxnorm, else 1
    from .elementwise import where
    factor = where(norms > maxnorm, maxnorm / (norms + 1e-7), 1.0)
    return input * factor


__all__ += ["cov", "corrcoef", "dist", "trapezoid", "trapz", "cumulative_trapezoid", "renorm"]
