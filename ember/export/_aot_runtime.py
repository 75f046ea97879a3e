"""The C runtime of ``ember.export.aot_compile``: the kernels every generated model calls.

It is pasted at the top of each generated ``ember_model.c`` (so the library is one
self-contained file). Conventions: every tensor is a contiguous float32 buffer (booleans are
0/1, integer ids are exact floats); shapes are ``int64_t`` arrays; kernels return nothing
except the few that can meet bad data (an embedding id out of range), which return nonzero.
Only libc and libm are used; ``EMBER_USE_CBLAS`` (set when ``blas=`` is given at build time)
routes the GEMM to ``cblas_sgemm``.

``MODEL_PRELUDE`` (the handle and error reporting) follows the kernels, then the generated
tables and ``ember_model_run``, then ``MODEL_API`` (create/destroy, weights-file checks,
queries). ``HEADER`` is the ``ember_model.h`` written beside every library.
"""

RUNTIME_C = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <math.h>
#include <float.h>
#ifdef EMBER_USE_CBLAS
#include <cblas.h>
#endif

#define ER_MAXD 8
/* kernels are compiled once, not inlined into the long run function (keeps builds fast) */
#if defined(__GNUC__)
#define ER_K static __attribute__((noinline))
#else
#define ER_K static
#endif

static int64_t er_numel(const int64_t *s, int r) {
    int64_t n = 1;
    for (int i = 0; i < r; i++) n *= s[i];
    return n;
}

/* ------------------------------------------------------------------ GEMM
 * C[M,N] = A[M,K] B[K,N] (+ C when acc), row-major with leading dimensions.
 * The portable kernel: B is packed panel by panel (16 columns x 256 rows, contiguous, so
 * the panel sits in L1 instead of striding across cache sets), then a 4 x 16 block of C is
 * kept in registers while K is walked: per step four broadcasts of A, one 16-wide row of the
 * panel, 64 multiply-adds. One or two rows (batch-1 linear layers) stream B's rows instead.
 * On x86-64 Linux with GCC the hot kernels are also built for AVX2, chosen by CPU feature
 * when the library loads (target_clones): fast without -march=native, and portable. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ER_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ER_CLONES
#endif
enum { ER_MR = 4, ER_NR = 16, ER_KC = 256 };

#if defined(__GNUC__)
/* GCC/clang vector extensions: 8 floats (two SSE registers where AVX is absent) */
typedef float er_v8 __attribute__((vector_size(32)));

#define ER_INLINE static inline __attribute__((always_inline))

ER_INLINE void er_block_full(int64_t K, const float *restrict A, int64_t lda,
                                 const float *restrict Bp, float *restrict C, int64_t ldc,
                                 int64_t nr) {
    er_v8 c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0}, c30 = {0},
          c31 = {0};
    const float *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda;
    for (int64_t k = 0; k < K; k++) {
        er_v8 b0, b1;
        memcpy(&b0, Bp + k * ER_NR, sizeof b0);
        memcpy(&b1, Bp + k * ER_NR + 8, sizeof b1);
        float x0 = a0[k], x1 = a1[k], x2 = a2[k], x3 = a3[k];
        c00 += x0 * b0; c01 += x0 * b1;
        c10 += x1 * b0; c11 += x1 * b1;
        c20 += x2 * b0; c21 += x2 * b1;
        c30 += x3 * b0; c31 += x3 * b1;
    }
    float t[ER_MR][ER_NR];
    memcpy(t[0], &c00, 32); memcpy(t[0] + 8, &c01, 32);
    memcpy(t[1], &c10, 32); memcpy(t[1] + 8, &c11, 32);
    memcpy(t[2], &c20, 32); memcpy(t[2] + 8, &c21, 32);
    memcpy(t[3], &c30, 32); memcpy(t[3] + 8, &c31, 32);
    for (int r = 0; r < ER_MR; r++)
        for (int64_t j = 0; j < nr; j++) C[r * ldc + j] += t[r][j];
}

/* the last 1-3 rows of C: the same kernel over fewer rows (an array of accumulators) */
#define ER_BLOCK_ROWS(NAME, ROWS)                                                             \
ER_INLINE void NAME(int64_t K, const float *restrict A, int64_t lda,                         \
                    const float *restrict Bp, float *restrict C, int64_t ldc, int64_t nr) {  \
    er_v8 c0[ROWS], c1[ROWS];                                                                \
    for (int r = 0; r < ROWS; r++) {                                                         \
        c0[r] = (er_v8){0};                                                                  \
        c1[r] = (er_v8){0};                                                                  \
    }                                                                                        \
    for (int64_t k = 0; k < K; k++) {                                                        \
        er_v8 b0, b1;                                                                        \
        memcpy(&b0, Bp + k * ER_NR, sizeof b0);                                              \
        memcpy(&b1, Bp + k * ER_NR + 8, sizeof b1);                                          \
        for (int r = 0; r < ROWS; r++) {                                                     \
            float x = A[r * lda + k];                                                        \
            c0[r] += x * b0;                                                                 \
            c1[r] += x * b1;                                                                 \
        }                                                                                    \
    }                                                                                        \
    for (int r = 0; r < ROWS; r++) {                                                         \
        float t[ER_NR];                                                                      \
        memcpy(t, &c0[r], 32);                                                               \
        memcpy(t + 8, &c1[r], 32);                                                           \
        for (int64_t j = 0; j < nr; j++) C[r * ldc + j] += t[j];                             \
    }                                                                                        \
}
ER_BLOCK_ROWS(er_block_r1, 1)
ER_BLOCK_ROWS(er_block_r2, 2)
ER_BLOCK_ROWS(er_block_r3, 3)

