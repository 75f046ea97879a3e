"""One C call per dynamic quantized Linear, and per dynamic LSTM/GRU layer (issue 20).

At batch 1 a dynamic int8 Linear used to spend more time in Python (the activation's min and
max, quantizing, the zero-point corrections, the bias, array addresses for ctypes) than in its
GEMM. Here everything a call needs that does not depend on the input is computed once per
module, in a *plan* (an int64 array holding the prepacked weight's address, its scales, zero
points, row sums, bias and sizes), and one C function does the rest:

1. the activation's min/max and PyTorch's ``ChooseQuantizationParams`` (double precision, as
   fbgemm), ``reduce_range`` (7-bit activations);
2. quantization, ``nearbyint(fma(x, 1/scale, zero_point))`` clamped to [0, 255];
3. the int8 GEMM on weights prepacked in panels of 32 output columns times 4 inputs, so that
   one broadcast of 4 activation bytes meets 32 bytes of weights in ``vpmaddubsw`` (u8 x s8
   pairs; exact since reduce_range keeps activations below 128, so a pair is at most
   2 * 127 * 128 < 2**15) and ``vpmaddwd`` widens to int32: no horizontal sums;
4. the zero-point corrections and ``fma(raw, sx * sw[n], bias[n])`` (fbgemm's
   ``ReQuantizeForFloat``), an optional fused ReLU.

The function is called through ``ctypes.PYFUNCTYPE`` (it keeps the GIL) and reads the arrays
through the buffer protocol: taking an array's address from Python costs about 1.5 us per
array, more than the whole GEMM of a small layer.

For the dynamic LSTM/GRU, one C call runs a layer's whole recurrence: per step the hidden
state is quantized (its own min/max over the batch, as PyTorch does), multiplied with the
prepacked ``w_hh``, and the gates are computed in float32 with PyTorch's formulas (sigmoid as
``1 / (1 + exp(-x))``) and vectorised exp/tanh within 3/2 ulp of PyTorch's (so the outputs
agree with PyTorch's to about 1e-7; as with any last-bit difference, a hidden value that lands
on a rounding boundary of the next step's quantization can move one integer, and that row
then differs by up to about scale_h * scale_w * |w|, ~1e-3). The input projection of the
whole sequence is one dynamic linear call before it (one activation scale for the sequence,
as PyTorch's CPU kernel does).

Where no C compiler works, or activations reach 128 (without reduce_range), the callers use
the NumPy/ctypes paths of ``ember.ao.nn.quantized.functional``.
"""

from __future__ import annotations

import ctypes

import numpy as np

from ..compiler._codegen import _PRELUDE_F32

_SRC = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

/* The stable-ABI buffer protocol (Python 3.11+ limited API), declared here so that no
   Python headers are needed to compile. */
typedef struct {
    void *buf; void *obj; long len; long itemsize; int readonly; int ndim; char *format;
    long *shape; long *strides; long *suboffsets; void *internal;
} ember_buffer;
extern int PyObject_GetBuffer(void *obj, ember_buffer *view, int flags);
extern void PyBuffer_Release(ember_buffer *view);
#define EMBER_BUF_C (0x0020 | 0x0010 | 0x0008)   /* PyBUF_C_CONTIGUOUS */
#define EMBER_BUF_W 0x0001                       /* PyBUF_WRITABLE */

/* plan: [0] packed weights, [1] float scales[N], [2] int32 zero points[N] or 0,
   [3] int32 row sums[N], [4] float bias[N] or 0, [5] N, [6] K, [7] K4 (K rounded up to 4),
   [8] NP (panels of 32 columns), [9] relu, [10] reduce_range */
typedef struct {
    const int8_t *w; const float *wscale; const int32_t *wzp; const int32_t *wsum;
    const float *bias; int64_t N, K, K4, NP, relu, reduce_range;
} plan_t;

