"""Winograd F(2x2, 3x3) convolution fused by blocks of tiles, in C (issue 25).

``ember/ops/_conv_c.py`` runs a Winograd convolution as three passes over whole arrays: the
input transform writes V (16, C, tiles), sixteen GEMMs read it and write M (16, O, tiles),
the output transform reads M. At ResNet's 64 x 56 x 56, batch 8, V and M are 25 MB each, so
every pass streams main memory, and the GEMMs with their long rows run at half the speed
BLAS reaches on a block that stays in cache (measured, one thread: (64 x 64) @ (64 x 6272)
41-51 GFLOP/s, @ (64 x 64) blocks 100-105 GFLOP/s). Each pass is also a separate hand-off to
the thread pool with a join after it.

``wino_fused`` instead walks the tiles in blocks of ``block_tiles`` (sized so that a
block's V and M stay in a core's L2 cache): for each block it transforms the input tiles,
calls the BLAS GEMM sixteen times on the block (through a function pointer to the
``cblas_?gemm`` of the OpenBLAS under NumPy, found once by ``_gemm_pointer``), and writes
the block's outputs. The blocks are independent, so one hand-off splits the whole
convolution over the thread pool, and each block is computed by the same code whatever
thread takes it: the result is the same at every thread count. When the weight gradient
will need V, the blocks' V is written into the whole (16, C, tiles) array instead of a
scratch block (the GEMM then reads it back from cache).

Where no C compiler works, or the BLAS under NumPy is not an OpenBLAS whose CBLAS symbols
can be found, ``available()`` is False and ``ember/ops/conv.py`` runs the three passes.
``EMBER_WINO_FUSED=0`` forces that too (for A/B comparisons).
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

_TEMPLATE = r"""
#include <stdlib.h>
#include <string.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

/* CBLAS row-major GEMM with 64-bit or 32-bit integers (OpenBLAS ILP64 or LP64 builds). */
typedef void (*gemm64_SFX)(int, int, int, long long, long long, long long, REAL, const REAL *,
                           long long, const REAL *, long long, REAL, REAL *, long long);
typedef void (*gemm32_SFX)(int, int, int, int, int, int, REAL, const REAL *, int,
                           const REAL *, int, REAL, REAL *, int);

/* Tile t of the (N, th, tw) grid -> image n, tile row ty, tile column tx. */
#define SPLIT_TILE(t) long n = (t) / (th * tw), ty = ((t) % (th * tw)) / tw, \
    tx0 = ((t) % (th * tw)) % tw, tx1 = tx0 + (te - (t)) < tw ? tx0 + (te - (t)) : tw;

/* B^T d B of the tiles [ts, te) of every channel into v (16, C, ldv) at columns t - ts: per
   tile row, B^T on the padded rows, then B on the columns. On narrow images (tile rows of
   fewer than 8 tiles, too short for vector loops) the rows' tile columns are gathered
   first and B applied in one pass over the block's tiles (8x8 images: 0.86 -> 0.58 ms per
   CIFAR convolution; 16x16 ones ran slower that way). */
