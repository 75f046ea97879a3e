"""Indexing: ``__getitem__``/``__setitem__`` (basic and advanced, NumPy's rules, which
PyTorch follows) and the scatter helpers that backward passes of other ops use."""

from __future__ import annotations

import builtins

import numpy as np

from .._meta import MetaArray, data_dependent
from .._tensor import Tensor, _bump_version, _make
from ..autograd.graph import GradMode, Node, _MODES, apply_inplace, apply_with as _apply_with, named
from .._autocast import autocast_function
from ..autograd import forward_ad as _fad

_ndarray = np.ndarray
_ARRAYS = (np.ndarray, MetaArray)  # backend array types: NumPy and the meta device's

__all__ = ["nonzero", "index_select", "gather", "masked_fill", "take_along_dim", "index_add",
           "index_copy", "index_fill", "index_put", "scatter", "scatter_add", "scatter_reduce",
           "masked_select", "masked_scatter", "take", "argwhere", "select", "select_scatter",
           "slice_scatter", "diagonal_scatter", "searchsorted", "bucketize", "bincount",
           "histc", "unique", "unique_consecutive", "tril_indices", "triu_indices",
           "combinations", "put", "index_reduce", "isin", "histogram"]


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
        if type(out) not in _ARRAYS:
            # NumPy returns a scalar for a full integer index; PyTorch a 0-d view. A trailing
            # Ellipsis makes NumPy return the 0-d view too.
            if _is_basic(idx):
                out = a[(idx if isinstance(idx, tuple) else (idx,)) + (Ellipsis,)]
            else:
                out = np.asarray(out)
        return out

    @staticmethod
    def backward(ctx, g):
        return IndexAddZeros.apply(g, ctx.shape, ctx.idx), None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class IndexAddZeros(Node):
    """``zeros(shape).index_put_(idx, g, accumulate=True)``: getitem's backward."""

    @staticmethod
    def meta(ctx, g, shape, idx):
        ctx.idx = idx
        return MetaArray(tuple(shape), g.dtype)

    @staticmethod
    def forward(ctx, g, shape, idx):
        ctx.idx = idx
        z = np.zeros(shape, dtype=g.dtype)
        if _is_basic(idx):
            z[idx] = g
        elif not _scatter_rows(z, idx, g):
            np.add.at(z, idx, g)
        return z

    @staticmethod
    def backward(ctx, gg):
        return Index.apply(gg, ctx.idx), None, None


def _scatter_rows(z, idx, g):
    """``np.add.at(z, idx, g)`` for one integer index array picking rows of a plain
    float ``z`` (embedding backward, ``x[int_array]``'s backward): in C where a compiler
    works (``_nn_c.scatter_rows``, np.add.at's order); else the rows sorted by target
    (stable), each run summed by ``np.add.reduceat``, written once; about 2x faster than
    ``np.add.at`` for (1024, 128) rows. Rows picked once are copied exactly; a row picked
    several times is a sum whose rounding can differ from ``np.add.at``'s in the last bit
    (PyTorch's order differs from both). False where the case does not apply (the caller
    runs ``np.add.at``)."""
    if type(idx) is not tuple or len(idx) != 1 or type(z) is not np.ndarray or z.ndim < 2 or \
            z.dtype.kind != "f":
        return False
    rows = idx[0]
    if type(rows) is not np.ndarray or rows.dtype.kind not in "iu" or rows.size < 2 or \
            type(g) is not np.ndarray or g.shape != rows.shape + z.shape[1:] or \
            g.dtype != z.dtype:
        return False
    n = z.shape[0]
    rows = rows.reshape(-1)
    if rows.min() < -n or rows.max() >= n:
        return False  # out of range: np.add.at raises its own error
    rows = np.where(rows < 0, rows + n, rows)
    from . import _nn_c  # C: each row added in turn, np.add.at's order (its bits), ~10x faster
    if _nn_c.scatter_rows(z, rows.astype(np.int64, copy=False),
                          np.ascontiguousarray(g.reshape((rows.size,) + z.shape[1:]))):
        return True
    order = np.argsort(rows, kind="stable")
    sr = rows[order]
    starts = np.flatnonzero(np.concatenate(([True], sr[1:] != sr[:-1])))
    z[sr[starts]] = np.add.reduceat(g.reshape((rows.size,) + z.shape[1:])[order], starts,
                                    axis=0)
    return True


class IndexPut(Node):
    """``a[idx] = v`` (out of place here; ``apply_inplace`` writes it back)."""

    @staticmethod
    def meta(ctx, a, v, idx, accumulate=False):
        ctx.idx, ctx.accumulate = idx, accumulate
        return MetaArray(a.shape, a.dtype)  # written in place: the shape never changes

    @staticmethod
    def forward(ctx, a, v, idx, accumulate=False):
        ctx.idx, ctx.accumulate = idx, accumulate
        out = a.copy()
        if type(v) in _ARRAYS and v.dtype != a.dtype:
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
            # accumulate adds into ``a``: its gradient passes through untouched
            ga = g if ctx.accumulate else IndexPut.apply(g, _zero_like_scalar(g), idx)
        if nv:
            gv = Index.apply(g, idx)
        return ga, gv, None, None


def _zero_like_scalar(g):
    return 0.0 if g._data.dtype.kind != "c" else 0j


_BASIC = frozenset((int, slice, type(None), type(Ellipsis)))