ER_INLINE void er_block_edge(int64_t K, const float *restrict A, int64_t lda,
                             const float *restrict Bp, float *restrict C, int64_t ldc,
                             int64_t mr, int64_t nr) {
    if (mr == 3) er_block_r3(K, A, lda, Bp, C, ldc, nr);
    else if (mr == 2) er_block_r2(K, A, lda, Bp, C, ldc, nr);
    else er_block_r1(K, A, lda, Bp, C, ldc, nr);
}
#else
static inline void er_block_full(int64_t K, const float *restrict A, int64_t lda,
                                 const float *restrict Bp, float *restrict C, int64_t ldc,
                                 int64_t nr) {
    float c[ER_MR][ER_NR] = {{0}};
    for (int64_t k = 0; k < K; k++)
        for (int r = 0; r < ER_MR; r++) {
            float a = A[r * lda + k];
            for (int j = 0; j < ER_NR; j++) c[r][j] += a * Bp[k * ER_NR + j];
        }
    for (int r = 0; r < ER_MR; r++)
        for (int64_t j = 0; j < nr; j++) C[r * ldc + j] += c[r][j];
}

static inline void er_block_edge(int64_t K, const float *restrict A, int64_t lda,
                                 const float *restrict Bp, float *restrict C, int64_t ldc,
                                 int64_t mr, int64_t nr) {
    for (int64_t r = 0; r < mr; r++) {
        float c[ER_NR] = {0};
        for (int64_t k = 0; k < K; k++) {
            float a = A[r * lda + k];
            for (int j = 0; j < ER_NR; j++) c[j] += a * Bp[k * ER_NR + j];
        }
        for (int64_t j = 0; j < nr; j++) C[r * ldc + j] += c[j];
    }
}
#endif

static inline void er_row_stream(int64_t N, int64_t K, const float *restrict a,
                                 const float *restrict B, int64_t ldb, float *restrict c) {
    for (int64_t k = 0; k < K; k++) {
        float ak = a[k];
        const float *b = B + k * ldb;
        for (int64_t j = 0; j < N; j++) c[j] += ak * b[j];
    }
}

ER_CLONES ER_K void er_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                            const float *B, int64_t ldb, float *C, int64_t ldc, int acc) {
#ifdef EMBER_USE_CBLAS
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)N, (int)K, 1.0f, A,
                (int)lda, B, (int)ldb, acc ? 1.0f : 0.0f, C, (int)ldc);
#else
    if (!acc)
        for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, (size_t)N * sizeof(float));
    if (M < 3) {
        for (int64_t i = 0; i < M; i++) er_row_stream(N, K, A + i * lda, B, ldb, C + i * ldc);
        return;
    }
    float Bp[ER_KC * ER_NR];
    for (int64_t j0 = 0; j0 < N; j0 += ER_NR) {
        int64_t nr = N - j0 < ER_NR ? N - j0 : ER_NR;
        for (int64_t k0 = 0; k0 < K; k0 += ER_KC) {
            int64_t kc = K - k0 < ER_KC ? K - k0 : ER_KC;
            for (int64_t k = 0; k < kc; k++) {
                const float *b = B + (k0 + k) * ldb + j0;
                float *p = Bp + k * ER_NR;
                int64_t j = 0;
                for (; j < nr; j++) p[j] = b[j];
                for (; j < ER_NR; j++) p[j] = 0.0f;
            }
            int64_t i0 = 0;
            for (; i0 + ER_MR <= M; i0 += ER_MR)
                er_block_full(kc, A + i0 * lda + k0, lda, Bp, C + i0 * ldc + j0, ldc, nr);
            if (i0 < M)
                er_block_edge(kc, A + i0 * lda + k0, lda, Bp, C + i0 * ldc + j0, ldc, M - i0,
                              nr);
        }
    }
#endif
}

/* y[M,N] = x[M,K] wt[K,N] + b[N]   (wt: the weight transposed at export time) */
ER_K void er_linear(const float *x, const float *wt, const float *b, float *y,
                      int64_t M, int64_t K, int64_t N) {
    if (b) {
        for (int64_t i = 0; i < M; i++) memcpy(y + i * N, b, (size_t)N * sizeof(float));
    }
    er_gemm(M, N, K, x, K, wt, N, y, N, b != NULL);
}

/* batched matmul with broadcast batch dims: a [.., M, K], b [.., K, N] -> y [.., M, N];
 * astr/bstr: the element offset between consecutive batches of a and b, per output batch
 * index (computed by the caller from the broadcast shapes). */
