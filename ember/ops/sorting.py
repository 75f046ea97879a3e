"""Sorting and order statistics: sort, argsort, msort, topk, kthvalue, median, nanmedian,
mode, quantile, nanquantile.

Each op finds its indices on the backend array, then takes the values with ``gather``, so
their gradient (a scatter back to the chosen positions) comes from ``gather``'s backward.
"""

from __future__ import annotations

import numpy as np

from .._meta import MetaArray
from .._tensor import Tensor, _make
from ..autograd.graph import Node, capturing_backward
from ._util import norm_dim
from .indexing import Gather
from .reduction import return_types
from .._autocast import autocast_function

__all__ = ["sort", "argsort", "msort", "topk", "kthvalue", "median", "nanmedian", "mode",
           "quantile", "nanquantile"]


def _argsort(a, axis, descending):
    """Stable argsort with NaN greatest (last ascending, first descending), as PyTorch."""
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    if not descending:
        return np.argsort(a, axis=axis, kind="stable")
    # descending and stable: sort the reversed array ascending, then reverse back
    n = a.shape[axis]
    rev = np.flip(a, axis)
    return n - 1 - np.flip(np.argsort(rev, axis=axis, kind="stable"), axis)


class OrderIndices(Node):
    """The int64 indices these ops pick, computed from the data along ``d``: ``kind`` is
    "sort" (``param``: descending), "topk" (``(k, largest)``), "kth" (sorted position k),
    "median" (ignore NaNs?) or "mode". One op, so that graph capture records the indices as
    a function of the input instead of baking the example's indices in as a constant."""

    differentiable = False

    @staticmethod
    def meta(ctx, a, d, kind, param):
        shape = list(a.shape)
        if kind == "topk":
            shape[d] = param[0]
        elif kind != "sort":  # one position per row: kth, median, mode
            shape[d] = 1
        return MetaArray(tuple(shape), np.int64)

    @staticmethod
    def forward(ctx, a, d, kind, param):
        if kind == "sort":
            return _argsort(a, d, param).astype(np.int64)
        if kind == "topk":
            k, largest = param
            return np.take(_argsort(a, d, largest), np.arange(k), axis=d).astype(np.int64)
        if kind == "mode":
            return _mode_indices(a, d)
        pos = param if kind == "kth" else _median_pos(a, d, param)
        order = _argsort(a, d, False)
        pos = np.broadcast_to(np.asarray(pos), tuple(s for i, s in enumerate(a.shape) if i != d))
        return np.take_along_axis(order, np.expand_dims(pos, d), d).astype(np.int64)


def _refuse_capture(name):
    """Ops whose results come from positions computed on the data outside the dispatcher
    cannot be captured yet: refuse rather than bake the example's positions in."""
    if capturing_backward():
        raise NotImplementedError(f"{name} is not supported under graph capture (export, "
                                  f"jit.trace, compile) yet: it computes positions from the "
                                  f"data outside the dispatcher")


def _values(input, d, idx):
    """``input`` gathered at ``idx`` (same ndim as ``input``) along ``d``: differentiable."""
    return Gather.apply(input, d, idx)


def _prep(input, dim):
    """``input`` as at least 1-d, and the normalised dim (0-d tensors act as shape (1,))."""
    if input._data.ndim == 0:
        norm_dim(dim, 0)
        return input.reshape(1), 0, True
    return input, norm_dim(dim, input._data.ndim), False


def sort(input, dim=-1, descending=False, stable=False):
    """Values sorted along ``dim`` and their original indices (always stable here)."""
    x, d, scalar = _prep(input, dim)
    idx = OrderIndices.apply(x, d, "sort", descending)
    vals = _values(x, d, idx)
    if scalar:
        return return_types.sort(vals.reshape(()), idx.reshape(()))
    return return_types.sort(vals, idx)


def argsort(input, dim=-1, descending=False, stable=False):
    """The indices that sort ``input`` along ``dim``."""
    return sort(input, dim, descending, stable).indices


