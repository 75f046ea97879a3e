"""Layer 0: the ``meta`` backend, arrays that have a shape, a dtype and strides but no data.

A meta tensor's ``_data`` is a :class:`MetaArray`. Op forwards are written against NumPy, and
NumPy hands every ufunc call and most functions on a foreign array type to that type
(``__array_ufunc__``, ``__array_function__``, NEP 13/18). So an op's existing forward runs
unchanged on meta arrays: each NumPy call it makes answers with a new ``MetaArray`` whose
shape comes from the call's own shape rule (broadcasting, reduction axes, matmul, einsum ...)
and whose dtype comes from NumPy's type resolution run on empty arrays of the operand dtypes.
No element is ever read or written, and nothing of the tensor's size is allocated.

Views (slicing, transpose, reshape, ``as_strided`` windows) are computed by NumPy itself on a
one-element placeholder buffer viewed with the meta array's strides: NumPy's view logic gives
the exact shape, strides and offset, and since no element of a view is read, the placeholder's
size does not matter. Only functions whose result is a view are run that way.

An op whose forward cannot run on meta arrays (it needs values, or builds NumPy arrays of its
output's size) keeps a ``meta(ctx, *args, **kwargs)`` rule in its op class, beside
``forward``; the dispatch path (``Node.__init_subclass__``) uses it for meta inputs. Ops that
need values (``nonzero``, ``unique``, ``masked_select``, ``.item()``) raise PyTorch's errors.
"""

from __future__ import annotations

import math
import operator

import numpy as np

_ast = np.lib.stride_tricks.as_strided
DEVICE_MISMATCH = ("Expected all tensors to be on the same device, but found at least two "
                   "devices, meta and cpu!")
NO_DATA = "Cannot copy out of meta tensor; no data!"


def _contig(shape, itemsize):
    st, acc = [], itemsize
    for s in reversed(shape):
        st.append(acc)
        acc *= max(s, 1)
    return tuple(reversed(st))


_BUFS: dict = {}


def _placeholder(dtype):
    buf = _BUFS.get(dtype)
    if buf is None:
        buf = _BUFS[dtype] = np.zeros(1, dtype=dtype)
    return buf