/* PyTorch's ChooseQuantizationParams for quint8 (double precision, as fbgemm). */
static void choose_qparams(float mn, float mx, int reduce_range, float *sx, int *zpo) {
    int qmin = 0, qmax = 255;
    if (reduce_range) { qmin = qmin / 2; qmax = qmax / 2; }
    mn = mn < 0.0f ? mn : 0.0f;
    mx = mx > 0.0f ? mx : 0.0f;
    double scale = ((double)mx - mn) / (qmax - qmin);
    if ((float)scale == 0.0f || isinf(1.0f / (float)scale)) scale = 0.1;
    const float small = 6.1e-5f;
    if (scale < small) {
        float org = (float)scale;
        scale = small;
        if (mn == 0.0f) mx = small * (qmax - qmin);
        else if (mx == 0.0f) mn = -small * (qmax - qmin);
        else { float amp = small / org; mn *= amp; mx *= amp; }
    }
    double zmin = qmin - mn / scale, zmax = qmax - mx / scale;
    double emin = fabs((double)qmin) - fabs(mn / scale);
    double emax = fabs((double)qmax) - fabs(mx / scale);
    double z0 = emin < emax ? zmin : zmax;
    *zpo = z0 < qmin ? qmin : (z0 > qmax ? qmax : (int)nearbyint(z0));
    *sx = (float)scale;
}

static void minmax(const float *X, long n, float *mn_out, float *mx_out) {
    float mn = 0.0f, mx = 0.0f;
    long i = 0;
    if (n > 0) { mn = X[0]; mx = X[0]; }
#ifdef __AVX2__
    if (n >= 8) {
        __m256 vmn = _mm256_loadu_ps(X), vmx = vmn;
        for (i = 8; i + 8 <= n; i += 8) {
            __m256 v = _mm256_loadu_ps(X + i);
            vmn = _mm256_min_ps(vmn, v);
            vmx = _mm256_max_ps(vmx, v);
        }
        float a[8], b[8];
        _mm256_storeu_ps(a, vmn);
        _mm256_storeu_ps(b, vmx);
        for (int j = 0; j < 8; ++j) { mn = a[j] < mn ? a[j] : mn; mx = b[j] > mx ? b[j] : mx; }
    }
#endif
    for (; i < n; ++i) { float v = X[i]; mn = v < mn ? v : mn; mx = v > mx ? v : mx; }
    *mn_out = mn; *mx_out = mx;
}

/* Quantize rows of X [M, K] into Q [M, K4] (padding zeroed); row sums into rs; returns the
   OR of all quantized bytes (below 128 when the u8 x s8 kernel is exact). */
static int quantize_rows(const float *X, long M, long K, long K4, float sx, int zp,
                         uint8_t *Q, int32_t *rs) {
    float inv = 1.0f / sx, fzp = (float)zp;
    int any = 0;
    for (long m = 0; m < M; ++m) {
        const float *x = X + m * K;
        uint8_t *q = Q + m * K4;
        long k = 0;
#ifdef __AVX2__
        const __m256 vinv = _mm256_set1_ps(inv), vzp = _mm256_set1_ps(fzp);
        const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(255.0f);
        const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; k + 32 <= K; k += 32) {
            __m256i i4[4];
            for (int j = 0; j < 4; ++j) {
                __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8 * j), vinv, vzp);
                v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
                i4[j] = _mm256_cvtps_epi32(v);
            }
            __m256i p = _mm256_packus_epi16(_mm256_packs_epi32(i4[0], i4[1]),
                                            _mm256_packs_epi32(i4[2], i4[3]));
            _mm256_storeu_si256((__m256i *)(q + k), _mm256_permutevar8x32_epi32(p, perm));
        }
#endif
        for (; k < K; ++k) {
            float v = nearbyintf(fmaf(x[k], inv, fzp));
            q[k] = (uint8_t)(v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v));
        }
        for (; k < K4; ++k) q[k] = 0;
        int32_t s = 0;
        int o = 0;
        for (k = 0; k < K; ++k) { s += q[k]; o |= q[k]; }
        rs[m] = s;
        any |= o;
    }
    return any;
}

/* C[m, 32p + j] = sum_k Q[m, k] * W[32p + j, k] over the prepacked panels (see the module
   docstring): panel p, group of 4 inputs g, then 32 columns of 4 bytes. */
