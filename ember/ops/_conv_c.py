"""C kernels for the parts of convolution that are not GEMMs (issue 25).

NumPy does Winograd's tile transforms as dense 16x16 matrix products over gathered tiles
and im2col as many-dimensional strided copies, on one core. These kernels do the same
arithmetic directly, with the transforms' additions written out (32 adds per 4x4 tile
instead of a 256-term dot product), reading the unpadded input once (padding is tested at
the tile rows, never materialised). Each call covers a range of channels, so a caller
splits the work over the thread pool of ``ember/_parallel.py`` (ctypes releases the GIL
during the call), while the GEMMs between them keep BLAS's own threads.

They are compiled on first use by the compiler's loader (``ember.compiler._codegen``:
system ``cc``, disk cache keyed by the source); where no C compiler works ``available()``
is False and ``ember/ops/conv.py`` keeps its NumPy formulation. Setting
``EMBER_CONV_C=0`` forces that fallback (the tests compare both).

Layouts (all arrays C-contiguous, float32 or float64):

* ``wino_in``:  x (N, C, H, W) -> V (16, C, N*th*tw), element e = 4*i + j of B^T d B for
  the 4x4 tile d whose top-left padded corner is (2*ty, 2*tx);
* ``wino_out``: M (16, O, N*th*tw) -> y (N, O, oh, ow) = A^T M A per tile, plus a bias;
* ``wino_grad``: g (N, O, oh, ow) -> dM (16, O, N*th*tw) = A g A^T per 2x2 tile (zeros
  past the edge), the adjoint of ``wino_out``.
"""

from __future__ import annotations

import ctypes

import numpy as np