class MetaArray:
    """An array with shape, dtype, strides (bytes, as NumPy's) and an offset, and no data."""

    __slots__ = ("shape", "dtype", "strides", "offset")
    __array_priority__ = 2000

    def __init__(self, shape, dtype, strides=None, offset=0):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.strides = _contig(self.shape, self.dtype.itemsize) if strides is None \
            else tuple(strides)
        self.offset = offset

    # ------------------------------------------------------------- metadata
    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    itemsize = property(lambda self: self.dtype.itemsize)
    nbytes = property(lambda self: self.size * self.dtype.itemsize)
    base = None

    @property
    def flags(self):
        return _Flags(self.strides == _contig(self.shape, self.dtype.itemsize))

    def __repr__(self):
        return f"MetaArray(shape={self.shape}, dtype={self.dtype})"

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    # ------------------------------------------------------------- what needs data
    def __array__(self, dtype=None, copy=None):
        raise NotImplementedError(NO_DATA)

    def __bool__(self):
        # Op forwards test values only to validate them (index bounds, probabilities in
        # [0, 1]) or to pick a kernel (a NaN path) whose output metadata is the same: like
        # PyTorch's meta kernels, meta arrays skip those checks. (``bool`` of a meta *Tensor*
        # raises, as PyTorch's does; conversions to numbers raise here too.)
        return False

    def __int__(self):
        raise RuntimeError("Tensor.item() cannot be called on meta tensors")

    __float__ = __index__ = __complex__ = __int__

    def item(self, *args):
        raise RuntimeError("Tensor.item() cannot be called on meta tensors")

    def tolist(self):
        raise NotImplementedError(NO_DATA)

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    @property
    def __array_interface__(self):
        raise NotImplementedError(NO_DATA)

    # ------------------------------------------------------------- views via NumPy
    def _dummy(self):
        return _ast(_placeholder(self.dtype), self.shape, self.strides, writeable=False)

    def _from_view(self, view):
        buf = _placeholder(self.dtype)
        base = view
        while base is not None and base is not buf:  # it must be a view: a copy would have
            base = getattr(base, "base", None)         # read past the placeholder's one element
        if base is None:
            raise NotImplementedError("the meta device computes only views with NumPy")
        delta = view.__array_interface__["data"][0] - buf.__array_interface__["data"][0]
        return MetaArray(view.shape, view.dtype, view.strides, self.offset + delta)

    def _view(self, fn, *args, **kwargs):
        return self._from_view(fn(self._dummy(), *args, **kwargs))

    def reshape(self, *shape, order="C", copy=None):
        if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
            shape = tuple(shape[0])
        shape = _resolve_shape(shape, self.size)
        try:
            return self._view(np.reshape, shape, copy=False)
        except ValueError:  # not viewable: a contiguous copy
            return MetaArray(shape, self.dtype)

    def view(self, dtype=None, type=None):
        if dtype is None:
            return self._view(lambda d: d.view())
        dt = np.dtype(dtype)
        if dt.itemsize == self.itemsize or not self.shape:
            return MetaArray(self.shape, dt, self.strides, self.offset)
        last = self.shape[-1] * self.itemsize // dt.itemsize
        return MetaArray(self.shape[:-1] + (last,), dt)

    def transpose(self, *axes):
        if len(axes) == 1 and not isinstance(axes[0], (int, np.integer)):
            axes = axes[0]
        return self._view(np.transpose, axes or None)

    T = property(lambda self: self.transpose())
    mT = property(lambda self: self.swapaxes(-1, -2))

    def swapaxes(self, a, b):
        return self._view(np.swapaxes, a, b)

    def squeeze(self, axis=None):
        return self._view(np.squeeze, axis)

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return self._view(np.diagonal, offset, axis1, axis2)

    def ravel(self, order="C"):
        return self.reshape(-1)

    def flatten(self, order="C"):
        return MetaArray((self.size,), self.dtype)

    def __getitem__(self, idx):
        basic, adv = _split_index(idx, self)
        if adv is None:
            return self._view(operator.getitem, basic)
        return MetaArray(_advanced_shape(self.shape, adv), self.dtype)

    def __setitem__(self, idx, value):
        target = self[idx].shape
        vshape = np.shape(value) if not isinstance(value, MetaArray) else value.shape
        try:
            np.broadcast_shapes(vshape, target)
        except ValueError:
            raise ValueError(f"could not broadcast input array from shape {vshape} into shape "
                             f"{target}") from None

    def fill(self, value):
        pass

    # ------------------------------------------------------------- copies and casts
    def copy(self, order="C"):
        return MetaArray(self.shape, self.dtype)

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        dt = np.dtype(dtype)
        if not copy and dt == self.dtype:
            return self
        strides = self.strides if dt.itemsize == self.itemsize else None
        return MetaArray(self.shape, dt, strides)

    def conj(self):
        return np.conjugate(self)

    conjugate = conj

    @property
    def real(self):
        if self.dtype.kind != "c":
            return self
        dt = np.empty(0, self.dtype).real.dtype
        return MetaArray(self.shape, dt, self.strides, self.offset)

    @property
    def imag(self):
        dt = np.empty(0, self.dtype).imag.dtype
        return MetaArray(self.shape, dt, self.strides, self.offset)

    # ------------------------------------------------------------- NumPy methods
    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return np.add.reduce(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return np.multiply.reduce(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def max(self, axis=None, out=None, keepdims=False, **kw):
        return np.maximum.reduce(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, out=None, keepdims=False, **kw):
        return np.minimum.reduce(self, axis=axis, keepdims=keepdims)

    def any(self, axis=None, out=None, keepdims=False, **kw):
        return _reduce_meta(self, axis, keepdims, np.bool_)

    def all(self, axis=None, out=None, keepdims=False, **kw):
        return _reduce_meta(self, axis, keepdims, np.bool_)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kw):
        return _mean(self, axis, dtype, keepdims)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw):
        return _var(self, axis, dtype, keepdims)

    std = var

    def argmax(self, axis=None, out=None, keepdims=False):
        return _reduce_meta(self, axis, keepdims, np.intp)

    argmin = argmax

    def cumsum(self, axis=None, dtype=None, out=None):
        return _accum(np.add, self, axis, dtype)

    def cumprod(self, axis=None, dtype=None, out=None):
        return _accum(np.multiply, self, axis, dtype)

    def clip(self, a_min=None, a_max=None, out=None, **kw):
        return np.clip(self, a_min, a_max, **kw)

    def round(self, decimals=0, out=None):
        return MetaArray(self.shape, self.dtype)

    def nonzero(self):
        raise NotImplementedError(_DATA_DEPENDENT.format("nonzero"))

    def sort(self, axis=-1, kind=None, order=None):
        pass

    def argsort(self, axis=-1, kind=None, order=None, stable=None):
        return MetaArray(self.shape, np.intp)

    def repeat(self, repeats, axis=None):
        return np.repeat(self, repeats, axis)

    def take(self, indices, axis=None, out=None, mode="raise"):
        return np.take(self, indices, axis)

    def dot(self, b, out=None):
        return np.dot(self, b)

    def trace(self, offset=0, axis1=0, axis2=1, dtype=None, out=None):
        return np.trace(self, offset, axis1, axis2, dtype)

    def searchsorted(self, v, side="left", sorter=None):
        return np.searchsorted(self, v, side, sorter)

    def __dlpack__(self, *a, **k):
        raise NotImplementedError(NO_DATA)

    # ------------------------------------------------------------- the NumPy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _check_devices(inputs)
        out = kwargs.pop("out", None)
        if method == "__call__":
            res = _ufunc_call(ufunc, inputs, kwargs)
        elif method == "reduce":
            res = _ufunc_reduce(ufunc, *inputs, **kwargs)
        elif method == "accumulate":
            a = inputs[0]
            res = _accum(ufunc, a, kwargs.get("axis", 0), kwargs.get("dtype"))
        elif method == "outer":
            a, b = inputs
            dts = _ufunc_dtypes(ufunc, inputs, kwargs)
            res = MetaArray(np.shape(a) + _shape(b), dts[0])
        elif method == "at":
            return None  # an in-place scatter: metadata does not change
        else:
            return NotImplemented
        if out is not None:
            return _into_out(out, res)
        return res

    def __array_function__(self, func, types, args, kwargs):
        impl = _FUNCTIONS.get(func)
        if impl is None:
            name = getattr(func, "__module__", "numpy") + "." + func.__name__
            raise NotImplementedError(
                f"the meta device has no shape rule for {name} (an op whose forward calls it "
                f"needs a meta() rule in its op class)")
        return impl(*args, **kwargs)

    # ------------------------------------------------------------- operators
    def __neg__(self):
        return np.negative(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return np.absolute(self)

    def __invert__(self):
        return np.invert(self)


def _binop(ufunc):
    def fwd(self, other):
        return ufunc(self, other)

    def rev(self, other):
        return ufunc(other, self)
    return fwd, rev


def _inplace(ufunc):
    def iop(self, other):
        ufunc(self, other, out=self)  # checks that ``other`` broadcasts and casts into self
        return self
    return iop


for _name, _uf in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply),
                   ("truediv", np.true_divide), ("floordiv", np.floor_divide),
                   ("mod", np.remainder), ("pow", np.power), ("matmul", np.matmul),
                   ("and", np.bitwise_and), ("or", np.bitwise_or), ("xor", np.bitwise_xor),
                   ("lshift", np.left_shift), ("rshift", np.right_shift)):
    _f, _r = _binop(_uf)
    setattr(MetaArray, f"__{_name}__", _f)
    setattr(MetaArray, f"__r{_name}__", _r)
    setattr(MetaArray, f"__i{_name}__", _inplace(_uf))
