"""Tensor creation: ``tensor``, ``as_tensor``, ``from_numpy``, ``zeros``/``ones``/``full``/
``empty`` (and ``_like``), ``arange``, ``linspace``, ``logspace``, ``eye``."""

from __future__ import annotations

import builtins
import math

import numpy as np

from .. import _dtype as D
from .. import _meta
from .._device import META, target_device
from .._tensor import Tensor, _make
from ._util import shape_arg

__all__ = ["tensor", "as_tensor", "asarray", "from_numpy", "zeros", "ones", "full", "empty",
           "zeros_like", "ones_like", "full_like", "empty_like", "arange", "range", "linspace",
           "logspace", "eye", "scalar_tensor", "empty_strided", "frombuffer"]


def _finish(arr, requires_grad=False, device=None):
    if target_device(device) is META and type(arr) is not _meta.MetaArray:
        arr = _meta.MetaArray(arr.shape, arr.dtype)  # data given for a meta tensor is dropped
    t = _make(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_np_dtype(data):
    """The dtype PyTorch infers for python data: bool, int64, default float or complex."""
    a = np.asarray(data)
    k = a.dtype.kind
    if k == "b":
        return np.bool_
    if k in "iu":
        return np.int64 if a.dtype.itemsize >= 4 or k == "i" or a.dtype != np.uint8 else np.uint8
    if k == "f":
        return D.get_default_dtype().np
    if k == "c":
        return D._default_complex().np
    if k in "OUS":
        raise TypeError(f"tensor(): could not infer a dtype from {type(data).__name__} data "
                        f"(element type {a.dtype})")
    return a.dtype


def _from_data(data, dtype):
    if isinstance(data, Tensor):
        arr = data._data
        return arr.astype(dtype.np) if dtype is not None else arr.copy()
    if isinstance(data, np.ndarray):
        if dtype is None:
            D.from_numpy_dtype(data.dtype)
            return data.copy()
        return data.astype(dtype.np)
    if isinstance(data, (list, tuple)):
        data = _unwrap_nested(data)
    if dtype is None:
        if isinstance(data, np.generic):
            return np.asarray(data).copy()
        arr = np.array(data)
        if arr.dtype == object:
            raise TypeError(f"tensor(): could not convert {type(data).__name__} data with "
                            "ragged or non-numeric elements")
        return arr.astype(_infer_np_dtype(arr), copy=False)
    try:
        return np.array(data, dtype=dtype.np)
    except OverflowError as e:
        raise RuntimeError(f"value cannot be converted to type {dtype.name} without overflow") \
            from e


def _unwrap_nested(data):
    if isinstance(data, (list, tuple)):
        if any(isinstance(x, Tensor) for x in data):
            return [x._data if isinstance(x, Tensor) else _unwrap_nested(x) for x in data]
        if data and isinstance(data[0], (list, tuple)):
            return [_unwrap_nested(x) for x in data]
    return data


def tensor(data, *, dtype=None, device=None, requires_grad=False, pin_memory=False):
    """A new tensor holding a copy of ``data`` (nested lists, scalars, arrays or tensors)."""
    dt = D.to_dtype(dtype) if dtype is not None else None
    if isinstance(data, Tensor):
        import warnings
        warnings.warn("To copy construct from a tensor, it is recommended to use "
                      "sourceTensor.detach().clone() or sourceTensor.detach().clone()."
                      "requires_grad_(True), rather than torch.tensor(sourceTensor).",
                      UserWarning, stacklevel=2)
    return _finish(_from_data(data, dt), requires_grad, device)


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares memory with ``data`` (tensors and arrays) when it can."""
    dt = D.to_dtype(dtype) if dtype is not None else None
    if isinstance(data, Tensor):
        if device is not None:
            data = data.to(device)
        return data if dt is None or dt is data.dtype else data.to(dt)
    if target_device(device) is META:
        return tensor(data, dtype=dt, device=META)
    if isinstance(data, np.ndarray):
        if dt is None:
            D.from_numpy_dtype(data.dtype)
            return _make(data)
        return _make(data.astype(dt.np, copy=False))
    return tensor(data, dtype=dt)


def asarray(obj, *, dtype=None, device=None, copy=None, requires_grad=False):
    if copy:
        t = tensor(obj, dtype=dtype) if not isinstance(obj, Tensor) else obj.clone()
    else:
        t = as_tensor(obj, dtype=dtype, device=device)
    if requires_grad:
        t.requires_grad_(True)
    return t


def from_numpy(ndarray):
    """A tensor sharing memory with the NumPy array ``ndarray``."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    D.from_numpy_dtype(ndarray.dtype)
    return _make(ndarray)


def frombuffer(buffer, *, dtype, count=-1, offset=0, requires_grad=False):
    dt = D.to_dtype(dtype)
    return _finish(np.frombuffer(buffer, dtype=dt.np, count=count, offset=offset),
                   requires_grad)


def _dtype_or_default(dtype, fallback=None):
    if dtype is not None:
        return D.to_dtype(dtype).np
    return (fallback or D.get_default_dtype()).np


def _size(size, kwargs, op):
    """The shape from varargs, one sequence, or the keyword ``size=`` (``zeros(size=(2, 3))``)."""
    if "size" in kwargs:
        if size:
            raise TypeError(f"{op}() got multiple values for argument 'size'")
        size = (kwargs.pop("size"),)
    if kwargs:
        raise TypeError(f"{op}() got unexpected keyword arguments {list(kwargs)}")
    return _nonnegative(shape_arg(size))


def _nonnegative(shape):
    """A size for a new tensor: PyTorch's RuntimeError for a negative dim (NumPy's would be
    a ValueError)."""
    for s in shape:
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: "
                               f"{list(shape)}")
    return shape


