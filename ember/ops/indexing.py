"""Indexing: ``__getitem__``/``__setitem__`` (basic and advanced, NumPy's rules, which
PyTorch follows) and the scatter helpers that backward passes of other ops use."""

from __future__ import annotations

import numpy as np

from .._tensor import Tensor, _bump_version, _make
from ..autograd.graph import GradMode, Node, _MODES, apply_inplace

_ndarray = np.ndarray

__all__ = ["nonzero", "index_select", "gather", "masked_fill", "take_along_dim"]


def convert_index(idx):
    """Turn an index expression with Tensors and lists into one NumPy understands."""
    if isinstance(idx, tuple):
        return tuple(_conv1(i) for i in idx)
    if isinstance(idx, list):
        # a list of indices is an integer (or bool) array index
        return _conv1(idx)
    return _conv1(idx)


def _conv1(i):
    if isinstance(i, Tensor):
        a = i._data
        if a.dtype.kind not in "biu":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        if a.dtype == np.uint8:
            return a.astype(bool)
        return a
    if isinstance(i, list):
        if any(isinstance(x, (Tensor, list, tuple, slice)) for x in i) and \
                not all(isinstance(x, (Tensor, int, bool, np.integer)) for x in i):
            return tuple(_conv1(x) for x in i)
        a = np.asarray([x.item() if isinstance(x, Tensor) else x for x in i])
        if a.size == 0:
            a = a.astype(np.int64)
        return a
    if isinstance(i, (float, np.floating)):
        raise IndexError("only integers, slices (`:`), ellipsis (`...`), None and long or byte "
                         "Variables are valid indices (got float)")
    return i


def _is_basic(idx):
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(i is None or i is Ellipsis or isinstance(i, (int, slice, np.integer))
               for i in items) and not any(isinstance(i, (bool, np.bool_)) for i in items)


def _check_bounds(a, idx):
    try:
        return a[idx]
    except IndexError as e:
        msg = str(e).replace("axis", "dimension")
        raise IndexError(msg) from None


