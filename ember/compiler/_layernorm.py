"""Layer norm over the last dimension in a compiled step: forward and backward C kernels
whose sums run in the input's precision.

Eager's C layer norm (``ops._nn_c``) accumulates every row's sums in double (a float32
row converted element by element, half the vector width) and the weight and bias
gradients in double partial rows read and written per input row. On the GPT benchmark's
(16, 64, 128) float32 rows that costs 77 us forward and 115 us backward (one thread,
timeit minimums, warm caches). Here a row's sums (mean, squared deviations; the two dot
products of the backward) are vector reductions in the row's own dtype, and the weight and
bias gradients are partial sums in that dtype over fixed blocks of ``BLOCK`` rows, added
at the end in double in block order: the same values at any thread count (rows split over
ember's pool on block boundaries), within a few ulp of eager's (float32 sums of 128-element
rows). The formulas are eager's: ``mean = sum(x) / n``, ``var = sum((x - mean)^2) / n``,
``rstd = 1 / sqrt(var + eps)``, ``y = (x - mean) * rstd * w + b``; backward ``gx = rstd *
(g w - mean(g w) - xhat * mean(g w xhat))``, ``gw = sum(g xhat)``, ``gb = sum(g)``.

Served: C-contiguous float32/float64 input normalised over its last dimension, weight and
bias None or contiguous vectors of that length in the input's dtype; anything else returns
None (eager's kernels run). ``EMBER_LN_C=0`` turns this path off (for comparisons).
"""

from __future__ import annotations

import ctypes
import os
import subprocess

import numpy as np

__all__ = ["forward", "backward", "source", "sources", "ENABLED", "BLOCK"]

ENABLED = os.environ.get("EMBER_LN_C", "1") != "0"
BLOCK = 64          # rows per partial sum of the weight and bias gradients
MIN_SPLIT = 1 << 17  # elements from which rows split over the pool (as ``_nn_c``)

_SRC = """
void lnc_fwd_{T}(const {T} *x, int64_t n, const {T} *w, const {T} *b, double eps,
                 int64_t r0, int64_t r1, {T} *y, {T} *mean, {T} *var, {T} *rstd) {{
    const {T} fn = ({T})n, teps = ({T})eps;
    for (int64_t r = r0; r < r1; r++) {{
        const {T} *restrict xp = x + r * n;
        {T} *restrict yp = y + r * n;
        {T} s = 0, q = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t i = 0; i < n; i++) s += xp[i];
        const {T} m = s / fn;
        #pragma omp simd reduction(+:q)
        for (int64_t i = 0; i < n; i++) {{
            const {T} d = xp[i] - m;
            q += d * d;
        }}
        const {T} v = q / fn, rs = ({T})1 / {SQRT}(v + teps);
        mean[r] = m;
        var[r] = v;
        rstd[r] = rs;
        if (w && b) {{
            #pragma omp simd
            for (int64_t i = 0; i < n; i++) yp[i] = (xp[i] - m) * rs * w[i] + b[i];
        }} else if (w) {{
            #pragma omp simd
            for (int64_t i = 0; i < n; i++) yp[i] = (xp[i] - m) * rs * w[i];
        }} else if (b) {{
            #pragma omp simd
            for (int64_t i = 0; i < n; i++) yp[i] = (xp[i] - m) * rs + b[i];
        }} else {{
            #pragma omp simd
            for (int64_t i = 0; i < n; i++) yp[i] = (xp[i] - m) * rs;
        }}
    }}
}}

/* rows [r0, r1) (r0 on a block boundary); row r's weight/bias gradient terms are added to
   row r / blk of gwp / gbp (zeroed by the caller; either may be NULL); gx may be NULL */
void lnc_bwd_{T}(const {T} *g, const {T} *x, int64_t n, const {T} *w, const {T} *mean,
                 const {T} *rstd, int64_t r0, int64_t r1, int64_t blk, {T} *gx, {T} *gwp,
                 {T} *gbp) {{
    const {T} fn = ({T})n;
    for (int64_t r = r0; r < r1; r++) {{
        const {T} *restrict gp = g + r * n, *restrict xp = x + r * n;
        const {T} m = mean[r], rs = rstd[r];
        if (gwp) {{
            {T} *restrict pw = gwp + (r / blk) * n;
            #pragma omp simd
            for (int64_t i = 0; i < n; i++) pw[i] += gp[i] * ((xp[i] - m) * rs);
        }}
        if (gbp) {{
            {T} *restrict pb = gbp + (r / blk) * n;
            #pragma omp simd
            for (int64_t i = 0; i < n; i++) pb[i] += gp[i];
        }}
        if (!gx) continue;
        {T} *restrict op = gx + r * n;
        {T} sa = 0, sb = 0;
        if (w) {{
            #pragma omp simd reduction(+:sa, sb)
            for (int64_t i = 0; i < n; i++) {{
                const {T} gw = gp[i] * w[i];
                sa += gw;
                sb += gw * ((xp[i] - m) * rs);
            }}
            const {T} ma = sa / fn, mb = sb / fn;
            #pragma omp simd
            for (int64_t i = 0; i < n; i++)
                op[i] = rs * (gp[i] * w[i] - ma - ((xp[i] - m) * rs) * mb);
        }} else {{
            #pragma omp simd reduction(+:sa, sb)
            for (int64_t i = 0; i < n; i++) {{
                sa += gp[i];
                sb += gp[i] * ((xp[i] - m) * rs);
            }}
            const {T} ma = sa / fn, mb = sb / fn;
            #pragma omp simd
            for (int64_t i = 0; i < n; i++)
                op[i] = rs * (gp[i] - ma - ((xp[i] - m) * rs) * mb);
        }}
    }}
}}
"""