def _alloc(np_fn, shape, dtype, device, *fill):
    """A new backend array on the target device: a meta array allocates nothing."""
    if target_device(device) is META:
        return _meta.empty(shape, dtype)
    return np_fn(shape, *fill, dtype=dtype)


def _into(t, out):
    """Honour ``out=``: the result is written into ``out`` (resized), which is returned."""
    if out is None:
        return t
    from .elementwise import _out
    return _out(t, out)


def zeros(*size, out=None, dtype=None, layout=None, device=None, requires_grad=False,
          pin_memory=False, memory_format=None, **kwargs):
    """A tensor filled with 0."""
    if out is not None and dtype is None:
        dtype = out.dtype
    arr = _alloc(np.zeros, _size(size, kwargs, "zeros"), _dtype_or_default(dtype), device)
    return _into(_finish(arr, requires_grad, device), out)


def ones(*size, out=None, dtype=None, layout=None, device=None, requires_grad=False,
         pin_memory=False, memory_format=None, **kwargs):
    """A tensor filled with 1."""
    if out is not None and dtype is None:
        dtype = out.dtype
    arr = _alloc(np.ones, _size(size, kwargs, "ones"), _dtype_or_default(dtype), device)
    return _into(_finish(arr, requires_grad, device), out)


def empty(*size, out=None, dtype=None, layout=None, device=None, requires_grad=False,
          pin_memory=False, memory_format=None, **kwargs):
    """An uninitialised tensor."""
    if out is not None and dtype is None:
        dtype = out.dtype
    arr = _alloc(np.empty, _size(size, kwargs, "empty"), _dtype_or_default(dtype), device)
    return _into(_finish(arr, requires_grad, device), out)


def empty_strided(size, stride, *, dtype=None, layout=None, device=None, requires_grad=False,
                  pin_memory=False):
    if target_device(device) is META:  # a meta tensor keeps the strides it was given
        arr = _meta.empty(tuple(size), _dtype_or_default(dtype), tuple(stride))
        return _finish(arr, requires_grad, device)
    return empty(tuple(size), dtype=dtype, requires_grad=requires_grad, device=device)


def full(size, fill_value, *, out=None, dtype=None, layout=None, device=None,
         requires_grad=False, pin_memory=False):
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if dtype is None:
        dt = D.scalar_dtype(fill_value)
    else:
        dt = D.to_dtype(dtype)
    shape = _nonnegative(shape_arg((size,) if isinstance(size, int) else (tuple(size),)))
    return _finish(_alloc(np.full, shape, dt.np, device, fill_value), requires_grad, device)


def scalar_tensor(s, *, dtype=None, device=None, requires_grad=False):
    return _finish(np.asarray(s, dtype=_dtype_or_default(dtype)), requires_grad, device)