_TEMPLATE = r"""
#include <math.h>
#include <stdint.h>
#include <string.h>

/* B^T d B for each 4x4 input tile (stride 2) of channels [c0, c1). */
void wino_in_SFX(const REAL *x, long N, long C, long H, long W, long pt, long pl,
                 long th, long tw, long c0, long c1, REAL *v) {
    long Tn = N * th * tw, Wp = 2 * tw + 2, CT = C * Tn;
    REAL r[4][Wp], t[4][Wp];
    for (long c = c0; c < c1; ++c)
        for (long n = 0; n < N; ++n) {
            const REAL *xc = x + (n * C + c) * H * W;
            for (long ty = 0; ty < th; ++ty) {
                for (int k = 0; k < 4; ++k) {
                    long y = 2 * ty + k - pt;
                    memset(r[k], 0, Wp * sizeof(REAL));
                    if (y < 0 || y >= H) continue;
                    long hi = pl + W < Wp ? pl + W : Wp;  /* padded columns [pl, hi) */
                    if (hi > pl) memcpy(r[k] + pl, xc + y * W, (hi - pl) * sizeof(REAL));
                }
                /* B^T on the rows: (d0 - d2, d1 + d2, d2 - d1, d1 - d3) */
                for (long i = 0; i < Wp; ++i) {
                    t[0][i] = r[0][i] - r[2][i];
                    t[1][i] = r[1][i] + r[2][i];
                    t[2][i] = r[2][i] - r[1][i];
                    t[3][i] = r[1][i] - r[3][i];
                }
                REAL *vb = v + c * Tn + (n * th + ty) * tw;
                for (int k = 0; k < 4; ++k) {  /* ... then B on the columns */
                    const REAL *s = t[k];
                    REAL *v0 = vb + (4 * k) * CT, *v1 = v0 + CT, *v2 = v1 + CT, *v3 = v2 + CT;
                    for (long j = 0; j < tw; ++j) {
                        REAL a = s[2 * j], b = s[2 * j + 1], e = s[2 * j + 2], f = s[2 * j + 3];
                        v0[j] = a - e;
                        v1[j] = b + e;
                        v2[j] = e - b;
                        v3[j] = b - f;
                    }
                }
            }
        }
}

/* y = A^T M A (+ bias) for the 2x2 output tiles of channels [o0, o1), cropped to oh x ow. */
void wino_out_SFX(const REAL *m, long N, long O, long th, long tw, long oh, long ow,
                  const REAL *bias, long o0, long o1, REAL *out) {
    long Tn = N * th * tw, OT = O * Tn;
    REAL y0[2 * tw], y1[2 * tw];
    for (long o = o0; o < o1; ++o) {
        REAL bo = bias ? bias[o] : 0;
        for (long n = 0; n < N; ++n)
            for (long ty = 0; ty < th; ++ty) {
                const REAL *mb = m + o * Tn + (n * th + ty) * tw;
                for (long j = 0; j < tw; ++j) {
                    REAL s0[4], s1[4];
                    for (int q = 0; q < 4; ++q) {  /* A^T on the rows */
                        REAL m0 = mb[q * OT + j], m1 = mb[(4 + q) * OT + j];
                        REAL m2 = mb[(8 + q) * OT + j], m3 = mb[(12 + q) * OT + j];
                        s0[q] = m0 + m1 + m2;
                        s1[q] = m1 - m2 - m3;
                    }
                    y0[2 * j] = s0[0] + s0[1] + s0[2] + bo;  /* ... then A on the columns */
                    y0[2 * j + 1] = s0[1] - s0[2] - s0[3] + bo;
                    y1[2 * j] = s1[0] + s1[1] + s1[2] + bo;
                    y1[2 * j + 1] = s1[1] - s1[2] - s1[3] + bo;
                }
                REAL *dst = out + ((n * O + o) * oh + 2 * ty) * ow;
                memcpy(dst, y0, ow * sizeof(REAL));
                if (2 * ty + 1 < oh) memcpy(dst + ow, y1, ow * sizeof(REAL));
            }
    }
}

/* dM = A g A^T for the 2x2 tiles of the output gradient g, channels [o0, o1). */
void wino_grad_SFX(const REAL *g, long N, long O, long th, long tw, long oh, long ow,
                   long o0, long o1, REAL *dm) {
    long Tn = N * th * tw, OT = O * Tn;
    REAL r0[2 * tw], r1[2 * tw], p[4][tw], q[4][tw];
    for (long o = o0; o < o1; ++o)
        for (long n = 0; n < N; ++n)
            for (long ty = 0; ty < th; ++ty) {
                const REAL *src = g + ((n * O + o) * oh + 2 * ty) * ow;
                memset(r0, 0, sizeof(r0));
                memset(r1, 0, sizeof(r1));
                memcpy(r0, src, ow * sizeof(REAL));
                if (2 * ty + 1 < oh) memcpy(r1, src + ow, ow * sizeof(REAL));
                for (long j = 0; j < tw; ++j) {  /* A on the rows: g0, g0 + g1, g0 - g1, -g1 */
                    REAL a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
                    p[0][j] = a; p[1][j] = a + c; p[2][j] = a - c; p[3][j] = -c;
                    q[0][j] = b; q[1][j] = b + d; q[2][j] = b - d; q[3][j] = -d;
                }
                /* ... then on the columns, one output stream at a time (16 interleaved
                   streams of single stores run out of write-combining buffers) */
                REAL *db = dm + o * Tn + (n * th + ty) * tw;
                for (int k = 0; k < 4; ++k) {
                    REAL *d0 = db + (4 * k) * OT, *d1 = d0 + OT, *d2 = d1 + OT, *d3 = d2 + OT;
                    const REAL *pk = p[k], *qk = q[k];
                    for (long j = 0; j < tw; ++j) d0[j] = pk[j];
                    for (long j = 0; j < tw; ++j) d1[j] = pk[j] + qk[j];
                    for (long j = 0; j < tw; ++j) d2[j] = pk[j] - qk[j];
                    for (long j = 0; j < tw; ++j) d3[j] = -qk[j];
                }
            }
}

/* Max pooling over the planes [p0, p1) of x (P, H, W): window maxima, and when idx is given
   each window's first argmax (row-major) as a flat index into its plane, as PyTorch's
   return_indices. PyTorch's rule: a larger value or any NaN takes over, so the first maximum
   or the last NaN of the window wins. */
void maxpool2d_SFX(const REAL *x, long H, long W, long oh, long ow, long kh, long kw,
                   long sh, long sw, long ph, long pw, long dh, long dw, long p0, long p1,
                   REAL *out, int64_t *idx) {
    int64_t none[1], bestrow[ow > 0 ? ow : 1];
    for (long p = p0; p < p1; ++p) {
        const REAL *xp = x + p * H * W;
        REAL *op = out + p * oh * ow;
        int64_t *ip = idx ? idx + p * oh * ow : 0;
        if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && dh == 1 &&
                dw == 1 && 2 * oh <= H && 2 * ow <= W) {
            /* the usual 2x2/2 pooling: branch-free selects (random data defeats branch
               prediction), no bounds to test */
            for (long oy = 0; oy < oh; ++oy) {
                const REAL *r0 = xp + 2 * oy * W, *r1 = r0 + W;
                REAL *o = op + oy * ow;
                int64_t *io = ip ? ip + oy * ow : none;
                long base = 2 * oy * W, step = ip ? 1 : 0;
                for (long j = 0; j < ow; ++j) {
                    REAL m = r0[2 * j], v;
                    int64_t b = base + 2 * j;
                    int t;
                    v = r0[2 * j + 1]; t = v > m || v != v;
                    m = t ? v : m; b = t ? base + 2 * j + 1 : b;
                    v = r1[2 * j]; t = v > m || v != v;
                    m = t ? v : m; b = t ? base + W + 2 * j : b;
                    v = r1[2 * j + 1]; t = v > m || v != v;
                    m = t ? v : m; b = t ? base + W + 2 * j + 1 : b;
                    o[j] = m;
                    io[j * step] = b;
                }
            }
            continue;
        }
        /* any geometry: one output row at a time, kernel positions in row-major order (so
           the first maximum, or the last NaN, wins), each a branch-free pass over the columns
           it reaches */
        for (long oy = 0; oy < oh; ++oy) {
            REAL *m = op + oy * ow;
            int64_t *best = ip ? ip + oy * ow : (int64_t *)bestrow;
            for (long j = 0; j < ow; ++j) best[j] = -1;
            for (long ky = 0; ky < kh; ++ky) {
                long y = oy * sh - ph + ky * dh;
                if (y < 0 || y >= H) continue;
                for (long kx = 0; kx < kw; ++kx) {
                    long off = kx * dw - pw;  /* column of output j: j * sw + off */
                    long lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
                    long hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / sw + 1;
                    if (hi > ow) hi = ow;
                    const REAL *row = xp + y * W + off;
                    int64_t pos = y * W + off;
                    for (long j = lo; j < hi; ++j) {
                        REAL v = row[j * sw], c = m[j];
                        int t = best[j] < 0 || v > c || v != v;
                        m[j] = t ? v : c;
                        best[j] = t ? pos + j * sw : best[j];
                    }
                }
            }
        }
    }
}

/* out[p, idx[p, i]] += g[p, i] over the planes [p0, p1) (zeroed first); indices outside
   [0, L_in) are skipped, never written. */
void scatter_planes_SFX(const REAL *g, const int64_t *idx, long L_out, long L_in, long p0,
                        long p1, REAL *out) {
    for (long p = p0; p < p1; ++p) {
        REAL *op = out + p * L_in;
        const REAL *gp = g + p * L_out;
        const int64_t *ip = idx + p * L_out;
        memset(op, 0, L_in * sizeof(REAL));
        for (long i = 0; i < L_out; ++i)
            if ((uint64_t)ip[i] < (uint64_t)L_in) op[ip[i]] += gp[i];
    }
}

/* Batch norm's per-channel sums over rows longer than BN_SHORT run in 16 double lanes, each
   its own chain of additions (one running sum waits for every addition's latency, ~4
   cycles a value), folded pairwise at the end: whole vectors of 16, a row's tail in lanes
   l & 15. Shorter rows go channels-inner (below). Which lane takes which value depends on
   the shape only, never on the thread count. */
static inline double fold_SFX(double *a) {
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; ++l) a[l] += a[l + w];
    return a[0];
}

/* sum of x, or (when sq) of (x - m)^2, over the N rows of L values of channel c */
static double bn_sum_SFX(const REAL *x, long N, long C, long L, long c, double m, int sq) {
    double a[16] = {0};
    for (long n = 0; n < N; ++n) {
        const REAL *xp = x + (n * C + c) * L;
        long l = 0;
        if (sq)
            for (; l + 16 <= L; l += 16)
                for (int k = 0; k < 16; ++k) {
                    double d = (double)xp[l + k] - m;
                    a[k] += d * d;
                }
        else
            for (; l + 16 <= L; l += 16)
                for (int k = 0; k < 16; ++k) a[k] += (double)xp[l + k];
        for (; l < L; ++l) {
            double d = (double)xp[l] - m;
            a[l & 15] += sq ? d * d : (double)xp[l];
        }
    }
    return fold_SFX(a);
}

/* Short rows (L <= BN_SHORT: ResNet's 4x4 and 2x2 maps): channels-inner instead, a block of
   channels [cb, ce) at a time ((ce - cb) * L <= BN_J values): each sample's block is
   contiguous, so every (channel, position) pair keeps its own chain over the samples in a
   vectorised pass, and each channel then adds its L chains in order. e[j] (double) is the
   mean of pair j's channel. */
#define BN_J 1024
#define BN_SHORT 16
static void bn_short_sums_SFX(const REAL *x, long N, long C, long L, long cb, long ce,
                              const double *e, double *a) {
    long J = (ce - cb) * L;
    for (long j = 0; j < J; ++j) a[j] = 0;
    for (long n = 0; n < N; ++n) {
        const REAL *xp = x + (n * C + cb) * L;
        if (e)
            for (long j = 0; j < J; ++j) {
                double d = (double)xp[j] - e[j];
                a[j] += d * d;
            }
        else
            for (long j = 0; j < J; ++j) a[j] += (double)xp[j];
    }
}

static double bn_channel_SFX(const double *a, long L, long i) {
    double s = 0;
    for (long l = 0; l < L; ++l) s += a[i * L + l];
    return s;
}

static void bn_fwd_short_SFX(const REAL *x, long N, long C, long L, const REAL *w,
                             const REAL *b, double eps, long c0, long c1, REAL *y,
                             REAL *mean, REAL *var, REAL *rstd) {
    double cnt = (double)N * (double)L, a[BN_J], e[BN_J];
    REAL em[BN_J], es[BN_J], eh[BN_J];
    long step = BN_J / L;
    for (long cb = c0; cb < c1; cb += step) {
        long ce = cb + step < c1 ? cb + step : c1, J = (ce - cb) * L;
        bn_short_sums_SFX(x, N, C, L, cb, ce, 0, a);
        for (long c = cb; c < ce; ++c) {
            double m = bn_channel_SFX(a, L, c - cb) / cnt;
            for (long l = 0; l < L; ++l) e[(c - cb) * L + l] = m;
        }
        bn_short_sums_SFX(x, N, C, L, cb, ce, e, a);
        for (long c = cb; c < ce; ++c) {
            double m = e[(c - cb) * L], v = bn_channel_SFX(a, L, c - cb) / cnt;
            double r = 1.0 / sqrt(v + eps);
            mean[c] = (REAL)m; var[c] = (REAL)v; rstd[c] = (REAL)r;
            REAL mr = (REAL)m, sc = (REAL)(w ? r * w[c] : r), sh = b ? b[c] : 0;
            for (long l = 0; l < L; ++l) {
                em[(c - cb) * L + l] = mr; es[(c - cb) * L + l] = sc;
                eh[(c - cb) * L + l] = sh;
            }
        }
        for (long n = 0; n < N; ++n) {
            const REAL *xp = x + (n * C + cb) * L;
            REAL *yp = y + (n * C + cb) * L;
            for (long j = 0; j < J; ++j) yp[j] = (xp[j] - em[j]) * es[j] + eh[j];
        }
    }
}

static void bn_bwd_short_SFX(const REAL *g, const REAL *x, long N, long C, long L,
                             const REAL *w, const REAL *mean, const REAL *rstd, long c0,
                             long c1, REAL *gx, REAL *gw, REAL *gb) {
    double cnt = (double)N * (double)L, ag[BN_J], ax[BN_J], e[BN_J];
    REAL ea[BN_J], eg[BN_J], em[BN_J], et[BN_J];
    long step = BN_J / L;
    for (long cb = c0; cb < c1; cb += step) {
        long ce = cb + step < c1 ? cb + step : c1, J = (ce - cb) * L;
        for (long j = 0; j < J; ++j) {
            ag[j] = 0; ax[j] = 0; e[j] = (double)mean[cb + j / L];
        }
        for (long n = 0; n < N; ++n) {
            const REAL *gp = g + (n * C + cb) * L, *xp = x + (n * C + cb) * L;
            for (long j = 0; j < J; ++j) {
                double gv = (double)gp[j];
                ag[j] += gv;
                ax[j] += gv * ((double)xp[j] - e[j]);
            }
        }
        for (long c = cb; c < ce; ++c) {
            double r = rstd[c], sg = bn_channel_SFX(ag, L, c - cb);
            double sgx = bn_channel_SFX(ax, L, c - cb) * r;
            gw[c] = (REAL)sgx;
            gb[c] = (REAL)sg;
            double k = w ? r * w[c] : r;
            REAL a = (REAL)k, mg = (REAL)(sg / cnt), mx = (REAL)e[(c - cb) * L];
            REAL t = (REAL)(sgx / cnt * r);
            for (long l = 0; l < L; ++l) {
                ea[(c - cb) * L + l] = a; eg[(c - cb) * L + l] = mg;
                em[(c - cb) * L + l] = mx; et[(c - cb) * L + l] = t;
            }
        }
        if (!gx) continue;
        for (long n = 0; n < N; ++n) {
            const REAL *gp = g + (n * C + cb) * L, *xp = x + (n * C + cb) * L;
            REAL *op = gx + (n * C + cb) * L;
            for (long j = 0; j < J; ++j)
                op[j] = ea[j] * (gp[j] - eg[j] - (xp[j] - em[j]) * et[j]);
        }
    }
}

/* Batch norm (training) over channels [c0, c1) of x (N, C, L): per-channel mean and biased
   variance (two passes, double lane sums), then y = (x - mean) * rstd * w + b. */
void bn_fwd_SFX(const REAL *x, long N, long C, long L, const REAL *w, const REAL *b,
                double eps, long c0, long c1, REAL *y, REAL *mean, REAL *var, REAL *rstd) {
    if (L <= BN_SHORT) {
        bn_fwd_short_SFX(x, N, C, L, w, b, eps, c0, c1, y, mean, var, rstd);
        return;
    }
    double cnt = (double)N * (double)L;
    for (long c = c0; c < c1; ++c) {
        double m = bn_sum_SFX(x, N, C, L, c, 0.0, 0) / cnt;
        double v = bn_sum_SFX(x, N, C, L, c, m, 1) / cnt, r = 1.0 / sqrt(v + eps);
        mean[c] = (REAL)m; var[c] = (REAL)v; rstd[c] = (REAL)r;
        REAL mr = (REAL)m, sc = (REAL)(w ? r * w[c] : r), sh = b ? b[c] : 0;
        for (long n = 0; n < N; ++n) {
            const REAL *xp = x + (n * C + c) * L;
            REAL *yp = y + (n * C + c) * L;
            for (long l = 0; l < L; ++l) yp[l] = (xp[l] - mr) * sc + sh;
        }
    }
}

/* Its backward: gb = sum g, gw = sum g * xhat per channel, and (when gx is given)
   gx = rstd * w * (g - gb / M - xhat * gw / M), M = N * L. The two sums in lanes as
   above. */
void bn_bwd_SFX(const REAL *g, const REAL *x, long N, long C, long L, const REAL *w,
                const REAL *mean, const REAL *rstd, long c0, long c1, REAL *gx, REAL *gw,
                REAL *gb) {
    if (L <= BN_SHORT) {
        bn_bwd_short_SFX(g, x, N, C, L, w, mean, rstd, c0, c1, gx, gw, gb);
        return;
    }
    double cnt = (double)N * (double)L;
    for (long c = c0; c < c1; ++c) {
        double m = mean[c], r = rstd[c];
        double ag[16] = {0}, ax[16] = {0};
        for (long n = 0; n < N; ++n) {
            const REAL *gp = g + (n * C + c) * L, *xp = x + (n * C + c) * L;
            long l = 0;
            for (; l + 16 <= L; l += 16)
                for (int k = 0; k < 16; ++k) {
                    double gv = (double)gp[l + k];
                    ag[k] += gv;
                    ax[k] += gv * ((double)xp[l + k] - m);
                }
            for (; l < L; ++l) {
                double gv = (double)gp[l];
                ag[l & 15] += gv;
                ax[l & 15] += gv * ((double)xp[l] - m);
            }
        }
        double sg = fold_SFX(ag), sgx = fold_SFX(ax) * r;
        gw[c] = (REAL)sgx;
        gb[c] = (REAL)sg;
        if (!gx) continue;
        double k = w ? r * w[c] : r;
        REAL a = (REAL)k, mg = (REAL)(sg / cnt), mx = (REAL)m, t = (REAL)(sgx / cnt * r);
        for (long n = 0; n < N; ++n) {
            const REAL *gp = g + (n * C + c) * L, *xp = x + (n * C + c) * L;
            REAL *op = gx + (n * C + c) * L;
            for (long l = 0; l < L; ++l) op[l] = a * (gp[l] - mg - (xp[l] - mx) * t);
        }
    }
}
"""