def source(ctype):
    """The C library of the ``ctype`` ("float" or "double") kernels, compiled only for a
    step that has such a layer norm."""
    return "#include <math.h>\n#include <stdint.h>\n" + _SRC.format(
        T=ctype, SQRT="sqrtf" if ctype == "float" else "sqrt")


def sources(graph):
    """The sources ``graph``'s normalisation nodes may load (for ``prebuild``)."""
    from ._attention import _sources_of
    from ._passes import _NormalizeGrad, _NormalizeKeep
    return _sources_of(graph, (_NormalizeKeep, _NormalizeGrad), source) if ENABLED else []

_FNS: dict = {}
_CT = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_I, _P, _D = ctypes.c_int64, ctypes.c_void_p, ctypes.c_double


def _kernel(direction, dtype):
    key = (direction, dtype)
    fn = _FNS.get(key)
    if fn is None:
        fn = False
        ct = _CT.get(dtype)
        if ENABLED and ct is not None:
            from .._cc import load_kernel
            try:
                fn = load_kernel(source(ct), f"lnc_{direction}_{ct}")
            except (RuntimeError, OSError, AttributeError, subprocess.SubprocessError):
                fn = False
        _FNS[key] = fn
    return fn


def _vector(a, n, dtype):
    """``a`` as a plain contiguous (n,) array of ``dtype``, None for None, False where it
    is something else."""
    if a is None:
        return None
    if type(a) is not np.ndarray or a.dtype != dtype or a.size != n:
        return False
    return np.ascontiguousarray(a.reshape(n))


def _last_axis(x, axes):
    return type(axes) in (tuple, list) and len(axes) == 1 and \
        axes[0] % max(x.ndim, 1) == x.ndim - 1


def _rows(fn, rows, size, align):
    """``fn(r0, r1)`` over ``rows`` rows, split over the pool on multiples of ``align``
    where ``size`` elements are worth it."""
    from .. import _parallel
    k = min(_parallel.threads_for(size, MIN_SPLIT), -(-rows // align))
    if k <= 1 or getattr(_parallel._worker, "in_pool", False):
        fn(0, rows)
    else:
        _parallel.run_split(fn, _parallel._bounds(rows, k, align))


def forward(x, w, b, axes, eps):
    """``(y, mean, var, rstd)`` (statistics of shape ``x.shape[:-1] + (1,)``) of the layer
    norm of ``x`` over its last dimension; None where this path does not serve."""
    if type(x) is not np.ndarray or x.ndim < 1 or not x.flags.c_contiguous or \
            not _last_axis(x, axes) or not x.shape[-1] or not x.size:
        return None
    fn = _kernel("fwd", x.dtype)
    n = x.shape[-1]
    w, b = _vector(w, n, x.dtype), _vector(b, n, x.dtype)
    if not fn or w is False or b is False:
        return None
    rows = x.size // n
    y = np.empty(x.shape, x.dtype)
    stats = [np.empty(x.shape[:-1] + (1,), x.dtype) for _ in range(3)]
    args = (_P(x.ctypes.data), _I(n), _P(None if w is None else w.ctypes.data),
            _P(None if b is None else b.ctypes.data), _D(eps))
    outs = (_P(y.ctypes.data),) + tuple(_P(s.ctypes.data) for s in stats)
    _rows(lambda r0, r1: fn(*args, _I(r0), _I(r1), *outs), rows, x.size, 1)
    return (y,) + tuple(stats)


def backward(g, x, w, mean, rstd, axes, need):
    """``(gx, gw, gb)`` of ``forward`` (gw and gb flat (n,); None where ``need`` says not
    needed); None where this path does not serve."""
    if type(x) is not np.ndarray or type(g) is not np.ndarray or x.ndim < 1 or \
            not x.flags.c_contiguous or not _last_axis(x, axes) or g.shape != x.shape or \
            g.dtype != x.dtype or not x.shape[-1] or not x.size:
        return None
    fn = _kernel("bwd", x.dtype)
    n = x.shape[-1]
    rows = x.size // n
    w = _vector(w, n, x.dtype)
    mean, rstd = _vector(mean, rows, x.dtype), _vector(rstd, rows, x.dtype)
    if not fn or w is False or mean is None or mean is False or rstd is None or \
            rstd is False:
        return None
    g = np.ascontiguousarray(g)
    nblk = -(-rows // BLOCK)
    gx = np.empty(x.shape, x.dtype) if need[0] else None
    pw = np.zeros((nblk, n), x.dtype) if need[1] else None
    pb = np.zeros((nblk, n), x.dtype) if need[2] else None
    args = (_P(g.ctypes.data), _P(x.ctypes.data), _I(n),
            _P(None if w is None else w.ctypes.data), _P(mean.ctypes.data),
            _P(rstd.ctypes.data))
    outs = tuple(_P(None if a is None else a.ctypes.data) for a in (gx, pw, pb))
    _rows(lambda r0, r1: fn(*args, _I(r0), _I(r1), _I(BLOCK), *outs), rows, x.size, BLOCK)
    gw = None if pw is None else np.add.reduce(pw, 0, dtype=np.float64).astype(x.dtype)
    gb = None if pb is None else np.add.reduce(pb, 0, dtype=np.float64).astype(x.dtype)
    return gx, gw, gb
