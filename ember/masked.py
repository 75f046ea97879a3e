"""``ember.masked``: reductions that ignore masked-out elements (PyTorch's ``torch.masked``
functions on strided tensors; ``MaskedTensor`` itself is not provided).

Masked-out elements are replaced by the reduction's identity (0 for sums, 1 for products,
-inf/+inf or the integer extremes for amax/amin) before the ordinary op runs, so a slice
with no element left gives that identity (``mean`` gives nan there: 0 / 0). The remaining
``torch.masked`` functions (softmax family, norms, var/std, logsumexp, median, normalize,
logaddexp) are not yet here."""

from __future__ import annotations

import numpy as np

from . import _dtype as D
from .ops import elementwise as _E, reduction as _R
from .ops.creation import ones, tensor as _tensor

__all__ = ["sum", "prod", "amax", "amin", "argmax", "argmin", "cumsum", "cumprod", "mean"]

_SMALL_INTS = (np.uint8, np.bool_, np.int8, np.int16, np.int32)


def _dims(dim, ndim):
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (int, np.integer)):
        dim = (dim,)
    return tuple(int(d) % ndim if ndim else 0 for d in dim)


def _mask(input, mask):
    if mask.ndim > input.ndim:
        raise IndexError("_input_mask expected broadcastable mask (got mask dimensionality "
                         "higher than of the input)")
    return mask.to(D.bool_).expand(input.shape) if tuple(mask.shape) != tuple(input.shape) \
        else mask.to(D.bool_)


def _identity(op, input):
    dt = input._data.dtype
    if op in ("sum", "cumsum"):
        return 0
    if op in ("prod", "cumprod"):
        return 1
    if dt.kind == "f":
        return -np.inf if op in ("amax", "argmax") else np.inf
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return int(info.min) if op in ("amax", "argmax") else int(info.max)
    raise NotImplementedError(f"identity of {op} on {input.dtype} input")


def _combine(op, input, mask):
    if mask is None:
        return input
    fill = _tensor(_identity(op, input), dtype=input.dtype)
    return _E.where(_mask(input, mask), input, fill)


def _sum_dtype(input, dtype):
    if dtype is not None:
        return dtype
    return D.int64 if input._data.dtype.type in _SMALL_INTS else input.dtype


def sum(input, dim=None, *, keepdim=False, dtype=None, mask=None):
    """Sum of the masked-in elements over ``dim`` (all dims by default)."""
    dims = _dims(dim, input.ndim)
    x = _combine("sum", input, mask)
    return _R.sum(x, dims, bool(keepdim), dtype=_sum_dtype(input, dtype)) if dims else \
        x.to(_sum_dtype(input, dtype))


def prod(input, dim=None, *, keepdim=False, dtype=None, mask=None):
    """Product of the masked-in elements over ``dim``."""
    r = _combine("prod", input, mask).to(_sum_dtype(input, dtype))
    for d in reversed(_dims(dim, input.ndim)):
        r = r.prod(dim=d, keepdim=bool(keepdim))
    return r


def amax(input, dim=None, *, keepdim=False, dtype=None, mask=None):
    """Largest masked-in element over ``dim`` (the identity where none is left)."""
    r = _R.amax(_combine("amax", input, mask), _dims(dim, input.ndim), bool(keepdim))
    return r.to(dtype or input.dtype)


def amin(input, dim=None, *, keepdim=False, dtype=None, mask=None):
    """Smallest masked-in element over ``dim``."""
    r = _R.amin(_combine("amin", input, mask), _dims(dim, input.ndim), bool(keepdim))
    return r.to(dtype or input.dtype)


def argmax(input, dim=None, *, keepdim=False, dtype=None, mask=None):
    """Index of the largest masked-in element (in ``dtype``, the input's by default)."""
    return _R.argmax(_combine("argmax", input, mask), dim, bool(keepdim)).to(
        dtype or input.dtype)


def argmin(input, dim=None, *, keepdim=False, dtype=None, mask=None):
    """Index of the smallest masked-in element (in ``dtype``, the input's by default)."""
    return _R.argmin(_combine("argmin", input, mask), dim, bool(keepdim)).to(
        dtype or input.dtype)


def cumsum(input, dim, *, dtype=None, mask=None):
    """Running sum along ``dim`` counting masked-out elements as 0."""
    dt = dtype or input.dtype
    return _R.cumsum(_combine("sum", input, mask), _dims(dim, input.ndim)[0], dtype=dt).to(dt)


def cumprod(input, dim, *, dtype=None, mask=None):
    """Running product along ``dim`` counting masked-out elements as 1."""
    dt = dtype or input.dtype
    return _R.cumprod(_combine("prod", input, mask), _dims(dim, input.ndim)[0],
                      dtype=dt).to(dt)


def mean(input, dim=None, *, keepdim=False, dtype=None, mask=None):
    """Mean of the masked-in elements (nan where none is left)."""
    dt = dtype or input.dtype
    if not (dt.is_floating_point or dt.is_complex):
        src = "Optional" if dtype is not None else "Input"
        raise ValueError(f"mean(): Could not infer output dtype. {src} dtype must be either a "
                         f"floating point or complex dtype. Got: {dt}")
    count = sum(ones(input.shape, dtype=D.int64), dim, keepdim=keepdim, mask=mask)
    total = sum(input, dim, keepdim=keepdim, dtype=dt, mask=mask)
    return total / count