def getitem(self, idx):
    """``tensor[idx]``: basic indexing gives a view; advanced indexing a copy."""
    ti = type(idx)
    if ti is int or ti is slice:  # x[i], x[a:b]: nothing to convert
        return named(_apply_with(Index, self, idx),
                     "SelectBackward0" if ti is int else "SliceBackward0")
    if ti is tuple:
        for i in idx:
            if type(i) not in _BASIC:
                break
        else:  # ints, slices, None and Ellipsis only: convert_index would return it as is
            r = _apply_with(Index, self, idx)
            if r.grad_fn is not None:
                _name_index(r, idx)
            return r
    idx = convert_index(idx)
    r = Index.apply(self, idx)
    if r.grad_fn is not None:
        _name_index(r, idx)
    return r


def _name_index(r, idx):
    """PyTorch's node name for the kind of index."""
    items = idx if isinstance(idx, tuple) else (idx,)
    if all(type(i) is int or isinstance(i, np.integer) for i in items):
        named(r, "SelectBackward0")
    elif all(isinstance(i, slice) or i is Ellipsis for i in items):
        named(r, "SliceBackward0")
    elif all(i is None or i is Ellipsis for i in items):
        named(r, "UnsqueezeBackward0")


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
            if type(v) in _ARRAYS and v.dtype != dst.dtype:
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
        if a.ndim == 0:
            # a scalar behaves as one element: the index must be a single 0 (or -1)
            if index.size != 1:
                raise RuntimeError(f"index_select(): Index to scalar can have only 1 value, got "
                                   f"{index.size} value(s)")
            if type(index) is not MetaArray and int(index.reshape(-1)[0]) not in (0, -1):
                raise IndexError("index out of range in self")
            return a.copy()
        try:
            return np.take(a, index.reshape(-1), axis=dim)
        except IndexError as e:
            raise IndexError(f"index out of range in self ({e})") from None

    @staticmethod
    def backward(ctx, g):
        if not ctx.shape:
            return g, None, None
        idx = [slice(None)] * len(ctx.shape)
        idx[ctx.dim] = ctx.index.reshape(-1)
        return IndexAddZeros.apply(g, ctx.shape, tuple(idx)), None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


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

    jvp = staticmethod(_fad.first_arg_linear_jvp)


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
    """Indices of the non-zero elements: an (n, ndim) tensor, or one tensor per dim."""
    a = input._data
    if type(a) is MetaArray:
        raise data_dependent("nonzero")
    if a.ndim == 0:
        # a 0-d tensor has one element and no dims: (n, 0), or a tuple of one (n,) tensor
        n = int(bool(a))
        if as_tuple:
            return (_make(np.zeros(n, np.int64)),)
        return _make(np.zeros((n, 0), np.int64))
    nz = np.nonzero(a)
    if as_tuple:
        return tuple(_make(x.astype(np.int64)) for x in nz)
    return _make(np.stack(nz, axis=1).astype(np.int64))


# ====================================================================== index/scatter family
def _as_index(index, op):
    """An integer index Tensor (or sequence) as an int64 array."""
    a = index._data if isinstance(index, Tensor) else np.asarray(index)
    if a.dtype.kind not in "iu":
        raise RuntimeError(f"{op}(): Expected dtype int64 for index, but got {a.dtype}")
    return a.astype(np.int64, copy=False)


def _dim_index(ndim, dim, index):
    """The index tuple that selects ``index`` along ``dim`` and everything elsewhere."""
    return (slice(None),) * dim + (index,) + (slice(None),) * (ndim - dim - 1)


def _check_range(index, size, op):
    if index.size and (index.max() >= size or index.min() < -size):
        bad = int(index.max()) if index.max() >= size else int(index.min())
        raise IndexError(f"{op}(): index {bad} is out of bounds for dimension with size {size}")


def _tensor_value(value, like):
    """A python scalar or 0-d tensor value as a Tensor of ``like``'s dtype."""
    if isinstance(value, Tensor):
        if value._data.ndim:
            raise RuntimeError(f"only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value._data.ndim} dimension(s).")
        return value.to(like.dtype)
    return _make(np.asarray(value, dtype=like._data.dtype))


class _Assign(Node):
    """Rebind an in-place target to a result computed out of place (grad flows to the result)."""

    @staticmethod
    def forward(ctx, target, result):
        return result

    @staticmethod
    def backward(ctx, g):
        return None, g


def _inplace(self, fn, *args, **kwargs):
    """Run out-of-place ``fn(self, *args)`` and write the result into ``self`` (in place)."""
    need = GradMode.enabled and (self._rg or any(isinstance(a, Tensor) and a._rg for a in args))
    if need or _MODES:  # active modes (capture, profiler) see the write as an in-place op
        # work on a clone so that tensors saved by ``fn`` are not the overwritten ``self``
        return apply_inplace(_Assign, self, fn(self.clone(), *args, **kwargs))
    from ..autograd.grad_mode import no_grad
    with no_grad():
        r = fn(self, *args, **kwargs)
    np.copyto(self._data, r._data, casting="unsafe")
    _bump_version(self)
    return self


def _nd(t):
    return t._data.ndim


def _dim(t, dim):
    from ._util import norm_dim
    return norm_dim(dim, _nd(t))


