"""C kernels for the small fused nn ops of a transformer step: layer norm over the last dim
(forward and backward) and exact GELU (issue 25).

At a GPT block's sizes (1024 rows of 128, 512K-element GELU inputs) NumPy's formulation
spends its time in a dozen to twenty whole-array passes, each allocating its result: the
layer norm of 1024 x 128 cost ~0.8 ms forward and ~1.3 ms backward at one thread, the
float32 GELU of 512K elements ~5 ms. One pass per row (layer norm) or per element (GELU)
in C does the same arithmetic in a fraction of that.

* ``ln_fwd``: per row ``mean``, biased ``var``, ``rstd`` (sums in double), then
  ``y = (x - mean) * rstd * w + b``;
* ``ln_bwd``: ``gx = rstd * (g w - mean(g w) - xhat * mean(g w xhat))`` per row, and the
  weight/bias gradients as double partial sums over fixed blocks of ``LN_BLOCK`` rows, added
  in block order afterwards, so that every result is the same bit for bit at any thread count;
* ``gelu``: ``y = x Phi(x)`` and the derivative ``Phi(x) + x phi(x)`` (kept for the
  backward, which is then one multiply). float64 uses the C library's ``erf``/``exp``;
  float32 uses Abramowitz & Stegun 7.1.26 for erfc (absolute error below 1.5e-7, the
  formula of NumPy's float32 path in ``ember/ops/nn.py``) with an exp written here as a
  polynomial the compiler vectorises (relative error ~1e-7).

Each call covers a range of rows or elements, so callers split the work over the thread
pool of ``ember/_parallel.py`` (ctypes releases the GIL). Compiled on first use by the
compiler's loader (``ember._cc.load_kernel``); without a working C compiler,
or with ``EMBER_NN_C=0``, ``available()`` is False and ``ember/ops/nn.py`` keeps its NumPy
formulation (the tests compare both).
"""

from __future__ import annotations

import ctypes

import numpy as np

from ._conv_c import _addr

_TEMPLATE = r"""
#include <math.h>

void ln_fwd_SFX(const REAL *x, long n, const REAL *w, const REAL *b, double eps,
                long r0, long r1, REAL *y, REAL *mean, REAL *var, REAL *rstd) {
    for (long r = r0; r < r1; ++r) {
        const REAL *xp = x + r * n;
        REAL *yp = y + r * n;
        double s = 0, q = 0;
        #pragma omp simd reduction(+:s)
        for (long i = 0; i < n; ++i) s += xp[i];
        double m = s / n;
        #pragma omp simd reduction(+:q)
        for (long i = 0; i < n; ++i) { double d = xp[i] - m; q += d * d; }
        double v = q / n, rs = 1.0 / sqrt(v + eps);
        mean[r] = (REAL)m; var[r] = (REAL)v; rstd[r] = (REAL)rs;
        REAL mr = (REAL)m, rr = (REAL)rs;
        if (w && b)
            for (long i = 0; i < n; ++i) yp[i] = (xp[i] - mr) * rr * w[i] + b[i];
        else if (w)
            for (long i = 0; i < n; ++i) yp[i] = (xp[i] - mr) * rr * w[i];
        else if (b)
            for (long i = 0; i < n; ++i) yp[i] = (xp[i] - mr) * rr + b[i];
        else
            for (long i = 0; i < n; ++i) yp[i] = (xp[i] - mr) * rr;
    }
}

/* rows [r0, r1); gw/gb partial sums of row r go to row r / blk of gwp/gbp (zeroed by the
   caller; either may be NULL); gx may be NULL. */
void ln_bwd_SFX(const REAL *g, const REAL *x, long n, const REAL *w, const REAL *mean,
                const REAL *rstd, long r0, long r1, long blk, REAL *gx, double *gwp,
                double *gbp) {
    for (long r = r0; r < r1; ++r) {
        const REAL *gp = g + r * n, *xp = x + r * n;
        REAL m = mean[r], rs = rstd[r];
        if (gwp || gbp) {
            double *pw = gwp ? gwp + (r / blk) * n : 0, *pb = gbp ? gbp + (r / blk) * n : 0;
            if (pw)
                for (long i = 0; i < n; ++i) pw[i] += (double)(gp[i] * ((xp[i] - m) * rs));
            if (pb)
                for (long i = 0; i < n; ++i) pb[i] += (double)gp[i];
        }
        if (!gx) continue;
        /* g * w into gx first (the loops stay branch-free: masked stores are slow) */
        REAL *op = gx + r * n;
        if (w)
            for (long i = 0; i < n; ++i) op[i] = gp[i] * w[i];
        else
            for (long i = 0; i < n; ++i) op[i] = gp[i];
        double sa = 0, sb = 0;
        #pragma omp simd reduction(+:sa, sb)
        for (long i = 0; i < n; ++i) {
            sa += op[i];
            sb += op[i] * ((xp[i] - m) * rs);
        }
        REAL ma = (REAL)(sa / n), mb = (REAL)(sb / n);
        for (long i = 0; i < n; ++i) op[i] = rs * (op[i] - ma - ((xp[i] - m) * rs) * mb);
    }
}
"""

