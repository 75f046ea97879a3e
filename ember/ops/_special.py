"""Special functions on arrays (forward values only; gradients live with the ops).

erf and erfc of float32/float64 arrays come from the C library (``_special_c``, compiled on
first use) where a C compiler works; otherwise, and for the others, SciPy (the ``special``
extra) computes them when installed. Otherwise each has a NumPy fallback: the standard
library's exact scalar versions run elementwise (slower), or a vectorised series (digamma,
Hurwitz zeta, modified Bessel functions, erfcx, ndtri) accurate to about 1e-13 relative in
float64. Results keep the input's floating dtype; the fallbacks
compute in float64."""

from __future__ import annotations

import math

import numpy as np

from .._meta import MetaArray
from .._meta import asarray as xp_asarray

_SCIPY: list = []


def _scipy():
    """``scipy.special``, or None where SciPy is absent; imported on first use (it takes
    about 0.2 s, which would otherwise be half of ``import ember``)."""
    if not _SCIPY:
        try:
            import scipy.special as sp
        except ImportError:  # pragma: no cover - depends on the environment
            sp = None
        _SCIPY.append(sp)
    return _SCIPY[0]


def _elementwise(fn, a):
    out = np.frompyfunc(fn, 1, 1)(a)
    return np.asarray(out, dtype=a.dtype) if isinstance(out, np.ndarray) else a.dtype.type(out)


def _c(name, a):
    """``name`` (erf, erfc) of a float32/float64 array through the C library (see
    ``_special_c``), or None where that does not serve (no compiler, another type)."""
    if type(a) is np.ndarray and (a.dtype == np.float64 or a.dtype == np.float32):
        from . import _special_c
        return _special_c.apply(name, a)
    if type(a) is MetaArray and a.dtype.kind == "f":  # no values: no need for SciPy
        return MetaArray(a.shape, a.dtype)
    return None


def erf(a):
    r = _c("erf", a)
    if r is not None:
        return r
    if _scipy() is not None:
        return _scipy().erf(a).astype(a.dtype, copy=False)
    return _elementwise(math.erf, a)


def erfc(a):
    r = _c("erfc", a)
    if r is not None:
        return r
    if _scipy() is not None:
        return _scipy().erfc(a).astype(a.dtype, copy=False)
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
    if _scipy() is not None:
        return _scipy().erfinv(a).astype(a.dtype, copy=False)
    return _elementwise(_erfinv_scalar, a)


def lgamma(a):
    if _scipy() is not None:
        r = _scipy().gammaln(a)
        return np.where(a == -np.inf, np.inf, r).astype(a.dtype, copy=False)  # PyTorch's
    return _elementwise(_lgamma_scalar, a)


def _lgamma_scalar(v):
    if v != v or v in (math.inf, -math.inf):
        return abs(v)  # nan stays nan; +-inf give +inf
    if v <= 0 and v == math.floor(v):
        return math.inf  # the poles
    return math.lgamma(v)


# ---------------------------------------------------------------------- gamma family
def _f64(a):
    return xp_asarray(a, dtype=np.float64)


def _back(r, a):
    return xp_asarray(r).astype(a.dtype, copy=False)


def digamma(a):
    """psi(x) = d/dx lgamma(x); -inf at 0, nan at negative integers (PyTorch's convention)."""
    if _scipy() is not None:
        r = _scipy().psi(a)
        return _back(np.where(a == 0, -np.inf, r), a)
    x = _f64(a)
    with np.errstate(all="ignore"):
        neg = x < 0
        # reflection: psi(x) = psi(1 - x) - pi / tan(pi x) for x < 0
        y = np.where(neg, 1.0 - x, x)
        acc = np.zeros_like(y)
        for _ in range(8):  # recurrence psi(y) = psi(y + 1) - 1/y until y >= 8
            small = y < 8
            acc = acc - np.where(small, 1.0 / y, 0.0)
            y = np.where(small, y + 1.0, y)
        y2 = 1.0 / (y * y)
        # asymptotic series: ln y - 1/(2y) - sum B_2k / (2k y^2k)
        series = y2 * (1 / 12 - y2 * (1 / 120 - y2 * (1 / 252 - y2 * (1 / 240 - y2 * (
            1 / 132 - y2 * (691 / 32760 - y2 / 12))))))
        r = np.log(y) - 0.5 / y - series + acc
        r = np.where(neg, r - np.pi / np.tan(np.pi * x), r)
        r = np.where(x == 0, -np.inf, r)
        r = np.where(neg & (x == np.floor(x)), np.nan, r)
    return _back(r, a)


