"""``ember.fft``: discrete Fourier transforms (PyTorch's ``torch.fft``).

Three primitive ops carry gradients: ``FFT`` (complex to complex, forward or inverse),
``RFFT`` (real to one-sided complex) and ``IRFFT`` (one-sided complex to real); the 2-d and
n-d transforms apply them one dim at a time (the transforms are separable, and so are the
``norm`` scale factors). The gradient of a transform is the adjoint transform with the dual
normalisation ("backward" <-> "forward", "ortho" stays), resized back to the input's length.
"""

from __future__ import annotations

import numpy as np

from . import _dtype as D
from ._tensor import Tensor, _make
from .autograd.graph import Node
from .ops._util import norm_dim

__all__ = ["fft", "ifft", "rfft", "irfft", "fft2", "ifft2", "rfft2", "irfft2", "fftn", "ifftn",
           "rfftn", "irfftn", "hfft", "ihfft", "hfft2", "ihfft2", "hfftn", "ihfftn", "fftfreq",
           "rfftfreq", "fftshift", "ifftshift"]

_DUAL = {"backward": "forward", "forward": "backward", "ortho": "ortho"}


def _norm(norm):
    if norm is None:
        return "backward"
    if norm not in _DUAL:
        raise ValueError(f"Invalid normalization mode: {norm}")
    return norm


def _complex_np(dt):
    """The complex dtype a transform of an array of dtype ``dt`` produces."""
    if dt in (np.float64, np.complex128):
        return np.complex128
    if dt.kind in "fc":
        return np.complex64
    return D._default_complex().np


def _real_np(dt):
    return np.float64 if dt in (np.float64, np.complex128) else (
        np.float32 if dt.kind in "fc" else D.get_default_dtype().np)


def _resize(g, dim, length):
    """``g`` trimmed or zero-padded along ``dim`` to ``length`` (undoing a transform's ``n``)."""
    cur = g.shape[dim]
    if cur == length:
        return g
    if cur > length:
        return g.narrow(dim, 0, length)
    from .ops.shape import cat
    shape = list(g.shape)
    shape[dim] = length - cur
    return cat([g, _make(np.zeros(shape, dtype=g._data.dtype))], dim)


class FFT(Node):
    """One complex-to-complex transform along ``dim`` (``inverse`` selects ifft)."""

    @staticmethod
    def forward(ctx, a, n, dim, norm, inverse):
        ctx.args = (a.shape[dim], a.dtype.kind != "c", dim, norm, inverse)
        fn = np.fft.ifft if inverse else np.fft.fft
        return fn(a, n=n, axis=dim, norm=norm).astype(_complex_np(a.dtype), copy=False)

    @staticmethod
    def backward(ctx, g):
        length, real_in, dim, norm, inverse = ctx.args
        gi = _resize(FFT.apply(g, None, dim, _DUAL[norm], not inverse), dim, length)
        return (gi.real if real_in else gi), None, None, None, None


class RFFT(Node):
    """Real-to-complex transform along ``dim``, keeping the ``n // 2 + 1`` non-negative
    frequencies."""

    @staticmethod
    def forward(ctx, a, n, dim, norm):
        if a.dtype.kind == "c":
            raise RuntimeError("rfft expects a real input tensor, but got "
                               f"{D._BY_NP[a.dtype]}")
        n = a.shape[dim] if n is None else n
        ctx.args = (a.shape[dim], n, dim, norm)
        return np.fft.rfft(a, n=n, axis=dim, norm=norm).astype(_complex_np(a.dtype),
                                                                copy=False)

    @staticmethod
    def backward(ctx, g):
        length, n, dim, norm = ctx.args
        # the adjoint of "keep the first half": zero-pad to the full spectrum
        full = _resize(g, dim, n)
        gi = FFT.apply(full, None, dim, _DUAL[norm], True).real
        return _resize(gi, dim, length), None, None, None