# exp of a non-positive float32, vectorisable: shared with the compiled attention kernel
# (ember/compiler/_attention.py)
EXP_NEG_F = r"""
/* exp(z) for z <= 0 (0 below -87.3), vectorisable: z = k ln2 + r, |r| <= ln2 / 2,
   exp(r) by a degree-7 polynomial, 2^k through the exponent bits. */
static inline float exp_neg_f(float z) {
    float zc = z < -87.3f ? -87.3f : z;      /* NaN stays NaN */
    float k = floorf(zc * 1.44269504f + 0.5f);
    float r = zc - k * 0.693359375f;
    r = r + k * 2.12194440e-4f;               /* ln2 = 0.693359375 - 2.12194440e-4 */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int i; float f; } s;
    s.i = ((int)k + 127) << 23;
    float e = p * s.f;
    return z < -87.3f ? 0.0f : e;
}
"""

_GELU = EXP_NEG_F + r"""
/* y = x Phi(x) and d = Phi(x) + x phi(x) over [i0, i1). d is always written (callers pass
   scratch when they do not want it): a conditional store becomes a masked vector store,
   slow on some cores (AMD's). */
void gelu_f(const float *x, long i0, long i1, float *y, float *d) {
    const float P = 0.3275911f * 0.70710678118654752f;
    const float C0 = 1.061405429f, C1 = -1.453152027f, C2 = 1.421413741f,
                C3 = -0.284496736f, C4 = 0.254829592f;
    for (long i = i0; i < i1; ++i) {
        float v = x[i];
        float t = 1.0f / (1.0f + P * fabsf(v));
        float q = C0 * t;
        q = (q + C1) * t;
        q = (q + C2) * t;
        q = (q + C3) * t;
        q = (q + C4) * t;
        float e = exp_neg_f(-0.5f * (v * v));
        float h = q * e * 0.5f;               /* erfc(|v| / sqrt 2) / 2 */
        float cdf = signbit(v) ? h : 1.0f - h;
        y[i] = v * cdf;
        d[i] = cdf + v * e * 0.3989422804014327f;
    }
}

void gelu_d(const double *x, long i0, long i1, double *y, double *d) {
    for (long i = i0; i < i1; ++i) {
        double v = x[i];
        double cdf = 0.5 * (1.0 + erf(v * 0.70710678118654752));
        y[i] = v * cdf;
        d[i] = cdf + v * exp(-0.5 * v * v) * 0.3989422804014327;
    }
}
"""