# B_2k / (2k)! for k = 1..12: the Euler-Maclaurin correction terms of the Hurwitz zeta sum
_BERN_OVER_FACT = [1 / 12, -1 / 720, 1 / 30240, -1 / 1209600, 1 / 47900160,
                   -691 / 1307674368000, 1 / 74724249600, -3617 / 10670622842880000,
                   43867 / 5109094217170944000, -174611 / 802857662698291200000,
                   77683 / 14101100039391805440000,
                   -236364091 / 1693824136731743669452800000]


def zeta(x, q):
    """Hurwitz zeta sum_k (k + q)^-x (x > 1); Euler-Maclaurin summation when SciPy is absent."""
    dtype = np.result_type(x, q)
    if _scipy() is not None:
        return xp_asarray(_scipy().zeta(x, q)).astype(dtype, copy=False)
    x, q = np.broadcast_arrays(_f64(x), _f64(q))
    n = 10
    with np.errstate(all="ignore"):
        s = np.zeros(x.shape)
        for k in range(n):
            s = s + (q + k) ** -x
        w = q + n
        s = s + w ** (1 - x) / (x - 1) + 0.5 * w ** -x
        # sum_j B_2j/(2j)! * x (x+1) ... (x+2j-2) * w^(-x-2j+1)
        poch = x.copy()
        wp = w ** (-x - 1)
        for j, c in enumerate(_BERN_OVER_FACT):
            s = s + c * poch * wp
            poch = poch * (x + 2 * j + 1) * (x + 2 * j + 2)
            wp = wp / (w * w)
        s = np.where(x == 1, np.inf, s)
        s = np.where(x < 1, np.nan, s)
        pole = (q <= 0) & (q == np.floor(q))
        s = np.where(pole, np.inf, s)
        s = np.where((q < 0) & ~pole & (x != np.floor(x)), np.nan, s)
    return s.astype(dtype, copy=False)


def polygamma(n, a):
    """The n-th derivative of digamma: (-1)^(n+1) n! zeta(n + 1, x) for n >= 1."""
    if n == 0:
        return digamma(a)
    if _scipy() is not None:
        return _back(_scipy().polygamma(n, a), a)
    r = (-1.0) ** (n + 1) * math.factorial(n) * zeta(np.float64(n + 1), _f64(a))
    return _back(r, a)


# ---------------------------------------------------------------------- Bessel I0, I1
def _bessel_i(nu, a, scaled):
    """Modified Bessel I_nu (nu = 0, 1), times exp(-|x|) when ``scaled``: a power series for
    |x| <= 20, the large-argument asymptotic series beyond (both ~1e-14 relative)."""
    x = _f64(a)
    ax = np.abs(x)
    with np.errstate(all="ignore"):
        small = np.minimum(ax, 20.0)
        h2 = (small / 2) ** 2
        term = (small / 2) ** nu / math.factorial(nu)
        ser = term.copy()
        for k in range(1, 60):
            term = term * h2 / (k * (k + nu))
            ser = ser + term
        if scaled:
            ser = ser * np.exp(-small)
        big = np.maximum(ax, 20.0)
        mu = 4.0 * nu * nu
        t = np.ones_like(big)
        asy = t.copy()
        for k in range(1, 30):
            t = -t * (mu - (2 * k - 1) ** 2) / (k * 8.0 * big)
            asy = asy + t
        asy = asy / np.sqrt(2 * np.pi * big)
        if not scaled:
            asy = asy * np.exp(big)
        r = np.where(ax <= 20.0, ser, asy)
        if nu == 1:
            r = np.where(x < 0, -r, r)
    return _back(r, a)