def index_add(input, dim, index, source, *, alpha=1):
    """``input`` plus ``alpha * source`` slices at ``index`` along ``dim`` (duplicates add)."""
    d = _dim(input, dim)
    idx = _as_index(index, "index_add")
    _check_range(idx, input.shape[d] if _nd(input) else 1, "index_add")
    if _nd(input) == 0:
        return input + (source * alpha).sum()
    src = source * alpha if alpha != 1 else source
    return input + IndexAddZeros.apply(src.to(input.dtype), input._data.shape,
                                       _dim_index(_nd(input), d, idx))


@autocast_function("promote")
def index_copy(input, dim, index, source):
    """``input`` with slices along ``dim`` at ``index`` replaced by ``source``'s slices."""
    d = _dim(input, dim)
    idx = _as_index(index, "index_copy")
    if _nd(input) == 0:
        return source.reshape(()).to(input.dtype) + input * 0
    _check_range(idx, input.shape[d], "index_copy")
    return IndexPut.apply(input, source.to(input.dtype), _dim_index(_nd(input), d, idx))


def index_fill(input, dim, index, value):
    """``input`` with the slices along ``dim`` at ``index`` set to ``value``."""
    d = _dim(input, dim)
    idx = _as_index(index, "index_fill").reshape(-1)
    if _nd(input) == 0:
        return IndexPut.apply(input, _tensor_value(value, input), ())
    _check_range(idx, input.shape[d], "index_fill")
    return IndexPut.apply(input, _tensor_value(value, input), _dim_index(_nd(input), d, idx))


def index_put(input, indices, values, accumulate=False):
    """``input`` with ``values`` put at the advanced index ``indices`` (added if accumulate)."""
    idx = convert_index(tuple(indices))
    if not isinstance(values, Tensor):
        values = _make(np.asarray(values, dtype=input._data.dtype))
    return IndexPut.apply(input, values.to(input.dtype), idx, accumulate)


def _scatter_index(index, dim):
    """The full index tuple that ``scatter``/``gather`` use for positions of ``index``."""
    full = list(np.indices(index.shape, sparse=True))
    full[dim] = index
    return tuple(full)


def _check_scatter(input, dim, idx, src, op):
    nd = _nd(input)
    if idx.ndim != nd and not (nd == 0 and idx.ndim <= 1):
        raise RuntimeError(f"{op}(): Index tensor must have the same number of dimensions as "
                           f"self tensor")
    if src is not None and src._data.ndim != idx.ndim and idx.size:
        raise RuntimeError(f"{op}(): Index tensor must have the same number of dimensions as "
                           f"src tensor")
    for k in range(idx.ndim):
        if src is not None and idx.shape[k] > src._data.shape[k]:
            raise RuntimeError(f"{op}(): Expected index {list(idx.shape)} to be smaller than "
                               f"src {list(src.shape)} in every dimension")
        if k != dim and nd and idx.shape[k] > input._data.shape[k]:
            raise RuntimeError(f"{op}(): Expected index {list(idx.shape)} to be smaller than "
                               f"self {list(input.shape)} apart from dimension {dim}")
    _check_range(idx, input._data.shape[dim] if nd else 1, op)


def _src_part(src, idx):
    """The leading ``idx.shape`` block of ``src`` (scatter reads only that much)."""
    if src._data.shape == idx.shape:
        return src
    return src[tuple(slice(0, n) for n in idx.shape)]


def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    """``input`` with ``src`` (or ``value``) written at ``index`` along ``dim``."""
    if src is not None and not isinstance(src, Tensor):
        src, value = None, src
    d = _dim(input, dim)
    idx = _as_index(index, "scatter")
    if _nd(input) == 0:
        input, idx = input.reshape(1), idx.reshape(-1)
        return scatter(input, 0, _make(idx), src.reshape(-1) if src is not None else None,
                       value=value, reduce=reduce).reshape(())
    _check_scatter(input, d, idx, src, "scatter")
    if src is None:
        src = _tensor_value(value, input).expand(idx.shape)
    if reduce is not None:
        mode = {"add": "sum", "multiply": "prod"}.get(reduce)
        if mode is None:
            raise RuntimeError(f"reduce argument must be either add or multiply, got {reduce}")
        return scatter_reduce(input, d, _make(idx), src, mode)
    return IndexPut.apply(input, _src_part(src, idx).to(input.dtype), _scatter_index(idx, d))


def scatter_add(input, dim, index, src):
    """``input`` plus ``src`` summed into the positions ``index`` names along ``dim``."""
    d = _dim(input, dim)
    idx = _as_index(index, "scatter_add")
    if _nd(input) == 0:
        return input + _src_part(src.reshape(-1), idx.reshape(-1)).sum()
    _check_scatter(input, d, idx, src, "scatter_add")
    return input + IndexAddZeros.apply(_src_part(src, idx).to(input.dtype), input._data.shape,
                                       _scatter_index(idx, d))


_REDUCE_INIT = {"sum": 0, "prod": 1, "mean": 0}
_REDUCE_UFUNC = {"sum": np.add, "prod": np.multiply, "mean": np.add, "amax": np.maximum,
                 "amin": np.minimum}


