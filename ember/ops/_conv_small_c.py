"""Direct C convolution for few input channels, and 2x2 max pooling (issue 25).

im2col + GEMM is the wrong shape for a convolution with few input channels (LeNet's 1 -> 6
and 6 -> 16, 5x5): the GEMM's inner dimension is only C * KH * KW (25, 150), so it streams
the column matrix (25x the input) from memory for a handful of output rows, and the batch
has to be moved innermost and back around it. These kernels compute the convolution where
it is: each call pads one sample at a time into a small buffer (in L1/L2), then keeps a
block of 8 (or 6) output channels x 16 output columns in registers while it walks the
C * KH * KW taps (fused multiply-adds). Kernel rows that fall in the zero padding are
skipped.

* ``conv_fwd``:   out (N, O, OH, OW) = conv(x, w) + bias, for the samples [n0, n1);
* ``conv_wgrad``: stride 1, per block of ``nb`` samples, the weight gradient of those
  samples: each (output channel, tap) pair is a dot product over a shifted run of the
  padded input (no column matrix), 4 x 4 pairs in registers; the caller adds the blocks'
  sums in order. Blocks are fixed by the shape alone (never by the thread count), so the
  result is the same at every thread count;
* ``maxpool2x2``: 2x2 stride-2 max pooling (the usual case), maxima and PyTorch's flat
  argmax indices (its rule: the first maximum, or the last NaN, of each window),
  vectorised (the generic kernel of ``_conv_c.py`` walks kernel positions one by one).

Every sample (or block) is independent, so a caller cuts the batch over the thread pool of
``ember/_parallel.py`` with one hand-off per op (ctypes releases the GIL during the call).
Compiled on first use by ``ember/_cc.py`` (disk cache keyed by the source); where no C
compiler works ``available()`` is False and ``ember/ops/conv.py`` keeps im2col + GEMM.
``EMBER_CONV_DIRECT=0`` turns these kernels off (for A/B comparisons and the tests).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

OBS = (8, 6)  # output channels per register block: two variants of the forward kernel
JB = 16  # output columns per register block (float32; float64 takes 8)

_TEMPLATE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The planes x (C, H, W) of one sample into buf (C, Hp, Wpa), shifted by (pt, pl), zeros
   around; rows and columns past the buffer are not needed by any tap and are dropped. */
static void pad_planes_SFX(const REAL *x, long C, long H, long W, long pt, long pl, long Hp,
                           long Wpa, REAL *buf) {
    memset(buf, 0, (size_t)(C * Hp * Wpa) * sizeof(REAL));
    long wc = W < Wpa - pl ? W : Wpa - pl;
    if (wc <= 0) return;
    for (long c = 0; c < C; ++c)
        for (long y = 0; y < H; ++y) {
            if (y + pt >= Hp) break;
            memcpy(buf + (c * Hp + y + pt) * Wpa + pl, x + (c * H + y) * W,
                   (size_t)wc * sizeof(REAL));
        }
}

/* JB = JV vectors of output columns, loaded from p (stride s; a constant after inlining) */
static inline __attribute__((always_inline)) void load_row_SFX(VEC_SFX *v, const REAL *p,
                                                                long s) {
    if (s == 1) {
        for (int i = 0; i < JV; ++i) v[i] = *(const UVEC_SFX *)(p + i * LANES_SFX);
    } else {
        REAL t[JB_SFX];
        for (int j = 0; j < JB_SFX; ++j) t[j] = p[j * s];
        for (int i = 0; i < JV; ++i) v[i] = *(const UVEC_SFX *)(t + i * LANES_SFX);
    }
}

@FWD@
/* The weight gradient of a stride-1 convolution, for the sample blocks [b0, b1) (block b:
   samples [b * nb, b * nb + nb) cut at N): part (nblocks, O, C * KH * KW), each block's own
   sum. g is the output gradient (N, O, OH, OW); Wp the padded input's row length.
   Every (output channel, tap) pair is a dot product over output positions. A sample's padded
   planes (C, Hp, Wp) and its gradient rows laid out Wp apart (zeros past OW) make the
   positions of every tap one contiguous run of the padded input, shifted by the tap's
   offset: no column matrix is built. 4 x 4 pairs at a time in vector registers (8 loads
   for 16 multiply-adds); the lanes are folded in a fixed order. */
int conv_wgrad_SFX(const REAL *x, long N, long C, long H, long W, long pt, long pl,
                   const REAL *g, long O, long KH, long KW, long dh, long dw, long OH,
                   long OW, long Hp, long Wp, long nb, long b0, long b1, REAL *part) {
    long K = KH * KW, T = C * K, Tp = (T + 3) / 4 * 4, Op = (O + 3) / 4 * 4;
    long Q = (OH * Wp + WLANES_SFX - 1) / WLANES_SFX * WLANES_SFX;  /* positions, whole vectors */
    long XS = C * Hp * Wp + Q, GS = Op * Q;  /* per sample: input (+ slack), gradient rows */
    REAL *xb = malloc((size_t)(nb * XS) * sizeof(REAL));
    REAL *gb = malloc((size_t)(nb * GS) * sizeof(REAL));
    long *off = malloc((size_t)Tp * sizeof(long));
    if (!xb || !gb || !off) { free(xb); free(gb); free(off); return 1; }
    for (long t = 0; t < Tp; ++t) {  /* a tap's shift; padding taps read tap 0 (dropped) */
        long c = t / K, ky = t % K / KW, kx = t % KW;
        off[t] = t < T ? (c * Hp + ky * dh) * Wp + kx * dw : 0;
    }
    for (long b = b0; b < b1; ++b) {
        long s0 = b * nb, s1 = s0 + nb < N ? s0 + nb : N, m = s1 - s0;
        for (long i = 0; i < m; ++i) {
            REAL *xi = xb + i * XS, *gi = gb + i * GS;
            pad_planes_SFX(x + (s0 + i) * C * H * W, C, H, W, pt, pl, Hp, Wp, xi);
            for (long q = C * Hp * Wp; q < XS; ++q) xi[q] = 0;
            for (long q = 0; q < GS; ++q) gi[q] = 0;
            for (long o = 0; o < O; ++o)
                for (long y = 0; y < OH; ++y) {
                    const REAL *src = g + (((s0 + i) * O + o) * OH + y) * OW;
                    REAL *dst = gi + o * Q + y * Wp;
                    for (long j = 0; j < OW; ++j) dst[j] = src[j];
                }
        }
        REAL *pb = part + b * O * T;
        for (long o0 = 0; o0 < Op; o0 += 4)
            for (long t0 = 0; t0 < Tp; t0 += 4) {
                WVEC_SFX acc[4][4];
                for (int i = 0; i < 4; ++i)
                    for (int j = 0; j < 4; ++j) acc[i][j] = (WVEC_SFX){0};
                for (long i = 0; i < m; ++i) {
                    const REAL *gr = gb + i * GS + o0 * Q, *xi = xb + i * XS;
                    const REAL *xr[4] = {xi + off[t0], xi + off[t0 + 1], xi + off[t0 + 2],
                                         xi + off[t0 + 3]};
                    for (long q = 0; q < Q; q += WLANES_SFX) {
                        WVEC_SFX gv[4], xv[4];
                        for (int k = 0; k < 4; ++k) {
                            gv[k] = *(const UWVEC_SFX *)(gr + k * Q + q);
                            xv[k] = *(const UWVEC_SFX *)(xr[k] + q);
                            IN_REGISTER(gv[k]);
                            IN_REGISTER(xv[k]);
                        }
                        for (int k = 0; k < 4; ++k)
                            for (int j = 0; j < 4; ++j) acc[k][j] += gv[k] * xv[j];
                    }
                }
                for (int i = 0; i < 4 && o0 + i < O; ++i)
                    for (int j = 0; j < 4 && t0 + j < T; ++j) {
                        REAL t[WLANES_SFX];  /* the lanes, folded in a fixed order */
                        *(UWVEC_SFX *)t = acc[i][j];
                        for (int w = WLANES_SFX / 2; w >= 1; w /= 2)
                            for (int l = 0; l < w; ++l) t[l] += t[l + w];
                        pb[(o0 + i) * T + t0 + j] = t[0];
                    }
            }
    }
    free(xb);
    free(gb);
    free(off);
    return 0;
}

/* 2x2 stride-2 max pooling (no padding) of the planes [p0, p1) of x (P, H, W): maxima and,
   when idx is given, each window's argmax as a flat index into its plane: PyTorch's rule
   (kernel positions in row-major order, a larger value or any NaN takes over: the first
   maximum, the last NaN). LANES windows at a time: the even and odd
   columns of each row pair are split by shuffles, then compared with masks. */
static inline REAL max2_SFX(REAL a, REAL b, int *t) {
    *t = b > a || b != b;
    return *t ? b : a;
}

void maxpool2x2_SFX(const REAL *x, long H, long W, long oh, long ow, long p0, long p1,
                    REAL *out, int64_t *idx) {
    for (long p = p0; p < p1; ++p)
        for (long oy = 0; oy < oh; ++oy) {
            const REAL *r0 = x + (p * H + 2 * oy) * W, *r1 = r0 + W;
            REAL *o = out + (p * oh + oy) * ow;
            int64_t *io = idx ? idx + (p * oh + oy) * ow : 0, base = 2 * oy * W;
            long j = 0;
            for (; j + LANES_SFX <= ow; j += LANES_SFX) {
                VEC_SFX u0 = *(const UVEC_SFX *)(r0 + 2 * j);
                VEC_SFX u1 = *(const UVEC_SFX *)(r0 + 2 * j + LANES_SFX);
                VEC_SFX v0 = *(const UVEC_SFX *)(r1 + 2 * j);
                VEC_SFX v1 = *(const UVEC_SFX *)(r1 + 2 * j + LANES_SFX);
                VEC_SFX a = SHUF_SFX(u0, u1, EVEN_SFX), b = SHUF_SFX(u0, u1, ODD_SFX);
                VEC_SFX c = SHUF_SFX(v0, v1, EVEN_SFX), d = SHUF_SFX(v0, v1, ODD_SFX);
                IVEC_SFX tb = (b > a) | (b != b);
                IVEC_SFX td = (d > c) | (d != d);
                VEC_SFX m0 = (VEC_SFX)(((IVEC_SFX)b & tb) | ((IVEC_SFX)a & ~tb));
                VEC_SFX m1 = (VEC_SFX)(((IVEC_SFX)d & td) | ((IVEC_SFX)c & ~td));
                IVEC_SFX t = (m1 > m0) | (m1 != m1);
                *(UVEC_SFX *)(o + j) = (VEC_SFX)(((IVEC_SFX)m1 & t) | ((IVEC_SFX)m0 & ~t));
                if (io) {  /* masks are -1/0: the offset in the window is W*t + (t ? td : tb) */
                    IVEC_SFX k = ((-td) & t) | ((-tb) & ~t);
                    k += (t & ((IVEC_SFX){0} + (ITYPE_SFX)W)) + 2 * IOTA_SFX;
                    *(I64VEC_SFX *)(io + j) = __builtin_convertvector(k, I64VEC_SFX)
                        + (int64_t)(base + 2 * j);
                }
            }
            for (; j < ow; ++j) {
                int tb, td, t;
                REAL m0 = max2_SFX(r0[2 * j], r0[2 * j + 1], &tb);
                REAL m1 = max2_SFX(r1[2 * j], r1[2 * j + 1], &td);
                o[j] = max2_SFX(m0, m1, &t);
                if (io) io[j] = base + 2 * j + (t ? W + td : tb);
            }
        }
}
"""