static void gemm_panels(const uint8_t *Q, long M, long K4, const int8_t *P, long NP,
                        int32_t *C, long ldc, int exact_u8) {
    long ng = K4 / 4;
    if (!exact_u8) {  /* activations of 128 and more: plain int32 sums (slow, exact) */
        for (long m = 0; m < M; ++m)
            for (long p = 0; p < NP; ++p)
                for (int j = 0; j < 32; ++j) {
                    int32_t s = 0;
                    for (long g = 0; g < ng; ++g)
                        for (int b = 0; b < 4; ++b)
                            s += (int32_t)Q[m * K4 + 4 * g + b] *
                                 P[(p * ng + g) * 128 + 4 * j + b];
                    C[m * ldc + 32 * p + j] = s;
                }
        return;
    }
#ifdef __AVX2__
    #pragma omp parallel for schedule(static) if (M * NP * ng >= 16384)
    for (long p = 0; p < NP; ++p) {
        const int8_t *wp = P + p * ng * 128;
        const __m256i ones = _mm256_set1_epi16(1);
        long m = 0;
#define EMBER_MAC(c, a, w) c = _mm256_add_epi32(c, _mm256_madd_epi16( \
            _mm256_maddubs_epi16(a, w), ones))
        for (; m + 2 <= M; m += 2) {
            const uint8_t *a0 = Q + m * K4, *a1 = a0 + K4;
            __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00;
            __m256i c10 = c00, c11 = c00, c12 = c00, c13 = c00;
            for (long g = 0; g < ng; ++g) {
                const __m256i *w = (const __m256i *)(wp + g * 128);
                int32_t s0, s1;
                memcpy(&s0, a0 + 4 * g, 4);
                memcpy(&s1, a1 + 4 * g, 4);
                __m256i b0 = _mm256_set1_epi32(s0), b1 = _mm256_set1_epi32(s1);
                __m256i w0 = _mm256_loadu_si256(w), w1 = _mm256_loadu_si256(w + 1);
                __m256i w2 = _mm256_loadu_si256(w + 2), w3 = _mm256_loadu_si256(w + 3);
                EMBER_MAC(c00, b0, w0); EMBER_MAC(c01, b0, w1);
                EMBER_MAC(c02, b0, w2); EMBER_MAC(c03, b0, w3);
                EMBER_MAC(c10, b1, w0); EMBER_MAC(c11, b1, w1);
                EMBER_MAC(c12, b1, w2); EMBER_MAC(c13, b1, w3);
            }
            __m256i *o0 = (__m256i *)(C + m * ldc + 32 * p);
            __m256i *o1 = (__m256i *)(C + (m + 1) * ldc + 32 * p);
            _mm256_storeu_si256(o0, c00); _mm256_storeu_si256(o0 + 1, c01);
            _mm256_storeu_si256(o0 + 2, c02); _mm256_storeu_si256(o0 + 3, c03);
            _mm256_storeu_si256(o1, c10); _mm256_storeu_si256(o1 + 1, c11);
            _mm256_storeu_si256(o1 + 2, c12); _mm256_storeu_si256(o1 + 3, c13);
        }
        for (; m < M; ++m) {
            const uint8_t *a0 = Q + m * K4;
            __m256i c00 = _mm256_setzero_si256(), c01 = c00, c02 = c00, c03 = c00;
            for (long g = 0; g < ng; ++g) {
                const __m256i *w = (const __m256i *)(wp + g * 128);
                int32_t s0;
                memcpy(&s0, a0 + 4 * g, 4);
                __m256i b0 = _mm256_set1_epi32(s0);
                EMBER_MAC(c00, b0, _mm256_loadu_si256(w));
                EMBER_MAC(c01, b0, _mm256_loadu_si256(w + 1));
                EMBER_MAC(c02, b0, _mm256_loadu_si256(w + 2));
                EMBER_MAC(c03, b0, _mm256_loadu_si256(w + 3));
            }
            __m256i *o0 = (__m256i *)(C + m * ldc + 32 * p);
            _mm256_storeu_si256(o0, c00); _mm256_storeu_si256(o0 + 1, c01);
            _mm256_storeu_si256(o0 + 2, c02); _mm256_storeu_si256(o0 + 3, c03);
        }
#undef EMBER_MAC
    }
#else
    for (long m = 0; m < M; ++m)
        for (long p = 0; p < NP; ++p) {
            int32_t acc[32] = {0};
            for (long g = 0; g < ng; ++g) {
                const int8_t *w = P + (p * ng + g) * 128;
                const uint8_t *a = Q + m * K4 + 4 * g;
                for (int j = 0; j < 32; ++j)
                    acc[j] += a[0] * w[4 * j] + a[1] * w[4 * j + 1] + a[2] * w[4 * j + 2] +
                              a[3] * w[4 * j + 3];
            }
            for (int j = 0; j < 32; ++j) C[m * ldc + 32 * p + j] = acc[j];
        }
#endif
}