# The compiler's loader caches one function per source, so the library exports a single
# entry point that hands out the addresses of the others.
_TABLE = r"""
void *conv_c_symbol(int i) {
    void *table[] = {(void *)wino_in_f, (void *)wino_out_f, (void *)wino_grad_f,
                     (void *)maxpool2d_f, (void *)scatter_planes_f, (void *)bn_fwd_f,
                     (void *)bn_bwd_f,
                     (void *)wino_in_d, (void *)wino_out_d, (void *)wino_grad_d,
                     (void *)maxpool2d_d, (void *)scatter_planes_d, (void *)bn_fwd_d,
                     (void *)bn_bwd_d};
    return i >= 0 && i < 14 ? table[i] : 0;
}
"""
_SRC = (_TEMPLATE.replace("REAL", "float").replace("SFX", "f")
        + _TEMPLATE.split("\n", 4)[4].replace("REAL", "double").replace("SFX", "d") + _TABLE)
_NAMES = ("wino_in", "wino_out", "wino_grad", "maxpool2d", "scatter_planes", "bn_fwd",
          "bn_bwd")
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_L = ctypes.c_long
_P = ctypes.c_void_p
_PROTOS = {
    "wino_in": ctypes.CFUNCTYPE(None, _P, *[_L] * 10, _P),
    "wino_out": ctypes.CFUNCTYPE(None, _P, *[_L] * 6, _P, _L, _L, _P),
    "wino_grad": ctypes.CFUNCTYPE(None, _P, *[_L] * 8, _P),
    "maxpool2d": ctypes.CFUNCTYPE(None, _P, *[_L] * 14, _P, _P),
    "scatter_planes": ctypes.CFUNCTYPE(None, _P, _P, *[_L] * 4, _P),
    "bn_fwd": ctypes.CFUNCTYPE(None, _P, _L, _L, _L, _P, _P, ctypes.c_double, _L, _L,
                               *[_P] * 4),
    "bn_bwd": ctypes.CFUNCTYPE(None, _P, _P, _L, _L, _L, *[_P] * 3, _L, _L, *[_P] * 3),
}
_LIB: dict = {}


