"""Special functions on arrays. SciPy (the ``special`` extra) computes them when installed;
otherwise the standard library's exact scalar versions run elementwise (slower)."""

from __future__ import annotations

import math

import numpy as np

try:
    import scipy.special as _sp
except ImportError:  # pragma: no cover - depends on the environment
    _sp = None


def _elementwise(fn, a):
    out = np.frompyfunc(fn, 1, 1)(a)
    return np.asarray(out, dtype=a.dtype) if isinstance(out, np.ndarray) else a.dtype.type(out)


def erf(a):
    if _sp is not None:
        return _sp.erf(a).astype(a.dtype, copy=False)
    return _elementwise(math.erf, a)


def erfc(a):
    if _sp is not None:
        return _sp.erfc(a).astype(a.dtype, copy=False)
    return _elementwise(math.erfc, a)


def _erfinv_scalar(y):
    if y <= -1.0:
        return -math.inf if y == -1.0 else math.nan
    if y >= 1.0:
        return math.inf if y == 1.0 else math.nan
    if y != y:
        return math.nan
    # a rough start, then Newton steps on erf(x) - y (erf' = 2/sqrt(pi) exp(-x^2))
    w = -math.log((1.0 - y) * (1.0 + y))
    x = math.copysign(math.sqrt(max(w - math.log(w + 1e-300) * 0.5, 0.0)), y) if w > 1 else \
        y * math.sqrt(math.pi) / 2
    for _ in range(60):
        err = math.erf(x) - y
        step = err / (2.0 / math.sqrt(math.pi) * math.exp(-x * x))
        x -= step
        if abs(step) <= 1e-16 * max(1.0, abs(x)):
            break
    return x


def erfinv(a):
    if _sp is not None:
        return _sp.erfinv(a).astype(a.dtype, copy=False)
    return _elementwise(_erfinv_scalar, a)


def lgamma(a):
    if _sp is not None:
        return _sp.gammaln(a).astype(a.dtype, copy=False)
    return _elementwise(lambda v: math.lgamma(v) if v not in (0.0,) and not (
        v < 0 and v == int(v)) else math.inf, a)