ER_K void er_bmm(const float *a, const float *b, float *y, int64_t nbatch,
                   const int64_t *aoff, const int64_t *boff, int64_t M, int64_t K, int64_t N) {
    for (int64_t i = 0; i < nbatch; i++)
        er_gemm(M, N, K, a + aoff[i], K, b + boff[i], N, y + i * M * N, N, 0);
}

/* offsets of each batch of an operand broadcast to the output's batch shape */
ER_K void er_batch_offsets(const int64_t *oshape, const int64_t *ishape, int r,
                             int64_t mat, int64_t *off) {
    int64_t n = er_numel(oshape, r);
    int64_t st[ER_MAXD], s = mat;
    for (int d = r - 1; d >= 0; d--) {
        st[d] = ishape[d] == 1 ? 0 : s;
        s *= ishape[d];
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, o = 0;
        for (int d = r - 1; d >= 0; d--) {
            o += (rem % oshape[d]) * st[d];
            rem /= oshape[d];
        }
        off[i] = o;
    }
}

/* ------------------------------------------------------------------ convolution
 * 2-D convolution over x [N, C, H, W] with w [Co, C/g * kh * kw] (flattened) and bias.
 * Depthwise convolutions (one input channel per group) run as direct loops; 1x1 stride-1
 * unpadded ones as one GEMM per image and group; the rest as im2col into `col` + GEMM. */
ER_CLONES ER_K void er_conv2d(const float *x, const float *w, const float *bias, float *y,
                              float *col,
                      int64_t N, int64_t C, int64_t H, int64_t W, int64_t Co, int64_t kh,
                      int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
                      int64_t dw, int64_t g, int64_t OH, int64_t OW) {
    int64_t cg = C / g, cog = Co / g, P = OH * OW, Kd = cg * kh * kw;
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * C * H * W;
        float *yn = y + n * Co * P;
        if (cg == 1 && cog == 1) {  /* depthwise */
            for (int64_t c = 0; c < C; c++) {
                const float *xc = xn + c * H * W, *wc = w + c * kh * kw;
                float *yc = yn + c * P;
                float b0 = bias ? bias[c] : 0.0f;
                for (int64_t oh = 0; oh < OH; oh++)
                    for (int64_t ow = 0; ow < OW; ow++) {
                        float s = 0.0f;
                        for (int64_t i = 0; i < kh; i++) {
                            int64_t ih = oh * sh - ph + i * dh;
                            if (ih < 0 || ih >= H) continue;
                            for (int64_t j = 0; j < kw; j++) {
                                int64_t iw = ow * sw - pw + j * dw;
                                if (iw < 0 || iw >= W) continue;
                                s += xc[ih * W + iw] * wc[i * kw + j];
                            }
                        }
                        yc[oh * OW + ow] = s + b0;
                    }
            }
            continue;
        }
        for (int64_t gi = 0; gi < g; gi++) {
            const float *xg = xn + gi * cg * H * W;
            const float *src = xg;
            if (!(kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 &&
                  OH == H && OW == W)) {
                for (int64_t c = 0; c < cg; c++)
                    for (int64_t i = 0; i < kh; i++)
                        for (int64_t j = 0; j < kw; j++) {
                            float *row = col + ((c * kh + i) * kw + j) * P;
                            for (int64_t oh = 0; oh < OH; oh++) {
                                int64_t ih = oh * sh - ph + i * dh;
                                float *r = row + oh * OW;
                                if (ih < 0 || ih >= H) {
                                    memset(r, 0, (size_t)OW * sizeof(float));
                                    continue;
                                }
                                const float *xr = xg + (c * H + ih) * W;
                                for (int64_t ow = 0; ow < OW; ow++) {
                                    int64_t iw = ow * sw - pw + j * dw;
                                    r[ow] = (iw >= 0 && iw < W) ? xr[iw] : 0.0f;
                                }
                            }
                        }
                src = col;
            }
            float *yg = yn + gi * cog * P;
            if (bias) {
                for (int64_t o = 0; o < cog; o++) {
                    float b0 = bias[gi * cog + o];
                    for (int64_t p = 0; p < P; p++) yg[o * P + p] = b0;
                }
            }
            er_gemm(cog, P, Kd, w + gi * cog * Kd, Kd, src, P, yg, P, bias != NULL);
        }
    }
}

/* ------------------------------------------------------------------ pooling (2-D) */
ER_CLONES ER_K void er_maxpool2d(const float *x, float *y, int64_t NC, int64_t H, int64_t W,
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                         int64_t pw, int64_t dh, int64_t dw, int64_t OH, int64_t OW) {
    for (int64_t c = 0; c < NC; c++) {
        const float *xc = x + c * H * W;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float m = -INFINITY;
                for (int64_t i = 0; i < kh; i++) {
                    int64_t ih = oh * sh - ph + i * dh;
                    if (ih < 0 || ih >= H) continue;
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t iw = ow * sw - pw + j * dw;
                        if (iw < 0 || iw >= W) continue;
                        float v = xc[ih * W + iw];
                        if (v > m || v != v) m = v;
                    }
                }
                y[(c * OH + oh) * OW + ow] = m;
            }
    }
}