def _like(fn, input, dtype, requires_grad, extra=(), device=None):
    dt = dtype if dtype is not None else input.dtype
    if type(input) is not Tensor and hasattr(input, "_make_like"):
        return input._make_like(fn, dt, requires_grad, extra)  # a DTensor keeps its layout
    return fn(input._data.shape, *extra, dtype=dt, requires_grad=requires_grad,
              device=input.device if device is None else device)


def zeros_like(input, *, dtype=None, layout=None, device=None, requires_grad=False,
               memory_format=None):
    return _like(zeros, input, dtype, requires_grad, device=device)


def ones_like(input, *, dtype=None, layout=None, device=None, requires_grad=False,
              memory_format=None):
    return _like(ones, input, dtype, requires_grad, device=device)


def empty_like(input, *, dtype=None, layout=None, device=None, requires_grad=False,
               memory_format=None):
    return _like(empty, input, dtype, requires_grad, device=device)


def full_like(input, fill_value, *, dtype=None, layout=None, device=None, requires_grad=False,
              memory_format=None):
    return _like(full, input, dtype, requires_grad, (fill_value,), device)


def _num(x):
    return x.item() if isinstance(x, Tensor) else x


def arange(start=0, end=None, step=1, *, out=None, dtype=None, layout=None, device=None,
           requires_grad=False):
    """Values ``start, start+step, ...`` below ``end``; int64 when all arguments are ints."""
    if end is None:
        start, end = 0, start
    start, end, step = _num(start), _num(end), _num(step)
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) * step < 0 and end != start:
        raise RuntimeError("upper bound and larger bound inconsistent with step sign")
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) or
                     isinstance(v, bool) for v in (start, end, step))
        dt = np.int64 if is_int else D.get_default_dtype().np
    else:
        dt = D.to_dtype(dtype).np
    n = builtins.max(math.ceil((end - start) / step), 0)
    if target_device(device) is META:
        return _finish(_meta.empty((n,), dt), requires_grad, device)
    arr = (start + np.arange(n, dtype=np.float64 if np.dtype(dt).kind == "f" else None) * step)
    return _finish(arr.astype(dt), requires_grad, device)


def range(start=0, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    """Deprecated in PyTorch: like ``arange`` but includes ``end``."""
    if end is None:
        start, end = 0, start
    dt = dtype or D.get_default_dtype()
    n = int(math.floor((end - start) / step)) + 1
    return _finish((start + np.arange(n) * step).astype(D.to_dtype(dt).np), requires_grad,
                   device)


def linspace(start, end, steps, *, out=None, dtype=None, layout=None, device=None,
             requires_grad=False):
    start, end = _num(start), _num(end)
    if steps < 0:
        raise RuntimeError("linspace(): number of steps must be non-negative")
    dt = _dtype_or_default(dtype, D._default_complex() if isinstance(start, complex) or
                           isinstance(end, complex) else None)
    if np.dtype(dt).kind in "iu":
        arr = np.linspace(start, end, steps, dtype=np.float64)
        arr = np.trunc(arr).astype(dt)
    else:
        arr = _symmetric_linspace(start, end, steps).astype(dt)
    return _finish(arr, requires_grad, device)


def _symmetric_linspace(start, end, steps):
    # PyTorch fills the first half from ``start`` and the second half from ``end``
    if steps == 1:
        return np.asarray([start], dtype=np.float64 if not isinstance(start, complex) else
                          np.complex128)
    step = (end - start) / (steps - 1)
    i = np.arange(steps)
    half = steps // 2
    return np.where(i < half, start + step * i, end - step * (steps - 1 - i))


def logspace(start, end, steps, base=10.0, *, out=None, dtype=None, layout=None, device=None,
             requires_grad=False):
    dt = _dtype_or_default(dtype)
    arr = np.power(base, _symmetric_linspace(_num(start), _num(end), steps))
    return _finish(arr.astype(dt), requires_grad, device)


def eye(n, m=None, *, out=None, dtype=None, layout=None, device=None, requires_grad=False):
    if m is None:
        m = n
    if n < 0 or m < 0:
        raise RuntimeError(f"n must be greater or equal to 0, got {n}")
    if target_device(device) is META:
        return _finish(_meta.empty((n, m), _dtype_or_default(dtype)), requires_grad, device)
    return _finish(np.eye(n, m, dtype=_dtype_or_default(dtype)), requires_grad, device)