static void tiles_in_SFX(const REAL *x, long C, long H, long W, long pt, long pl, long th,
                         long tw, long ts, long te, REAL *v, long ldv) {
    long CL = C * ldv, Wp = 2 * tw + 2, nb = te - ts;
    int gather = tw < 8;
    REAL r[4][Wp], s[4][Wp], d[gather ? 16 : 1][gather ? nb : 1];
    for (long c = 0; c < C; ++c) {
        REAL *vb = v + c * ldv;
        for (long t = ts; t < te;) {
            SPLIT_TILE(t)
            long q0 = 2 * tx0, len = 2 * (tx1 - tx0) + 2;  /* padded columns [q0, q0+len) */
            long lo = q0 > pl ? q0 : pl, hi = q0 + len < pl + W ? q0 + len : pl + W;
            const REAL *xc = x + (n * C + c) * H * W;
            for (int k = 0; k < 4; ++k) {
                long y = 2 * ty + k - pt;
                memset(r[k], 0, len * sizeof(REAL));
                if (y >= 0 && y < H && hi > lo)
                    memcpy(r[k] + (lo - q0), xc + y * W + (lo - pl), (hi - lo) * sizeof(REAL));
            }
            for (long i = 0; i < len; ++i) {  /* B^T on the rows */
                s[0][i] = r[0][i] - r[2][i];
                s[1][i] = r[1][i] + r[2][i];
                s[2][i] = r[2][i] - r[1][i];
                s[3][i] = r[1][i] - r[3][i];
            }
            long nt = tx1 - tx0, j0 = t - ts;
            for (int k = 0; k < 4; ++k) {
                const REAL *sk = s[k];
                if (gather) {
                    for (int i = 0; i < 4; ++i)
                        for (long j = 0; j < nt; ++j) d[4 * k + i][j0 + j] = sk[2 * j + i];
                    continue;
                }
                REAL *v0 = vb + j0 + (4 * k) * CL, *v1 = v0 + CL, *v2 = v1 + CL, *v3 = v2 + CL;
                for (long j = 0; j < nt; ++j) {  /* ... then B on the columns */
                    REAL a = sk[2 * j], b = sk[2 * j + 1], e = sk[2 * j + 2], f = sk[2 * j + 3];
                    v0[j] = a - e;
                    v1[j] = b + e;
                    v2[j] = e - b;
                    v3[j] = b - f;
                }
            }
            t += nt;
        }
        if (!gather) continue;
        for (int k = 0; k < 4; ++k) {  /* B on the gathered columns */
            const REAL *a = d[4 * k], *b = d[4 * k + 1], *e = d[4 * k + 2], *f = d[4 * k + 3];
            REAL *v0 = vb + (4 * k) * CL, *v1 = v0 + CL, *v2 = v1 + CL, *v3 = v2 + CL;
            for (long j = 0; j < nb; ++j) {
                v0[j] = a[j] - e[j];
                v1[j] = b[j] + e[j];
                v2[j] = e[j] - b[j];
                v3[j] = b[j] - f[j];
            }
        }
    }
}

/* A^T M A (+ bias) of the tiles [ts, te) from m (16, O, ldm) into out (N, O, oh, ow): the
   transform in one pass over the block's tiles (long vector loops, whatever the image
   width), then each tile row's 2 x 2 outputs put in place, cropped to oh x ow. */
static void tiles_out_SFX(const REAL *m, long ldm, long O, long th, long tw, long oh, long ow,
                          const REAL *bias, long ts, long te, REAL *out) {
    long OL = O * ldm, nb = te - ts;
    REAL y[4][nb];
    for (long o = 0; o < O; ++o) {
        REAL bo = bias ? bias[o] : 0;
        const REAL *mb = m + o * ldm;
        for (long j = 0; j < nb; ++j) {
            REAL s0[4], s1[4];
            for (int q = 0; q < 4; ++q) {  /* A^T on the rows */
                REAL m0 = mb[q * OL + j], m1 = mb[(4 + q) * OL + j];
                REAL m2 = mb[(8 + q) * OL + j], m3 = mb[(12 + q) * OL + j];
                s0[q] = m0 + m1 + m2;
                s1[q] = m1 - m2 - m3;
            }
            y[0][j] = s0[0] + s0[1] + s0[2] + bo;  /* ... then A on the columns */
            y[1][j] = s0[1] - s0[2] - s0[3] + bo;
            y[2][j] = s1[0] + s1[1] + s1[2] + bo;
            y[3][j] = s1[1] - s1[2] - s1[3] + bo;
        }
        for (long t = ts; t < te;) {
            SPLIT_TILE(t)
            long nt = tx1 - tx0, j0 = t - ts;
            long full = 2 * (tx0 + nt) <= ow ? nt : nt - 1;  /* tiles with both columns */
            REAL *d0 = out + ((n * O + o) * oh + 2 * ty) * ow + 2 * tx0;
            const REAL *y0 = y[0] + j0, *y1 = y[1] + j0, *y2 = y[2] + j0, *y3 = y[3] + j0;
            for (long j = 0; j < full; ++j) {
                d0[2 * j] = y0[j];
                d0[2 * j + 1] = y1[j];
            }
            if (full < nt) d0[2 * full] = y0[full];
            if (2 * ty + 1 < oh) {
                REAL *d1 = d0 + ow;
                for (long j = 0; j < full; ++j) {
                    d1[2 * j] = y2[j];
                    d1[2 * j + 1] = y3[j];
                }
                if (full < nt) d1[2 * full] = y2[full];
            }
            t += nt;
        }
    }
}