def _load():
    """{(name, dtype): ctypes function}, empty without a working C compiler."""
    from .._cc import kernel_table
    return kernel_table(_SRC, "conv_c_symbol", "EMBER_CONV_C",
                        [((n, d), _PROTOS[n]) for d in _DTYPES for n in _NAMES])


def _kernel(name, dtype):
    """The ctypes function ``name`` for ``dtype``, or None (no compiler, or another dtype)."""
    if not _LIB:
        _LIB.update(_load() or {None: None})
    return _LIB.get((name, dtype))


def available(dtype):
    """Whether the C kernels serve arrays of ``dtype`` (float32/float64, a compiler works)."""
    return _kernel("wino_in", np.dtype(dtype)) is not None


def _addr(a):
    return a.__array_interface__["data"][0]


# Below this many elements written a kernel call takes ~0.1 ms: a thread hand-off (tens of
# microseconds) would eat what a second core saves.
_MIN_SPLIT = 1 << 17


def _split(fn, n, size):
    """``fn(start, stop)`` over ``range(n)``, cut over the thread pool when ``size``
    (elements written) is worth it."""
    from .. import _parallel
    from .._threads import get_num_threads
    k = min(get_num_threads(), n) if size >= _MIN_SPLIT else 1
    if k <= 1:
        fn(0, n)
    else:
        _parallel.run_split(fn, _parallel._bounds(n, k))


