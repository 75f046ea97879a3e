"""``ember.masked``: reductions that ignore masked-out elements (PyTorch's ``torch.masked``
functions on strided tensors; ``MaskedTensor`` itself is not provided).

Masked-out elements are replaced by the reduction's identity (0 for sums, 1 for products,
-inf/+inf or the integer extremes for amax/amin) before the ordinary op runs, so a slice
with no element left gives that identity (``mean`` gives nan there: 0 / 0). Softmax-type
functions fill with -inf (+inf for softmin), so a fully masked slice gives nan, as in
PyTorch."""

from __future__ import annotations

import numpy as np

from . import _dtype as D
from .ops import elementwise as _E, reduction as _R
from .ops._util import norm_dims
from .ops.creation import ones, tensor as _tensor

__all__ = ["sum", "prod", "amax", "amin", "argmax", "argmin", "cumsum", "cumprod", "mean",
           "logsumexp", "logaddexp", "norm", "var", "std", "softmax", "log_softmax", "softmin",
           "normalize", "median"]

_SMALL_INTS = (np.uint8, np.bool_, np.int8, np.int16, np.int32)


def _dims(dim, ndim):
    """``dim`` normalised (an IndexError names a dim out of range); None means every dim."""
    return tuple(range(ndim)) if dim is None else norm_dims(dim, ndim, "masked")


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
    if op == "median":
        return np.nan
    if dt.kind == "f":
        return -np.inf if op in ("amax", "argmax", "logsumexp", "logaddexp") else np.inf
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return int(info.min) if op in ("amax", "argmax") else int(info.max)
    raise NotImplementedError(f"identity of {op} on {input.dtype} input")


def _combine(op, input, mask, fill=None):
    if mask is None:
        return input
    fill = _tensor(_identity(op, input) if fill is None else fill, dtype=input.dtype)
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


def logsumexp(input, dim=None, *, keepdim=False, dtype=None, mask=None):
    """``log(sum(exp(x)))`` over the masked-in elements (-inf where none is left)."""
    r = _R.logsumexp(_combine("logsumexp", input, mask), _dims(dim, input.ndim), bool(keepdim))
    return r.to(dtype or input.dtype)


def logaddexp(input, other, *, dtype=None, input_mask=None, other_mask=None):
    """``logaddexp`` of ``input`` and ``other`` with each one's masked-out elements as -inf."""
    r = _E.logaddexp(_combine("logaddexp", input, input_mask),
                     _combine("logaddexp", other, other_mask))
    return r.to(dtype or input.dtype)


def norm(input, ord=2.0, dim=None, *, keepdim=False, dtype=None, mask=None):
    """The ``ord``-norm of the masked-in elements (masked-out ones count as 0, or as +inf for
    ``ord=-inf``)."""
    from .linalg import vector_norm
    fill = np.inf if ord == float("-inf") else 0
    x = _combine("norm", input, mask, fill)
    return vector_norm(x, ord, _dims(dim, input.ndim), bool(keepdim), dtype=dtype or input.dtype)


def _std_var(input, dim, unbiased, correction, keepdim, dtype, mask, take_sqrt):
    if unbiased is not None and correction is not None:
        raise ValueError("Only one of unbiased and correction may be given")
    corr = 1.0
    if unbiased is not None:
        corr = 1.0 if unbiased else 0.0
    if correction is not None:
        corr = float(correction)
    if dtype is None:
        dtype = input.dtype if (input.dtype.is_floating_point or input.dtype.is_complex) \
            else D.float32
    if mask is None:
        count = sum(ones(input.shape, dtype=D.int64), dim, keepdim=True)
    else:
        count = _R.sum(_mask(input, mask), _dims(dim, input.ndim), True)
    mean_ = sum(input, dim, keepdim=True, dtype=dtype, mask=mask) / count
    x = input - mean_
    total = sum(x * x.conj(), dim, keepdim=keepdim, dtype=dtype, mask=mask)
    if not keepdim:
        count = count.reshape(total.shape)
    if corr != 0:
        count = (count.to(total.real.dtype if total.is_complex() else total.dtype) - corr)
        count = _E.maximum(count, count.new_zeros(()))
    out = (total / count).to(dtype)
    return out.sqrt() if take_sqrt else out


def var(input, dim=None, unbiased=None, *, correction=None, keepdim=False, dtype=None,
        mask=None):
    """Variance of the masked-in elements (``correction`` as in ``ember.var``)."""
    return _std_var(input, dim, unbiased, correction, keepdim, dtype, mask, False)


def std(input, dim=None, unbiased=None, *, correction=None, keepdim=False, dtype=None,
        mask=None):
    """Standard deviation of the masked-in elements."""
    return _std_var(input, dim, unbiased, correction, keepdim, dtype, mask, True)


def softmax(input, dim, *, dtype=None, mask=None):
    """Softmax over ``dim`` with masked-out elements as -inf (weight 0)."""
    from .nn.functional import softmax as _softmax
    return _softmax(_combine("amax", input, mask), _dims(dim, input.ndim)[0],
                    dtype=dtype or input.dtype)


def log_softmax(input, dim, *, dtype=None, mask=None):
    """Log-softmax over ``dim`` with masked-out elements as -inf."""
    from .nn.functional import log_softmax as _log_softmax
    return _log_softmax(_combine("amax", input, mask), _dims(dim, input.ndim)[0],
                        dtype=dtype or input.dtype)


def softmin(input, dim, *, dtype=None, mask=None):
    """Softmin over ``dim`` with masked-out elements as +inf (weight 0)."""
    from .nn.functional import softmin as _softmin
    return _softmin(_combine("amin", input, mask), _dims(dim, input.ndim)[0],
                    dtype=dtype or input.dtype)


def normalize(input, ord, dim, *, eps=1e-12, dtype=None, mask=None):
    """``input`` divided by its masked ``ord``-norm over ``dim`` (at least ``eps``); masked-out
    elements become 0."""
    dt = dtype or input.dtype
    x = _combine("sum", input, mask)
    nrm = norm(input, ord, dim, keepdim=True, dtype=dt, mask=mask)
    return x / _E.maximum(nrm, nrm.new_full((), eps))


def median(input, dim=-1, *, keepdim=False, dtype=None, mask=None):
    """Median of the masked-in elements along ``dim`` (nan where none is left, for floats)."""
    dt = dtype or input.dtype
    floating = input.dtype.is_floating_point
    x = input if floating else input.to(D.float32)
    from .ops.sorting import nanmedian
    out = nanmedian(_combine("median", x, mask), _dims(dim, input.ndim)[0],
                    bool(keepdim)).values
    if floating:
        return out
    if bool(out.isnan().any()):
        raise ValueError("masked median expects no fully masked out rows if dtype is not "
                         "floating point")
    return out.to(dt)