static __thread REAL *work_SFX;
static __thread long work_cap_SFX;

/* The convolution's output tiles in blocks [b0, b1) of tb tiles: input transform, the 16
   GEMMs M_e = U_e V_e (U_e (O, C), or the transpose of a (C, O) U_e when ut), output
   transform. V goes to vkeep (16, C, N*th*tw) when given, else to a per-thread buffer (kept
   for the thread's next call, never freed). Returns 0, or -1 when memory ran out. */
int wino_fused_SFX(const REAL *x, long N, long C, long H, long W, long pt, long pl, long th,
                   long tw, const REAL *u, long ut, long O, const REAL *bias, long oh,
                   long ow, long tb, long b0, long b1, void *gemm, long ilp64, REAL *vkeep,
                   REAL *out) {
    long T = N * th * tw, need = 16 * O * tb + (vkeep ? 0 : 16 * C * tb);
    if (need > work_cap_SFX) {
        free(work_SFX);
        work_SFX = malloc(need * sizeof(REAL));
        work_cap_SFX = work_SFX ? need : 0;
        if (!work_SFX) return -1;
    }
    REAL *mbuf = work_SFX, *vbuf = work_SFX + 16 * O * tb;
    for (long b = b0; b < b1; ++b) {
        long ts = b * tb, te = ts + tb < T ? ts + tb : T, nb = te - ts;
        REAL *v = vkeep ? vkeep + ts : vbuf;
        long ldv = vkeep ? T : nb;
        tiles_in_SFX(x, C, H, W, pt, pl, th, tw, ts, te, v, ldv);
        for (int e = 0; e < 16; ++e) {
            const REAL *a = u + e * O * C, *bm = v + e * C * ldv;
            REAL *cm = mbuf + e * O * nb;
            if (ilp64)
                ((gemm64_SFX)gemm)(101, ut ? 112 : 111, 111, O, nb, C, 1, a, ut ? O : C, bm,
                                   ldv, 0, cm, nb);
            else
                ((gemm32_SFX)gemm)(101, ut ? 112 : 111, 111, (int)O, (int)nb, (int)C, 1, a,
                                   (int)(ut ? O : C), bm, (int)ldv, 0, cm, (int)nb);
        }
        tiles_out_SFX(mbuf, nb, O, th, tw, oh, ow, bias, ts, te, out);
    }
    return 0;
}

/* A g A^T of the 2x2 tiles [ts, te) of the output gradient g (N, O, oh, ow) (zeros past the
   edge) into dm (16, O, ldm) at columns t - ts, the adjoint of tiles_out: each tile row's
   2 x 2 values gathered, then the transform in one pass over the block's tiles. */