/* The dynamic linear on X [M, K] into out [M, ldo] (columns 0..N-1); scratch holds
   M * K4 bytes, M int32 row sums and M * 32 NP int32 sums. */
static void qlinear_core(const plan_t *pl, const float *X, long M, float *out, long ldo,
                         uint8_t *scratch) {
    long N = pl->N, K = pl->K, K4 = pl->K4, ldc = pl->NP * 32;
    float mn, mx, sx;
    int zx;
    minmax(X, M * K, &mn, &mx);
    choose_qparams(mn, mx, (int)pl->reduce_range, &sx, &zx);
    uint8_t *Q = scratch;
    int32_t *rs = (int32_t *)(scratch + ((M * K4 + 63) / 64) * 64);
    int32_t *raw = rs + ((M + 15) / 16) * 16;
    int any = quantize_rows(X, M, K, K4, sx, zx, Q, rs);
    gemm_panels(Q, M, K4, pl->w, pl->NP, raw, ldc, any < 128);
    const float *ws = pl->wscale, *bias = pl->bias;
    const int32_t *wsum = pl->wsum, *wzp = pl->wzp;
    for (long m = 0; m < M; ++m) {
        const int32_t *r = raw + m * ldc;
        float *o = out + m * ldo;
        int32_t rsm = rs[m];
        /* sum (q - zx)(w - zw) = sum q w - zx sum w - zw sum q + K zx zw */
        for (long n = 0; n < N; ++n) {
            int32_t zw = wzp ? wzp[n] : 0;
            int32_t v = r[n] - zx * wsum[n] - zw * rsm + (int32_t)K * zx * zw;
            float y = fmaf((float)v, sx * ws[n], bias ? bias[n] : 0.0f);
            o[n] = (pl->relu && y < 0.0f) ? 0.0f : y;
        }
    }
}

static long scratch_bytes(const plan_t *pl, long M) {
    return ((M * pl->K4 + 63) / 64) * 64 + 4 * (((M + 15) / 16) * 16) + 4 * M * pl->NP * 32
           + 64;
}

/* out[M, N] = dynamic_linear(x[M, K]); x and out C-contiguous float32 (checked by the
   caller). Returns 0, or -1 when a buffer cannot be read or memory runs out. */
int qdyn_linear(const plan_t *pl, void *xo, void *outo) {
    ember_buffer bx, bo;
    if (PyObject_GetBuffer(xo, &bx, EMBER_BUF_C) != 0) return -1;
    if (PyObject_GetBuffer(outo, &bo, EMBER_BUF_C | EMBER_BUF_W) != 0) {
        PyBuffer_Release(&bx);
        return -1;
    }
    long M = pl->N > 0 ? bo.len / (4 * pl->N) : 0;
    if (bx.len != 4 * M * pl->K) {  /* the caller sizes out from x: never read past x */
        PyBuffer_Release(&bo);
        PyBuffer_Release(&bx);
        return -2;
    }
    uint8_t stack[16384];
    long need = scratch_bytes(pl, M);
    uint8_t *scratch = need <= (long)sizeof(stack) ? stack : (uint8_t *)malloc(need);
    int rc = -1;
    if (scratch) {
        qlinear_core(pl, (const float *)bx.buf, M, (float *)bo.buf, pl->N, scratch);
        rc = 0;
        if (scratch != stack) free(scratch);
    }
    PyBuffer_Release(&bo);
    PyBuffer_Release(&bx);
    return rc;
}

/*@EMBER_EXPF@*/
/* exp in float32 without branches, so that the gate loops vectorise (libm's expf and tanhf
   are scalar calls, ten times slower at batch 64): the compiler's ember_expf (within 2 ulp) */
static inline float e_exp(float x) { return ember_expf(x); }

/* PyTorch's sigmoid formula, 1 / (1 + exp(-x)) */
static inline float sigm(float v) { return 1.0f / (1.0f + e_exp(-v)); }

/* tanh |x| = 1 - 2 / (exp(2|x|) + 1) from 0.5 up (at most a few ulp: the result is above
   0.46), and below 0.5, where that cancels, its odd Taylor series to x^15 (the next term is
   under 5e-9) */