class ScatterReduce(Node):
    saves = (0, 1)
    saves_output = True

    @staticmethod
    def meta(ctx, a, src, idx, reduce, include_self):
        ctx.idx, ctx.reduce, ctx.include_self = idx, reduce, include_self
        ctx.full, ctx.hit = idx, MetaArray(a.shape, np.int64)
        return MetaArray(a.shape, a.dtype)

    @staticmethod
    def forward(ctx, a, src, idx, reduce, include_self):
        ctx.idx, ctx.reduce, ctx.include_self = idx, reduce, include_self
        full = ctx.full = idx  # a full index tuple (see _scatter_index)
        out = a.copy()
        hit = np.zeros(a.shape, dtype=np.int64)
        np.add.at(hit, full, 1)
        ctx.hit = hit
        if not include_self:
            touched = hit > 0
            if reduce in _REDUCE_INIT:
                out[touched] = _REDUCE_INIT[reduce]
            else:
                # the first scattered value seeds each position: start from the reduction's
                # identity so the ufunc below leaves it as is
                fill = -np.inf if reduce == "amax" else np.inf
                if out.dtype.kind in "iu":
                    info = np.iinfo(out.dtype)
                    fill = info.min if reduce == "amax" else info.max
                out[touched] = fill
        _REDUCE_UFUNC[reduce].at(out, full, src)
        if reduce == "mean":
            n = hit + (1 if include_self else 0)
            n = np.maximum(n, 1)
            out = out // n if out.dtype.kind in "iu" else out / n
            out = out.astype(a.dtype, copy=False)
        return out

    @staticmethod
    def backward(ctx, g):
        from .elementwise import where
        a, src, out = ctx.saved_tensors
        full, reduce, inc = ctx.full, ctx.reduce, ctx.include_self
        hit = _make(ctx.hit)
        touched = hit > 0
        gather_at = lambda t: Index.apply(t, full)  # noqa: E731
        if reduce == "sum":
            ga = g if inc else where(touched, 0.0, g)
            gs = gather_at(g)
        elif reduce == "mean":
            n = (hit + (1 if inc else 0)).clamp_min(1).to(g.dtype)
            gn = g / n
            ga = gn if inc else where(touched, 0.0, g)
            gs = gather_at(gn)
        elif reduce == "prod":
            ga, gs = _prod_scatter_grads(a, src, out, g, full, inc, touched)
        else:  # amax / amin: share the gradient evenly among the values equal to the result
            self_is = (a == out).to(g.dtype) if inc else where(touched, 0.0, (a == out).to(
                g.dtype))
            src_is = (src == gather_at(out)).to(g.dtype)
            count = self_is + IndexAddZeros.apply(src_is, tuple(a.shape), full)
            gd = g / count.clamp_min(1)
            ga = self_is * gd
            gs = src_is * gather_at(gd)
        return ga, gs, None, None, None


def _prod_scatter_grads(a, src, out, g, full, inc, touched):
    """Gradients of a scatter product that stay exact when some factors are zero."""
    from .elementwise import where
    one = 1.0
    s_nz = where(src == 0, one, src)
    zeros_src = IndexAddZeros.apply((src == 0).to(g.dtype), tuple(a.shape), full)
    prod_nz = ScatterReduce.apply(where(a == 0, one, a) if inc else a.new_ones(a.shape),
                                  s_nz, full, "prod", True)
    zcount = zeros_src + ((a == 0).to(g.dtype) if inc else 0.0)
    # d out / d x = prod of the other factors: out / x when x != 0, else the product of the
    # non-zero factors when x is the only zero, else 0
    gp = g * prod_nz
    if inc:
        ga = where(a == 0, where(zcount == 1, gp, 0.0), where(zcount == 0, g * out / where(
            a == 0, one, a), 0.0))
    else:
        ga = where(touched, 0.0, g)
    gs_div = Index.apply(where(zcount == 0, g * out, 0.0), full) / s_nz
    gs_zero = Index.apply(where(zcount == 1, gp, 0.0), full)
    gs = where(src == 0, gs_zero, gs_div)
    return ga, gs


def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    """Reduce ``src`` into ``input`` at ``index`` along ``dim``: sum, prod, mean, amax, amin."""
    if reduce not in _REDUCE_UFUNC:
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got "
                           f"{reduce}")
    d = _dim(input, dim)
    idx = _as_index(index, "scatter_reduce")
    if _nd(input) == 0:
        r = scatter_reduce(input.reshape(1), 0, _make(idx.reshape(-1)), src.reshape(-1), reduce,
                           include_self=include_self)
        return r.reshape(())
    _check_scatter(input, d, idx, src, "scatter_reduce")
    return ScatterReduce.apply(input, _src_part(src, idx).to(input.dtype),
                               _scatter_index(idx, d), reduce, include_self)


def index_reduce(input, dim, index, source, reduce, *, include_self=True):
    """Reduce the slices of ``source`` into ``input`` at ``index`` along ``dim``: prod, mean,
    amax or amin."""
    if reduce not in ("prod", "mean", "amax", "amin"):
        raise RuntimeError(f"index_reduce(): Expected reduce to be one of prod, mean, amax or "
                           f"amin but got {reduce}.")
    d = _dim(input, dim)
    idx = _as_index(index, "index_reduce").reshape(-1)
    if _nd(input) == 0:
        return index_reduce(input.reshape(1), 0, _make(idx), source.reshape(-1), reduce,
                            include_self=include_self).reshape(())
    _check_range(idx, input.shape[d], "index_reduce")
    if source._data.shape[d] != idx.size:
        raise RuntimeError(f"index_reduce_(): Number of indices ({idx.size}) should be equal to "
                           f"source.size(dim) ({source._data.shape[d]})")
    full = list(np.indices(source._data.shape, sparse=True))
    full[d] = idx.reshape((-1,) + (1,) * (_nd(input) - d - 1))
    return ScatterReduce.apply(input, source.to(input.dtype), tuple(full), reduce, include_self)