_ATTN = r"""
/* Attention's softmax over score rows, in place: for each batch entry b in [b0, b1) and row
   l < L of s (B, L, S): v = s * scale + mask, s = exp(v - max v) / sum. mask (or NULL) is
   indexed mask[b * mbs + l * S + j] (mbs 0: one (L, S) mask for every entry). A fully
   masked row (all -inf) becomes NaN, as PyTorch's. */
void attn_softmax_SFX(REAL *s, long b0, long b1, long L, long S, REAL scale,
                      const REAL *mask, long mbs) {
    for (long b = b0; b < b1; ++b)
        for (long l = 0; l < L; ++l) {
            REAL *r = s + (b * L + l) * S;
            if (mask) {
                const REAL *mr = mask + b * mbs + l * S;
                for (long j = 0; j < S; ++j) r[j] = r[j] * scale + mr[j];
            } else
                for (long j = 0; j < S; ++j) r[j] = r[j] * scale;
            REAL m = -INFINITY;  /* a NaN score makes its row NaN through the sum */
            #pragma omp simd reduction(max:m)
            for (long j = 0; j < S; ++j) m = r[j] > m ? r[j] : m;
            for (long j = 0; j < S; ++j) r[j] = EXP(r[j] - m);
            REAL t = 0;
            #pragma omp simd reduction(+:t)
            for (long j = 0; j < S; ++j) t += r[j];
            REAL inv = (REAL)1 / t;
            for (long j = 0; j < S; ++j) r[j] = r[j] * inv;
        }
}

/* Its backward, in place on d (the gradient of the weights, rows of S): for the rows
   [r0, r1), d = (d - sum(d * w)) * w * scale. */
void attn_softmax_bwd_SFX(REAL *d, const REAL *w, long r0, long r1, long S, REAL scale) {
    for (long r = r0; r < r1; ++r) {
        REAL *dr = d + r * S;
        const REAL *wr = w + r * S;
        REAL t = 0;
        #pragma omp simd reduction(+:t)
        for (long j = 0; j < S; ++j) t += dr[j] * wr[j];
        for (long j = 0; j < S; ++j) dr[j] = (dr[j] - t) * wr[j] * scale;
    }
}
"""

_LSTM = r"""
/* One time step of an LSTM layer's backward (no projection, no lengths) for `rows` batch
   rows of hidden size H, all C-contiguous: go (rows, H) the output gradient at t, dh and dc
   (rows, H) the state gradients from t + 1, g (rows, 4H) the activated gates i, f, g, o,
   tc = tanh(c_t), cp = c_{t-1}. Writes dgt (rows, 4H), the gradient of the gates'
   pre-activations, and dc in place (the cell gradient for t - 1); the caller then forms
   dh = dgt @ W_hh. The operations and their order are ember/ops/rnn.py's NumPy loop's
   (compiled with -ffp-contract=off): the same roundings. */
void lstm_bwd_SFX(const REAL *go, const REAL *dh, REAL *dc, const REAL *g, const REAL *tc,
                  const REAL *cp, REAL *dgt, long rows, long H) {
    for (long r = 0; r < rows; ++r) {
        const REAL *gr = g + r * 4 * H;
        REAL *dr = dgt + r * 4 * H;
        for (long j = 0; j < H; ++j) {
            long k = r * H + j;
            REAL i = gr[j], f = gr[H + j], gg = gr[2 * H + j], o = gr[3 * H + j];
            REAL t = tc[k];
            REAL dht = dh[k] + go[k];
            REAL dout = dht * t;
            REAL dct = dc[k] + (dht * o) * ((REAL)1 - t * t);
            REAL di = dct * gg, dg = dct * i, df = dct * cp[k];
            dr[j] = (di * i) * ((REAL)1 - i);
            dr[H + j] = (df * f) * ((REAL)1 - f);
            dr[2 * H + j] = dg * ((REAL)1 - gg * gg);
            dr[3 * H + j] = (dout * o) * ((REAL)1 - o);
            dc[k] = dct * f;
        }
    }
}
"""

_SCATTER = r"""
/* Row r of g (n rows of D) added into row idx[r] of z, for r = 0 .. n - 1 in turn: the
   order of np.add.at(z, idx, g), so the same roundings (indices checked by the caller). */
void scatter_rows_SFX(REAL *z, const long long *idx, const REAL *g, long n, long D) {
    for (long r = 0; r < n; ++r) {
        REAL *zr = z + idx[r] * D;
        const REAL *gr = g + r * D;
        for (long j = 0; j < D; ++j) zr[j] += gr[j];
    }
}
"""