class IRFFT(Node):
    """One-sided complex-to-real inverse transform along ``dim`` with ``n`` outputs."""

    @staticmethod
    def forward(ctx, a, n, dim, norm):
        m = a.shape[dim]
        n = 2 * (m - 1) if n is None else n
        if n < 1:
            raise RuntimeError(f"Invalid number of data points ({n}) specified")
        ctx.args = (m, n, dim, norm, a.dtype.kind != "c")
        return np.fft.irfft(a, n=n, axis=dim, norm=norm).astype(_real_np(a.dtype), copy=False)

    @staticmethod
    def backward(ctx, g):
        m, n, dim, norm, real_in = ctx.args
        gi = RFFT.apply(g, None, dim, _DUAL[norm])
        # the one-sided input stands for both halves of a Hermitian spectrum: the entries
        # whose mirror image lies outside it count twice
        double = n - gi.shape[dim]
        if double > 0:
            from .ops.shape import cat
            gi = cat([gi.narrow(dim, 0, 1), gi.narrow(dim, 1, double) * 2,
                      gi.narrow(dim, 1 + double, gi.shape[dim] - 1 - double)], dim)
        gi = _resize(gi, dim, m)
        return (gi.real if real_in else gi), None, None, None


def _prep(input, dim):
    if not isinstance(input, Tensor):
        raise TypeError(f"fft: expected a Tensor, got {type(input).__name__}")
    d = norm_dim(dim, input.ndim)
    if input._data.dtype.kind in "biu":
        input = input.to(D.get_default_dtype())
    return input, d


def fft(input, n=None, dim=-1, norm=None, *, out=None):
    """The 1-d discrete Fourier transform along ``dim`` (``n`` pads or trims)."""
    x, d = _prep(input, dim)
    return FFT.apply(x, n, d, _norm(norm), False)


def ifft(input, n=None, dim=-1, norm=None, *, out=None):
    """The 1-d inverse discrete Fourier transform."""
    x, d = _prep(input, dim)
    return FFT.apply(x, n, d, _norm(norm), True)


def rfft(input, n=None, dim=-1, norm=None, *, out=None):
    """The 1-d transform of a real signal: the ``n // 2 + 1`` non-negative frequencies."""
    x, d = _prep(input, dim)
    return RFFT.apply(x, n, d, _norm(norm))


def irfft(input, n=None, dim=-1, norm=None, *, out=None):
    """The inverse of ``rfft``: a real signal of length ``n`` (default ``2 * (m - 1)``)."""
    x, d = _prep(input, dim)
    return IRFFT.apply(x, n, d, _norm(norm))


def _dims_sizes(input, s, dim, default_all=True):
    nd = input.ndim
    if dim is None:
        if s is None:
            dims = list(range(nd)) if default_all else [nd - 2, nd - 1]
        else:
            dims = list(range(nd - len(s), nd))
    else:
        dims = [dim] if isinstance(dim, int) else list(dim)
        dims = [norm_dim(d, nd) for d in dims]
    if len(set(dims)) != len(dims):
        raise RuntimeError("FFT dims must be unique")
    if s is not None:
        s = list(s)
        if len(s) != len(dims):
            raise RuntimeError(f"When given, dim and shape arguments must have the same length "
                               f"(got {len(s)} sizes for {len(dims)} dims)")
        sizes = [None if v == -1 else v for v in s]
    else:
        sizes = [None] * len(dims)
    return dims, sizes


def fftn(input, s=None, dim=None, norm=None, *, out=None):
    """The n-d transform over ``dim`` (all dims, or the last ``len(s)``)."""
    x, _ = _prep(input, -1) if input.ndim else (input, 0)
    dims, sizes = _dims_sizes(x, s, dim)
    for d, n in zip(dims, sizes):
        x = FFT.apply(x, n, d, _norm(norm), False)
    return x if dims else x.to(_complex_dtype(x))


def ifftn(input, s=None, dim=None, norm=None, *, out=None):
    """The n-d inverse transform."""
    x, _ = _prep(input, -1) if input.ndim else (input, 0)
    dims, sizes = _dims_sizes(x, s, dim)
    for d, n in zip(dims, sizes):
        x = FFT.apply(x, n, d, _norm(norm), True)
    return x if dims else x.to(_complex_dtype(x))


def _complex_dtype(x):
    return D._BY_NP[np.dtype(_complex_np(x._data.dtype))]