/* window sums divided by `div` (one number) or `divs` (one divisor per output position) */
ER_K void er_avgpool2d(const float *x, float *y, int64_t NC, int64_t H, int64_t W,
                         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph,
                         int64_t pw, int64_t OH, int64_t OW, float div, const float *divs) {
    for (int64_t c = 0; c < NC; c++) {
        const float *xc = x + c * H * W;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                float s = 0.0f;
                for (int64_t i = 0; i < kh; i++) {
                    int64_t ih = oh * sh - ph + i;
                    if (ih < 0 || ih >= H) continue;
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t iw = ow * sw - pw + j;
                        if (iw < 0 || iw >= W) continue;
                        s += xc[ih * W + iw];
                    }
                }
                y[(c * OH + oh) * OW + ow] = s / (divs ? divs[oh * OW + ow] : div);
            }
    }
}

/* ------------------------------------------------------------------ elementwise
 * Operands are broadcast to the output shape (rank r): strides of a broadcast dimension
 * are 0. The fast path (every operand full-size) is one flat loop. */
ER_K void er_strides(const int64_t *oshape, const int64_t *ishape, int r, int ir,
                       int64_t *st) {
    (void)oshape;
    int64_t s = 1;
    for (int d = r - 1; d >= 0; d--) {
        int id = d - (r - ir);
        int64_t n = id >= 0 ? ishape[id] : 1;
        st[d] = n == 1 ? 0 : s;
        s *= n;
    }
}

static float er_unop(int op, float a, float p0, float p1) {
    switch (op) {
    case 0: return -a;
    case 1: return fabsf(a);
    case 2: return a > 0.0f ? a : (a != a ? a : 0.0f);
    case 3: return expf(a);
    case 4: return logf(a);
    case 5: return sqrtf(a);
    case 6: return 1.0f / sqrtf(a);
    case 7: return 1.0f / a;
    case 8: return tanhf(a);
    case 9: return 1.0f / (1.0f + expf(-a));
    case 10: return a / (1.0f + expf(-a));                          /* silu */
    case 11: return 0.5f * a * (1.0f + erff(a * 0.70710678118654752f)); /* gelu */
    case 12: {                                                       /* gelu, tanh */
        float u = 0.7978845608028654f * (a + 0.044715f * a * a * a);
        return 0.5f * a * (1.0f + tanhf(u));
    }
    case 13: return a < p0 ? p0 : (a > p1 ? p1 : a);                 /* clamp */
    case 14: return a > 0.0f ? a : a * p0;                           /* leaky relu */
    case 15: return a > 0.0f ? a : p0 * (expf(a) - 1.0f);            /* elu */
    case 16: return a * p0 > p1 ? a : log1pf(expf(a * p0)) / p0;     /* softplus */
    case 17: return sinf(a);
    case 18: return cosf(a);
    case 19: return erff(a);
    case 20: return a * a;
    case 21: return (float)(a > 0.0f) - (float)(a < 0.0f);
    case 22: return a == 0.0f ? 1.0f : 0.0f;                         /* logical not */
    case 23: return powf(a, p0);                                     /* pow by a scalar */
    case 24: return a != a ? 1.0f : 0.0f;                            /* isnan */
    case 25: return a != 0.0f ? 1.0f : 0.0f;                         /* to bool */
    case 26: return truncf(a);                                       /* to an integer */
    case 27: return a < p0 ? p0 : a;                                 /* clamp min */
    case 28: return a > p1 ? p1 : a;                                 /* clamp max */
    default: return a;
    }
}

ER_CLONES ER_K void er_unary(int op, const float *a, float *y, int64_t n, float p0, float p1) {
    switch (op) {  /* the common activations get their own loops, so they vectorise */
    case 2:
        for (int64_t i = 0; i < n; i++) y[i] = a[i] > 0.0f ? a[i] : (a[i] != a[i] ? a[i] : 0.0f);
        return;
    case 13:
        for (int64_t i = 0; i < n; i++) y[i] = a[i] < p0 ? p0 : (a[i] > p1 ? p1 : a[i]);
        return;
    default:
        for (int64_t i = 0; i < n; i++) y[i] = er_unop(op, a[i], p0, p1);
    }
}

static inline float er_binop(int op, float a, float b) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    case 4: return a > b ? a : (a != a ? a : b);       /* maximum (NaN propagates) */
    case 5: return a < b ? a : (a != a ? a : b);       /* minimum */
    case 6: return powf(a, b);
    case 7: return (float)(a == b);
    case 8: return (float)(a != b);
    case 9: return (float)(a < b);
    case 10: return (float)(a <= b);
    case 11: return (float)(a > b);
    case 12: return (float)(a >= b);
    case 13: return (float)((a != 0.0f) && (b != 0.0f));
    case 14: return (float)((a != 0.0f) || (b != 0.0f));
    case 15: return (float)((a != 0.0f) != (b != 0.0f));
    default: return a;
    }
}