_ACT = r"""
/* ReLU over [i0, i1): y = x where x >= 0 or x is NaN, else 0 (np.maximum(x, 0)'s values);
   its backward: gx = 0 where y <= 0, else g (PyTorch's threshold_backward: a NaN output
   passes its gradient; an infinite gradient at a clipped element gives 0, not NaN). */
void relu_SFX(const REAL *x, long i0, long i1, REAL *y) {
    for (long i = i0; i < i1; ++i) {
        REAL v = x[i];
        y[i] = (v >= 0 || v != v) ? v : (REAL)0;
    }
}

void relu_bwd_SFX(const REAL *g, const REAL *y, long i0, long i1, REAL *gx) {
    for (long i = i0; i < i1; ++i)
        gx[i] = y[i] <= 0 ? (REAL)0 : g[i];
}

/* Cross-entropy over class indices, rows [r0, r1) of x (N, C), C-contiguous: the row's
   log-softmax into logp (the max subtracted, exp by EXP, the sum in double), and into
   loss[r] -logp[t] (0 where the target is `ignore`). Returns -1, or the first row whose
   target is out of [0, C) (nothing else is then meaningful). */
long ce_fwd_SFX(const REAL *x, const long long *t, long C, long long ignore, long r0, long r1,
                REAL *logp, double *loss) {
    for (long r = r0; r < r1; ++r) {
        long long k = t[r];
        if (k != ignore && (k < 0 || k >= C))
            return r;
        const REAL *xr = x + r * C;
        REAL *lr = logp + r * C;
        REAL m = -INFINITY;  /* a NaN logit makes its row NaN through the sum */
        #pragma omp simd reduction(max:m)
        for (long j = 0; j < C; ++j) m = xr[j] > m ? xr[j] : m;
        for (long j = 0; j < C; ++j) lr[j] = xr[j] - m;
        double sum = 0;
        #pragma omp simd reduction(+:sum)
        for (long j = 0; j < C; ++j) sum += (double)EXP(lr[j]);
        REAL lse = (REAL)log(sum);
        for (long j = 0; j < C; ++j) lr[j] = lr[j] - lse;
        loss[r] = k != ignore ? -(double)lr[k] : 0.0;
    }
    return -1;
}

/* Its gradient, rows [r0, r1): (exp(logp) - onehot(t)) * scale, 0 on ignored rows. */
void ce_bwd_SFX(const REAL *logp, const long long *t, long C, long long ignore, long r0,
                long r1, REAL scale, REAL *gx) {
    for (long r = r0; r < r1; ++r) {
        const REAL *lr = logp + r * C;
        REAL *gr = gx + r * C;
        long long k = t[r];
        if (k == ignore) {
            for (long j = 0; j < C; ++j) gr[j] = 0;
            continue;
        }
        for (long j = 0; j < C; ++j) gr[j] = EXP(lr[j]) * scale;
        gr[k] = (EXP(lr[k]) - (REAL)1) * scale;
    }
}
"""

# The compiler's loader caches one function per source: the library exports one entry
# point that hands out the addresses of the others.
_TABLE = r"""
void *nn_c_symbol(int i) {
    void *table[] = {(void *)ln_fwd_f, (void *)ln_bwd_f, (void *)gelu_f,
                     (void *)attn_softmax_f, (void *)attn_softmax_bwd_f, (void *)lstm_bwd_f,
                     (void *)scatter_rows_f, (void *)relu_f, (void *)relu_bwd_f,
                     (void *)ce_fwd_f, (void *)ce_bwd_f,
                     (void *)ln_fwd_d, (void *)ln_bwd_d, (void *)gelu_d,
                     (void *)attn_softmax_d, (void *)attn_softmax_bwd_d, (void *)lstm_bwd_d,
                     (void *)scatter_rows_d, (void *)relu_d, (void *)relu_bwd_d,
                     (void *)ce_fwd_d, (void *)ce_bwd_d};
    return i >= 0 && i < 22 ? table[i] : 0;
}
"""
_SRC = (_TEMPLATE.replace("REAL", "float").replace("SFX", "f")
        + _TEMPLATE.split("\n", 2)[2].replace("REAL", "double").replace("SFX", "d")
        + _GELU
        + _ATTN.replace("REAL", "float").replace("SFX", "f").replace("EXP", "exp_neg_f")
        + _ATTN.replace("REAL", "double").replace("SFX", "d").replace("EXP", "exp")
        + _LSTM.replace("REAL", "float").replace("SFX", "f")
        + _LSTM.replace("REAL", "double").replace("SFX", "d")
        + _SCATTER.replace("REAL", "float").replace("SFX", "f")
        + _SCATTER.replace("REAL", "double").replace("SFX", "d")
        + _ACT.replace("REAL", "float").replace("SFX", "f").replace("EXP", "exp_neg_f")
        + _ACT.replace("REAL", "double").replace("SFX", "d").replace("EXP", "exp")
        + _TABLE)