static void tiles_grad_SFX(const REAL *g, long O, long th, long tw, long oh, long ow,
                           long ts, long te, REAL *dm, long ldm) {
    long OL = O * ldm, nb = te - ts;
    REAL gv[4][nb];
    for (long o = 0; o < O; ++o) {
        for (long t = ts; t < te;) {
            SPLIT_TILE(t)
            long nt = tx1 - tx0, j0 = t - ts;
            long full = 2 * (tx0 + nt) <= ow ? nt : nt - 1;
            const REAL *s0 = g + ((n * O + o) * oh + 2 * ty) * ow + 2 * tx0, *s1 = s0 + ow;
            REAL *a = gv[0] + j0, *b = gv[1] + j0, *c = gv[2] + j0, *d = gv[3] + j0;
            for (long j = 0; j < full; ++j) {
                a[j] = s0[2 * j];
                b[j] = s0[2 * j + 1];
            }
            if (full < nt) {
                a[full] = s0[2 * full];
                b[full] = 0;
            }
            if (2 * ty + 1 < oh) {
                for (long j = 0; j < full; ++j) {
                    c[j] = s1[2 * j];
                    d[j] = s1[2 * j + 1];
                }
                if (full < nt) {
                    c[full] = s1[2 * full];
                    d[full] = 0;
                }
            } else {
                for (long j = 0; j < nt; ++j) c[j] = d[j] = 0;
            }
            t += nt;
        }
        /* A on the rows (p: g0, g0 + g1, g0 - g1, -g1 of the left column; q of the right),
           then on the columns, one 4-stream group at a time */
        const REAL *a = gv[0], *b = gv[1], *c = gv[2], *d = gv[3];
        REAL *db = dm + o * ldm;
        for (int k = 0; k < 4; ++k) {
            REAL *d0 = db + (4 * k) * OL, *d1 = d0 + OL, *d2 = d1 + OL, *d3 = d2 + OL;
            for (long j = 0; j < nb; ++j) {
                REAL p = k == 0 ? a[j] : k == 1 ? a[j] + c[j] : k == 2 ? a[j] - c[j] : -c[j];
                REAL q = k == 0 ? b[j] : k == 1 ? b[j] + d[j] : k == 2 ? b[j] - d[j] : -d[j];
                d0[j] = p;
                d1[j] = p + q;
                d2[j] = p - q;
                d3[j] = -q;
            }
        }
    }
}

/* dst (cols, rows) = src (rows, cols)^T: float in 8 x 8 squares of AVX registers where the
   compiler targets AVX (the scalar loop ran about 1 element per cycle), then in 16 x 16
   squares element by element (double, the edges, other machines). */
static void transpose_SFX(const REAL *src, long rows, long cols, REAL *dst) {
    long r8 = 0, c8 = 0;
#if defined(__AVX__)
    if (sizeof(REAL) == 4) {
        const float *s = (const float *)src;
        float *d = (float *)dst;
        r8 = rows / 8 * 8;
        c8 = cols / 8 * 8;
        for (long i0 = 0; i0 < r8; i0 += 8)
            for (long j0 = 0; j0 < c8; j0 += 8) {
                const float *p = s + i0 * cols + j0;
                __m256 r0 = _mm256_loadu_ps(p), r1 = _mm256_loadu_ps(p + cols);
                __m256 r2 = _mm256_loadu_ps(p + 2 * cols), r3 = _mm256_loadu_ps(p + 3 * cols);
                __m256 r4 = _mm256_loadu_ps(p + 4 * cols), r5 = _mm256_loadu_ps(p + 5 * cols);
                __m256 r6 = _mm256_loadu_ps(p + 6 * cols), r7 = _mm256_loadu_ps(p + 7 * cols);
                __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
                __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
                __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
                __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
                __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                float *q = d + j0 * rows + i0;
                _mm256_storeu_ps(q, _mm256_permute2f128_ps(u0, u4, 0x20));
                _mm256_storeu_ps(q + rows, _mm256_permute2f128_ps(u1, u5, 0x20));
                _mm256_storeu_ps(q + 2 * rows, _mm256_permute2f128_ps(u2, u6, 0x20));
                _mm256_storeu_ps(q + 3 * rows, _mm256_permute2f128_ps(u3, u7, 0x20));
                _mm256_storeu_ps(q + 4 * rows, _mm256_permute2f128_ps(u0, u4, 0x31));
                _mm256_storeu_ps(q + 5 * rows, _mm256_permute2f128_ps(u1, u5, 0x31));
                _mm256_storeu_ps(q + 6 * rows, _mm256_permute2f128_ps(u2, u6, 0x31));
                _mm256_storeu_ps(q + 7 * rows, _mm256_permute2f128_ps(u3, u7, 0x31));
            }
    }
#endif
    /* what the squares left: the columns past c8 of the first r8 rows, then the rows past r8 */
    for (long i = 0; i < r8; ++i)
        for (long j = c8; j < cols; ++j)
            dst[j * rows + i] = src[i * cols + j];
    if (r8 || c8) {
        for (long i = r8; i < rows; ++i)
            for (long j = 0; j < cols; ++j)
                dst[j * rows + i] = src[i * cols + j];
        return;
    }
    for (long i0 = 0; i0 < rows; i0 += 16)
        for (long j0 = 0; j0 < cols; j0 += 16) {
            long i1 = i0 + 16 < rows ? i0 + 16 : rows, j1 = j0 + 16 < cols ? j0 + 16 : cols;
            for (long j = j0; j < j1; ++j)
                for (long i = i0; i < i1; ++i)
                    dst[j * rows + i] = src[i * cols + j];
        }
}