def masked_select(input, mask):
    """The elements of ``input`` where ``mask`` (broadcast together) is True, as a 1-d tensor."""
    if not isinstance(mask, Tensor) or mask._data.dtype != np.bool_:
        raise RuntimeError(f"masked_select: expected BoolTensor for mask, got "
                           f"{getattr(mask, 'dtype', type(mask).__name__)}")
    from .shape import broadcast_tensors
    x, m = broadcast_tensors(input, mask)
    return Index.apply(x, m._data)


def masked_scatter(input, mask, source):
    """``input`` with the positions where ``mask`` is True filled, in order, from ``source``."""
    if not isinstance(mask, Tensor) or mask._data.dtype != np.bool_:
        raise RuntimeError(f"masked_scatter_ only supports boolean masks, but got mask with "
                           f"dtype {getattr(mask, 'dtype', type(mask).__name__)}")
    from .shape import broadcast_tensors
    from .sorting import _refuse_capture
    _refuse_capture("masked_scatter")  # how much of source is read comes from the mask's data
    x, m = broadcast_tensors(input, mask)
    if type(m._data) is MetaArray:  # the result has the input's shape whatever the mask holds
        return IndexPut.apply(x, source.reshape(-1).to(input.dtype), m._data)
    n = int(m._data.sum())
    if n > source._data.size:
        raise RuntimeError("masked_scatter: expected source to have at least as many elements "
                           f"as ones in mask ({n}), got {source._data.size}")
    return IndexPut.apply(x, source.reshape(-1)[:n].to(input.dtype), m._data)


def take(input, index):
    """Elements of the flattened ``input`` at ``index``; the result has ``index``'s shape."""
    idx = _as_index(index, "take")
    n = input._data.size
    if idx.size and (idx.max() >= n or idx.min() < -n):
        bad = int(idx.max()) if idx.max() >= n else int(idx.min())
        raise IndexError(f"out of range: tried to access index {bad} on a tensor of {n} "
                         f"elements.")
    return Index.apply(input.reshape(-1), idx)


def put(input, index, source, accumulate=False):
    """``input`` with the flattened positions ``index`` set to (or, accumulating, plus)
    ``source``."""
    idx = _as_index(index, "put").reshape(-1)
    n = input._data.size
    if idx.size and (idx.max() >= n or idx.min() < -n):
        bad = int(idx.max()) if idx.max() >= n else int(idx.min())
        raise IndexError(f"out of range: tried to access index {bad} on a tensor of {n} "
                         f"elements.")
    if idx.size != source._data.size:
        raise RuntimeError(f"put_(): Expected source and index to have the same number of "
                           f"elements, but got source.numel() = {source._data.size}, "
                           f"index.numel() = {idx.size}")
    flat = IndexPut.apply(input.reshape(-1), source.reshape(-1).to(input.dtype), idx, accumulate)
    return flat.reshape(input._data.shape)


def isin(elements, test_elements, *, assume_unique=False, invert=False):
    """Whether each of ``elements`` occurs in ``test_elements`` (a bool tensor)."""
    a = elements._data if isinstance(elements, Tensor) else np.asarray(elements)
    b = test_elements._data if isinstance(test_elements, Tensor) else np.asarray(test_elements)
    return _make(np.isin(a, b, invert=invert))


def argwhere(input):
    """The indices of the non-zero elements, one row per element (``nonzero``)."""
    return nonzero(input)


def select(input, dim, index):
    """The slice at ``index`` along ``dim`` (a view with that dim removed)."""
    d = _dim(input, dim)
    n = input._data.shape[d]
    if not -n <= index < n:
        raise IndexError(f"select(): index {index} out of range for tensor of size "
                         f"{list(input.shape)} at dimension {dim}")
    return Index.apply(input, _dim_index(_nd(input), d, int(index) % n))


def select_scatter(input, src, dim, index):
    """``input`` with the slice ``select(dim, index)`` replaced by ``src``."""
    d = _dim(input, dim)
    n = input._data.shape[d]
    if not -n <= index < n:
        raise IndexError(f"select_scatter(): index {index} out of range for tensor of size "
                         f"{list(input.shape)} at dimension {dim}")
    want = input._data.shape[:d] + input._data.shape[d + 1:]
    if tuple(src._data.shape) != want:
        raise RuntimeError(f"expected src to have a size equal to the slice of self. src size = "
                           f"{list(src.shape)}, slice size = {list(want)}")
    return IndexPut.apply(input, src.to(input.dtype), _dim_index(_nd(input), d, int(index) % n))


def slice_scatter(input, src, dim=0, start=None, end=None, step=1):
    """``input`` with the slice ``start:end:step`` along ``dim`` replaced by ``src``."""
    d = _dim(input, dim)
    idx = _dim_index(_nd(input), d, slice(start, end, step))
    want = input._data[idx].shape
    if tuple(src._data.shape) != want:
        raise RuntimeError(f"expected src to have a size equal to the slice of self. src size = "
                           f"{list(src.shape)}, slice size = {list(want)}")
    return IndexPut.apply(input, src.to(input.dtype), idx)


