"""Layer norm over the last dimension in a compiled step, with the residual adds beside it
folded in: C kernels that compute eager's layer norm bit for bit.

A pre-norm transformer block adds each branch's output to the residual stream and
normalises the sum (``h = a + b; y = norm(h)``), and in the backward adds the residual
branch's gradient to the norm's input gradient: each add a pass of its own over memory
(and a Python call) beside the norm's. ``add_forward`` makes the sum and the norm in one
pass over each row (the row still in the cache; ``a`` and ``b`` may be permuted 3-d views,
as the attention's merged heads are), and ``backward(res=...)`` adds the residual gradient
to each row of gx as it is written. The layer norm's loops are eager's C kernels'
(``ops._nn_c``: row sums in double, weight and bias gradients as double partial sums over
blocks of ``BLOCK`` rows), compiled with the same flags, and each add is one rounding as a
NumPy add: the values are eager's bit for bit (an Adam step turns last-bit differences of a
near-zero gradient into whole steps; a float-precision variant of these kernels, 20-30%
faster, failed the compiled-equals-eager tests for that reason). Rows split over ember's
pool on block boundaries: the same bits at any thread count.

Served: float32/float64 inputs normalised over their last dimension, of
``ops._nn_c.MIN_SIZE`` elements or more (where eager takes its C kernel; below, eager's
NumPy formula), weight and bias None or contiguous vectors of that length in the input's
dtype; anything else returns None (the caller runs eager's kernels). ``EMBER_LN_C=0``
turns this path off (for comparisons).
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
/* eager's ln_fwd_SFX (ember/ops/_nn_c.py), loop for loop: the same values bit for bit */
void lnc_fwd_{T}(const {T} *x, int64_t n, const {T} *w, const {T} *b, double eps,
                 int64_t r0, int64_t r1, {T} *y, {T} *mean, {T} *var, {T} *rstd) {{
    for (int64_t r = r0; r < r1; ++r) {{
        const {T} *xp = x + r * n;
        {T} *yp = y + r * n;
        double s = 0, q = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t i = 0; i < n; ++i) s += xp[i];
        double m = s / n;
        #pragma omp simd reduction(+:q)
        for (int64_t i = 0; i < n; ++i) {{ double d = xp[i] - m; q += d * d; }}
        double v = q / n, rs = 1.0 / sqrt(v + eps);
        mean[r] = ({T})m; var[r] = ({T})v; rstd[r] = ({T})rs;
        {T} mr = ({T})m, rr = ({T})rs;
        if (w && b)
            for (int64_t i = 0; i < n; ++i) yp[i] = (xp[i] - mr) * rr * w[i] + b[i];
        else if (w)
            for (int64_t i = 0; i < n; ++i) yp[i] = (xp[i] - mr) * rr * w[i];
        else if (b)
            for (int64_t i = 0; i < n; ++i) yp[i] = (xp[i] - mr) * rr + b[i];
        else
            for (int64_t i = 0; i < n; ++i) yp[i] = (xp[i] - mr) * rr;
    }}
}}

/* h = a + b, then the layer norm of h, row by row (the row still in the cache): row r of
   a at a + (r / ad1) * as0 + (r % ad1) * as1 (so a permuted (d0, d1, n) view serves), b
   likewise; h written contiguous. */
void lnc_addfwd_{T}(const {T} *a, int64_t ad1, int64_t as0, int64_t as1, const {T} *b,
                    int64_t bd1, int64_t bs0, int64_t bs1, int64_t n, const {T} *w,
                    const {T} *bias, double eps, int64_t r0, int64_t r1, {T} *h, {T} *y,
                    {T} *mean, {T} *var, {T} *rstd) {{
    for (int64_t r = r0; r < r1; r++) {{
        const {T} *restrict ap = a + (r / ad1) * as0 + (r % ad1) * as1;
        const {T} *restrict bp = b + (r / bd1) * bs0 + (r % bd1) * bs1;
        {T} *restrict hp = h + r * n;
        #pragma omp simd
        for (int64_t i = 0; i < n; i++) hp[i] = ap[i] + bp[i];
        lnc_fwd_{T}(h, n, w, bias, eps, r, r + 1, y, mean, var, rstd);
    }}
}}

/* eager's ln_bwd_SFX, loop for loop (rows [r0, r1), r0 on a block boundary; row r's
   gw/gb terms added to double row r / blk of gwp/gbp, zeroed by the caller; either may be
   NULL; gx may be NULL), then res (or NULL) added to gx as an Add would */
void lnc_bwd_{T}(const {T} *g, const {T} *x, int64_t n, const {T} *w, const {T} *mean,
                 const {T} *rstd, int64_t r0, int64_t r1, int64_t blk, {T} *gx, double *gwp,
                 double *gbp, const {T} *res) {{
    for (int64_t r = r0; r < r1; ++r) {{
        const {T} *gp = g + r * n, *xp = x + r * n;
        {T} m = mean[r], rs = rstd[r];
        if (gwp || gbp) {{
            double *pw = gwp ? gwp + (r / blk) * n : 0, *pb = gbp ? gbp + (r / blk) * n : 0;
            if (pw)
                for (int64_t i = 0; i < n; ++i) pw[i] += (double)(gp[i] * ((xp[i] - m) * rs));
            if (pb)
                for (int64_t i = 0; i < n; ++i) pb[i] += (double)gp[i];
        }}
        if (!gx) continue;
        {T} *op = gx + r * n;
        if (w)
            for (int64_t i = 0; i < n; ++i) op[i] = gp[i] * w[i];
        else
            for (int64_t i = 0; i < n; ++i) op[i] = gp[i];
        double sa = 0, sb = 0;
        #pragma omp simd reduction(+:sa, sb)
        for (int64_t i = 0; i < n; ++i) {{
            sa += op[i];
            sb += op[i] * ((xp[i] - m) * rs);
        }}
        {T} ma = ({T})(sa / n), mb = ({T})(sb / n);
        for (int64_t i = 0; i < n; ++i) op[i] = rs * (op[i] - ma - ((xp[i] - m) * rs) * mb);
        if (res) {{
            const {T} *rp = res + r * n;
            for (int64_t i = 0; i < n; ++i) op[i] = op[i] + rp[i];
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


def _eager_takes_c(size):
    """Whether eager's layer norm runs its C kernel for ``size`` elements (smaller inputs
    keep its NumPy formula, whose values these kernels would not give)."""
    from ..ops import _nn_c
    return size >= _nn_c.MIN_SIZE


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
            not _last_axis(x, axes) or not x.shape[-1] or not _eager_takes_c(x.size):
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


def _row_layout(a, rows, n):
    """``(d1, s0, s1)`` (elements) such that row ``r`` of ``a`` (rows of its last dimension,
    ``n`` long, contiguous) starts at ``(r // d1) * s0 + (r % d1) * s1``; None where its
    rows are not laid out so (``a`` a contiguous array or a 2-d or 3-d view whose last
    dimension is contiguous)."""
    it = a.itemsize
    if a.shape[-1] != n or a.size != rows * n or (n > 1 and a.strides[-1] != it) or \
            any(st % it for st in a.strides):
        return None
    if a.flags.c_contiguous:
        return rows, 0, n
    lead = [(d, st // it) for d, st in zip(a.shape[:-1], a.strides[:-1]) if d != 1]
    if len(lead) == 1:
        return rows, 0, lead[0][1]
    if len(lead) == 2:
        return lead[1][0], lead[0][1], lead[1][1]
    return None


def add_forward(a, b, w, bias, axes, eps):
    """``(y, mean, var, rstd, h)``: ``h = a + b`` (same shape, contiguous rows or a 2-d or
    3-d view of them; ``h`` is a new contiguous array) and ``forward``'s values for ``h``,
    in one pass over each row; None where this path does not serve."""
    if type(a) is not np.ndarray or type(b) is not np.ndarray or a.shape != b.shape or \
            a.dtype != b.dtype or a.ndim < 1 or not _last_axis(a, axes) or \
            not a.shape[-1] or not _eager_takes_c(a.size):
        return None
    fn = _kernel("addfwd", a.dtype)
    n = a.shape[-1]
    rows = a.size // n
    la, lb = _row_layout(a, rows, n), _row_layout(b, rows, n)
    w, bias = _vector(w, n, a.dtype), _vector(bias, n, a.dtype)
    if not fn or la is None or lb is None or w is False or bias is False:
        return None
    h = np.empty(a.shape, a.dtype)
    y = np.empty(a.shape, a.dtype)
    stats = [np.empty(a.shape[:-1] + (1,), a.dtype) for _ in range(3)]
    args = (_P(a.ctypes.data), *map(_I, la), _P(b.ctypes.data), *map(_I, lb), _I(n),
            _P(None if w is None else w.ctypes.data),
            _P(None if bias is None else bias.ctypes.data), _D(eps))
    outs = (_P(h.ctypes.data), _P(y.ctypes.data)) + tuple(_P(s.ctypes.data) for s in stats)
    _rows(lambda r0, r1: fn(*args, _I(r0), _I(r1), *outs), rows, a.size, 1)
    return (y,) + tuple(stats) + (h,)


def backward(g, x, w, mean, rstd, axes, need, res=None):
    """``(gx, gw, gb)`` of ``forward`` (gw and gb flat (n,); None where ``need`` says not
    needed), with ``res`` (an array of x's shape and dtype, or None) added to gx as an Add
    after it would; None where this path does not serve."""
    if type(x) is not np.ndarray or type(g) is not np.ndarray or x.ndim < 1 or \
            not x.flags.c_contiguous or not _last_axis(x, axes) or g.shape != x.shape or \
            g.dtype != x.dtype or not x.shape[-1] or not _eager_takes_c(x.size):
        return None
    fn = _kernel("bwd", x.dtype)
    n = x.shape[-1]
    rows = x.size // n
    w = _vector(w, n, x.dtype)
    mean, rstd = _vector(mean, rows, x.dtype), _vector(rstd, rows, x.dtype)
    if not fn or w is False or mean is None or mean is False or rstd is None or \
            rstd is False or (res is not None and (
                type(res) is not np.ndarray or res.shape != x.shape or
                res.dtype != x.dtype or not need[0])):
        return None
    g = np.ascontiguousarray(g)
    res = None if res is None else np.ascontiguousarray(res)
    nblk = -(-rows // BLOCK)
    gx = np.empty(x.shape, x.dtype) if need[0] else None
    pw = np.zeros((nblk, n)) if need[1] else None
    pb = np.zeros((nblk, n)) if need[2] else None
    args = (_P(g.ctypes.data), _P(x.ctypes.data), _I(n),
            _P(None if w is None else w.ctypes.data), _P(mean.ctypes.data),
            _P(rstd.ctypes.data))
    outs = tuple(_P(None if a is None else a.ctypes.data) for a in (gx, pw, pb, res))
    _rows(lambda r0, r1: fn(*args, _I(r0), _I(r1), _I(BLOCK), *outs), rows, x.size, BLOCK)
    gw = None if pw is None else np.add.reduce(pw, 0).astype(x.dtype)
    gb = None if pb is None else np.add.reduce(pb, 0).astype(x.dtype)
    return gx, gw, gb