for _name, _uf in (("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                   ("ge", np.greater_equal), ("eq", np.equal), ("ne", np.not_equal)):
    setattr(MetaArray, f"__{_name}__", _binop(_uf)[0])
MetaArray.__hash__ = object.__hash__


class _Flags:
    __slots__ = ("c_contiguous",)
    writeable = owndata = True
    f_contiguous = False

    def __init__(self, c):
        self.c_contiguous = c

    def __getitem__(self, key):
        return {"C_CONTIGUOUS": self.c_contiguous, "WRITEABLE": True}.get(key, False)


_DATA_DEPENDENT = ("aten::{}: attempted to run this operator with Meta tensors, but its output "
                   "shape depends on the data, which meta tensors do not have")


def data_dependent(name):
    """PyTorch's error for an op whose output shape needs the values (``nonzero``...)."""
    return NotImplementedError(_DATA_DEPENDENT.format(name))


def is_meta(a):
    return type(a) is MetaArray


def _shape(x):
    return x.shape if isinstance(x, (MetaArray, np.ndarray)) else np.shape(x)


def _check_devices(inputs):
    """NumPy arrays beside meta ones are constants an op built (interpolation weights, index
    ranges): only their metadata is used. Mixing *tensors* of two devices is refused at the
    dispatch path (``check_same_device``), where arrays still belong to tensors."""


def check_same_device(cls, args):
    """PyTorch's device-mismatch error when op ``cls`` produced a meta array but also took a
    CPU tensor of more than 0 dims (0-d CPU tensors mix with any device, as in PyTorch)."""
    if cls.crosses_devices:
        return
    for a in args:
        d = getattr(a, "_data", None)
        if type(d) is np.ndarray and d.ndim > 0:
            raise RuntimeError(DEVICE_MISMATCH)
        if isinstance(a, (list, tuple)):
            check_same_device(cls, a)


def _resolve_shape(shape, size):
    shape = [int(s) for s in shape]
    if shape.count(-1) > 1:
        raise ValueError("can only specify one unknown dimension")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape array of size {size} into shape {tuple(shape)}")
        shape[shape.index(-1)] = size // known
    if math.prod(shape) != size:
        raise ValueError(f"cannot reshape array of size {size} into shape {tuple(shape)}")
    return tuple(shape)


def _into_out(out, res):
    if isinstance(out, tuple):
        if len(out) == 1:
            out = out[0]
        else:
            return tuple(_into_out(o, r) for o, r in zip(out, res, strict=True))
    if type(out) is not MetaArray:
        raise RuntimeError(DEVICE_MISMATCH)
    return out


# ------------------------------------------------------------------ dtype resolution
_DTYPE_CACHE: dict = {}
_SCALARS = (bool, int, float, complex)


def _proxy(x, n=0):
    """A stand-in of ``x`` for NumPy's type resolution: empty arrays keep the dtype, Python
    scalars stay (they are weakly typed, NEP 50)."""
    if isinstance(x, (MetaArray, np.ndarray)):
        return np.empty((n,), x.dtype)
    if isinstance(x, np.generic):
        return x
    if isinstance(x, _SCALARS):
        return x
    return np.empty((n,), np.asarray(x).dtype)


def _key(x):
    if isinstance(x, (MetaArray, np.ndarray, np.generic)):
        return x.dtype
    return type(x)


def _ufunc_dtypes(ufunc, inputs, kwargs, method="__call__"):
    extra = tuple(sorted((k, v if not isinstance(v, np.ndarray) else "arr")
                         for k, v in kwargs.items() if k in ("dtype", "casting", "signature")))
    key = (ufunc, method, tuple(_key(x) for x in inputs), extra)
    res = _DTYPE_CACHE.get(key)
    if res is None:
        kw = {k: v for k, v in kwargs.items() if k in ("dtype", "casting", "signature")}
        with np.errstate(all="ignore"):
            if method == "reduce":
                r = ufunc.reduce(_proxy(inputs[0], 1), **kw)
            else:
                r = ufunc(*[_proxy(x) for x in inputs], **kw)
        res = tuple(np.asarray(o).dtype for o in r) if isinstance(r, tuple) \
            else (np.asarray(r).dtype,)
        _DTYPE_CACHE[key] = res
    return res


def _ufunc_call(ufunc, inputs, kwargs):
    if ufunc.signature is not None:
        return _gufunc(ufunc, inputs, kwargs)
    shape = np.broadcast_shapes(*[_shape(x) for x in inputs])
    dts = _ufunc_dtypes(ufunc, inputs, kwargs)
    if len(dts) == 1:
        return MetaArray(shape, dts[0])
    return tuple(MetaArray(shape, d) for d in dts)


def _gufunc(ufunc, inputs, kwargs):
    if ufunc is np.matmul:
        return _matmul(*inputs, dtype=_ufunc_dtypes(ufunc, inputs, kwargs)[0])
    raise NotImplementedError(f"the meta device has no shape rule for the gufunc "
                              f"{ufunc.__name__}{ufunc.signature}")


def _matmul(a, b, dtype=None):
    sa, sb = _shape(a), _shape(b)
    if not sa or not sb:
        raise ValueError("matmul: Input operand does not have enough dimensions")
    ka = sa[-1]
    kb = sb[0] if len(sb) == 1 else sb[-2]
    if ka != kb:
        raise ValueError(f"matmul: Input operand 1 has a mismatch in its core dimension 0, "
                         f"with gufunc signature (n?,k),(k,m?)->(n?,m?) (size {kb} is "
                         f"different from {ka})")
    batch = np.broadcast_shapes(sa[:-2], sb[:-2])
    core = (sa[-2],) if len(sa) > 1 else ()
    core += (sb[-1],) if len(sb) > 1 else ()
    if dtype is None:
        dtype = np.result_type(a.dtype, b.dtype)
    return MetaArray(batch + core, dtype)


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (axis,)
    out = []
    for a in axis:
        a = int(a)
        if not -ndim <= a < max(ndim, 1):
            raise np.exceptions.AxisError(a, ndim)
        out.append(a % ndim if ndim else 0)
    return tuple(out)


def _reduced_shape(shape, axis, keepdims):
    ax = set(_axes(axis, len(shape)))
    if keepdims:
        return tuple(1 if i in ax else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in ax)


def _reduce_meta(a, axis, keepdims, dtype):
    return MetaArray(_reduced_shape(_shape(a), axis, keepdims), dtype)


def _ufunc_reduce(ufunc, a, axis=0, dtype=None, keepdims=False, initial=None, where=True,
                  **kw):
    dt = _ufunc_dtypes(ufunc, (a,), {"dtype": dtype} if dtype is not None else {},
                       "reduce")[0]
    return MetaArray(_reduced_shape(_shape(a), axis, keepdims), dt)


def _accum(ufunc, a, axis, dtype):
    if axis is None:
        a = a.reshape(-1)
    dt = _ufunc_dtypes(ufunc, (a,), {"dtype": dtype} if dtype is not None else {},
                       "reduce")[0]
    return MetaArray(_shape(a), dt)


def _float_of(dt, dtype=None):
    if dtype is not None:
        return np.dtype(dtype)
    dt = np.dtype(dt)
    return dt if dt.kind in "fcV" else np.dtype(np.float64)


def _mean(a, axis=None, dtype=None, keepdims=False, **kw):
    return MetaArray(_reduced_shape(_shape(a), axis, keepdims), _float_of(a.dtype, dtype))


def _var(a, axis=None, dtype=None, keepdims=False, **kw):
    dt = _float_of(a.dtype, dtype)
    if dt.kind == "c":
        dt = np.empty(0, dt).real.dtype
    return MetaArray(_reduced_shape(_shape(a), axis, keepdims), dt)


# ------------------------------------------------------------------ indexing
def _is_int(x):
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _split_index(idx, arr):
    """(basic index, None) when ``idx`` only makes a view; else (None, normalised list)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    adv = False
    for it in items:
        if isinstance(it, (MetaArray, np.ndarray, list, tuple, bool, np.bool_)):
            adv = True
    if not adv:
        if not any(it is Ellipsis for it in items):
            # a trailing Ellipsis keeps NumPy from returning a scalar (a copy) for a full
            # integer index: the result is a 0-d view, and nothing is read
            return items + (Ellipsis,), None
        return idx, None
    return None, list(items)


def _advanced_shape(shape, items):
    """The result shape of NumPy advanced indexing (int/bool arrays among slices)."""
    # Expand the ellipsis and count the dimensions each index consumes.
    def consumed(it):
        if it is None or it is Ellipsis:
            return 0
        if isinstance(it, (bool, np.bool_)):
            return 0
        if isinstance(it, (MetaArray, np.ndarray, list, tuple)):
            dt = it.dtype if isinstance(it, (MetaArray, np.ndarray)) else np.asarray(it).dtype
            return len(_shape(it)) if dt == np.bool_ else 1
        return 1
    used = sum(consumed(it) for it in items)
    if used > len(shape):
        raise IndexError(f"too many indices for array: array is {len(shape)}-dimensional, "
                         f"but {used} were indexed")
    out_items = []
    for it in items:
        if it is Ellipsis:
            out_items.extend([slice(None)] * (len(shape) - used))
        else:
            out_items.append(it)
    if not any(it is Ellipsis for it in items):
        out_items.extend([slice(None)] * (len(shape) - used))
    dim = 0
    result, adv_shapes, adv_pos, last_adv, separated = [], [], None, None, False
    for it in out_items:
        if it is None:
            result.append(1)
            continue
        if isinstance(it, (bool, np.bool_)):
            it = np.asarray(it)
        if isinstance(it, (list, tuple)):
            it = np.asarray(it)
        if isinstance(it, (MetaArray, np.ndarray)) and it.dtype == np.bool_:
            if isinstance(it, MetaArray):
                raise data_dependent("nonzero")
            n = it.ndim
            sub = shape[dim:dim + n]
            if it.shape != tuple(sub):
                raise IndexError(f"boolean index did not match indexed array along axis "
                                 f"{dim}; size of axis is {sub} but size of boolean index is "
                                 f"{it.shape}")
            ishape = (int(np.count_nonzero(it)),)
            dim += n
        elif isinstance(it, (MetaArray, np.ndarray)) or _is_int(it):
            ishape = _shape(it)
            if _is_int(it) and not -shape[dim] <= int(it) < shape[dim]:
                raise IndexError(f"index {int(it)} is out of bounds for axis {dim} with size "
                                 f"{shape[dim]}")
            dim += 1
        else:  # a slice
            result.append(len(range(*it.indices(shape[dim]))))
            dim += 1
            continue
        if adv_pos is None:
            adv_pos = len(result)
        elif last_adv != len(result):
            separated = True
        adv_shapes.append(ishape)
        last_adv = len(result)
    bshape = np.broadcast_shapes(*adv_shapes)
    if separated:
        return tuple(bshape) + tuple(result)
    return tuple(result[:adv_pos]) + tuple(bshape) + tuple(result[adv_pos:])


# ------------------------------------------------------------------ __array_function__
_FUNCTIONS: dict = {}


def _implements(*funcs):
    def deco(impl):
        for f in funcs:
            _FUNCTIONS[f] = impl
        return impl
    return deco


def _meta_like(a):
    return a if isinstance(a, MetaArray) else MetaArray(np.shape(a), np.asarray(a).dtype)


def _result_dtype(*xs):
    return np.result_type(*[x.dtype if isinstance(x, (MetaArray, np.ndarray)) else x
                            for x in xs])


@_implements(np.zeros_like, np.ones_like, np.empty_like)
def _like(a, dtype=None, order="K", subok=True, shape=None, **kw):
    return MetaArray(a.shape if shape is None else shape, dtype or a.dtype)


@_implements(np.full_like)
def _full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, **kw):
    return MetaArray(a.shape if shape is None else shape, dtype or a.dtype)


@_implements(np.copy)
def _copy(a, order="K", subok=False):
    return a.copy()


@_implements(np.shape)
def _np_shape(a):
    return a.shape


@_implements(np.ndim)
def _np_ndim(a):
    return a.ndim


@_implements(np.size)
def _np_size(a, axis=None):
    return a.size if axis is None else a.shape[axis]


@_implements(np.result_type)
def _np_result_type(*xs):
    return _result_dtype(*xs)


@_implements(np.may_share_memory, np.shares_memory)
def _share(a, b, max_work=None):
    return isinstance(a, MetaArray) and isinstance(b, MetaArray)


@_implements(np.where)
def _where(cond, x=None, y=None):
    if x is None and y is None:
        raise data_dependent("nonzero")
    _check_devices((cond, x, y))
    shape = np.broadcast_shapes(_shape(cond), _shape(x), _shape(y))
    return MetaArray(shape, _result_dtype(x, y))


@_implements(np.sum, np.nansum)
def _sum(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
    return np.add.reduce(_meta_like(a), axis=axis, dtype=dtype, keepdims=keepdims)


@_implements(np.prod, np.nanprod)
def _prod(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
    return np.multiply.reduce(_meta_like(a), axis=axis, dtype=dtype, keepdims=keepdims)


@_implements(np.max, np.amax, np.nanmax)
def _max(a, axis=None, out=None, keepdims=False, **kw):
    return np.maximum.reduce(a, axis=axis, keepdims=keepdims)


@_implements(np.min, np.amin, np.nanmin)
def _min(a, axis=None, out=None, keepdims=False, **kw):
    return np.minimum.reduce(a, axis=axis, keepdims=keepdims)


@_implements(np.any, np.all)
def _anyall(a, axis=None, out=None, keepdims=False, **kw):
    return _reduce_meta(a, axis, keepdims, np.bool_)


@_implements(np.count_nonzero)
def _count_nonzero(a, axis=None, keepdims=False):
    return _reduce_meta(a, axis, keepdims, np.intp)


@_implements(np.argmax, np.argmin, np.nanargmax, np.nanargmin)
def _argmax(a, axis=None, out=None, keepdims=False):
    return _reduce_meta(a, axis, keepdims, np.intp)


@_implements(np.mean, np.nanmean)
def _np_mean(a, axis=None, dtype=None, out=None, keepdims=False, **kw):
    return _mean(a, axis, dtype, keepdims)


@_implements(np.var, np.std, np.nanvar, np.nanstd)
def _np_var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False, **kw):
    return _var(a, axis, dtype, keepdims)


@_implements(np.median, np.nanmedian)
def _median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    return _mean(a, axis, None, keepdims)


@_implements(np.cumsum, np.nancumsum)
def _cumsum(a, axis=None, dtype=None, out=None):
    return _accum(np.add, a, axis, dtype)


@_implements(np.cumprod, np.nancumprod)
def _cumprod(a, axis=None, dtype=None, out=None):
    return _accum(np.multiply, a, axis, dtype)


@_implements(np.clip)
def _clip(a, a_min=None, a_max=None, out=None, **kw):
    _check_devices((a_min, a_max))
    ins = [a] + [v for v in (a_min, a_max) if v is not None]
    res = MetaArray(np.broadcast_shapes(*[_shape(x) for x in ins]),
                    _ufunc_dtypes(np.minimum, tuple(ins[:2]), {})[0] if len(ins) > 1
                    else a.dtype)
    return _into_out(out, res) if out is not None else res


@_implements(np.round, np.around)
def _round(a, decimals=0, out=None):
    return MetaArray(a.shape, a.dtype)


@_implements(np.isclose)
def _isclose(a, b, rtol=1e-5, atol=1e-8, equal_nan=False):
    return MetaArray(np.broadcast_shapes(_shape(a), _shape(b)), np.bool_)


@_implements(np.nan_to_num)
def _nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    return MetaArray(x.shape, x.dtype)


@_implements(np.real)
def _np_real(a):
    return a.real


@_implements(np.imag)
def _np_imag(a):
    return a.imag


@_implements(np.angle)
def _np_angle(z, deg=False):
    return MetaArray(z.shape, _float_of(np.empty(0, z.dtype).real.dtype))


# --- views
def _view_fn(func):
    def impl(a, *args, **kwargs):
        return _meta_like(a)._view(func, *args, **kwargs)
    return impl


for _f in (np.transpose, np.swapaxes, np.moveaxis, np.squeeze, np.expand_dims, np.diagonal,
           np.broadcast_to, np.flip, np.fliplr, np.flipud, np.rot90, np.atleast_1d,
           np.atleast_2d, np.atleast_3d, np.lib.stride_tricks.sliding_window_view):
    _FUNCTIONS[_f] = _view_fn(_f)


@_implements(np.reshape)
def _np_reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    return a.reshape(shape if shape is not None else newshape)


@_implements(np.ravel)
def _np_ravel(a, order="C"):
    return a.reshape(-1)


@_implements(np.ascontiguousarray)
def _np_contig(a, dtype=None, **kw):
    return a if a.flags.c_contiguous and dtype is None else MetaArray(a.shape, dtype or a.dtype)


@_implements(np.broadcast_arrays)
def _broadcast_arrays(*args, subok=False):
    _check_devices(args)
    shape = np.broadcast_shapes(*[_shape(x) for x in args])
    return tuple(np.broadcast_to(_meta_like(x), shape) for x in args)


# --- joins, splits, copies of new shapes
def _seq_dtype(arrays, dtype):
    return np.dtype(dtype) if dtype is not None else _result_dtype(*arrays)


@_implements(np.concatenate)
def _concatenate(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    arrays = list(arrays)
    _check_devices(arrays)
    if axis is None:
        arrays = [np.ravel(_meta_like(a)) for a in arrays]
        axis = 0
    shapes = [_shape(a) for a in arrays]
    nd = len(shapes[0])
    if nd == 0:
        raise ValueError("zero-dimensional arrays cannot be concatenated")
    ax = _axes(axis, nd)[0]
    for s in shapes:
        if len(s) != nd or any(s[i] != shapes[0][i] for i in range(nd) if i != ax):
            raise ValueError(f"all the input array dimensions except for the concatenation "
                             f"axis must match exactly, but got shapes {shapes}")
    shape = list(shapes[0])
    shape[ax] = sum(s[ax] for s in shapes)
    return MetaArray(shape, _seq_dtype(arrays, dtype))


@_implements(np.stack)
def _stack(arrays, axis=0, out=None, dtype=None, casting="same_kind"):
    arrays = list(arrays)
    _check_devices(arrays)
    shapes = {_shape(a) for a in arrays}
    if len(shapes) != 1:
        raise ValueError("all input arrays must have the same shape")
    (s,) = shapes
    ax = _axes(axis, len(s) + 1)[0]
    return MetaArray(s[:ax] + (len(arrays),) + s[ax:], _seq_dtype(arrays, dtype))


@_implements(np.split, np.array_split)
def _split(ary, indices_or_sections, axis=0):
    n = ary.shape[axis]
    if _is_int(indices_or_sections):
        k = int(indices_or_sections)
        base, extra = divmod(n, k)
        bounds = [0]
        for i in range(k):
            bounds.append(bounds[-1] + base + (1 if i < extra else 0))
    else:
        bounds = [0] + [min(int(i), n) for i in indices_or_sections] + [n]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        idx = [slice(None)] * ary.ndim
        idx[axis] = slice(lo, hi)
        out.append(ary[tuple(idx)])
    return out


@_implements(np.tile)
def _tile(a, reps):
    reps = (reps,) if _is_int(reps) else tuple(reps)
    shape = a.shape
    n = max(len(shape), len(reps))
    shape = (1,) * (n - len(shape)) + tuple(shape)
    reps = (1,) * (n - len(reps)) + reps
    return MetaArray(tuple(s * r for s, r in zip(shape, reps, strict=True)), a.dtype)


@_implements(np.repeat)
def _repeat(a, repeats, axis=None):
    if isinstance(repeats, MetaArray):
        raise data_dependent("repeat_interleave")
    a = _meta_like(a)
    if axis is None:
        a, axis = a.reshape(-1), 0
    ax = _axes(axis, a.ndim)[0]
    r = np.asarray(repeats)
    n = int(r) * a.shape[ax] if r.ndim == 0 else int(r.sum())
    shape = list(a.shape)
    shape[ax] = n
    return MetaArray(shape, a.dtype)


@_implements(np.pad)
def _pad(array, pad_width, mode="constant", **kw):
    pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (array.ndim, 2))
    return MetaArray(tuple(s + int(p[0]) + int(p[1]) for s, p in zip(array.shape, pw,
                                                                      strict=True)),
                     array.dtype)


@_implements(np.roll)
def _roll(a, shift, axis=None):
    return MetaArray(a.shape, a.dtype)


@_implements(np.triu, np.tril)
def _tri(m, k=0):
    return MetaArray(m.shape, m.dtype)


@_implements(np.diff)
def _diff(a, n=1, axis=-1, prepend=None, append=None):
    ax = _axes(axis, a.ndim)[0]
    shape = list(a.shape)
    for extra in (prepend, append):
        if extra is not None:
            shape[ax] += _shape(extra)[ax] if _shape(extra) else 1
    shape[ax] = max(shape[ax] - n, 0)
    return MetaArray(shape, a.dtype if a.dtype != np.bool_ else np.bool_)


@_implements(np.diag)
def _diag(v, k=0):
    if v.ndim == 1:
        n = v.shape[0] + abs(k)
        return MetaArray((n, n), v.dtype)
    return np.diagonal(v, k)


@_implements(np.take_along_axis)
def _take_along_axis(arr, indices, axis=-1):
    if axis is None:
        return MetaArray(_shape(indices), arr.dtype)
    ax = _axes(axis, arr.ndim)[0]
    ishape = _shape(indices)
    shape = np.broadcast_shapes(arr.shape[:ax] + (1,) + arr.shape[ax + 1:],
                                ishape[:ax] + (1,) + ishape[ax + 1:])
    shape = shape[:ax] + (ishape[ax],) + shape[ax + 1:]
    return MetaArray(shape, arr.dtype)


@_implements(np.put_along_axis, np.copyto, np.put, np.place, np.putmask,
             np.fill_diagonal)
def _inplace_noop(*args, **kwargs):
    return None


@_implements(np.take)
def _take(a, indices, axis=None, out=None, mode="raise"):
    ishape = _shape(indices)
    if axis is None:
        return MetaArray(ishape, a.dtype)
    ax = _axes(axis, a.ndim)[0]
    return MetaArray(a.shape[:ax] + tuple(ishape) + a.shape[ax + 1:], a.dtype)


@_implements(np.sort)
def _np_sort(a, axis=-1, kind=None, order=None, stable=None):
    if axis is None:
        return MetaArray((a.size,), a.dtype)
    return MetaArray(a.shape, a.dtype)


@_implements(np.argsort)
def _np_argsort(a, axis=-1, kind=None, order=None, stable=None):
    if axis is None:
        return MetaArray((a.size,), np.intp)
    return MetaArray(a.shape, np.intp)


@_implements(np.partition)
def _np_partition(a, kth, axis=-1, kind="introselect", order=None):
    return MetaArray(a.shape, a.dtype)


@_implements(np.argpartition)
def _np_argpartition(a, kth, axis=-1, kind="introselect", order=None):
    return MetaArray(a.shape, np.intp)


@_implements(np.searchsorted)
def _searchsorted(a, v, side="left", sorter=None):
    return MetaArray(_shape(v), np.intp)


@_implements(np.nonzero, np.argwhere, np.flatnonzero, np.unique, np.bincount, np.histogram,
             np.unique_values, np.unique_counts, np.unique_inverse, np.unique_all,
             np.extract, np.compress, np.trim_zeros)
def _needs_data(*args, **kwargs):
    raise data_dependent("nonzero")


# --- products
@_implements(np.dot)
def _dot(a, b, out=None):
    _check_devices((a, b))
    sa, sb = _shape(a), _shape(b)
    if not sa or not sb:
        return np.multiply(a, b)
    if len(sb) <= 2:
        return _matmul(a, b)
    shape = sa[:-1] + sb[:-2] + sb[-1:]
    return MetaArray(shape, _result_dtype(a, b))


@_implements(np.vdot, np.inner)
def _vdot(a, b):
    if np.ndim(a) <= 1 and np.ndim(b) <= 1:
        return MetaArray((), _result_dtype(a, b))
    return MetaArray(_shape(a)[:-1] + _shape(b)[:-1], _result_dtype(a, b))


@_implements(np.outer)
def _outer(a, b, out=None):
    return MetaArray((a.size if isinstance(a, MetaArray) else np.size(a),
                      b.size if isinstance(b, MetaArray) else np.size(b)), _result_dtype(a, b))


@_implements(np.kron)
def _kron(a, b):
    sa, sb = _shape(a), _shape(b)
    n = max(len(sa), len(sb))
    sa = (1,) * (n - len(sa)) + tuple(sa)
    sb = (1,) * (n - len(sb)) + tuple(sb)
    return MetaArray(tuple(x * y for x, y in zip(sa, sb, strict=True)), _result_dtype(a, b))


@_implements(np.tensordot)
def _tensordot(a, b, axes=2):
    sa, sb = _shape(a), _shape(b)
    if _is_int(axes):
        axa, axb = list(range(len(sa) - axes, len(sa))), list(range(axes))
    else:
        axa, axb = axes
        axa = [axa] if _is_int(axa) else list(axa)
        axb = [axb] if _is_int(axb) else list(axb)
    axa = [x % len(sa) for x in axa]
    axb = [x % len(sb) for x in axb]
    for x, y in zip(axa, axb, strict=True):
        if sa[x] != sb[y]:
            raise ValueError("shape-mismatch for sum")
    shape = tuple(s for i, s in enumerate(sa) if i not in axa) + \
        tuple(s for i, s in enumerate(sb) if i not in axb)
    return MetaArray(shape, _result_dtype(a, b))


@_implements(np.einsum)
def _einsum(subscripts, *operands, out=None, dtype=None, optimize=False, **kw):
    _check_devices(operands)
    if not isinstance(subscripts, str):
        raise NotImplementedError("the meta device's einsum takes a subscripts string")
    spec = subscripts.replace(" ", "")
    lhs, arrow, rhs = spec.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError("more operands provided to einstein sum function than specified in "
                         "the subscripts string")
    sizes, ell_shapes = {}, []
    for term, op in zip(terms, operands, strict=True):
        shape = _shape(op)
        if "..." in term:
            pre, post = term.split("...")
            nell = len(shape) - len(pre) - len(post)
            ell_shapes.append(shape[len(pre):len(pre) + nell])
            letters = list(pre) + [None] * nell + list(post)
        else:
            letters = list(term)
        if len(letters) != len(shape):
            raise ValueError(f"operand has more dimensions than subscripts given in einstein "
                             f"sum, but no '...' ellipsis provided to broadcast the extra "
                             f"dimensions (subscripts {term!r}, shape {shape})")
        for ch, s in zip(letters, shape, strict=True):
            if ch is None:
                continue
            if ch in sizes and sizes[ch] != s and 1 not in (s, sizes[ch]):
                raise ValueError(f"operands could not be broadcast together with remapped "
                                 f"shapes: subscript {ch!r} has sizes {sizes[ch]} and {s}")
            sizes[ch] = max(sizes.get(ch, s), s) if 1 in (s, sizes.get(ch, s)) else s
    ell = np.broadcast_shapes(*ell_shapes) if ell_shapes else ()
    if not arrow:
        letters = sorted(ch for ch in sizes if lhs.count(ch) == 1)
        rhs = ("..." if ell_shapes else "") + "".join(letters)
    shape = []
    pre, _, post = rhs.partition("...")
    shape = [sizes[c] for c in pre] + (list(ell) if "..." in rhs else []) + \
        [sizes[c] for c in post]
    dt = np.dtype(dtype) if dtype is not None else _result_dtype(*operands)
    return MetaArray(shape, dt)


@_implements(np.trace)
def _trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    return np.diagonal(a, offset, axis1, axis2).sum(-1, dtype=dtype)


# --- np.linalg: the shape rules of the decompositions
def _sq(a, name):
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise np.linalg.LinAlgError(f"Last 2 dimensions of the array must be square ({name})")
    return a


def _lin_dtype(a):
    return _float_of(a.dtype)


def _real(dt):
    return np.empty(0, dt).real.dtype


@_implements(np.linalg.inv, np.linalg.matrix_power, np.linalg.cholesky)
def _la_same(a, *args, **kwargs):
    _sq(a, "inv")
    return MetaArray(a.shape, _lin_dtype(a))


@_implements(np.linalg.det)
def _la_det(a):
    _sq(a, "det")
    return MetaArray(a.shape[:-2], _lin_dtype(a))


@_implements(np.linalg.slogdet)
def _la_slogdet(a):
    _sq(a, "slogdet")
    dt = _lin_dtype(a)
    return MetaArray(a.shape[:-2], dt), MetaArray(a.shape[:-2], _real(dt))


@_implements(np.linalg.solve)
def _la_solve(a, b):
    _sq(a, "solve")
    dt = _result_dtype(a, b)
    dt = _float_of(dt)
    if b.ndim == 1:
        return MetaArray(a.shape[:-1], dt)
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return MetaArray(batch + b.shape[-2:], dt)


@_implements(np.linalg.qr)
def _la_qr(a, mode="reduced"):
    m, n = a.shape[-2:]
    k = min(m, n)
    dt = _lin_dtype(a)
    b = a.shape[:-2]
    if mode == "r":
        return MetaArray(b + (k, n), dt)
    if mode == "complete":
        return MetaArray(b + (m, m), dt), MetaArray(b + (m, n), dt)
    return MetaArray(b + (m, k), dt), MetaArray(b + (k, n), dt)


@_implements(np.linalg.svd)
def _la_svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    m, n = a.shape[-2:]
    k = min(m, n)
    dt = _lin_dtype(a)
    b = a.shape[:-2]
    s = MetaArray(b + (k,), _real(dt))
    if not compute_uv:
        return s
    if full_matrices:
        return MetaArray(b + (m, m), dt), s, MetaArray(b + (n, n), dt)
    return MetaArray(b + (m, k), dt), s, MetaArray(b + (k, n), dt)


@_implements(np.linalg.eigh)
def _la_eigh(a, UPLO="L"):
    _sq(a, "eigh")
    dt = _lin_dtype(a)
    return MetaArray(a.shape[:-1], _real(dt)), MetaArray(a.shape, dt)


@_implements(np.linalg.eigvalsh)
def _la_eigvalsh(a, UPLO="L"):
    _sq(a, "eigvalsh")
    return MetaArray(a.shape[:-1], _real(_lin_dtype(a)))


@_implements(np.linalg.eig)
def _la_eig(a):
    # NumPy returns real eigenpairs when they all are real: that depends on the values.
    raise data_dependent("linalg_eig")


@_implements(np.linalg.eigvals)
def _la_eigvals(a):
    raise data_dependent("linalg_eigvals")


@_implements(np.linalg.pinv)
def _la_pinv(a, rcond=None, hermitian=False, **kw):
    return MetaArray(a.shape[:-2] + (a.shape[-1], a.shape[-2]), _lin_dtype(a))


@_implements(np.linalg.norm)
def _la_norm(x, ord=None, axis=None, keepdims=False):
    dt = _real(_lin_dtype(x))
    if axis is None and ord is not None:
        axis = tuple(range(x.ndim))
    return MetaArray(_reduced_shape(x.shape, axis, keepdims), dt)


@_implements(np.linalg.matrix_rank)
def _la_rank(A, *args, **kwargs):
    raise data_dependent("linalg_matrix_rank")


@_implements(np.linalg.lstsq)
def _la_lstsq(a, b, rcond=None):
    raise data_dependent("linalg_lstsq")


# --- creation functions NumPy dispatches on ``like=``
def _creation(shape_of):
    def impl(*args, like=None, dtype=None, **kwargs):
        shape, default = shape_of(*args, **kwargs)
        return MetaArray(shape, dtype if dtype is not None else default)
    return impl


def _as_shape(shape):
    return (int(shape),) if _is_int(shape) else tuple(int(s) for s in shape)


# ``np.zeros(shape, dtype)``: the dtype may come positionally
_FUNCTIONS[np.empty] = _creation(lambda shape, dtype=None, *a, **k: (
    _as_shape(shape), np.float64 if dtype is None else dtype))
_FUNCTIONS[np.zeros] = _FUNCTIONS[np.empty]
_FUNCTIONS[np.ones] = _FUNCTIONS[np.empty]


def _full_default(shape, fill_value, dtype=None, *a, **k):
    return _as_shape(shape), np.asarray(fill_value).dtype if dtype is None else dtype


_FUNCTIONS[np.full] = _creation(_full_default)


def empty(shape, dtype, strides=None):
    """A new meta array (strides in elements, PyTorch's convention, when given)."""
    dt = np.dtype(dtype)
    st = None if strides is None else tuple(int(s) * dt.itemsize for s in strides)
    return MetaArray(_as_shape(shape), dt, st)


# --- np.fft: the output length along the transformed axes
def _fft_axes(a, s, axes, default_all):
    if axes is None:
        axes = tuple(range(a.ndim)) if s is None else tuple(range(a.ndim - len(s), a.ndim))
    axes = tuple(x % a.ndim for x in axes)
    s = tuple(a.shape[x] for x in axes) if s is None else tuple(s)
    return axes, s


def _fft_result(a, axes, lengths, real_in, real_out, last_half):
    shape = list(a.shape)
    for ax, n in zip(axes, lengths, strict=True):
        shape[ax] = n
    if last_half is not None:
        shape[axes[-1]] = last_half
    dt = np.dtype(np.float64 if real_out else np.complex128)
    if a.dtype in (np.float32, np.complex64):
        dt = np.dtype(np.float32 if real_out else np.complex64)
    return MetaArray(shape, dt)


@_implements(np.fft.fft, np.fft.ifft)
def _fft(a, n=None, axis=-1, norm=None, out=None):
    return _fft_result(a, ((axis % a.ndim),), (a.shape[axis] if n is None else n,), False,
                       False, None)


@_implements(np.fft.rfft, np.fft.ihfft)
def _rfft(a, n=None, axis=-1, norm=None, out=None):
    n = a.shape[axis] if n is None else n
    return _fft_result(a, ((axis % a.ndim),), (n,), True, False, n // 2 + 1)


@_implements(np.fft.irfft, np.fft.hfft)
def _irfft(a, n=None, axis=-1, norm=None, out=None):
    n = 2 * (a.shape[axis] - 1) if n is None else n
    return _fft_result(a, ((axis % a.ndim),), (n,), False, True, None)


@_implements(np.fft.fftn, np.fft.ifftn, np.fft.fft2, np.fft.ifft2)
def _fftn(a, s=None, axes=None, norm=None, out=None):
    axes, s = _fft_axes(a, s, axes, True)
    return _fft_result(a, axes, s, False, False, None)


@_implements(np.fft.rfftn, np.fft.rfft2)
def _rfftn(a, s=None, axes=None, norm=None, out=None):
    axes, s = _fft_axes(a, s, axes, True)
    return _fft_result(a, axes, s, True, False, s[-1] // 2 + 1)


@_implements(np.fft.irfftn, np.fft.irfft2)
def _irfftn(a, s=None, axes=None, norm=None, out=None):
    if axes is None:
        axes = tuple(range(a.ndim)) if s is None else tuple(range(a.ndim - len(s), a.ndim))
    axes = tuple(x % a.ndim for x in axes)
    if s is None:
        s = tuple(a.shape[x] for x in axes[:-1]) + (2 * (a.shape[axes[-1]] - 1),)
    return _fft_result(a, axes, tuple(s), False, True, None)


@_implements(np.fft.fftshift, np.fft.ifftshift)
def _fftshift(x, axes=None):
    return MetaArray(x.shape, x.dtype)


# --- elementwise functions that are not ufuncs
@_implements(np.sinc)
def _sinc(x):
    return MetaArray(x.shape, _float_of(x.dtype))


@_implements(np.isposinf, np.isneginf, np.isreal, np.iscomplex)
def _is_pred(x, out=None):
    return MetaArray(_shape(x), np.bool_)


@_implements(np.isin)
def _isin(element, test_elements, assume_unique=False, invert=False, kind=None):
    return MetaArray(_shape(element), np.bool_)


def asarray(x, dtype=None):
    """``np.asarray`` that keeps a meta array on the meta device (op forwards use it to turn
    NumPy scalars back into 0-d arrays)."""
    if type(x) is MetaArray:
        return x if dtype is None else x.astype(dtype, copy=False)
    return np.asarray(x, dtype)
