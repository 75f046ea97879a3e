"""Window functions (``torch.signal.windows``): 1-d tensors of length ``M``.

``sym=True`` gives the symmetric window (filter design); ``sym=False`` the periodic one
(spectral analysis: the symmetric window of length ``M + 1`` without its last point). Values
are computed in float64 and returned in ``dtype`` (float32 or float64; default the default
dtype)."""

from __future__ import annotations

import math

import numpy as np

from .. import _dtype as D
from .._device import to_device
from ..ops.creation import tensor as _tensor

__all__ = ["bartlett", "blackman", "cosine", "exponential", "gaussian", "general_cosine",
           "general_hamming", "hamming", "hann", "kaiser", "nuttall"]


def _checks(name, M, dtype, layout, device):
    if M < 0:
        raise ValueError(f"{name} requires non-negative window length, got M={M}")
    if layout is not None and str(layout) not in ("torch.strided", "ember.strided", "strided"):
        raise ValueError(f"{name} is implemented for strided tensors only, got: {layout}")
    dt = D.get_default_dtype() if dtype is None else D.to_dtype(dtype)
    if dt not in (D.float32, D.float64):
        raise ValueError(f"{name} expects float32 or float64 dtypes, got: {dt}")
    to_device(device)
    return dt


def _out(values, dt, requires_grad, device=None):
    return _tensor(np.asarray(values, dtype=np.float64).astype(dt.np), dtype=dt,
                   requires_grad=requires_grad, device=device)


def _period(M, sym):
    """The distance (in samples) the window's formula spans: M - 1 if symmetric, else M."""
    return M - 1 if sym else M


def general_cosine(M, *, a, sym=True, dtype=None, layout=None, device=None,
                   requires_grad=False):
    """``w[n] = sum_i (-1)^i a[i] cos(2 pi i n / N)`` with ``N`` the window's period."""
    dt = _checks("general_cosine", M, dtype, layout, device)
    if not isinstance(a, (list, tuple)):
        raise TypeError("Coefficients must be a list/tuple")
    if not a:
        raise ValueError("Coefficients cannot be empty")
    if M <= 1:
        return _out(np.ones(M), dt, requires_grad, device)
    k = np.arange(M) * (2 * math.pi / _period(M, sym))
    w = sum(((-1) ** i) * c * np.cos(i * k) for i, c in enumerate(a))
    return _out(w, dt, requires_grad, device)


def general_hamming(M, *, alpha=0.54, sym=True, dtype=None, layout=None, device=None,
                    requires_grad=False):
    """``alpha - (1 - alpha) cos(2 pi n / N)``."""
    return general_cosine(M, a=[alpha, 1.0 - alpha], sym=sym, dtype=dtype, layout=layout,
                          device=device, requires_grad=requires_grad)


def hamming(M, *, sym=True, dtype=None, layout=None, device=None, requires_grad=False):
    """The Hamming window (``general_hamming`` with ``alpha = 0.54``)."""
    _checks("hamming", M, dtype, layout, device)
    return general_hamming(M, alpha=0.54, sym=sym, dtype=dtype, device=device,
                           requires_grad=requires_grad)


def hann(M, *, sym=True, dtype=None, layout=None, device=None, requires_grad=False):
    """The Hann window (``general_hamming`` with ``alpha = 0.5``)."""
    _checks("hann", M, dtype, layout, device)
    return general_hamming(M, alpha=0.5, sym=sym, dtype=dtype, device=device,
                           requires_grad=requires_grad)


def blackman(M, *, sym=True, dtype=None, layout=None, device=None, requires_grad=False):
    """The Blackman window (cosine terms 0.42, 0.5, 0.08)."""
    _checks("blackman", M, dtype, layout, device)
    return general_cosine(M, a=[0.42, 0.5, 0.08], sym=sym, dtype=dtype, device=device,
                          requires_grad=requires_grad)


def nuttall(M, *, sym=True, dtype=None, layout=None, device=None, requires_grad=False):
    """The minimum 4-term Blackman-Harris window of Nuttall."""
    _checks("nuttall", M, dtype, layout, device)
    return general_cosine(M, a=[0.3635819, 0.4891775, 0.1365995, 0.0106411], sym=sym,
                          dtype=dtype, device=device, requires_grad=requires_grad)


def bartlett(M, *, sym=True, dtype=None, layout=None, device=None, requires_grad=False):
    """The triangular window reaching 0 at both ends: ``1 - |2n / N - 1|``."""
    dt = _checks("bartlett", M, dtype, layout, device)
    if M <= 1:
        return _out(np.ones(M), dt, requires_grad, device)
    w = 1 - np.abs(np.arange(M) * (2 / _period(M, sym)) - 1)
    return _out(w, dt, requires_grad, device)