_FWD = r"""
/* One output block of row y, JB columns x OB channels (the source has a copy per channel
   block size): acc = sum over the taps. */
static inline __attribute__((always_inline)) void fwd_blockOB_SFX(
        VEC_SFX acc[OB][JV], const REAL *buf, const REAL *wb, long C, long K, long KW,
        long Hp, long Wpa, long row0, long ky0, long ky1, long dh, long dw, long sw,
        long col0) {
    for (int o = 0; o < OB; ++o)
        for (int v = 0; v < JV; ++v) acc[o][v] = (VEC_SFX){0};
    for (long c = 0; c < C; ++c)
        for (long ky = ky0; ky < ky1; ++ky) {
            const REAL *xr = buf + (c * Hp + row0 + ky * dh) * Wpa + col0;
            const REAL *wr = wb + (c * K + ky * KW) * OB;
            for (long kx = 0; kx < KW; ++kx) {
                VEC_SFX xv[JV];
                load_row_SFX(xv, xr + kx * dw, sw);
                const REAL *wv = wr + kx * OB;
                for (int o = 0; o < OB; ++o)
                    for (int v = 0; v < JV; ++v) acc[o][v] += xv[v] * wv[o];
            }
        }
}

/* out (N, O, OH, OW) = conv(x, w) (+ bias) for the samples [n0, n1). wp is the weight packed
   (ceil(O / OB), C, KH, KW, OB), zeros past O. Hp, Wpa: the padded buffer's rows and
   columns (Wpa covers whole JB-column blocks). */
int conv_fwdOB_SFX(const REAL *x, long C, long H, long W, long pt, long pl, const REAL *wp,
                 long O, long KH, long KW, long sh, long sw, long dh, long dw, long OH,
                 long OW, long Hp, long Wpa, const REAL *bias, long n0, long n1, REAL *out) {
    long K = KH * KW, nob = (O + OB - 1) / OB;
    REAL *buf = malloc((size_t)(C * Hp * Wpa) * sizeof(REAL));
    if (!buf) return 1;  /* the caller raises MemoryError */
    for (long n = n0; n < n1; ++n) {
        pad_planes_SFX(x + n * C * H * W, C, H, W, pt, pl, Hp, Wpa, buf);
        for (long ob = 0; ob < nob; ++ob) {
            const REAL *wb = wp + ob * C * K * OB;
            long oc = O - ob * OB < OB ? O - ob * OB : OB;
            for (long y = 0; y < OH; ++y) {
                long ky0 = 0, ky1 = KH;  /* kernel rows inside the input: padding adds 0 */
                while (ky0 < KH && y * sh + ky0 * dh < pt) ++ky0;
                while (ky1 > ky0 && y * sh + (ky1 - 1) * dh >= pt + H) --ky1;
                for (long j0 = 0; j0 < OW; j0 += JB_SFX) {
                    VEC_SFX acc[OB][JV];
                    if (sw == 1)
                        fwd_blockOB_SFX(acc, buf, wb, C, K, KW, Hp, Wpa, y * sh, ky0, ky1, dh, dw,
                                      1, j0);
                    else
                        fwd_blockOB_SFX(acc, buf, wb, C, K, KW, Hp, Wpa, y * sh, ky0, ky1, dh, dw,
                                      sw, j0 * sw);
                    long jc = OW - j0 < JB_SFX ? OW - j0 : JB_SFX;
                    for (long o = 0; o < oc; ++o) {
                        REAL b = bias ? bias[ob * OB + o] : 0, t[JB_SFX];
                        for (int v = 0; v < JV; ++v) *(UVEC_SFX *)(t + v * LANES_SFX) = acc[o][v];
                        REAL *dst = out + ((n * O + ob * OB + o) * OH + y) * OW + j0;
                        for (long j = 0; j < jc; ++j) dst[j] = t[j] + b;
                    }
                }
            }
        }
    }
    free(buf);
    return 0;
}

"""

