"""erf and erfc of float32/float64 arrays through the C library's ``erf``/``erfc``.

``ember/ops/_special.py`` takes these before SciPy: importing ``scipy.special`` costs
0.3-1.5 s (it pulls in its array-API layer and ``numpy.f2py``), which was most of
``ember.compile``'s first call of a GELU model on a warm kernel cache (the capture runs
GELU's composed backward, whose erf came from SciPy). The C library's double ``erf`` is
within an ulp of the exact value (glibc: at most 1 ulp), as SciPy's Cephes is, and is the
``erf`` the compiler's generated float64 kernels call, so eager and compiled float64 agree
bit for bit. float32 goes through double and rounds once, as SciPy's float32 loop does.

Compiled on first use by ``ember._cc`` (disk cache keyed by the source); where no C compiler
works, or ``EMBER_SPECIAL_C=0``, ``kernel`` returns None and ``_special`` keeps SciPy (or the
standard library's ``math.erf`` elementwise).
"""

from __future__ import annotations

import ctypes

import numpy as np

_SRC = r"""
#include <math.h>

/* y[i] = FN(x[i]) over [0, n); float through double (rounded once). */
#define LOOP(NAME, T, FN) \
    void NAME(const T *x, T *y, long n) { for (long i = 0; i < n; ++i) y[i] = (T)FN((double)x[i]); }
LOOP(erf_d, double, erf)
LOOP(erfc_d, double, erfc)
LOOP(erf_f, float, erf)
LOOP(erfc_f, float, erfc)

void *special_c_symbol(int i) {
    void *table[] = {(void *)erf_d, (void *)erfc_d, (void *)erf_f, (void *)erfc_f};
    return i >= 0 && i < 4 ? table[i] : 0;
}
"""
_ORDER = [("erf", np.dtype(np.float64)), ("erfc", np.dtype(np.float64)),
          ("erf", np.dtype(np.float32)), ("erfc", np.dtype(np.float32))]
_PROTO = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long)
_LIB: dict = {}


def kernel(name, dtype):
    """The C loop ``f(x_ptr, y_ptr, n)`` of ``name`` ("erf" or "erfc") for ``dtype``
    (float32/float64), or None (no C compiler, ``EMBER_SPECIAL_C=0``, another dtype)."""
    if not _LIB:
        from .._cc import kernel_table
        _LIB.update(kernel_table(_SRC, "special_c_symbol", "EMBER_SPECIAL_C",
                                 [(k, _PROTO) for k in _ORDER]) or {None: None})
    return _LIB.get((name, dtype))


def apply(name, a):
    """``name`` of the float32/float64 ndarray ``a`` (any strides) in a new C-contiguous
    array of its shape and dtype, or None where the C loop does not serve."""
    fn = kernel(name, a.dtype)
    if fn is None:
        return None
    x = a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d 1-d)
    y = np.empty(x.shape, x.dtype)
    if x.size:
        fn(x.ctypes.data, y.ctypes.data, x.size)
    return y