def wino_in(x, pt, pl, th, tw):
    """V (16, C, N*th*tw) of ``x`` (N, C, H, W) with top/left zero padding ``pt``/``pl``."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    v = np.empty((16, c, n * th * tw), x.dtype)
    fn = _kernel("wino_in", x.dtype)
    xa, va = _addr(x), _addr(v)
    _split(lambda c0, c1: fn(xa, n, c, h, w, pt, pl, th, tw, c0, c1, va), c, v.size)
    return v


def wino_out(m, n, th, tw, oh, ow, bias=None):
    """y (N, O, oh, ow) from M (16, O, N*th*tw), plus ``bias`` (O,) when given."""
    o = m.shape[1]
    out = np.empty((n, o, oh, ow), m.dtype)
    fn = _kernel("wino_out", m.dtype)
    if bias is not None:
        bias = np.ascontiguousarray(bias, m.dtype)
    ma, oa, ba = _addr(m), _addr(out), None if bias is None else _addr(bias)
    _split(lambda o0, o1: fn(ma, n, o, th, tw, oh, ow, ba, o0, o1, oa), o, m.size)
    return out


def wino_grad(g, th, tw):
    """dM (16, O, N*th*tw) of the output gradient ``g`` (N, O, oh, ow)."""
    g = np.ascontiguousarray(g)
    n, o, oh, ow = g.shape
    dm = np.empty((16, o, n * th * tw), g.dtype)
    fn = _kernel("wino_grad", g.dtype)
    ga, da = _addr(g), _addr(dm)
    _split(lambda o0, o1: fn(ga, n, o, th, tw, oh, ow, o0, o1, da), o, dm.size)
    return dm


def maxpool2d(x, ks, st, pd, dl, osz, indices):
    """Max pooling of ``x`` (N, C, H, W) (PyTorch's geometry: symmetric padding ``pd``,
    output size ``osz``): the output and, when ``indices``, the int64 flat argmax indices."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    out = np.empty((n, c) + tuple(osz), x.dtype)
    idx = np.empty(out.shape, np.int64) if indices else None
    fn = _kernel("maxpool2d", x.dtype)
    xa, oa, ia = _addr(x), _addr(out), None if idx is None else _addr(idx)
    args = (h, w, osz[0], osz[1], ks[0], ks[1], st[0], st[1], pd[0], pd[1], dl[0], dl[1])
    _split(lambda p0, p1: fn(xa, *args, p0, p1, oa, ia), n * c, x.size)
    return out, idx