class Index(Node):
    view = "maybe"

    @staticmethod
    def forward(ctx, a, idx):
        ctx.shape, ctx.dtype, ctx.idx = a.shape, a.dtype, idx
        out = _check_bounds(a, idx)
        if type(out) is not _ndarray:
            out = np.asarray(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return IndexAddZeros.apply(g, ctx.shape, ctx.idx), None


class IndexAddZeros(Node):
    """``zeros(shape).index_put_(idx, g, accumulate=True)``: getitem's backward."""

    @staticmethod
    def forward(ctx, g, shape, idx):
        ctx.idx = idx
        z = np.zeros(shape, dtype=g.dtype)
        if _is_basic(idx):
            z[idx] = g
        else:
            np.add.at(z, idx, g)
        return z

    @staticmethod
    def backward(ctx, gg):
        return Index.apply(gg, ctx.idx), None, None


class IndexPut(Node):
    """``a[idx] = v`` (out of place here; ``apply_inplace`` writes it back)."""

    @staticmethod
    def forward(ctx, a, v, idx, accumulate=False):
        ctx.idx = idx
        out = a.copy()
        if type(v) is _ndarray and v.dtype != a.dtype:
            v = v.astype(a.dtype)
        if accumulate:
            np.add.at(out, idx, v)
        else:
            try:
                out[idx] = v
            except ValueError as e:
                raise RuntimeError(f"shape mismatch: {e}") from None
        return out

    @staticmethod
    def backward(ctx, g):
        idx = ctx.idx
        na, nv = ctx.needs_input_grad[:2]
        ga = gv = None
        if na:
            ga = IndexPut.apply(g, _zero_like_scalar(g), idx)
        if nv:
            gv = Index.apply(g, idx)
        return ga, gv, None, None


def _zero_like_scalar(g):
    return 0.0 if g._data.dtype.kind != "c" else 0j


def getitem(self, idx):
    """``tensor[idx]``: basic indexing gives a view; advanced indexing a copy."""
    idx = convert_index(idx)
    return Index.apply(self, idx)


def setitem(self, idx, value):
    """``tensor[idx] = value``, recorded by autograd as an in-place op on ``tensor``."""
    idx = convert_index(idx)
    if isinstance(value, Tensor):
        v = value._data
        need = GradMode.enabled and (self._rg or value._rg)
    else:
        v = value
        need = GradMode.enabled and self._rg
    if not need and not _MODES:
        dst = self._data
        try:
            if type(v) is _ndarray and v.dtype != dst.dtype:
                if v.dtype.kind == "c" and dst.dtype.kind != "c":
                    raise RuntimeError(f"Index put requires the source and destination dtypes "
                                       f"match, got {dst.dtype} for the destination and "
                                       f"{v.dtype} for the source.")
            dst[idx] = v
        except ValueError as e:
            raise RuntimeError(f"shape mismatch: value tensor cannot be broadcast to indexing "
                               f"result ({e})") from None
        except IndexError as e:
            raise IndexError(str(e).replace("axis", "dimension")) from None
        _bump_version(self)
        return
    if not isinstance(value, Tensor):
        value = _make(np.asarray(value, dtype=self._data.dtype))
    apply_inplace(IndexPut, self, value, idx)


def pad_into(g, shape, dim, start):
    """A zeros tensor of ``shape`` holding ``g`` at ``start`` along ``dim`` (narrow's backward)."""
    idx = [slice(None)] * len(shape)
    idx[dim] = slice(start, start + g._data.shape[dim])
    return IndexAddZeros.apply(g, tuple(shape), tuple(idx))


def _scatter_into_zeros(g, shape, dim, idx):
    """Zeros of ``shape`` with ``g`` placed at index array ``idx`` along ``dim``."""
    full = list(np.indices(idx.shape, sparse=True))
    full[dim] = idx
    return IndexAddZeros.apply(g, tuple(shape), tuple(full))


class IndexSelect(Node):
    @staticmethod
    def forward(ctx, a, dim, index):
        ctx.shape, ctx.dim, ctx.index = a.shape, dim, index
        if index.ndim > 1:
            raise IndexError("index_select(): Index is supposed to be a vector")
        if index.dtype.kind not in "iu":
            raise TypeError(f"index_select(): Expected dtype int32/int64 for index but got: "
                            f"{index.dtype}")
        try:
            return np.take(a, index.reshape(-1), axis=dim) if a.ndim else a[()].reshape(()) \
                if index.size else a
        except IndexError as e:
            raise IndexError(f"index out of range in self ({e})") from None

    @staticmethod
    def backward(ctx, g):
        idx = [slice(None)] * len(ctx.shape)
        idx[ctx.dim] = ctx.index.reshape(-1)
        return IndexAddZeros.apply(g, ctx.shape, tuple(idx)), None, None


def index_select(input, dim, index):
    from ._util import norm_dim
    d = norm_dim(dim, input._data.ndim)
    return IndexSelect.apply(input, d, index._data if isinstance(index, Tensor) else
                             np.asarray(index))


class Gather(Node):
    @staticmethod
    def forward(ctx, a, dim, index):
        ctx.shape, ctx.dim, ctx.index = a.shape, dim, index
        if index.dtype.kind not in "iu":
            raise RuntimeError("gather(): Expected dtype int64 for index")
        if a.ndim != index.ndim and not (a.ndim == 0 and index.ndim <= 1):
            raise RuntimeError("Index tensor must have the same number of dimensions as input "
                               "tensor")
        if a.ndim == 0:
            return a.reshape(1)[index] if index.ndim else a.copy()
        for k in range(a.ndim):
            if k != dim and index.shape[k] > a.shape[k]:
                raise RuntimeError(f"Size does not match at dimension {k} expected index "
                                   f"{list(index.shape)} to be smaller than self "
                                   f"{list(a.shape)} apart from dimension {dim}")
        if index.size and (index.max() >= a.shape[dim] or index.min() < -a.shape[dim]):
            raise RuntimeError(f"index {int(index.max())} is out of bounds for dimension {dim} "
                               f"with size {a.shape[dim]}")
        sl = tuple(slice(0, s) for s in index.shape[:dim]) + (slice(None),) + \
            tuple(slice(0, s) for s in index.shape[dim + 1:])
        return np.take_along_axis(a[sl], index, axis=dim)

    @staticmethod
    def backward(ctx, g):
        if len(ctx.shape) == 0:
            return g.sum().reshape(()), None, None
        return _scatter_into_zeros(g, ctx.shape, ctx.dim, ctx.index), None, None


def gather(input, dim, index, *, sparse_grad=False):
    from ._util import norm_dim
    d = norm_dim(dim, input._data.ndim)
    return Gather.apply(input, d, index._data)


def take_along_dim(input, indices, dim=None):
    if dim is None:
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    from .shape import broadcast_shapes
    from ._util import norm_dim
    d = norm_dim(dim, input._data.ndim)
    ishape = list(input.shape)
    jshape = list(indices.shape)
    ishape[d] = jshape[d] = 1
    b = list(broadcast_shapes(ishape, jshape))
    bi, bj = list(b), list(b)
    bi[d], bj[d] = input.shape[d], indices.shape[d]
    return gather(input.expand(bi), d, indices.expand(bj))


def masked_fill(input, mask, value):
    """``value`` where ``mask`` is True (mask broadcasts to ``input``)."""
    from .elementwise import where
    if not isinstance(mask, Tensor) or mask._data.dtype != np.bool_:
        raise RuntimeError("masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError("masked_fill_ only supports a 0-dimensional value tensor, but got "
                               f"tensor with {value.ndim} dimension(s).")
        value = value.to(input.dtype)
    else:
        value = _make(np.asarray(value, dtype=input._data.dtype))
    r = where(mask, value, input)
    if r._data.shape != input._data.shape:
        raise RuntimeError(f"The size of mask {list(mask.shape)} must match the size of input "
                           f"{list(input.shape)}")
    return r


def nonzero(input, *, as_tuple=False):
    nz = np.nonzero(input._data) if input._data.ndim else np.nonzero(input._data.reshape(1))
    if as_tuple:
        return tuple(_make(x.astype(np.int64)) for x in nz)
    return _make(np.stack(nz, axis=1).astype(np.int64) if nz else
                 np.zeros((0, 0), np.int64))