_NAMES = ("ln_fwd", "ln_bwd", "gelu", "attn_softmax", "attn_softmax_bwd", "lstm_bwd",
          "scatter_rows", "relu", "relu_bwd", "ce_fwd", "ce_bwd")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_L = ctypes.c_long
_P = ctypes.c_void_p
_PROTOS = {
    "ln_fwd": ctypes.CFUNCTYPE(None, _P, _L, _P, _P, ctypes.c_double, _L, _L, *[_P] * 4),
    "ln_bwd": ctypes.CFUNCTYPE(None, _P, _P, _L, _P, _P, _P, _L, _L, _L, *[_P] * 3),
    "gelu": ctypes.CFUNCTYPE(None, _P, _L, _L, _P, _P),
    "lstm_bwd": ctypes.CFUNCTYPE(None, *[_P] * 7, _L, _L),
    "scatter_rows": ctypes.CFUNCTYPE(None, _P, _P, _P, _L, _L),
    "relu": ctypes.CFUNCTYPE(None, _P, _L, _L, _P),
    "relu_bwd": ctypes.CFUNCTYPE(None, _P, _P, _L, _L, _P),
    "ce_fwd": ctypes.CFUNCTYPE(_L, _P, _P, _L, ctypes.c_longlong, _L, _L, _P, _P),
}
_PROTOS_BY_DTYPE = {}
for _dt, _real in ((np.dtype(np.float32), ctypes.c_float), (np.dtype(np.float64),
                                                            ctypes.c_double)):
    _PROTOS_BY_DTYPE[("attn_softmax", _dt)] = ctypes.CFUNCTYPE(None, _P, _L, _L, _L, _L, _real,
                                                               _P, _L)
    _PROTOS_BY_DTYPE[("attn_softmax_bwd", _dt)] = ctypes.CFUNCTYPE(None, _P, _P, _L, _L, _L,
                                                                   _real)
    _PROTOS_BY_DTYPE[("ce_bwd", _dt)] = ctypes.CFUNCTYPE(None, _P, _P, _L, ctypes.c_longlong,
                                                         _L, _L, _real, _P)
_LIB: dict = {}

MIN_SIZE = 1 << 14  # elements from which nn.py takes these kernels (layer norm, attention
# weights); smaller inputs keep NumPy's formula, the one a captured (exported, compiled)
# graph replays, so that small float64 models stay bit for bit equal to their export
LN_BLOCK = 64       # rows per partial sum of the layer norm's weight/bias gradients
MIN_SPLIT = 1 << 17  # elements from which a call is split over the thread pool (below, a
# hand-off costs about what the second core would save)


def _load():
    """{(name, dtype): ctypes function}, empty without a working C compiler."""
    from .._cc import kernel_table
    return kernel_table(_SRC, "nn_c_symbol", "EMBER_NN_C",
                        [((n, d), _PROTOS.get(n) or _PROTOS_BY_DTYPE[(n, d)])
                         for d in _DTYPES for n in _NAMES])


def _kernel(name, dtype):
    if not _LIB:
        _LIB.update(_load() or {None: None})
    return _LIB.get((name, dtype))


def available(dtype):
    """Whether the C kernels serve arrays of ``dtype`` (float32/float64, a compiler works)."""
    return _kernel("gelu", np.dtype(dtype)) is not None