/* The weight gradient's transformed sum dU_e = sum over tiles of dM_e V_e^T (16, O, C), over
   the blocks [b0, b1) of tb tiles, written (not added) to du: V and dM of each block are
   made in the per-thread buffer from x and g, then 16 GEMMs add the block in. V_e is
   transposed to (tiles, C) first: BLAS runs dM_e (O, tiles) @ (tiles, C) about 1.7x faster
   than with a transposed (C, tiles) operand (measured at O = C = 64, 128 tiles). */
int wino_wgrad_SFX(const REAL *x, long N, long C, long H, long W, long pt, long pl, long th,
                   long tw, const REAL *g, long O, long oh, long ow, long tb, long b0,
                   long b1, void *gemm, long ilp64, REAL *du) {
    long T = N * th * tw, need = 16 * (O + 2 * C) * tb;
    if (need > work_cap_SFX) {
        free(work_SFX);
        work_SFX = malloc(need * sizeof(REAL));
        work_cap_SFX = work_SFX ? need : 0;
        if (!work_SFX) return -1;
    }
    REAL *mbuf = work_SFX, *vbuf = mbuf + 16 * O * tb, *vtbuf = vbuf + 16 * C * tb;
    for (long b = b0; b < b1; ++b) {
        long ts = b * tb, te = ts + tb < T ? ts + tb : T, nb = te - ts;
        tiles_in_SFX(x, C, H, W, pt, pl, th, tw, ts, te, vbuf, nb);
        tiles_grad_SFX(g, O, th, tw, oh, ow, ts, te, mbuf, nb);
        REAL beta = b == b0 ? 0 : 1;
        for (int e = 0; e < 16; ++e) {
            const REAL *a = mbuf + e * O * nb;
            REAL *bm = vtbuf + e * C * nb, *cm = du + e * O * C;
            transpose_SFX(vbuf + e * C * nb, C, nb, bm);
            if (ilp64)
                ((gemm64_SFX)gemm)(101, 111, 111, O, C, nb, 1, a, nb, bm, C, beta, cm, C);
            else
                ((gemm32_SFX)gemm)(101, 111, 111, (int)O, (int)C, (int)nb, 1, a, (int)nb, bm,
                                   (int)C, beta, cm, (int)C);
        }
    }
    return 0;
}
"""

_TABLE = r"""
void *wino_c_symbol(int i) {
    void *table[] = {(void *)wino_fused_f, (void *)wino_fused_d, (void *)wino_wgrad_f,
                     (void *)wino_wgrad_d};
    return i >= 0 && i < 4 ? table[i] : 0;
}
"""
_SRC = (_TEMPLATE.replace("REAL", "float").replace("SFX", "f")
        + _TEMPLATE.split("\n", 7)[7].replace("REAL", "double").replace("SFX", "d") + _TABLE)
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_L = ctypes.c_long
_P = ctypes.c_void_p
_PROTO = ctypes.CFUNCTYPE(ctypes.c_int, _P, *[_L] * 8, _P, _L, _L, _P, _L, _L, _L, _L, _L,
                          _P, _L, _P, _P)
_WGRAD = ctypes.CFUNCTYPE(ctypes.c_int, _P, *[_L] * 8, _P, *[_L] * 6, _P, _L, _P)
_LIB: dict = {}


def _gemm_pointer():
    """``{dtype: (address of cblas_sgemm/dgemm, ilp64)}`` of the OpenBLAS under NumPy, or {}
    (another BLAS, no threadpoolctl, symbols not found): ``_threads.blas_functions``."""
    from .._threads import blas_functions
    fns = blas_functions()
    if fns is None:
        return {}
    sgemm, dgemm, _, _, ilp64 = fns
    return {_DTYPES[0]: (sgemm, ilp64), _DTYPES[1]: (dgemm, ilp64)}


def _load():
    if os.environ.get("EMBER_WINO_FUSED", "1") == "0":
        return {}
    gemms = _gemm_pointer()
    if not gemms:
        return {}
    from .._cc import kernel_table
    fns = kernel_table(_SRC, "wino_c_symbol", "EMBER_CONV_C",
                       [(("fwd", d), _PROTO) for d in _DTYPES]
                       + [(("wgrad", d), _WGRAD) for d in _DTYPES])
    return {d: (fns[("fwd", d)], fns[("wgrad", d)], *gemms[d]) for d in _DTYPES
            if ("fwd", d) in fns}


def available(dtype):
    """Whether ``wino_fused`` serves arrays of ``dtype`` (float32/float64, a C compiler and
    NumPy's OpenBLAS found, not ``EMBER_WINO_FUSED=0``)."""
    if not _LIB:
        _LIB.update(_load() or {None: None})
    return np.dtype(dtype) in _LIB


# A block's V (16 x C x tiles) and M (16 x O x tiles) together take at most about this many
# elements: 768 KB of float32, inside a core's L2 cache (1 MB here) beside BLAS's packed panels.
_BLOCK_ELEMS = 3 << 16


# A convolution of few tiles is still cut into at least this many blocks (of 16 tiles or
# more), so that its blocks can be shared over the threads.
_MIN_BLOCKS = 4


def block_tiles(c, o, tiles=None):
    """Tiles per block for ``c`` input and ``o`` output channels (over ``tiles`` tiles, when
    given): V and M of a block within ``_BLOCK_ELEMS``, and at least ``_MIN_BLOCKS`` blocks;
    a multiple of 16 between 16 and 256. It depends on the shapes only, so the blocks,
    hence the values, are the same at every thread count."""
    tb = _BLOCK_ELEMS // (16 * (c + o))
    if tiles is not None:
        tb = min(tb, -(-tiles // _MIN_BLOCKS))
    return max(16, min(256, tb // 16 * 16))


def _addr(a):
    return a.__array_interface__["data"][0]


def _even(n, parts):
    """``parts`` ranges covering ``range(n)``, their lengths differing by at most one
    (11 blocks in 8 parts: 1,1,2,1,1,2,1,2 -- not ``_parallel._bounds``'s 6 parts of 2)."""
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def wino_fused(x, pt, pl, th, tw, u, transposed, bias, oh, ow, keep):
    """A 3x3 stride-1 convolution of ``x`` (N, C, H, W), zero padded by ``pt``/``pl`` at the
    top/left (the bottom/right by whatever the tiles reach), with the transformed weight
    ``u``: (16, O, C), or (16, C, O) read transposed when ``transposed``. Returns (y (N, O,
    oh, ow) plus ``bias``, V (16, C, N*th*tw) when ``keep`` else None)."""
    from .. import _parallel
    from .._threads import get_num_threads
    x = np.ascontiguousarray(x)
    u = np.ascontiguousarray(u, x.dtype)
    n, c, h, w = x.shape
    o = u.shape[2] if transposed else u.shape[1]
    fn, _, gemm, ilp64 = _LIB[x.dtype]
    t = n * th * tw
    tb = block_tiles(c, o, t)
    blocks = -(-t // tb)
    out = np.empty((n, o, oh, ow), x.dtype)
    v = np.empty((16, c, t), x.dtype) if keep else None
    if bias is not None:
        bias = np.ascontiguousarray(bias, x.dtype)
    args = (_addr(x), n, c, h, w, pt, pl, th, tw, _addr(u), int(transposed), o,
            None if bias is None else _addr(bias), oh, ow, tb)
    tail = (gemm, ilp64, None if v is None else _addr(v), _addr(out))

    def part(b0, b1):
        if fn(*args, b0, b1, *tail):
            raise MemoryError("conv2d: no memory for a Winograd block's buffers")

    threads = min(get_num_threads(), blocks)
    if threads > 1 and _parallel.gemm_split_ok():
        # more parts than threads: a thread that starts late (a busy machine) takes fewer
        parts = min(blocks, 4 * threads)
        _parallel.run_split_gemm(part, _even(blocks, parts))
    elif get_num_threads() > 1 and _parallel.gemm_split_ok():
        _parallel.run_split_gemm(part, [(0, blocks)])  # BLAS single-threaded: small GEMMs
    else:
        part(0, blocks)
    return out, v


# The weight gradient sums over every tile: the blocks are cut into this many groups (fewer
# when there are fewer blocks), each summed into its own (16, O, C) partial, the partials
# then added in order. The groups depend on the shapes only, so the sum, hence the value, is
# the same at every thread count; the groups are what the threads share.
_WGRAD_GROUPS = 8
# ... and the partials together take at most this many elements (16 MB of float32).
_WGRAD_PARTIAL_ELEMS = 1 << 22
# Their sum is cut over the threads from this many elements of dU.
_ADD_SPLIT_MIN = 1 << 16


def wgrad_groups(c, o, tiles):
    """How many partial sums the fused weight gradient of ``c`` -> ``o`` channels over
    ``tiles`` tiles uses (1: it would not be split, ``conv.py`` keeps its stacked GEMM)."""
    blocks = -(-tiles // block_tiles(c, o, tiles))
    return max(1, min(blocks, _WGRAD_GROUPS, _WGRAD_PARTIAL_ELEMS // (16 * o * c)))


def wino_wgrad(x, g, pt, pl, th, tw):
    """The transformed weight gradient dU (16, O, C) = sum over tiles of (A g A^T)(B^T x B)^T
    of a 3x3 stride-1 convolution of ``x`` (N, C, H, W) (padded by ``pt``/``pl`` at the
    top/left) with output gradient ``g`` (N, O, oh, ow)."""
    from .. import _parallel
    from .._threads import get_num_threads
    x = np.ascontiguousarray(x)
    g = np.ascontiguousarray(g, x.dtype)
    n, c, h, w = x.shape
    o, oh, ow = g.shape[1:]
    _, fn, gemm, ilp64 = _LIB[x.dtype]
    tb = block_tiles(c, o, n * th * tw)
    blocks = -(-(n * th * tw) // tb)
    groups = _even(blocks, wgrad_groups(c, o, n * th * tw))
    partial = np.empty((len(groups), 16, o, c), x.dtype)
    args = (_addr(x), n, c, h, w, pt, pl, th, tw, _addr(g), o, oh, ow, tb)
    base, step = _addr(partial), partial[0].nbytes

    def part(i0, i1):
        for i in range(i0, i1):
            if fn(*args, groups[i][0], groups[i][1], gemm, ilp64, base + i * step):
                raise MemoryError("conv2d: no memory for a Winograd block's buffers")

    threads = get_num_threads()
    if threads > 1 and _parallel.gemm_split_ok():
        _parallel.run_split_gemm(part, [(i, i + 1) for i in range(len(groups))])
    else:
        part(0, len(groups))
    if len(groups) == 1:
        return partial[0]
    # the partials added in order, element by element: cutting the elements over the
    # threads leaves every sum as it is (a serial 1.5M-element sum at 128 channels)
    flat = partial.reshape(len(groups), -1)
    du = np.empty(flat.shape[1], x.dtype)

    def add(s, e):
        np.add.reduce(flat[:, s:e], 0, out=du[s:e])

    if threads > 1 and du.size >= _ADD_SPLIT_MIN:
        _parallel.run_split(add, _parallel._bounds(du.size, threads, 1024))
    else:
        add(0, du.size)
    return du.reshape(16, o, c)