static inline float e_tanh(float x) {
    float a = fabsf(x);
    float e = e_exp(2.0f * (a < 20.0f ? a : 20.0f));
    float big = 1.0f - 2.0f / (e + 1.0f);
    float a2 = a * a;
    float p = -929569.0f / 638512875.0f;
    p = p * a2 + 21844.0f / 6081075.0f;
    p = p * a2 - 1382.0f / 155925.0f;
    p = p * a2 + 62.0f / 2835.0f;
    p = p * a2 - 17.0f / 315.0f;
    p = p * a2 + 2.0f / 15.0f;
    p = p * a2 - 1.0f / 3.0f;
    float small = a + a * a2 * p;
    float t = a < 0.5f ? small : big;
    t = copysignf(t, x);
    return x != x ? x : t;
}

static void lstm_gates(long H, const float *restrict gb, const float *restrict xb,
                       float *restrict cb, float *restrict hb) {
    for (long j = 0; j < H; ++j) {
        float ig = sigm(gb[j] + xb[j]);
        float fg = sigm(gb[H + j] + xb[H + j]);
        float cg = e_tanh(gb[2 * H + j] + xb[2 * H + j]);
        float og = sigm(gb[3 * H + j] + xb[3 * H + j]);
        float cy = fg * cb[j] + ig * cg;
        cb[j] = cy;
        hb[j] = og * e_tanh(cy);
    }
}

static void gru_gates(long H, const float *restrict gb, const float *restrict xb,
                      float *restrict hb) {
    for (long j = 0; j < H; ++j) {
        float r = sigm(gb[j] + xb[j]);
        float z = sigm(gb[H + j] + xb[H + j]);
        float n = e_tanh(xb[2 * H + j] + gb[2 * H + j] * r);
        hb[j] = (hb[j] - n) * z + n;
    }
}

/* A dynamic LSTM (mode 0) or GRU (mode 1) layer over T steps of batch B: gx [T, B, G*H]
   holds the input projections (with b_ih), h [B, H] (and c [B, H]) the state, updated in
   place; y receives h of step t at y + (t * B + b) * ldy + yoff. reverse runs t backwards. */
int qdyn_rnn(const plan_t *pl, int mode, void *gxo, void *ho, void *co, void *yo, long T,
             long B, long ldy, long yoff, int reverse) {
    ember_buffer bg, bh, bc, by;
    int got = 0, rc = -1;
    if (PyObject_GetBuffer(gxo, &bg, EMBER_BUF_C) != 0) goto done;
    got = 1;
    if (PyObject_GetBuffer(ho, &bh, EMBER_BUF_C | EMBER_BUF_W) != 0) goto done;
    got = 2;
    if (PyObject_GetBuffer(co, &bc, EMBER_BUF_C | EMBER_BUF_W) != 0) goto done;
    got = 3;
    if (PyObject_GetBuffer(yo, &by, EMBER_BUF_C | EMBER_BUF_W) != 0) goto done;
    got = 4;
    {
        long H = pl->K, G = pl->N;  /* w_hh is [G*H, H] */
        float *h = (float *)bh.buf, *c = (float *)bc.buf, *y = (float *)by.buf;
        const float *gx = (const float *)bg.buf;
        long need = scratch_bytes(pl, B) + 4 * B * G;
        uint8_t *scratch = (uint8_t *)malloc(need);
        if (!scratch) goto done;
        float *gh = (float *)(scratch + scratch_bytes(pl, B));
        for (long s = 0; s < T; ++s) {
            long t = reverse ? T - 1 - s : s;
            qlinear_core(pl, h, B, gh, G, scratch);
            const float *gxt = gx + t * B * G;
            for (long b = 0; b < B; ++b) {
                float *hb = h + b * H, *gb = gh + b * G;
                const float *xb = gxt + b * G;
                float *yb = y + (t * B + b) * ldy + yoff;
                /* PyTorch's cells: LSTM gates = (W_hh h + b_hh) + (W_ih x + b_ih), i, f, g, o;
                   GRU r, z from the sums, n = tanh(xn + hn * r), h = (h - n) z + n */
                if (mode == 0) lstm_gates(H, gb, xb, c + b * H, hb);
                else gru_gates(H, gb, xb, hb);
                memcpy(yb, hb, H * sizeof(float));
            }
        }
        free(scratch);
        rc = 0;
    }
done:
    if (got >= 4) PyBuffer_Release(&by);
    if (got >= 3) PyBuffer_Release(&bc);
    if (got >= 2) PyBuffer_Release(&bh);
    if (got >= 1) PyBuffer_Release(&bg);
    return rc;
}