def _split(fn, n, size, align=1):
    """``fn(start, stop)`` over ``range(n)`` (cuts at multiples of ``align``), over the
    thread pool when ``size`` elements are worth it."""
    from .. import _parallel
    k = _parallel.threads_for(size, MIN_SPLIT)
    k = min(k, -(-n // align))
    if k <= 1:
        fn(0, n)
    else:
        _parallel.run_split(fn, _parallel._bounds(n, k, align))


def layer_norm_ok(x, n, *params):
    """Whether ``layer_norm`` serves ``x`` normalised over its last ``n`` elements (a
    C-contiguous float32/float64 array; params None or of ``n`` elements, same dtype)."""
    return (type(x) is np.ndarray and x.flags.c_contiguous and n > 0 and x.size
            and (x.dtype == np.float32 or x.dtype == np.float64)
            and all(p is None or (type(p) is np.ndarray and p.dtype == x.dtype and
                                  p.size == n) for p in params)
            and _kernel("ln_fwd", x.dtype) is not None)


def _vec(p):
    return None if p is None else np.ascontiguousarray(p).reshape(-1)


def layer_norm(x, n, w, b, eps):
    """``(y, mean, var, rstd)`` of ``x`` normalised over blocks of its last ``n`` elements;
    the statistics are flat (rows,) arrays of x's dtype."""
    rows = x.size // n
    y = np.empty(x.shape, x.dtype)
    stats = [np.empty(rows, x.dtype) for _ in range(3)]
    w, b = _vec(w), _vec(b)
    fn = _kernel("ln_fwd", x.dtype)
    xa, ya = _addr(x), _addr(y)
    wa, ba = None if w is None else _addr(w), None if b is None else _addr(b)
    sa = [_addr(s) for s in stats]
    _split(lambda r0, r1: fn(xa, n, wa, ba, eps, r0, r1, ya, *sa), rows, x.size)
    return (y,) + tuple(stats)


def layer_norm_grad(g, x, n, w, mean, rstd, need_x, need_w, need_b):
    """``(gx, gw, gb)`` of ``layer_norm`` (None where not needed); gw and gb flat (n,)."""
    g = np.ascontiguousarray(g, x.dtype)
    rows = x.size // n
    nblk = -(-rows // LN_BLOCK)
    gx = np.empty(x.shape, x.dtype) if need_x else None
    pw = np.zeros((nblk, n)) if need_w else None
    pb = np.zeros((nblk, n)) if need_b else None
    w, mean, rstd = _vec(w), _vec(mean), _vec(rstd)
    fn = _kernel("ln_bwd", x.dtype)
    a = [_addr(g), _addr(x), n, None if w is None else _addr(w), _addr(mean), _addr(rstd)]
    o = [None if t is None else _addr(t) for t in (gx, pw, pb)]
    _split(lambda r0, r1: fn(*a, r0, r1, LN_BLOCK, *o), rows, x.size, LN_BLOCK)
    gw = None if pw is None else np.add.reduce(pw, 0).astype(x.dtype)
    gb = None if pb is None else np.add.reduce(pb, 0).astype(x.dtype)
    return gx, gw, gb


def gelu(x, need_grad):
    """``(y, d)``: exact GELU of ``x`` (C-contiguous float32/float64) and, when
    ``need_grad``, its derivative (else None)."""
    y = np.empty(x.shape, x.dtype)
    d = np.empty(x.shape, x.dtype)  # written either way (see gelu_f)
    fn = _kernel("gelu", x.dtype)
    xa, ya, da = _addr(x), _addr(y), _addr(d)
    _split(lambda i0, i1: fn(xa, i0, i1, ya, da), x.size, x.size, 1024)
    return y, (d if need_grad else None)


def attn_softmax(s, b0, b1, scale, mask):
    """In place on the scores ``s`` (B, L, S), C-contiguous, entries [b0, b1): the attention
    weights ``softmax(s * scale + mask)`` over the last dim. ``mask`` is None, an (L, S) or a
    (B, L, S) C-contiguous array of s's dtype. Runs on the calling thread (the caller splits
    the batch)."""
    _, L, S = s.shape
    fn = _kernel("attn_softmax", s.dtype)
    mbs = 0 if mask is None or mask.ndim == 2 else L * S
    fn(_addr(s), b0, b1, L, S, scale, None if mask is None else _addr(mask), mbs)


def attn_softmax_bwd(d, w, scale):
    """In place on ``d`` (rows of the last dim, C-contiguous like ``w``): the gradient of the
    scores from that of the weights ``w``, times ``scale``. On the calling thread."""
    S = d.shape[-1]
    fn = _kernel("attn_softmax_bwd", d.dtype)
    fn(_addr(d), _addr(w), 0, d.size // max(S, 1), S, scale)


def lstm_bwd_kernel(dtype):
    """The C step of an LSTM layer's backward (see ``_LSTM``) for ``dtype``, or None (no
    compiler, or another dtype): ``fn(go, dh, dc, gates, tc, c_prev, dgates, rows, H)``
    on addresses."""
    dtype = np.dtype(dtype)
    return _kernel("lstm_bwd", dtype) if dtype in _DTYPES else None


def scatter_rows(z, rows, g):
    """``np.add.at(z, rows, g)`` in C, in place, or False (no compiler, or not this case):
    ``z`` a C-contiguous float32/float64 array, ``rows`` int64 indices into its first dim,
    already in range and non-negative, ``g`` C-contiguous of z's dtype with one row of
    ``z.shape[1:]`` per index. The same order of additions, so the same bits, as
    ``np.add.at`` (1024 rows of 128 float32 into 256: ~360 us sorted and summed by
    ``reduceat`` -> tens of microseconds)."""
    fn = _kernel("scatter_rows", z.dtype) if z.dtype in _DTYPES else None
    if fn is None or not z.flags.c_contiguous or not g.flags.c_contiguous or \
            g.dtype != z.dtype or rows.dtype != np.int64 or not rows.flags.c_contiguous:
        return False
    fn(_addr(z), _addr(rows), _addr(g), rows.size, z.size // max(z.shape[0], 1))
    return True


def relu_kernels(dtype):
    """``(relu, relu_bwd)`` C kernels for ``dtype`` (float32/float64), or None. ``relu(x, i0,
    i1, y)`` and ``relu_bwd(g, y, i0, i1, gx)`` on addresses, over elements [i0, i1)."""
    dtype = np.dtype(dtype)
    if dtype not in _DTYPES:
        return None
    fwd = _kernel("relu", dtype)
    return None if fwd is None else (fwd, _kernel("relu_bwd", dtype))


CE_DOUBLE_MAX = 1 << 16  # float64 logits from which ``nn.py`` keeps NumPy's cross-entropy:
# the C loop's float64 exp is the C library's, one element at a time (float32 uses the
# vectorised ``exp_neg_f``, relative error ~1e-7, as attention's softmax)


def cross_entropy_ok(x, target):
    """Whether ``cross_entropy`` serves ``x`` (N, C) against ``target`` (N,): C-contiguous
    float32 (float64 below ``CE_DOUBLE_MAX`` elements) logits, int64 targets, a compiler."""
    return (type(x) is np.ndarray and type(target) is np.ndarray and x.ndim == 2 and
            x.shape[1] > 0 and target.dtype == np.int64 and target.shape == x.shape[:1] and
            x.flags.c_contiguous and target.flags.c_contiguous and
            (x.dtype == np.float32 or (x.dtype == np.float64 and x.size < CE_DOUBLE_MAX)) and
            _kernel("ce_fwd", x.dtype) is not None)


def _row_parts(fn, n, size):
    """``fn(r0, r1)`` over ``n`` rows of ``size`` elements in all: blocks of rows over the
    pool when large (rows are independent); the parts' results in order."""
    from .. import _parallel
    k = min(_parallel.threads_for(size, MIN_SPLIT), n)
    if k <= 1:
        return [fn(0, n)]
    return _parallel.run_split(fn, _parallel._bounds(n, k))


def cross_entropy(x, target, ignore_index):
    """Cross-entropy of logits ``x`` (N, C) against class indices ``target`` (N,) in C
    (``cross_entropy_ok``): ``(logp, loss_sum, count)``, the summed loss of the rows not
    ignored (in double, over per-row losses added in order: the same at any thread count)
    and their count; raises PyTorch's IndexError for a target out of range."""
    n, c = x.shape
    logp = np.empty(x.shape, x.dtype)
    loss = np.empty(n, np.float64)
    fn = _kernel("ce_fwd", x.dtype)
    a = (_addr(x), _addr(target), c, ignore_index)
    o = (_addr(logp), _addr(loss))
    bad = [b for b in _row_parts(lambda r0, r1: fn(*a, r0, r1, *o), n, x.size) if b >= 0]
    if bad:
        raise IndexError(f"Target {int(target[bad[0]])} is out of bounds.")
    count = n if ignore_index < 0 and n and target.min() >= 0 else \
        int(np.count_nonzero(target != ignore_index))
    return logp, float(np.add.reduce(loss)), count


def cross_entropy_grad(logp, target, ignore_index, scale):
    """The gradient of ``cross_entropy``'s logits, ``(exp(logp) - onehot) * scale`` on rows
    not ignored and 0 on the others."""
    n, c = logp.shape
    gx = np.empty(logp.shape, logp.dtype)
    fn = _kernel("ce_bwd", logp.dtype)
    a = (_addr(logp), _addr(target), c, ignore_index)
    _row_parts(lambda r0, r1: fn(*a, r0, r1, scale, _addr(gx)), n, logp.size)
    return gx