ER_CLONES ER_K void er_binary(int op, const float *a, const int64_t *as, int ar, const float *b,
                      const int64_t *bs, int br, float *y, const int64_t *ys, int r) {
    int64_t n = er_numel(ys, r);
    if (er_numel(as, ar) == n && er_numel(bs, br) == n) {
        switch (op) {
        case 0: for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i]; return;
        case 1: for (int64_t i = 0; i < n; i++) y[i] = a[i] - b[i]; return;
        case 2: for (int64_t i = 0; i < n; i++) y[i] = a[i] * b[i]; return;
        case 3: for (int64_t i = 0; i < n; i++) y[i] = a[i] / b[i]; return;
        default: for (int64_t i = 0; i < n; i++) y[i] = er_binop(op, a[i], b[i]); return;
        }
    }
    int64_t sa[ER_MAXD], sb[ER_MAXD], idx[ER_MAXD] = {0};
    er_strides(ys, as, r, ar, sa);
    er_strides(ys, bs, r, br, sb);
    /* the innermost dimension as a loop of its own; the outer ones as a counter */
    int64_t inner = r ? ys[r - 1] : 1, ia = r ? sa[r - 1] : 0, ib = r ? sb[r - 1] : 0;
    int64_t oa = 0, ob = 0;
    for (int64_t base = 0; base < n; base += inner) {
        for (int64_t j = 0; j < inner; j++)
            y[base + j] = er_binop(op, a[oa + j * ia], b[ob + j * ib]);
        for (int d = r - 2; d >= 0; d--) {
            idx[d]++;
            oa += sa[d];
            ob += sb[d];
            if (idx[d] < ys[d]) break;
            oa -= sa[d] * ys[d];
            ob -= sb[d] * ys[d];
            idx[d] = 0;
        }
    }
}

/* where(c, a, b) with broadcasting (c nonzero selects a) */
ER_K void er_where(const float *c, const int64_t *cs, int cr, const float *a,
                     const int64_t *as, int ar, const float *b, const int64_t *bs, int br,
                     float *y, const int64_t *ys, int r) {
    int64_t n = er_numel(ys, r);
    int64_t sc[ER_MAXD], sa[ER_MAXD], sb[ER_MAXD];
    er_strides(ys, cs, r, cr, sc);
    er_strides(ys, as, r, ar, sa);
    er_strides(ys, bs, r, br, sb);
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, oc = 0, oa = 0, ob = 0;
        for (int d = r - 1; d >= 0; d--) {
            int64_t k = rem % ys[d];
            rem /= ys[d];
            oc += k * sc[d];
            oa += k * sa[d];
            ob += k * sb[d];
        }
        y[i] = c[oc] != 0.0f ? a[oa] : b[ob];
    }
}

/* ------------------------------------------------------------------ data movement
 * y = x viewed with element strides `st` (any layout: permutes, broadcasts, slices). */
ER_K void er_strided_copy(const float *x, int64_t off, const int64_t *st, float *y,
                            const int64_t *ys, int r) {
    int64_t n = er_numel(ys, r), idx[ER_MAXD] = {0};
    if (r == 0) {
        y[0] = x[off];
        return;
    }
    int64_t inner = ys[r - 1], is = st[r - 1], o = off;
    for (int64_t base = 0; base < n; base += inner) {
        if (is == 1) memcpy(y + base, x + o, (size_t)inner * sizeof(float));
        else for (int64_t j = 0; j < inner; j++) y[base + j] = x[o + j * is];
        for (int d = r - 2; d >= 0; d--) {
            idx[d]++;
            o += st[d];
            if (idx[d] < ys[d]) break;
            o -= st[d] * ys[d];
            idx[d] = 0;
        }
    }
}

ER_K void er_permute(const float *x, const int64_t *xs, int r, const int64_t *perm, float *y) {
    int64_t xst[ER_MAXD], st[ER_MAXD], ys[ER_MAXD], s = 1;
    for (int d = r - 1; d >= 0; d--) {
        xst[d] = s;
        s *= xs[d];
    }
    for (int d = 0; d < r; d++) {
        st[d] = xst[perm[d]];
        ys[d] = xs[perm[d]];
    }
    er_strided_copy(x, 0, st, y, ys, r);
}

/* copy x [outer, n, inner] into y [outer, total, inner] at offset `at` along the middle */
ER_K void er_place(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                     int64_t total, int64_t at) {
    for (int64_t o = 0; o < outer; o++)
        memcpy(y + (o * total + at) * inner, x + o * n * inner,
               (size_t)(n * inner) * sizeof(float));
}

/* y [outer, n, inner] = x [outer, total, inner] from offset `at` along the middle */
ER_K void er_take(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                    int64_t total, int64_t at) {
    for (int64_t o = 0; o < outer; o++)
        memcpy(y + o * n * inner, x + (o * total + at) * inner,
               (size_t)(n * inner) * sizeof(float));
}

/* rows of w [V, D] picked by ids; an id outside [0, V) is an error (returns 1) */
ER_K int er_embedding(const float *w, int64_t V, int64_t D, const float *ids, int64_t n,
                        float *y) {
    for (int64_t i = 0; i < n; i++) {
        float f = ids[i];
        int64_t k = (int64_t)f;
        if (!(f >= 0.0f) || k >= V || (float)k != f) return 1;
        memcpy(y + i * D, w + k * D, (size_t)D * sizeof(float));
    }
    return 0;
}

/* y [outer, n, inner] = x [outer, total, inner] at indices idx (n of them) along the middle;
 * an index outside [-total, total) is an error (returns 1) */