def cosine(M, *, sym=True, dtype=None, layout=None, device=None, requires_grad=False):
    """The sine window: ``sin(pi (n + 1/2) / L)``, ``L = M`` (symmetric) or ``M + 1``."""
    dt = _checks("cosine", M, dtype, layout, device)
    if M == 0:
        return _out(np.ones(0), dt, requires_grad, device)
    length = M + 1 if not sym and M > 1 else M
    w = np.sin((np.arange(M) + 0.5) * (math.pi / length))
    return _out(w, dt, requires_grad, device)


def exponential(M, *, center=None, tau=1.0, sym=True, dtype=None, layout=None, device=None,
                requires_grad=False):
    """The Poisson window: ``exp(-|n - center| / tau)``."""
    dt = _checks("exponential", M, dtype, layout, device)
    if tau <= 0:
        raise ValueError(f"Tau must be positive, got: {tau} instead.")
    if sym and center is not None:
        raise ValueError("Center must be None for symmetric windows")
    if M == 0:
        return _out(np.ones(0), dt, requires_grad, device)
    if center is None:
        center = (M if not sym and M > 1 else M - 1) / 2.0
    return _out(np.exp(-np.abs(np.arange(M) - center) / tau), dt, requires_grad, device)


def gaussian(M, *, std=1.0, sym=True, dtype=None, layout=None, device=None,
             requires_grad=False):
    """``exp(-((n - c) / std)^2 / 2)`` centred on the window."""
    dt = _checks("gaussian", M, dtype, layout, device)
    if std <= 0:
        raise ValueError(f"Standard deviation must be positive, got: {std} instead.")
    if M == 0:
        return _out(np.ones(0), dt, requires_grad, device)
    c = (M if not sym and M > 1 else M - 1) / 2.0
    return _out(np.exp(-0.5 * ((np.arange(M) - c) / std) ** 2), dt, requires_grad, device)


def kaiser(M, *, beta=12.0, sym=True, dtype=None, layout=None, device=None,
           requires_grad=False):
    """``I0(beta sqrt(1 - (2n / N - 1)^2)) / I0(beta)``."""
    dt = _checks("kaiser", M, dtype, layout, device)
    if beta < 0:
        raise ValueError(f"beta must be non-negative, got: {beta} instead.")
    if M <= 1:
        return _out(np.ones(M), dt, requires_grad, device)
    r = np.minimum(np.arange(M) * (2 / _period(M, sym)) - 1, 1.0)
    w = np.i0(beta * np.sqrt(np.maximum(1 - r * r, 0.0))) / np.i0(beta)
    return _out(w, dt, requires_grad, device)


# ---------------------------------------------------------------------- ember.*_window
# PyTorch's older top-level forms: ``periodic=True`` (the default) is ``sym=False``.
def _top(M, periodic, dtype, requires_grad, fn, **kw):
    if not isinstance(M, (int, np.integer)) or isinstance(M, bool):
        raise TypeError(f"window_length must be an int, got {type(M).__name__}")
    return fn(int(M), sym=not periodic, dtype=dtype, requires_grad=requires_grad, **kw)


def hann_window(window_length, periodic=True, *, dtype=None, layout=None, device=None,
                requires_grad=False):
    """``ember.hann_window``: the Hann window, periodic by default."""
    to_device(device)
    return _top(window_length, periodic, dtype, requires_grad, hann, device=device)


def hamming_window(window_length, periodic=True, alpha=0.54, beta=0.46, *, dtype=None,
                   layout=None, device=None, requires_grad=False):
    """``ember.hamming_window``: ``alpha - beta cos(2 pi n / N)``, periodic by default."""
    to_device(device)
    return _top(window_length, periodic, dtype, requires_grad, general_cosine,
                a=[alpha, beta], device=device)


def blackman_window(window_length, periodic=True, *, dtype=None, layout=None, device=None,
                    requires_grad=False):
    """``ember.blackman_window``: the Blackman window, periodic by default."""
    to_device(device)
    return _top(window_length, periodic, dtype, requires_grad, blackman, device=device)


def bartlett_window(window_length, periodic=True, *, dtype=None, layout=None, device=None,
                    requires_grad=False):
    """``ember.bartlett_window``: the triangular window, periodic by default."""
    to_device(device)
    return _top(window_length, periodic, dtype, requires_grad, bartlett, device=device)


def kaiser_window(window_length, periodic=True, beta=12.0, *, dtype=None, layout=None,
                  device=None, requires_grad=False):
    """``ember.kaiser_window``: the Kaiser window, periodic by default."""
    to_device(device)
    return _top(window_length, periodic, dtype, requires_grad, kaiser, beta=beta, device=device)
