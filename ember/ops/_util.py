"""Helpers shared by the op families: argument normalisation, promotion on arrays,
and ``sum_to_shape`` (the one place that undoes broadcasting in backward)."""

from __future__ import annotations

import builtins

import numpy as np

from .. import _dtype as D
from .._meta import MetaArray
from .._tensor import Tensor

_ndarray = np.ndarray
_ARRAYS = (np.ndarray, MetaArray)  # backend array types: NumPy and the meta device's
_BY_NP = D._BY_NP


def norm_dim(dim, ndim, op="op"):
    """Wrap a possibly negative dim into ``[0, ndim)``; IndexError like PyTorch's otherwise."""
    n = builtins.max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n if ndim else 0


def norm_dims(dim, ndim, op="op"):
    """``dim`` (None, int, or sequence) as a sorted tuple of non-negative dims, or None."""
    if dim is None:
        return None
    if isinstance(dim, (int, np.integer)):
        return (norm_dim(int(dim), ndim, op),)
    dims = tuple(norm_dim(int(d), ndim, op) for d in dim)
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"{op}: dim {dims} appears multiple times in the list of dims")
    return dims


def shape_arg(size):
    """Size given as varargs or one tuple/list/Size -> tuple of ints."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    for s in size:  # the usual case: Python ints already
        if type(s) is not int:
            break
    else:
        return size if type(size) is tuple else tuple(size)
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = s.item()
        if not isinstance(s, (int, np.integer)):
            raise TypeError(f"size must be a tuple of ints, but got element of type "
                            f"{type(s).__name__}")
        out.append(int(s))
    return tuple(out)


def result_dtype(*xs):
    """PyTorch's result type over arrays (tensors) and python scalars (weak)."""
    dim_r = zero_r = wrap_r = None
    for x in xs:
        if type(x) in _ARRAYS:
            d = _BY_NP[x.dtype]
            if x.ndim:
                dim_r = d if dim_r is None else D.promote_types(dim_r, d)
            else:
                zero_r = d if zero_r is None else D.promote_types(zero_r, d)
        elif x is not None:
            d = D.scalar_dtype(x)
            wrap_r = d if wrap_r is None else D.promote_types(wrap_r, d)
    return D._category_combine(dim_r, D._category_combine(zero_r, wrap_r))


def promote(a, b):
    """Cast the arrays among ``a``, ``b`` to their PyTorch result dtype (scalars stay weak)."""
    if type(a) in _ARRAYS:
        if type(b) in _ARRAYS:
            if a.dtype == b.dtype:
                return a, b
        elif (type(b) is float or type(b) is builtins.int) and a.dtype.kind == "f":
            return a, b  # a weak python scalar never changes a float tensor's dtype
    rt = result_dtype(a, b).np
    if type(a) in _ARRAYS and a.dtype != rt:
        a = a.astype(rt)
    elif type(a) not in _ARRAYS and rt.kind in "iuV":  # V: bfloat16
        a = _weak_scalar(a, rt)
    if type(b) in _ARRAYS and b.dtype != rt:
        b = b.astype(rt)
    elif type(b) not in _ARRAYS and rt.kind in "iuV":
        b = _weak_scalar(b, rt)
    return a, b


def _weak_scalar(x, rt):
    """A python scalar as a 0-d array of ``rt``: NumPy would turn bfloat16 op float into
    float32, and rejects python ints out of an integer dtype's range (PyTorch wraps them)."""
    if rt.kind in "iu" and rt.itemsize < 8 and type(x) is builtins.int:
        return np.array(x).astype(rt)
    if rt == D._BF16:
        return np.asarray(x, rt)
    return x


def to_float(x):
    """Integer/bool arrays become the default float dtype (what PyTorch's float ops return)."""
    if x.dtype.kind in "biu":
        return x.astype(D._Defaults.dtype.np)
    return x


def sum_to_shape(g, shape):
    """Sum the Tensor ``g`` down to ``shape`` (undoing broadcasting), as an ember op."""
    gshape = g._data.shape
    if gshape == tuple(shape):
        return g
    lead = len(gshape) - len(shape)
    dims = list(range(lead))
    for i, s in enumerate(shape):
        if s == 1 and gshape[lead + i] != 1:
            dims.append(lead + i)
    if dims:
        g = g.sum(dim=tuple(dims), keepdim=True)
    if lead:
        g = g.reshape(shape)
    elif g._data.shape != tuple(shape):
        g = g.reshape(shape)
    return g


def sum_array_to_shape(g, shape):
    """``sum_to_shape`` on a backend array. A gradient that cannot reduce to ``shape`` comes
    back with another shape, for the caller to report."""
    shape = tuple(shape)
    lead = g.ndim - len(shape)
    if lead < 0:
        return g
    gshape = g.shape
    dims = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape)
                                      if s == 1 and gshape[lead + i] != 1)
    if dims:
        if g.dtype.itemsize == 2 and g.dtype.kind in "fV":  # half types sum in float32
            g = g.sum(axis=dims, keepdims=True, dtype=np.float32).astype(g.dtype)
        else:
            g = g.sum(axis=dims, keepdims=True)
    if lead and g.shape[lead:] == shape:
        g = g.reshape(shape)
    return g


def conj_if_complex(t):
    return t.conj() if t._data.dtype.kind == "c" else t


def dtype_np(dtype):
    return None if dtype is None else D.to_dtype(dtype).np


def as_array(x, like=None):
    """Python scalars and Tensors to arrays (for ops that take either)."""
    if isinstance(x, Tensor):
        return x._data
    return np.asarray(x)