ER_K int er_index_select(const float *x, const float *idx, float *y, int64_t outer,
                         int64_t n, int64_t inner, int64_t total) {
    for (int64_t k = 0; k < n; k++) {
        float f = idx[k];
        int64_t i = (int64_t)f;
        if ((float)i != f || i < -total || i >= total) return 1;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < n; k++) {
            int64_t i = (int64_t)idx[k];
            if (i < 0) i += total;
            memcpy(y + (o * n + k) * inner, x + (o * total + i) * inner,
                   (size_t)inner * sizeof(float));
        }
    return 0;
}

/* ------------------------------------------------------------------ reductions
 * x viewed as [outer, n, inner]; op 0 sum, 1 mean, 2 max, 3 min (sums in double) */
ER_K void er_reduce(int op, const float *x, float *y, int64_t outer, int64_t n,
                      int64_t inner) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *p = x + o * n * inner + i;
            if (op <= 1) {
                double s = 0.0;
                for (int64_t k = 0; k < n; k++) s += p[k * inner];
                y[o * inner + i] = (float)(op == 1 ? s / (double)n : s);
            } else {
                float m = op == 2 ? -INFINITY : INFINITY;
                for (int64_t k = 0; k < n; k++) {
                    float v = p[k * inner];
                    if (v != v) { m = v; break; }
                    if (op == 2 ? v > m : v < m) m = v;
                }
                y[o * inner + i] = m;
            }
        }
}

/* index of the max (op 0) or min (op 1) along the middle axis, first one on ties */
ER_K void er_argreduce(int op, const float *x, float *y, int64_t outer, int64_t n,
                         int64_t inner) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *p = x + o * n * inner + i;
            int64_t best = 0;
            float m = p[0];
            for (int64_t k = 1; k < n && m == m; k++) {
                float v = p[k * inner];
                if (v != v || (op == 0 ? v > m : v < m)) { m = v; best = k; }
            }
            y[o * inner + i] = (float)best;
        }
}

/* softmax / log_softmax over the middle axis of [outer, n, inner] */
ER_CLONES ER_K void er_softmax(const float *x, float *y, int64_t outer, int64_t n, int64_t inner,
                       int log_) {
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            const float *p = x + o * n * inner + i;
            float *q = y + o * n * inner + i;
            float m = -INFINITY;
            for (int64_t k = 0; k < n; k++) if (p[k * inner] > m) m = p[k * inner];
            if (m == -INFINITY) m = 0.0f;
            double s = 0.0;
            for (int64_t k = 0; k < n; k++) {
                float e = expf(p[k * inner] - m);
                if (!log_) q[k * inner] = e;
                s += e;
            }
            if (log_) {
                float ls = (float)log(s);
                for (int64_t k = 0; k < n; k++) q[k * inner] = p[k * inner] - m - ls;
            } else {
                float inv = (float)(1.0 / s);
                for (int64_t k = 0; k < n; k++) q[k * inner] *= inv;
            }
        }
}

/* layer norm over the last n elements of each of `rows` rows; w, b over those n (or NULL) */
ER_CLONES ER_K void er_layernorm(const float *x, const float *w, const float *b, float *y,
                         int64_t rows, int64_t n, float eps) {
    for (int64_t r = 0; r < rows; r++) {
        const float *p = x + r * n;
        float *q = y + r * n;
        double s = 0.0;
        for (int64_t k = 0; k < n; k++) s += p[k];
        float mean = (float)(s / (double)n);
        double v = 0.0;
        for (int64_t k = 0; k < n; k++) {
            float d = p[k] - mean;
            v += (double)d * d;
        }
        float rstd = 1.0f / sqrtf((float)(v / (double)n) + eps);
        for (int64_t k = 0; k < n; k++) {
            float t = (p[k] - mean) * rstd;
            if (w) t *= w[k];
            if (b) t += b[k];
            q[k] = t;
        }
    }
}

/* tril (upper=0) / triu (upper=1) over the last two dims [.., R, C] */
ER_K void er_tri(const float *x, float *y, int64_t batch, int64_t R, int64_t C, int64_t k,
                   int upper) {
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < R; i++)
            for (int64_t j = 0; j < C; j++) {
                int keep = upper ? (j - i >= k) : (j - i <= k);
                y[(b * R + i) * C + j] = keep ? x[(b * R + i) * C + j] : 0.0f;
            }
}

/* ------------------------------------------------------------------ LSTM (one layer)
 * x [T, N, I]; h0, c0 [N, H]; wih_t [I, 4H], whh_t [H, 4H] (transposed), bias [4H] (the sum
 * of both biases, or NULL); gates in PyTorch's order i, f, g, o. out [T, N, H], hn, cn
 * [N, H]; xw [T*N, 4H] and gates [N, 4H] are scratch. */