_TABLE = r"""
void *conv_small_symbol(int i) {
    void *table[] = {(void *)conv_fwd8_f, (void *)conv_fwd6_f, (void *)conv_wgrad_f,
                     (void *)maxpool2x2_f, (void *)conv_fwd8_d, (void *)conv_fwd6_d,
                     (void *)conv_wgrad_d, (void *)maxpool2x2_d};
    return i >= 0 && i < 8 ? table[i] : 0;
}
"""
# Register blocks: 8 or 6 output channels x JV vectors of 32 bytes (16 float or 8 double output
# columns); a * b + c on them is contracted to fused multiply-adds (the pragma: ember's C
# flags turn contraction off for the compiler's elementwise kernels, whose roundings must
# match eager's; a convolution's sum has no order to match). The pragma also keeps GCC from
# turning the short row copies into memcpy calls (a call per 10-float row cost a quarter
# of the weight gradient's time).
_HEAD = r"""
#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=fast", "no-tree-loop-distribute-patterns")
#endif
#define JV 2
typedef float VEC_f __attribute__((vector_size(32)));
typedef double VEC_d __attribute__((vector_size(32)));
typedef float UVEC_f __attribute__((vector_size(32), aligned(4), may_alias));
typedef double UVEC_d __attribute__((vector_size(32), aligned(8), may_alias));
#define LANES_f 8
#define LANES_d 4
#define JB_f 16
#define JB_d 8
typedef int32_t IVEC_f __attribute__((vector_size(32)));
typedef int64_t IVEC_d __attribute__((vector_size(32)));
typedef int32_t ITYPE_f;
typedef int64_t ITYPE_d;
typedef int64_t I64VEC_f __attribute__((vector_size(64), aligned(8), may_alias));
typedef int64_t I64VEC_d __attribute__((vector_size(32), aligned(8), may_alias));
#if defined(__clang__)
#define SHUF_f(a, b, m) __builtin_shufflevector(a, b, m)
#define SHUF_d(a, b, m) __builtin_shufflevector(a, b, m)
#define EVEN_f 0, 2, 4, 6, 8, 10, 12, 14
#define ODD_f 1, 3, 5, 7, 9, 11, 13, 15
#define EVEN_d 0, 2, 4, 6
#define ODD_d 1, 3, 5, 7
#else
#define SHUF_f(a, b, m) __builtin_shuffle(a, b, (IVEC_f){m})
#define SHUF_d(a, b, m) __builtin_shuffle(a, b, (IVEC_d){m})
#define EVEN_f 0, 2, 4, 6, 8, 10, 12, 14
#define ODD_f 1, 3, 5, 7, 9, 11, 13, 15
#define EVEN_d 0, 2, 4, 6
#define ODD_d 1, 3, 5, 7
#endif
/* The weight gradient's vectors: 64 bytes where AVX-512 gives 32 such registers (its 4 x 4
   block then needs 24), else 32 bytes */
#if defined(__AVX512F__)
#define WBYTES 64
#else
#define WBYTES 32
#endif
typedef float WVEC_f __attribute__((vector_size(WBYTES)));
typedef double WVEC_d __attribute__((vector_size(WBYTES)));
typedef float UWVEC_f __attribute__((vector_size(WBYTES), aligned(4), may_alias));
typedef double UWVEC_d __attribute__((vector_size(WBYTES), aligned(8), may_alias));
#define WLANES_f (WBYTES / 4)
#define WLANES_d (WBYTES / 8)
#define IOTA_f (IVEC_f){0, 1, 2, 3, 4, 5, 6, 7}
/* Keep a loaded vector in a register: without it GCC folds the load into each of the four
   multiply-adds that use it (32 loads for 16 multiply-adds instead of 8: load-bound). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IN_REGISTER(v) __asm__("" : "+v"(v))
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define IN_REGISTER(v) __asm__("" : "+w"(v))
#else
#define IN_REGISTER(v) (void)0
#endif
#define IOTA_d (IVEC_d){0, 1, 2, 3}
"""
_TEMPLATE = _TEMPLATE.replace("@FWD@\n", "".join(_FWD.replace("OB", str(ob)) for ob in OBS))
_BODY = _TEMPLATE.split("\n", 4)[4]  # the second copy without the #includes
_SRC = (_TEMPLATE.replace("REAL", "float").replace("SFX", "f")
        .replace("#include <string.h>\n", "#include <string.h>\n" + _HEAD)
        + _BODY.replace("REAL", "double").replace("SFX", "d") + _TABLE)