def diagonal_scatter(input, src, offset=0, dim1=0, dim2=1):
    """``input`` with its ``diagonal(offset, dim1, dim2)`` replaced by ``src``."""
    from .shape import _DiagonalScatter
    d1, d2 = _dim(input, dim1), _dim(input, dim2)
    want = np.diagonal(input._data, offset, d1, d2).shape
    if tuple(src._data.shape) != want:
        raise RuntimeError(f"expected src to have a size equal to the slice of self. src size = "
                           f"{list(src.shape)}, slice size = {list(want)}")
    return _DiagonalScatter.apply(input, src.to(input.dtype), offset, d1, d2)


# --------------------------------------------------------------- non-differentiable lookups
def _int_out(arr, out_int32):
    return _make(arr.astype(np.int32 if out_int32 else np.int64))


def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None,
                 sorter=None):
    """Insertion points of ``input`` into the (last-dim) sorted ``sorted_sequence``."""
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(f"torch.searchsorted(): side can only be 'left' or 'right' but "
                               f"got {side}")
        if right and side == "left":
            raise RuntimeError("torch.searchsorted(): side and right can't be set to opposites,"
                               " got side of left while right was True")
        right = side == "right"
    seq = sorted_sequence._data
    if sorter is not None:
        seq = np.take_along_axis(seq, sorter._data, axis=-1)
    scalar = not isinstance(input, Tensor)
    vals = np.asarray(input) if scalar else input._data
    sd = "right" if right else "left"
    if seq.ndim == 1:
        return _int_out(np.searchsorted(seq, vals, side=sd), out_int32)
    if vals.shape[:-1] != seq.shape[:-1]:
        raise RuntimeError(f"torch.searchsorted(): boundaries tensor should be 1 dimension or "
                           f"the first N-1 dimensions of boundaries tensor and input value "
                           f"tensor must match, but we got boundaries tensor "
                           f"{list(seq.shape)} and input value tensor {list(vals.shape)}")
    s2 = seq.reshape(-1, seq.shape[-1])
    v2 = vals.reshape(-1, vals.shape[-1])
    res = np.stack([np.searchsorted(r, v, side=sd) for r, v in zip(s2, v2)]) if len(s2) else \
        np.zeros(v2.shape, np.int64)
    return _int_out(res.reshape(vals.shape), out_int32)


def bucketize(input, boundaries, *, out_int32=False, right=False):
    """Bucket index of each element for the 1-d sorted ``boundaries``."""
    if boundaries._data.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim("
                           f"{boundaries._data.ndim})")
    vals = input._data if isinstance(input, Tensor) else np.asarray(input)
    return _int_out(np.searchsorted(boundaries._data, vals, side="right" if right else "left"),
                    out_int32)


def bincount(input, weights=None, minlength=0):
    """Counts of each non-negative integer value (summed ``weights`` when given)."""
    a = input._data
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if a.size and a.min() < 0:
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if weights is None:
        return _make(np.bincount(a, minlength=minlength).astype(np.int64))
    w = weights._data
    dt = w.dtype if w.dtype.kind == "f" and w.dtype.itemsize >= 4 else np.float64
    if w.dtype == np.float32:
        dt = np.float32
    return _make(np.bincount(a, weights=w, minlength=minlength).astype(dt))