ER_CLONES ER_K void er_lstm(const float *x, const float *h0, const float *c0, const float *wih_t,
                    const float *whh_t, const float *bias, float *out, float *hn, float *cn,
                    float *xw, float *gates, int64_t T, int64_t N, int64_t I, int64_t H,
                    int reverse) {
    int64_t G = 4 * H;
    er_linear(x, wih_t, bias, xw, T * N, I, G);
    memcpy(hn, h0, (size_t)(N * H) * sizeof(float));
    memcpy(cn, c0, (size_t)(N * H) * sizeof(float));
    for (int64_t s = 0; s < T; s++) {
        int64_t t = reverse ? T - 1 - s : s;
        memcpy(gates, xw + t * N * G, (size_t)(N * G) * sizeof(float));
        er_gemm(N, G, H, hn, H, whh_t, G, gates, G, 1);
        for (int64_t n = 0; n < N; n++) {
            const float *gr = gates + n * G;
            float *h = hn + n * H, *c = cn + n * H;
            for (int64_t j = 0; j < H; j++) {
                float ig = 1.0f / (1.0f + expf(-gr[j]));
                float fg = 1.0f / (1.0f + expf(-gr[H + j]));
                float gg = tanhf(gr[2 * H + j]);
                float og = 1.0f / (1.0f + expf(-gr[3 * H + j]));
                float cv = fg * c[j] + ig * gg;
                c[j] = cv;
                h[j] = og * tanhf(cv);
            }
        }
        memcpy(out + t * N * H, hn, (size_t)(N * H) * sizeof(float));
    }
}
"""

# the model's handle, error reporting and weights loading (pasted after the tables)
MODEL_PRELUDE = r"""
/* ================================================================== the model */
#include "ember_model.h"
#include <stdarg.h>

struct ember_model {
    float *w;          /* the constants, read from the weights file */
    float *ws_raw;     /* the workspace (grown on demand) */
    float *ws;
    int64_t cap;
    char err[512];
};

static char er_create_err[512];

static int er_fail(ember_model *m, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->err, sizeof m->err, fmt, ap);
    va_end(ap);
    return code;
}
"""

MODEL_API = r"""
const char *ember_last_create_error(void) { return er_create_err; }

const char *ember_model_last_error(const ember_model *m) {
    return m ? m->err : "ember_model_last_error: NULL model";
}

static ember_model *er_create_fail(FILE *f, float *w, const char *msg, const char *path) {
    snprintf(er_create_err, sizeof er_create_err, "%s: %s", path ? path : "(null)", msg);
    if (f) fclose(f);
    free(w);
    return NULL;
}

ember_model *ember_model_create(const char *weights_path) {
    er_create_err[0] = 0;
    if (!weights_path) return er_create_fail(NULL, NULL, "NULL weights path", NULL);
    FILE *f = fopen(weights_path, "rb");
    if (!f) return er_create_fail(NULL, NULL, "cannot open the weights file", weights_path);
    char magic[8];
    uint32_t version = 0, count = 0;
    uint64_t total = 0, s1 = 0, s2 = 0;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "EMBERAOT", 8) != 0)
        return er_create_fail(f, NULL, "not an ember weights file (bad magic)", weights_path);
    if (fread(&version, 4, 1, f) != 1 || version != 1)
        return er_create_fail(f, NULL, "unsupported weights file version", weights_path);
    if (fread(&count, 4, 1, f) != 1 || count != (uint32_t)ER_NCONST)
        return er_create_fail(f, NULL, "the weights file holds another number of tensors "
                              "than this library was built for", weights_path);
    if (fread(&total, 8, 1, f) != 1 || total != er_total)
        return er_create_fail(f, NULL, "the weights file's size differs from this library's",
                              weights_path);
    if (fread(&s1, 8, 1, f) != 1 || fread(&s2, 8, 1, f) != 1)
        return er_create_fail(f, NULL, "truncated header", weights_path);
    for (uint32_t i = 0; i < count; i++) {
        uint64_t n = 0;
        if (fread(&n, 8, 1, f) != 1 || n != er_csize[i])
            return er_create_fail(f, NULL, "a tensor's size differs from this library's",
                                  weights_path);
    }
    float *w = (float *)malloc((size_t)(total ? total : 1) * sizeof(float));
    if (!w) return er_create_fail(f, NULL, "out of memory", weights_path);
    if (fread(w, sizeof(float), (size_t)total, f) != (size_t)total)
        return er_create_fail(f, w, "truncated weights data", weights_path);
    if (fgetc(f) != EOF)
        return er_create_fail(f, w, "trailing bytes after the weights data", weights_path);
    /* checksum: the 32-bit words' sum and position-weighted sum, modulo 2^64 */
    uint64_t c1 = 0, c2 = 0;
    const uint32_t *u = (const uint32_t *)(const void *)w;
    for (uint64_t i = 0; i < total; i++) {
        c1 += u[i];
        c2 += (uint64_t)u[i] * (i + 1);
    }
    if (c1 != s1 || c2 != s2)
        return er_create_fail(f, w, "checksum mismatch (corrupt weights data)", weights_path);
    fclose(f);
    ember_model *m = (ember_model *)calloc(1, sizeof *m);
    if (!m) return er_create_fail(NULL, w, "out of memory", weights_path);
    m->w = w;
    return m;
}

void ember_model_destroy(ember_model *m) {
    if (!m) return;
    free(m->w);
    free(m->ws_raw);
    free(m);
}

int ember_model_num_inputs(const ember_model *m) { return m ? er_n_in : -1; }
int ember_model_num_outputs(const ember_model *m) { return m ? er_n_out : -1; }