_NAMES = ("conv_fwd8", "conv_fwd6", "conv_wgrad", "maxpool2x2")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_L = ctypes.c_long
_P = ctypes.c_void_p
_PROTOS = {
    "conv_fwd8": ctypes.CFUNCTYPE(ctypes.c_int, _P, *[_L] * 5, _P, *[_L] * 11, _P, _L, _L, _P),
    "conv_fwd6": ctypes.CFUNCTYPE(ctypes.c_int, _P, *[_L] * 5, _P, *[_L] * 11, _P, _L, _L, _P),
    "conv_wgrad": ctypes.CFUNCTYPE(ctypes.c_int, _P, *[_L] * 6, _P, *[_L] * 12, _P),
    "maxpool2x2": ctypes.CFUNCTYPE(None, _P, *[_L] * 6, _P, _P),
}
_LIB: dict = {}


def _kernel(name, dtype):
    """The ctypes function ``name`` for ``dtype``, or None (no compiler, another dtype, or
    ``EMBER_CONV_DIRECT=0``)."""
    if not _LIB:
        from .._cc import kernel_table
        _LIB.update(kernel_table(_SRC, "conv_small_symbol", "EMBER_CONV_DIRECT",
                                 [((n, d), _PROTOS[n]) for d in _DTYPES for n in _NAMES])
                    or {None: None})
    return _LIB.get((name, dtype))