def msort(input):
    """``input`` sorted along its first dim."""
    return sort(input, 0).values


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The ``k`` largest (or smallest) values along ``dim`` and their indices."""
    x, d, scalar = _prep(input, dim)
    n = x._data.shape[d]
    if not 0 <= k <= n:
        raise RuntimeError(f"selected index k out of range (k = {k}, size = {n})")
    idx = OrderIndices.apply(x, d, "topk", (k, largest))
    vals = _values(x, d, idx)
    if scalar:
        return return_types.topk(vals.reshape(()), idx.reshape(()))
    return return_types.topk(vals, idx)


def _finish_pick(input, d, kind, param, keepdim, name, scalar):
    """Values/indices at the positions ``OrderIndices(kind, param)`` picks along ``d``."""
    idx = OrderIndices.apply(input, d, kind, param)
    vals = _values(input, d, idx)
    rt = getattr(return_types, name)
    if scalar:
        return rt(vals.reshape(()), idx.reshape(()))
    if not keepdim:
        vals, idx = vals.squeeze(d), idx.squeeze(d)
    return rt(vals, idx)


def kthvalue(input, k, dim=-1, keepdim=False):
    """The ``k``-th smallest value (1-based) along ``dim`` and its index."""
    x, d, scalar = _prep(input, dim)
    n = x._data.shape[d]
    if not 1 <= k <= n:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    return _finish_pick(x, d, "kth", k - 1, keepdim, "kthvalue", scalar)


def _median_pos(a, d, ignore_nan):
    """Per-row position (in ascending order) of the lower median; NaN rows point at a NaN."""
    nan = np.isnan(a) if a.dtype.kind in "fc" else np.zeros(a.shape, bool)
    n = a.shape[d]
    if ignore_nan:
        cnt = n - nan.sum(axis=d)
        return np.where(cnt > 0, (cnt - 1) // 2, 0)
    # with any NaN the median is NaN: NaNs sort last, so the last position holds one
    return np.where(nan.any(axis=d), n - 1, (n - 1) // 2)


def _median(input, dim, keepdim, ignore_nan, name):
    if input._data.size == 0 and dim is None:
        raise RuntimeError(f"{name}() input tensor cannot be empty")
    if dim is None:
        _refuse_capture(f"{name}() of all elements")
        flat = input._data.reshape(-1)
        if type(flat) is MetaArray:  # a 0-d result; which element it is needs the data
            return _EvenlyAt.apply(input, MetaArray((), flat.dtype))
        pos = _median_pos(flat, 0, ignore_nan)
        value = np.sort(flat)[pos]
        return _EvenlyAt.apply(input, np.asarray(value, dtype=flat.dtype))
    x, d, scalar = _prep(input, dim)
    if x._data.shape[d] == 0:
        raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")
    return _finish_pick(x, d, "median", ignore_nan, keepdim, "median", scalar)


class _EvenlyAt(Node):
    """A full reduction that picked ``value``: the gradient is shared evenly among the
    elements equal to it (PyTorch's rule for ``median()``/``nanmedian()``)."""

    saves = (0,)

    @staticmethod
    def forward(ctx, a, value):
        ctx.value = value
        return value.copy()

    @staticmethod
    def backward(ctx, g):
        a, = ctx.saved_tensors
        v = ctx.value
        mask = a.isnan() if v.dtype.kind == "f" and np.isnan(v) else a == _make(v)
        mask = mask.to(g.dtype)
        return mask * (g / mask.sum()), None


def median(input, dim=None, keepdim=False):
    """The lower median of all elements, or (values, indices) along ``dim``; NaN propagates."""
    return _median(input, dim, keepdim, False, "median")


def nanmedian(input, dim=None, keepdim=False):
    """Like ``median`` but ignoring NaNs (NaN only where a row is all NaN)."""
    return _median(input, dim, keepdim, True, "nanmedian")


def mode(input, dim=-1, keepdim=False):
    """The most frequent value along ``dim`` (the smallest among ties) and its last index."""
    x, d, scalar = _prep(input, dim)
    return _finish_pick(x, d, "mode", None, keepdim, "mode", scalar)


def _mode_indices(a, d):
    """Per row along ``d``: the last index of the most frequent value (smallest among ties)."""
    a = np.moveaxis(a, d, -1)
    rows = a.reshape(-1, a.shape[-1])
    out = np.empty(rows.shape[0], dtype=np.int64)
    for r, row in enumerate(rows):
        vals, counts = np.unique(row, return_counts=True)
        best = vals[np.argmax(counts)]
        out[r] = np.nonzero(row == best)[0][-1]
    return np.expand_dims(out.reshape(a.shape[:-1]), d)


_INTERP = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile(input, q, dim, keepdim, interpolation, ignore_nan, name):
    if interpolation not in _INTERP:
        raise ValueError(f"{name}() interpolation must be one of linear, lower, higher, midpoint "
                         f"or nearest. Got {interpolation}")
    if input._data.dtype not in (np.float32, np.float64):
        raise RuntimeError(f"{name}() input tensor must be either float or double dtype")
    if isinstance(q, Tensor):
        if q._data.dtype != input._data.dtype:
            raise RuntimeError(f"{name}() q tensor must be same dtype as the input tensor")
        if q._data.ndim > 1:
            raise RuntimeError(f"{name}() q must be a scalar or 1D tensor")
        qa, q_scalar = q._data.reshape(-1).astype(np.float64), q._data.ndim == 0
    else:
        qa, q_scalar = np.asarray([float(q)]), True
    if ((qa < 0) | (qa > 1)).any():
        raise RuntimeError(f"{name}() q values must be in the range [0, 1]")
    if input._data.size == 0:
        raise RuntimeError(f"{name}() input tensor must be non-empty")
    _refuse_capture(f"{name}()")
    nd = input._data.ndim
    if dim is None:
        x, d = input.reshape(-1), 0
    else:
        x, d = (input.reshape(1), 0) if nd == 0 else (input, norm_dim(dim, nd))
    x = x.movedim(d, -1)
    s = sort(x, -1).values                        # NaNs last
    a = s._data
    n = a.shape[-1]
    nan = np.isnan(a)
    cnt = (n - nan.sum(-1)) if ignore_nan else np.full(a.shape[:-1], n)
    last = np.maximum(cnt - 1, 0)
    pos = qa.reshape((-1,) + (1,) * (a.ndim - 1)) * last   # (Q, *R)
    # a row holding a NaN (quantile) reads its last sorted value, which is a NaN
    bad = nan.any(-1) if not ignore_nan else np.zeros(a.shape[:-1], bool)
    pos = np.where(bad, n - 1, pos)
    last = np.where(bad, 0, last)
    if interpolation == "lower":
        pos = np.floor(pos)
    elif interpolation == "higher":
        pos = np.ceil(pos)
    elif interpolation == "nearest":
        pos = np.round(pos)  # half to even, as PyTorch rounds
    lo = np.floor(pos).astype(np.int64)
    hi = np.ceil(pos).astype(np.int64)
    se = s.unsqueeze(0).expand((len(qa),) + a.shape)
    res = Gather.apply(se, a.ndim, lo[..., None]).squeeze(-1)
    if interpolation in ("linear", "midpoint"):
        v_hi = Gather.apply(se, a.ndim, hi[..., None]).squeeze(-1)
        if interpolation == "midpoint":
            w = 0.5
        elif isinstance(q, Tensor):
            # the weight depends on q: keep it differentiable (PyTorch gives q a gradient)
            qt = q.reshape((-1,) + (1,) * (a.ndim - 1))
            w = qt * _make(last.astype(a.dtype)) - _make(np.where(bad, 0, lo).astype(a.dtype))
        else:
            w = _make((pos - lo).astype(a.dtype))
        res = res + (v_hi - res) * w
    if keepdim:
        if dim is None:
            res = res.reshape((len(qa),) + (1,) * nd)
        elif nd:
            res = res.unsqueeze(d + 1)
    if q_scalar:
        res = res.squeeze(0)
    return res


@autocast_function("fp32")
def quantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    """The ``q``-th quantiles along ``dim`` (of all elements if None); NaN propagates."""
    return _quantile(input, q, dim, keepdim, interpolation, False, "quantile")


@autocast_function("fp32")
def nanquantile(input, q, dim=None, keepdim=False, *, interpolation="linear"):
    """Like ``quantile`` but ignoring NaNs."""
    return _quantile(input, q, dim, keepdim, interpolation, True, "nanquantile")