def histc(input, bins=100, min=0, max=0):
    """Histogram of ``input`` in ``bins`` equal bins over ``[min, max]`` (data range if equal)."""
    a = input._data
    if a.dtype.kind != "f":
        raise RuntimeError(f"\"histogram_cpu\" not implemented for '{input.dtype}'")
    if type(a) is MetaArray:  # ``bins`` counts whatever the range: no data needed
        return _make(MetaArray((int(bins),), a.dtype))
    lo, hi = float(min), float(max)
    if lo == hi and a.size:
        lo, hi = float(a.min()), float(a.max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    if lo > hi:
        raise RuntimeError("torch.histc: max must be larger than min")
    counts, _ = np.histogram(a, bins=bins, range=(lo, hi))
    return _make(counts.astype(a.dtype))


def histogram(input, bins=100, *, range=None, weight=None, density=False):
    """``(hist, bin_edges)``: counts (or summed ``weight``) of ``input`` in ``bins`` bins (a
    count, or a 1-d tensor of edges)."""
    from .reduction import return_types
    a = input._data
    if a.dtype.kind != "f":
        raise RuntimeError(f"torch.histogram: input tensor and bins tensors should have the "
                           f"same dtype, but got input {input.dtype}")
    edges = bins._data if isinstance(bins, Tensor) else int(bins)
    if type(a) is MetaArray:  # the counts' and edges' shapes follow from ``bins`` alone
        n = edges if isinstance(edges, int) else edges.shape[0] - 1
        return return_types.histogram(_make(MetaArray((n,), a.dtype)),
                                      _make(MetaArray((n + 1,), a.dtype)))
    w = weight._data if weight is not None else None
    rng = None
    if range is not None:
        rng = (float(range[0]), float(range[1]))
    elif a.size == 0:
        rng = (0.0, 1.0)
    hist, e = np.histogram(a, bins=edges, range=rng, weights=w, density=density)
    return return_types.histogram(_make(hist.astype(a.dtype)), _make(e.astype(a.dtype)))


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct values (or slices along ``dim``), sorted; optionally inverse and counts."""
    a = input._data
    if dim is None:
        # PyTorch keeps every NaN distinct
        vals, inv, cnt = np.unique(a.reshape(-1), return_inverse=True, return_counts=True,
                                   equal_nan=False)
        inv = inv.reshape(a.shape)
    else:
        d = _dim(input, dim)
        moved = np.moveaxis(a, d, 0)
        if moved.shape[0] == 0:
            vals, inv, cnt = moved, np.zeros(0, np.int64), np.zeros(0, np.int64)
        else:
            vals, inv, cnt = np.unique(moved.reshape(moved.shape[0], -1), axis=0,
                                       return_inverse=True, return_counts=True)
            vals = vals.reshape((-1,) + moved.shape[1:])
        vals = np.moveaxis(vals, 0, d)
        inv = inv.reshape(-1)
    return _unique_result(vals, inv, cnt, return_inverse, return_counts)


def _unique_result(vals, inv, cnt, return_inverse, return_counts):
    out = [_make(np.ascontiguousarray(vals))]
    if return_inverse:
        out.append(_make(inv.astype(np.int64)))
    if return_counts:
        out.append(_make(cnt.astype(np.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    """Collapse runs of equal consecutive values (or slices along ``dim``)."""
    a = input._data
    if dim is None:
        flat = a.reshape(-1)
        rows = flat.reshape(-1, 1)
        shape_inv = a.shape
    else:
        d = _dim(input, dim)
        moved = np.moveaxis(a, d, 0)
        rows = moved.reshape(moved.shape[0], -1)
        shape_inv = (moved.shape[0],)
    n = rows.shape[0]
    if n == 0:
        starts = np.zeros(0, np.int64)
    else:
        change = np.any(rows[1:] != rows[:-1], axis=1)
        starts = np.concatenate([[0], np.nonzero(change)[0] + 1])
    cnt = np.diff(np.append(starts, n))
    inv = (np.cumsum(np.isin(np.arange(n), starts)) - 1).reshape(shape_inv)
    if dim is None:
        vals = flat[starts]
    else:
        vals = np.moveaxis(np.moveaxis(a, d, 0)[starts], 0, d)
    return _unique_result(vals, inv, cnt, return_inverse, return_counts)


def tril_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    """The (2, N) row/column indices of the lower triangle of a ``row x col`` matrix."""
    from .. import _dtype as D
    r, c = np.tril_indices(row, offset, col)
    return _make(np.stack([r, c]).astype(D.to_dtype(dtype).np if dtype else np.int64))


def triu_indices(row, col, offset=0, *, dtype=None, device=None, layout=None):
    """The (2, N) row/column indices of the upper triangle of a ``row x col`` matrix."""
    from .. import _dtype as D
    r, c = np.triu_indices(row, offset, col)
    return _make(np.stack([r, c]).astype(D.to_dtype(dtype).np if dtype else np.int64))


def combinations(input, r=2, with_replacement=False):
    """All length-``r`` combinations of the elements of the 1-d ``input``, one per row."""
    import itertools
    if input._data.ndim != 1:
        raise RuntimeError(f"Expect a 1D vector, but got shape {list(input.shape)}")
    n = input._data.shape[0]
    gen = itertools.combinations_with_replacement if with_replacement else \
        itertools.combinations
    idx = np.asarray(list(gen(range(n), r)), dtype=np.int64).reshape(-1, r)
    if r == 0 or idx.shape[0] == 0:
        return _make(np.zeros((0,) if r == 0 else (0, r), dtype=input._data.dtype,
                              like=input._data))
    return Index.apply(input, idx)


def _inplace_of(fn):
    def op_(self, *args, **kwargs):
        return _inplace(self, fn, *args, **kwargs)
    op_.__name__ = fn.__name__ + "_"
    op_.__doc__ = f"In-place ``{fn.__name__}``."
    return op_


# in-place variants, bound as Tensor methods
INPLACE = {f.__name__ + "_": _inplace_of(f) for f in (
    index_add, index_copy, index_fill, scatter, scatter_add, scatter_reduce, masked_scatter,
    put, index_reduce)}


# ====================================================================== in-place ops on views
def _view_positions(base, view):
    """Flat (C-order) indices into ``base`` of each element of ``view`` (``view``'s shape),
    or None when ``base``'s elements overlap or ``view`` reaches outside it."""
    from .shape import _positions
    b, v = base._data, view._data
    off_b = _positions(b.shape, b.strides).reshape(-1)
    order = np.argsort(off_b, kind="stable")
    sorted_b = off_b[order]
    if sorted_b.size > 1 and (np.diff(sorted_b) == 0).any():
        return None
    start = v.__array_interface__["data"][0] - b.__array_interface__["data"][0]
    off_v = start + _positions(v.shape, v.strides)
    loc = np.searchsorted(sorted_b, off_v)
    if sorted_b.size == 0 or (loc >= sorted_b.size).any() or \
            (sorted_b[np.minimum(loc, sorted_b.size - 1)] != off_v).any():
        return None
    return order[loc]


def _inplace_on_view(cls, target, args, kwargs):
    """``cls`` applied in place to ``target``, a view of ``target._base``, recorded as
    ``base = base.index_put(view positions, cls(view))`` so that gradients reach the base
    (and the view's new graph reads from the updated base), as PyTorch's CopySlices does."""
    base = target._base
    if getattr(target, "_nondiff_view", False):
        return NotImplemented  # detach(): shares memory, not the graph
    if base.grad_fn is None and base._rg:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an "
                           "in-place operation.")
    pos = _view_positions(base, target)
    if pos is None:
        return NotImplemented
    old_base = _make(base._data, base._rg, base.grad_fn)
    old_base._output_nr = base._output_nr
    flat = old_base.reshape(-1)
    new_view = cls.apply(Index.apply(flat, pos), *args, **kwargs)
    from ..autograd.graph import _write
    _write(target, new_view._data, cls)
    new_flat = IndexPut.apply(flat, new_view.to(base.dtype), pos)
    _bump_version(target)
    new_base = new_flat.reshape(base._data.shape)
    base.grad_fn, base._rg, base._output_nr = new_base.grad_fn, new_base._rg, 0
    view_now = Index.apply(new_flat, pos)
    target.grad_fn, target._rg, target._output_nr = view_now.grad_fn, view_now._rg, 0
    return target


def _install_view_inplace():
    from ..autograd import graph
    graph._VIEW_INPLACE[0] = _inplace_on_view


_install_view_inplace()


def nonzero_static(input, *, size, fill_value=-1):
    """``nonzero`` with exactly ``size`` rows: truncated, or padded with ``fill_value``."""
    from .creation import tensor as _tensor
    if size < 0:
        raise RuntimeError(f"nonzero_static: 'size' must be an non-negative integer, got {size}")
    if type(input._data) is MetaArray:  # exactly ``size`` rows: no data needed
        return _make(MetaArray((size, input._data.ndim), np.int64))
    idx = np.argwhere(input._data)
    out = np.full((size, input._data.ndim), fill_value, dtype=np.int64)
    n = min(size, idx.shape[0])
    out[:n] = idx[:n]
    return _tensor(out)


__all__ += ["nonzero_static"]


def histogramdd(input, bins=10, *, range=None, weight=None, density=False):
    """``(hist, bin_edges)`` of the points in the rows of ``input`` (its last dim holds the
    coordinates): ``bins`` is one count, a count per dimension, or a 1-d tensor of edges per
    dimension; ``range`` is (min, max) per dimension, flattened. As PyTorch's kernel: a point
    counts when every coordinate lies within its outer edges (the last bin includes its right
    edge), found by binary search in the edges."""
    from .reduction import return_types
    a = input._data
    if a.dtype.kind != "f":
        raise RuntimeError(f"torch.histogramdd: input tensor should have a floating dtype, got "
                           f"{input.dtype}")
    if a.ndim < 2:
        raise RuntimeError(f"torch.histogramdd: input tensor should have at least 2 dimensions, "
                           f"got shape {list(a.shape)}")
    d = a.shape[-1]
    pts = a.reshape(-1, d)
    if isinstance(bins, (list, tuple)) and bins and isinstance(bins[0], Tensor):
        edges = [b._data.astype(a.dtype) for b in bins]
    else:
        counts = [int(b) for b in bins] if isinstance(bins, (list, tuple)) else [int(bins)] * d
        if len(counts) != d:
            raise RuntimeError(f"torch.histogramdd: expected {d} bin counts, got {len(counts)}")
        if range is not None:
            flat = [float(v) for v in range]
            bounds = list(zip(flat[0::2], flat[1::2]))
        elif pts.shape[0]:
            bounds = list(zip(pts.min(0).tolist(), pts.max(0).tolist()))
        else:
            bounds = [(0.0, 1.0)] * d
        edges = []
        for (lo, hi), n in zip(bounds, counts):
            if lo == hi:  # a single value: a bin of width 1 around it
                lo, hi = lo - 0.5, hi + 0.5
            edges.append(np.linspace(lo, hi, n + 1).astype(a.dtype))
    if len(edges) != d:
        raise RuntimeError(f"torch.histogramdd: expected {d} sequences of bin edges, got "
                           f"{len(edges)}")
    shape = tuple(builtins.max(e.shape[0] - 1, 0) for e in edges)
    inside = np.ones(pts.shape[0], dtype=bool)
    pos = []
    for i, e in enumerate(edges):
        x = pts[:, i]
        inside &= (x >= e[0]) & (x <= e[-1]) if e.size else False
        p = np.searchsorted(e, x, side="right") - 1
        p = np.where(x == e[-1], shape[i] - 1, p) if e.size else p
        pos.append(np.clip(p, 0, builtins.max(shape[i] - 1, 0)))
    hist = np.zeros(shape, dtype=np.float64)
    w = weight._data.reshape(-1).astype(np.float64) if weight is not None else \
        np.ones(pts.shape[0])
    if all(shape):
        np.add.at(hist, tuple(p[inside] for p in pos), w[inside])
    if density:
        total = hist.sum()
        widths = [np.diff(e.astype(np.float64)) for e in edges]
        vol = widths[0]
        for wd in widths[1:]:
            vol = np.multiply.outer(vol, wd)
        with np.errstate(divide="ignore", invalid="ignore"):
            hist = hist / total / vol
    return return_types.histogramdd(_make(hist.astype(a.dtype)), tuple(_make(e) for e in edges))


__all__ += ["histogramdd"]