int ember_model_input_rank(const ember_model *m, int i) {
    return (m && i >= 0 && i < er_n_in) ? er_in_rank[i] : -1;
}

int ember_model_output_rank(const ember_model *m, int i) {
    return (m && i >= 0 && i < er_n_out) ? er_out_rank[i] : -1;
}

int ember_model_dynamic_range(const ember_model *m, int64_t *min, int64_t *max) {
    if (!m) return -1;
    if (min) *min = er_dyn_min;
    if (max) *max = er_dyn_max;
    return er_dynamic;
}

int ember_model_input_shape(ember_model *m, int i, int64_t dyn, int64_t *shape) {
    if (!m) return EMBER_ERR_NULL;
    if (!shape) return er_fail(m, EMBER_ERR_NULL, "input_shape: NULL shape array");
    if (i < 0 || i >= er_n_in) return er_fail(m, EMBER_ERR_INDEX, "no input %d", i);
    er_input_dims(i, er_dynamic ? dyn : 1, shape);
    return EMBER_OK;
}

int ember_model_output_shape(ember_model *m, int i, int64_t dyn, int64_t *shape) {
    if (!m) return EMBER_ERR_NULL;
    if (!shape) return er_fail(m, EMBER_ERR_NULL, "output_shape: NULL shape array");
    if (i < 0 || i >= er_n_out) return er_fail(m, EMBER_ERR_INDEX, "no output %d", i);
    er_output_dims(i, er_dynamic ? dyn : 1, shape);
    return EMBER_OK;
}
"""


# the public header written beside the library
HEADER = r"""/* ember_model.h: the C API of a model compiled by ember.export.aot_compile.
 *
 * Build: cc -O3 -shared -fPIC ember_model.c -o libember_model.so -lm  (aot_compile does it)
 * Link:  cc main.c -L. -lember_model -lm   (or load it with dlopen)
 *
 * Tensors are contiguous row-major float32 buffers. Integer inputs (token ids) are passed as
 * floats holding exact integers; boolean inputs (masks) as 0.0f / 1.0f. A model may have one
 * dynamic dimension (the batch, exported with ember.export.Dim): shapes are checked against
 * it on every call. A handle is not thread-safe: use one per thread.
 */
#ifndef EMBER_MODEL_H
#define EMBER_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_model ember_model;

/* error codes returned by ember_model_run and the queries */
enum {
    EMBER_OK = 0,
    EMBER_ERR_NULL = 1,      /* a NULL model, buffer, shape or array argument */
    EMBER_ERR_COUNT = 2,     /* wrong number of inputs or outputs */
    EMBER_ERR_RANK = 3,      /* an input of the wrong rank */
    EMBER_ERR_SHAPE = 4,     /* an input of the wrong shape (or dynamic size out of range) */
    EMBER_ERR_CAPACITY = 5,  /* an output buffer too small */
    EMBER_ERR_MEMORY = 6,    /* the workspace could not be allocated */
    EMBER_ERR_VALUE = 7,     /* bad data (an embedding id out of range) */
    EMBER_ERR_INDEX = 8      /* no such input/output */
};

/* Load the weights file written beside the library (its header is checked: magic, version,
 * tensor count and sizes, checksum). Returns NULL on failure; then
 * ember_last_create_error() says why. */
ember_model *ember_model_create(const char *weights_path);
const char *ember_last_create_error(void);

/* Free the model (NULL is allowed). */
void ember_model_destroy(ember_model *m);

/* The message of the last failed call on m ("" after a success). */
const char *ember_model_last_error(const ember_model *m);

/* Numbers and ranks of inputs and outputs (-1 for a NULL model or a bad index). */
int ember_model_num_inputs(const ember_model *m);
int ember_model_num_outputs(const ember_model *m);
int ember_model_input_rank(const ember_model *m, int i);
int ember_model_output_rank(const ember_model *m, int i);

/* 1 if the model has a dynamic dimension (its range in *min, *max; either may be NULL),
 * 0 if every shape is static, -1 for a NULL model. */
int ember_model_dynamic_range(const ember_model *m, int64_t *min, int64_t *max);

/* The shape of input/output i when the dynamic dimension is dyn (ignored by static models;
 * dyn <= 0 writes -1 where a dimension follows the dynamic size). shape must hold
 * ember_model_*_rank(m, i) values. Returns EMBER_OK or an error code. */
int ember_model_input_shape(ember_model *m, int i, int64_t dyn, int64_t *shape);
int ember_model_output_shape(ember_model *m, int i, int64_t dyn, int64_t *shape);

/* Run the model. inputs[i] is a buffer of shape input_shapes[i] (input_ranks[i] values);
 * outputs[i] a buffer of output_sizes[i] floats, at least the number of elements of
 * ember_model_output_shape(m, i, dyn). Returns EMBER_OK (0) or an error code, with the
 * message in ember_model_last_error(m); never writes outside the given buffers. */
int ember_model_run(ember_model *m, int n_inputs, const float *const *inputs,
                    const int64_t *const *input_shapes, const int *input_ranks,
                    int n_outputs, float *const *outputs, const int64_t *output_sizes);

#ifdef __cplusplus
}
#endif

#endif /* EMBER_MODEL_H */
"""