def i0(a):
    if _scipy() is not None:
        return _back(_scipy().i0(a), a)
    return _bessel_i(0, a, False)


def i0e(a):
    if _scipy() is not None:
        return _back(_scipy().i0e(a), a)
    return _bessel_i(0, a, True)


def i1(a):
    if _scipy() is not None:
        return _back(_scipy().i1(a), a)
    return _bessel_i(1, a, False)


def i1e(a):
    if _scipy() is not None:
        return _back(_scipy().i1e(a), a)
    return _bessel_i(1, a, True)


# ---------------------------------------------------------------------- error function family
def erfcx(a):
    """exp(x^2) erfc(x), without the overflow: an asymptotic series for x > 8."""
    if _scipy() is not None:
        return _back(_scipy().erfcx(a), a)
    x = _f64(a)
    with np.errstate(all="ignore"):
        direct = np.exp(x * x) * erfc(np.minimum(x, 8.0))
        big = np.maximum(x, 8.0)
        # erfcx(x) ~ 1/(x sqrt(pi)) * sum_k (-1)^k (2k-1)!! / (2x^2)^k
        t = np.ones_like(big)
        s = t.copy()
        for k in range(1, 30):
            t = -t * (2 * k - 1) / (2 * big * big)
            s = s + t
        asy = s / (big * math.sqrt(math.pi))
        r = np.where(x <= 8.0, direct, asy)
    return _back(r, a)


def ndtr(a):
    """The standard normal CDF."""
    if _scipy() is not None:
        return _back(_scipy().ndtr(a), a)
    return _back(0.5 * erfc(-_f64(a) / math.sqrt(2.0)), a)


def log_ndtr(a):
    """log of the standard normal CDF, accurate in both tails."""
    if _scipy() is not None:
        return _back(_scipy().log_ndtr(a), a)
    x = _f64(a)
    with np.errstate(all="ignore"):
        # left tail through erfcx (no underflow); right tail through log1p
        left = np.log(0.5 * erfcx(-np.minimum(x, 0.0) / math.sqrt(2.0))) - \
            0.5 * np.minimum(x, 0.0) ** 2
        right = np.log1p(-0.5 * erfc(np.maximum(x, 0.0) / math.sqrt(2.0)))
        r = np.where(x < 0, left, right)
    return _back(r, a)


def ndtri(a):
    """The inverse of the standard normal CDF."""
    if _scipy() is not None:
        return _back(_scipy().ndtri(a), a)
    p = _f64(a)
    with np.errstate(all="ignore"):
        # solve in the lower half (q <= 0.5) and mirror: Newton on log ndtr(x) = log q,
        # which is concave, started from the centre's erfinv
        q = np.where(p > 0.5, 1.0 - p, p)
        x = math.sqrt(2.0) * erfinv(np.clip(2 * q - 1, -1 + 1e-16, 1.0))
        x = np.where(q < 1e-3, -np.sqrt(-2 * np.log(np.maximum(q, 1e-300))), x)
        lq = np.log(q)
        for _ in range(30):
            ln = log_ndtr(x)
            step = (ln - lq) * np.exp(ln + 0.5 * x * x) * math.sqrt(2 * math.pi)
            x = x - np.where(np.isfinite(step), step, 0.0)
        r = np.where(p > 0.5, -x, x)
        r = np.where(p == 0, -np.inf, np.where(p == 1, np.inf, r))
        r = np.where((p < 0) | (p > 1) | np.isnan(p), np.nan, r)
    return _back(r, a)