def scatter_planes(g, flat, shape):
    """Zeros of ``shape`` (N, C, *S) with ``g`` (N, C, *O) added at the per-plane flat
    indices ``flat`` (int64, of g's shape)."""
    g = np.ascontiguousarray(g)
    flat = np.ascontiguousarray(flat, np.int64)
    planes = shape[0] * shape[1]
    out = np.empty(shape, g.dtype)
    fn = _kernel("scatter_planes", g.dtype)
    ga, ia, oa = _addr(g), _addr(flat), _addr(out)
    lo, li = g.size // max(planes, 1), out.size // max(planes, 1)
    _split(lambda p0, p1: fn(ga, ia, lo, li, p0, p1, oa), planes, out.size)
    return out


# Smaller batch norms keep NumPy's formula: there its few calls cost about what one C call
# does, and it is the formula a recorded (compiled) backward evaluates too. With few values
# per channel batch norm's input gradient is ill-conditioned, so the C kernel's different
# (double-precision) sums made compiled and eager float32 training steps drift apart by
# more than their test allows (ResNet-18 on 8x8 images, batch 2: 1x1 maps, 2 values).
_BN_MIN_SIZE = 1 << 14


def batch_norm_ok(x, axes, *params):
    """Whether the C batch norm serves ``x`` normalised over ``axes``: float32/float64,
    C-contiguous (N, C, *S), statistics over every dim but 1, params per channel or None."""
    return (type(x) is np.ndarray and x.ndim >= 2 and x.flags.c_contiguous
            and x.size >= _BN_MIN_SIZE
            and tuple(axes) == (0,) + tuple(range(2, x.ndim))
            and all(p is None or (type(p) is np.ndarray and p.dtype == x.dtype
                                  and p.size == x.shape[1]) for p in params)
            and _kernel("bn_fwd", x.dtype) is not None)