def rfftn(input, s=None, dim=None, norm=None, *, out=None):
    """The n-d transform of a real signal (one-sided in the last of ``dim``)."""
    x, _ = _prep(input, -1)
    dims, sizes = _dims_sizes(x, s, dim)
    if not dims:
        raise RuntimeError("rfftn must transform at least one axis")
    x = RFFT.apply(x, sizes[-1], dims[-1], _norm(norm))
    for d, n in zip(dims[:-1], sizes[:-1]):
        x = FFT.apply(x, n, d, _norm(norm), False)
    return x


def irfftn(input, s=None, dim=None, norm=None, *, out=None):
    """The inverse of ``rfftn``; the last size defaults to ``2 * (m - 1)``."""
    x, _ = _prep(input, -1)
    dims, sizes = _dims_sizes(x, s, dim)
    if not dims:
        raise RuntimeError("irfftn must transform at least one axis")
    for d, n in zip(dims[:-1], sizes[:-1]):
        x = FFT.apply(x, n, d, _norm(norm), True)
    return IRFFT.apply(x, sizes[-1], dims[-1], _norm(norm))


def fft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    """The 2-d transform over ``dim``."""
    return fftn(input, s, dim, norm)


def ifft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    """The 2-d inverse transform over ``dim``."""
    return ifftn(input, s, dim, norm)


def rfft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    """The 2-d transform of a real signal over ``dim``."""
    return rfftn(input, s, dim, norm)


def irfft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    """The inverse of ``rfft2``."""
    return irfftn(input, s, dim, norm)


# Hermitian transforms: a signal with a Hermitian-symmetric spectrum is the conjugate view of
# the real-signal transforms with the dual normalisation.
def hfft(input, n=None, dim=-1, norm=None, *, out=None):
    """The transform of a one-sided Hermitian signal: a real spectrum of length ``n``."""
    return irfft(input.conj(), n, dim, _DUAL[_norm(norm)])


def ihfft(input, n=None, dim=-1, norm=None, *, out=None):
    """The inverse of ``hfft``: the one-sided half of a real signal's inverse transform."""
    return rfft(input, n, dim, _DUAL[_norm(norm)]).conj()


def hfftn(input, s=None, dim=None, norm=None, *, out=None):
    """The n-d ``hfft`` (one-sided in the last of ``dim``)."""
    return irfftn(input.conj(), s, dim, _DUAL[_norm(norm)])


def ihfftn(input, s=None, dim=None, norm=None, *, out=None):
    """The n-d ``ihfft``."""
    return rfftn(input, s, dim, _DUAL[_norm(norm)]).conj()


def hfft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    """The 2-d ``hfft`` over ``dim``."""
    return hfftn(input, s, dim, norm)


def ihfft2(input, s=None, dim=(-2, -1), norm=None, *, out=None):
    """The 2-d ``ihfft`` over ``dim``."""
    return ihfftn(input, s, dim, norm)


def _freq(values, dtype, requires_grad):
    dt = D.to_dtype(dtype) if dtype is not None else D.get_default_dtype()
    t = _make(values.astype(dt.np))
    if requires_grad:
        t.requires_grad_(True)
    return t


def fftfreq(n, d=1.0, *, dtype=None, layout=None, device=None, requires_grad=False, out=None):
    """The sample frequencies of an ``n``-point transform with sample spacing ``d``."""
    return _freq(np.fft.fftfreq(n, d), dtype, requires_grad)


def rfftfreq(n, d=1.0, *, dtype=None, layout=None, device=None, requires_grad=False, out=None):
    """The non-negative sample frequencies of an ``n``-point ``rfft``."""
    return _freq(np.fft.rfftfreq(n, d), dtype, requires_grad)


def _shift(input, dim, sign):
    if dim is None:
        dim = tuple(range(input.ndim))
    elif isinstance(dim, int):
        dim = (dim,)
    dims = tuple(norm_dim(d, input.ndim) for d in dim)
    shifts = tuple((input.shape[d] // 2) if sign > 0 else -(input.shape[d] // 2) for d in dims)
    return input.roll(shifts, dims) if dims else input


def fftshift(input, dim=None):
    """Move the zero frequency to the centre (rolls by ``n // 2``)."""
    return _shift(input, dim, 1)


def ifftshift(input, dim=None):
    """The inverse of ``fftshift``."""
    return _shift(input, dim, -1)