void *qdyn_symbol(int which) {
    return which == 0 ? (void *)qdyn_linear : (void *)qdyn_rnn;
}
"""
_SRC = _SRC.replace("/*@EMBER_EXPF@*/", _PRELUDE_F32)

_FNS: list = []


def _functions():
    """(linear, rnn) as ctypes functions that keep the GIL, or None without a C compiler."""
    if not _FNS:
        fns = None
        try:
            from .._cc import load_kernel
            sym = load_kernel(_SRC, "qdyn_symbol")
            sym.restype = ctypes.c_void_p
            sym.argtypes = [ctypes.c_int]
            P, O, L = ctypes.c_void_p, ctypes.py_object, ctypes.c_long
            lin = ctypes.PYFUNCTYPE(ctypes.c_int, P, O, O)(sym(0))
            rnn = ctypes.PYFUNCTYPE(ctypes.c_int, P, ctypes.c_int, O, O, O, O, L, L, L, L,
                                    ctypes.c_int)(sym(1))
            fns = (lin, rnn)
        except (RuntimeError, OSError, AttributeError):
            fns = None
        _FNS.append(fns)
    return _FNS[0]


def available():
    """Whether the fused C paths can be used (a working C compiler)."""
    return _functions() is not None


def pack_panels(w_int8):
    """An int8 weight ``[N, K]`` in the kernel's layout: panels of 32 output rows (zero
    padded), groups of 4 inputs (zero padded), 32 rows x 4 bytes per group."""
    N, K = w_int8.shape
    NP, K4 = -(-N // 32), -(-K // 4) * 4
    w = np.zeros((NP * 32, K4), dtype=np.int8)
    w[:N, :K] = w_int8
    # [NP, 32, K4/4, 4] -> [NP, K4/4, 32, 4]
    return np.ascontiguousarray(w.reshape(NP, 32, K4 // 4, 4).transpose(0, 2, 1, 3)), NP, K4


class Plan:
    """The per-module constants of one dynamic linear (see the module docstring); built once
    from a ``PackedLinearWeight`` and kept alive with the arrays it points to."""

    def __init__(self, packed_linear, relu=False, reduce_range=True):
        pw = packed_linear.packed
        self.N, self.K = pw.N, pw.K
        self.panels, NP, K4 = pack_panels(pw.w)
        self.scales = np.ascontiguousarray(packed_linear.w_scales32, dtype=np.float32)
        self.wsum = np.ascontiguousarray(pw.wsum(), dtype=np.int32)
        self.zps = None if pw.symmetric else np.ascontiguousarray(pw.zw32(), dtype=np.int32)
        self.bias = packed_linear.bias32
        # int32 sums stay exact while K * 127 * max|w - zw| fits (always, for int8 weights
        # and K below 2**16); larger K takes the NumPy path
        self.ok = self.K * 128 * max(pw.wmax, 1) < (1 << 31)
        a = _addr
        self.array = np.array([a(self.panels), a(self.scales),
                               0 if self.zps is None else a(self.zps), a(self.wsum),
                               0 if self.bias is None else a(self.bias), self.N, self.K, K4,
                               NP, int(bool(relu)), int(bool(reduce_range))], dtype=np.int64)
        self.address = a(self.array)


def _addr(a):
    return a.__array_interface__["data"][0]


def linear(plan, x):
    """The fused dynamic linear of a C-contiguous float32 ``[..., K]`` array: float32
    ``[..., N]``."""
    out = np.empty(x.shape[:-1] + (plan.N,), dtype=np.float32)
    rc = _FNS[0][0](plan.address, x, out)
    if rc != 0:
        raise (MemoryError("dynamic quantized linear: out of memory for the scratch buffers")
               if rc == -1 else RuntimeError(f"dynamic quantized linear: input of shape "
                                             f"{x.shape} does not match K={plan.K}"))
    return out


def rnn_layer(plan, mode, gx, h, c, y, reverse, yoff):
    """Run one dynamic LSTM (mode 0) or GRU (mode 1) layer direction in C; ``h``/``c`` are
    updated in place and ``y`` ([T, B, ldy] float32) receives the outputs at column
    ``yoff``."""
    T, B = gx.shape[0], gx.shape[1]
    if _FNS[0][1](plan.address, mode, gx, h, c, y, T, B, y.shape[-1], yoff, int(reverse)):
        raise MemoryError("dynamic quantized RNN: out of memory for the scratch buffers")