def _vec(p):
    return None if p is None else np.ascontiguousarray(p).reshape(-1)


def _bn_split(fn, c, size):
    """``fn(c0, c1)`` over the ``c`` channels of a batch norm: like ``_split``, but in up
    to 4 parts per thread, claimed in turn, so that a pool thread slow to start (a busy
    machine) leaves its share to the others instead of holding the step up (ResNet-18 at
    2 threads on a loaded machine: the calling thread ran 70-80% of the batch norm work in
    two halves). Channels are independent: the same bits at any cut."""
    from .. import _parallel
    from .._threads import get_num_threads
    k = get_num_threads()
    if size < _MIN_SPLIT or k <= 1 or c <= 1:
        fn(0, c)
    else:
        _parallel.run_split(fn, _parallel._bounds(c, min(c, 4 * k)))


def batch_norm(x, w, b, eps):
    """Training batch norm of ``x`` (N, C, *S): ``(y, mean, var, rstd)``, the statistics
    shaped (1, C, 1, ...) as ``Normalize`` keeps them."""
    n, c = x.shape[:2]
    ln = x.size // max(n * c, 1)
    y = np.empty(x.shape, x.dtype)
    stats = [np.empty(c, x.dtype) for _ in range(3)]
    w, b = _vec(w), _vec(b)
    fn = _kernel("bn_fwd", x.dtype)
    a = [_addr(x), None if w is None else _addr(w), None if b is None else _addr(b), _addr(y)]
    sa = [_addr(t) for t in stats]
    _bn_split(lambda c0, c1: fn(a[0], n, c, ln, a[1], a[2], eps, c0, c1, a[3], *sa), c,
              x.size)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return (y,) + tuple(t.reshape(shape) for t in stats)


def batch_norm_grad(g, x, w, mean, rstd, need_x):
    """Batch norm's (gx or None, gw, gb), gw and gb shaped (1, C, 1, ...)."""
    g = np.ascontiguousarray(g, x.dtype)
    n, c = x.shape[:2]
    ln = x.size // max(n * c, 1)
    gx = np.empty(x.shape, x.dtype) if need_x else None
    shape = (1, c) + (1,) * (x.ndim - 2)
    gw, gb = np.empty(shape, x.dtype), np.empty(shape, x.dtype)
    w, mean, rstd = _vec(w), _vec(mean), _vec(rstd)
    fn = _kernel("bn_bwd", x.dtype)
    a = [_addr(g), _addr(x), None if w is None else _addr(w), _addr(mean), _addr(rstd),
         None if gx is None else _addr(gx), _addr(gw), _addr(gb)]
    _bn_split(lambda c0, c1: fn(a[0], a[1], n, c, ln, a[2], a[3], a[4], c0, c1, *a[5:]), c,
              x.size)
    return gx, gw, gb