def available(dtype):
    """Whether these kernels serve arrays of ``dtype`` (float32/float64, a compiler works,
    not ``EMBER_CONV_DIRECT=0``)."""
    return os.environ.get("EMBER_CONV_DIRECT", "1") != "0" and \
        _kernel("conv_fwd8", np.dtype(dtype)) is not None


def _addr(a):
    return a.__array_interface__["data"][0]


# Below this many multiply-adds a call runs inline: a hand-off costs tens of microseconds.
_MIN_SPLIT_WORK = 1 << 21


def _split(fn, n, work):
    """``fn(start, stop)`` over ``range(n)``, cut over the thread pool when ``work``
    (multiply-adds) is worth it; a part whose kernel could not allocate its buffers (it
    returns nonzero, computing nothing) raises MemoryError here."""
    from .. import _parallel
    from .._threads import get_num_threads
    k = min(get_num_threads(), n) if work >= _MIN_SPLIT_WORK else 1
    res = [fn(0, n)] if k <= 1 else _parallel.run_split(fn, _parallel._bounds(n, k))
    if any(res):
        raise MemoryError("convolution: the direct C kernel could not allocate its buffers")


def _geometry(h, w, ks, pads, st, dl):
    """(OH, OW, Hp, Wpa): the output size and the padded buffer's rows and columns (whole
    JB-column blocks of output, so no tap reads past a row)."""
    (pt, pb), (pl, pr) = pads
    oh = (h + pt + pb - dl[0] * (ks[0] - 1) - 1) // st[0] + 1
    ow = (w + pl + pr - dl[1] * (ks[1] - 1) - 1) // st[1] + 1
    hp = (oh - 1) * st[0] + dl[0] * (ks[0] - 1) + 1
    wpa = (-(-ow // JB) * JB - 1) * st[1] + dl[1] * (ks[1] - 1) + 1
    return oh, ow, hp, wpa


def _packed(w, ob):
    """w (O, C, KH, KW) as (ceil(O / ob), C, KH, KW, ob), zeros past O."""
    o = w.shape[0]
    nob = -(-o // ob)
    wp = np.zeros((nob * ob,) + w.shape[1:], w.dtype)
    wp[:o] = w
    return np.ascontiguousarray(wp.reshape((nob, ob) + w.shape[1:]).transpose(0, 2, 3, 4, 1))


def _channel_block(o):
    """The forward kernel's register block for ``o`` output channels: 6 where it pads less
    than 8 (LeNet's 6 channels: no idle quarter of the block), else 8."""
    return 6 if -(-o // 6) * 6 < -(-o // 8) * 8 else 8


def conv2d(x, w, b, pads, st, dl):
    """conv(x, w) + b for x (N, C, H, W), w (O, C, KH, KW), b (O,) or None, zero padding
    ``pads`` ((top, bottom), (left, right)), stride ``st``, dilation ``dl`` (groups 1)."""
    x = np.ascontiguousarray(x)
    n, c, h, wd = x.shape
    o = w.shape[0]
    ks = w.shape[2:]
    oh, ow, hp, wpa = _geometry(h, wd, ks, pads, st, dl)
    out = np.empty((n, o, oh, ow), x.dtype)
    ob = _channel_block(o)
    wp = _packed(w.astype(x.dtype, copy=False), ob)
    bias = None if b is None else np.ascontiguousarray(b, x.dtype)
    fn = _kernel(f"conv_fwd{ob}", x.dtype)
    xa, wa, oa = _addr(x), _addr(wp), _addr(out)
    ba = None if bias is None else _addr(bias)
    args = (c, h, wd, pads[0][0], pads[1][0], wa, o, ks[0], ks[1], st[0], st[1], dl[0], dl[1],
            oh, ow, hp, wpa, ba)
    _split(lambda n0, n1: fn(xa, *args, n0, n1, oa), n, out.size * c * ks[0] * ks[1])
    return out


def _block(n, c, hp, wp, o, oh):
    """Samples per weight-gradient block: a shape's choice alone (never the thread count):
    buffers of at most about 64K elements (they stay in the core's L2 cache), and the batch
    in a multiple of 8 blocks where it can be, so that 2, 4 or 8 threads get equal shares."""
    q = -(-(oh * wp) // 16) * 16
    fit = max(1, (64 << 10) // (c * hp * wp + q + -(-o // 4) * 4 * q))
    return max(1, -(-n // (8 * -(-n // (8 * fit)))))


def conv2d_weight_grad(x, g, wshape, pads, dl):
    """The weight gradient (O, C, KH, KW) of a stride-1 ``conv2d`` for output gradient
    ``g``: sums over fixed blocks of samples (split over the threads), then the blocks' sums
    in order, so the result is the same at every thread count."""
    x = np.ascontiguousarray(x)
    g = np.ascontiguousarray(g, x.dtype)
    n, c, h, wd = x.shape
    o = wshape[0]
    ks = tuple(wshape[2:])
    oh, ow = g.shape[2:]  # (may be fewer rows than the padded input allows: output_padding)
    hp = oh + dl[0] * (ks[0] - 1)
    wp = ow + dl[1] * (ks[1] - 1)
    nb = min(n, _block(n, c, hp, wp, o, oh))
    blocks = -(-n // nb)
    part = np.empty((blocks, o, c * ks[0] * ks[1]), x.dtype)
    fn = _kernel("conv_wgrad", x.dtype)
    xa, ga, pa = _addr(x), _addr(g), _addr(part)
    args = (n, c, h, wd, pads[0][0], pads[1][0], ga, o, ks[0], ks[1], dl[0], dl[1], oh, ow,
            hp, wp, nb)
    _split(lambda b0, b1: fn(xa, *args, b0, b1, pa), blocks, g.size * c * ks[0] * ks[1])
    total = part[0] if blocks == 1 else np.add.reduce(part, axis=0)  # blocks in order
    return total.reshape((o, c) + ks)


def maxpool2x2(x, indices):
    """2x2 stride-2 max pooling of x (N, C, H, W) (no padding, floor): (out, int64 flat
    indices or None)."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = h // 2, w // 2
    out = np.empty((n, c, oh, ow), x.dtype)
    idx = np.empty(out.shape, np.int64) if indices else None
    fn = _kernel("maxpool2x2", x.dtype)
    xa, oa, ia = _addr(x), _addr(out), None if idx is None else _addr(idx)
    _split(lambda p0, p1: fn(xa, h, w, oh, ow, p0, p1, oa, ia), n * c, 8 * x.size)
    return out, idx
