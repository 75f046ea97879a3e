"""The int8 GEMM behind ember's quantized Linear, Conv and dynamic RNN modules (issue 20).

``raw[m, n] = sum_k (a[m, k] - za) * (w[n, k] - zw[n])`` exactly, in int32, for uint8/int8
activations ``a`` and int8 weights ``w``; the callers requantize ``raw`` (static modules) or
scale it back to float (dynamic modules) as fbgemm does.

NumPy's integer matmul does not use BLAS, so two exact formulations compete:

* ``blas``: the centred integers as float32 (or float64) matrices through BLAS. Every
  product and partial sum is an integer; float32 holds integers exactly below 2**24, so the
  sum is exact while ``K * max|a - za| * max|w - zw| < 2**24`` (true for the usual
  ``reduce_range`` activations up to K = 1032). Larger K is cut into blocks that satisfy the
  bound, summed in float64, which is exact to 2**53.
* ``c``: a C kernel (int16 activations times int8 weights, int32 sums), compiled like the
  compiler's kernels (``ember._cc.load_kernel``: system ``cc``, ``-march=native``,
  disk cache keyed by source and flags). Which instructions it uses is decided where it is
  compiled: AVX-512 VNNI (``vpdpwssd``) where the CPU has it, else AVX2 (``vpmaddwd``), else
  plain C. It reads a quarter of the bytes float32 weights need, so it wins where the GEMM is
  bound by memory (a batch of one); BLAS wins on large batches.

``choose(M, N, K)`` picks per shape from measured timings (``benchmarks/quantization.py``
prints them), and a NumPy fallback serves when no C compiler exists. The dynamic modules
(Linear, LSTM, GRU) run ``ember.ao._qfast`` instead: one C call per layer with weights
prepacked for a broadcast u8 x s8 kernel (about twice as fast as ``gemm_u8`` here); these
formulations serve the static modules and the dynamic ones' fallback.
"""

from __future__ import annotations

import ctypes

import numpy as np

_EXACT_F32 = 1 << 24

# The C kernel: C[m, n] = sum_k A[m, k] * W[n, k] with A int16 (centred activations), W int8.
_DOT = r"""
#include <stdint.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

static inline int32_t dot_tail(const int16_t *a, const int8_t *w, int k0, int K) {
    int32_t s = 0;
    for (int k = k0; k < K; ++k) s += (int32_t)a[k] * (int32_t)w[k];
    return s;
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
/* AVX-512 VNNI: vpdpwssd adds int16 pair products straight into int32 lanes (exact). */
static inline int32_t dot(const int16_t *a, const int8_t *w, int K) {
    __m512i acc = _mm512_setzero_si512();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512i av = _mm512_loadu_si512((const void *)(a + k));
        __m512i wv = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + k)));
        acc = _mm512_dpwssd_epi32(acc, av, wv);
    }
    return _mm512_reduce_add_epi32(acc) + dot_tail(a, w, k, K);
}
#define EMBER_QGEMM_ISA 3
#elif defined(__AVX2__)
/* AVX2: vpmaddwd multiplies int16 pairs and adds each pair into an int32 lane (exact). */
static inline int32_t dot(const int16_t *a, const int8_t *w, int K) {
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(a + k));
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(a + k + 16));
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + k)));
        __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + k + 16)));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, w0));
        acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(a1, w1));
    }
    for (; k + 16 <= K; k += 16) {
        __m256i a0 = _mm256_loadu_si256((const __m256i *)(a + k));
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + k)));
        acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(a0, w0));
    }
    acc0 = _mm256_add_epi32(acc0, acc1);
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc0), _mm256_extracti128_si256(acc0, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s) + dot_tail(a, w, k, K);
}
#define EMBER_QGEMM_ISA 2
#else
static inline int32_t dot(const int16_t *a, const int8_t *w, int K) { return dot_tail(a, w, 0, K); }
#define EMBER_QGEMM_ISA 1
#endif

/* uint8 activations below 128 times int8 weights, four weight rows per pass. AVX2's
   vpmaddubsw adds pairs of u8*s8 products in saturating int16: with activations below 128 a
   pair is at most 2 * 127 * 128 = 32512 in magnitude, so it never saturates and the sums are
   exact (fbgemm's reduce_range exists for this). AVX-512 VNNI's vpdpbusd sums four products
   straight into int32. */
static void dot4_u8(const uint8_t *a, const int8_t *w0, const int8_t *w1, const int8_t *w2,
                    const int8_t *w3, int K, int32_t *r) {
    int k = 0;
    int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0;
    for (; k + 64 <= K; k += 64) {
        __m512i av = _mm512_loadu_si512((const void *)(a + k));
        c0 = _mm512_dpbusd_epi32(c0, av, _mm512_loadu_si512((const void *)(w0 + k)));
        c1 = _mm512_dpbusd_epi32(c1, av, _mm512_loadu_si512((const void *)(w1 + k)));
        c2 = _mm512_dpbusd_epi32(c2, av, _mm512_loadu_si512((const void *)(w2 + k)));
        c3 = _mm512_dpbusd_epi32(c3, av, _mm512_loadu_si512((const void *)(w3 + k)));
    }
    s0 = _mm512_reduce_add_epi32(c0); s1 = _mm512_reduce_add_epi32(c1);
    s2 = _mm512_reduce_add_epi32(c2); s3 = _mm512_reduce_add_epi32(c3);
#elif defined(__AVX2__)
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
    for (; k + 32 <= K; k += 32) {
        __m256i av = _mm256_loadu_si256((const __m256i *)(a + k));
#define EMBER_ACC(c, w) c = _mm256_add_epi32(c, _mm256_madd_epi16(_mm256_maddubs_epi16( \
            av, _mm256_loadu_si256((const __m256i *)((w) + k))), ones))
        EMBER_ACC(c0, w0); EMBER_ACC(c1, w1); EMBER_ACC(c2, w2); EMBER_ACC(c3, w3);
#undef EMBER_ACC
    }
    __m128i h0 = _mm_add_epi32(_mm256_castsi256_si128(c0), _mm256_extracti128_si256(c0, 1));
    __m128i h1 = _mm_add_epi32(_mm256_castsi256_si128(c1), _mm256_extracti128_si256(c1, 1));
    __m128i h2 = _mm_add_epi32(_mm256_castsi256_si128(c2), _mm256_extracti128_si256(c2, 1));
    __m128i h3 = _mm_add_epi32(_mm256_castsi256_si128(c3), _mm256_extracti128_si256(c3, 1));
    __m128i h = _mm_hadd_epi32(_mm_hadd_epi32(h0, h1), _mm_hadd_epi32(h2, h3));
    s0 = _mm_extract_epi32(h, 0); s1 = _mm_extract_epi32(h, 1);
    s2 = _mm_extract_epi32(h, 2); s3 = _mm_extract_epi32(h, 3);
#endif
    for (; k < K; ++k) {
        int32_t av = a[k];
        s0 += av * w0[k]; s1 += av * w1[k]; s2 += av * w2[k]; s3 += av * w3[k];
    }
    r[0] = s0; r[1] = s1; r[2] = s2; r[3] = s3;
}

/* C[m, n] = sum_k A[m, k] * W[n, k] for uint8 A below 128 (see dot4_u8). */
static void gemm_u8s8(const uint8_t *A, const int8_t *W, int32_t *C, long M, long N, long K) {
    long nb = (N + 3) / 4;
    #pragma omp parallel for schedule(static) if (N * K > 65536)
    for (long b = 0; b < nb; ++b) {
        long n = b * 4;
        const int8_t *w[4];
        for (int j = 0; j < 4; ++j) w[j] = W + (n + j < N ? n + j : N - 1) * K;
        for (long m = 0; m < M; ++m) {
            int32_t r[4];
            dot4_u8(A + m * K, w[0], w[1], w[2], w[3], (int)K, r);
            for (int j = 0; j < 4 && n + j < N; ++j) C[m * N + n + j] = r[j];
        }
    }
}


"""

_SRC = _DOT + r"""
/* Rows of W are the outer loop so each weight row is read from memory once for all M rows
   of A (a batch of one reads the weights exactly once). */
void qgemm_s16s8(const int16_t *A, const int8_t *W, int32_t *C, long M, long N, long K) {
    if (M < 0) { gemm_u8s8((const uint8_t *)A, W, C, -M, N, K); return; }  /* see gemm_u8 */
    #pragma omp parallel for schedule(static) if (N * K > 65536)
    for (long n = 0; n < N; ++n) {
        const int8_t *w = W + n * K;
        for (long m = 0; m < M; ++m) C[m * N + n] = dot(A + m * K, w, (int)K);
    }
}
"""

# Which branch the preprocessor takes on this CPU (a source of its own: the compiler's cache
# hands out one function per source).
_ISA_SRC = r"""
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
int qgemm_isa(void) { return 3; }
#elif defined(__AVX2__)
int qgemm_isa(void) { return 2; }
#else
int qgemm_isa(void) { return 1; }
#endif
"""

_KERNEL: list = []


def _c_kernel():
    """The compiled C kernel (cached), or None where no C compiler works."""
    if not _KERNEL:
        fn = None
        try:
            from .._cc import load_kernel
            fn = load_kernel(_SRC, "qgemm_s16s8")
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long,
                           ctypes.c_long, ctypes.c_long]
        except (RuntimeError, OSError):
            fn = None
        _KERNEL.append(fn)
    return _KERNEL[0]


def kernel_isa():
    """Which instructions the compiled kernel uses: 'avx512vnni', 'avx2', 'scalar' or None."""
    if _c_kernel() is None:
        return None
    from .._cc import load_kernel
    isa = load_kernel(_ISA_SRC, "qgemm_isa")
    isa.restype = ctypes.c_int
    return {3: "avx512vnni", 2: "avx2", 1: "scalar"}[isa()]


class PackedWeight:
    """An int8 weight ``[N, K]`` with per-row zero points, prepared for both kernels:
    the int8 rows for C, the centred rows as a float32 ``[K, N]`` matrix for BLAS (made on
    first use), and ``wmax = max |w - zw|`` for the exactness bound."""

    def __init__(self, w_int8, zero_points):
        self.w = np.ascontiguousarray(w_int8, dtype=np.int8)
        self.N, self.K = self.w.shape
        self.zw = np.broadcast_to(np.asarray(zero_points, dtype=np.int64),
                                  (self.N,)).copy()
        self.symmetric = not self.zw.any()
        self._zw32 = self.zw.astype(np.int32)
        self._wsum = self.w.sum(axis=1, dtype=np.int32) if self.w.size else np.zeros(
            self.N, np.int32)
        self._wt32 = None
        centred_max = np.abs(self.w.astype(np.int32) - self.zw[:, None].astype(np.int32))
        self.wmax = int(centred_max.max()) if self.w.size else 0

    def zw32(self):
        return self._zw32

    def wsum(self):
        """Row sums of the int8 weights (for the zero-point corrections)."""
        return self._wsum

    def wt32(self):
        if self._wt32 is None:
            c = self.w.astype(np.float32)
            if not self.symmetric:
                c -= self.zw[:, None].astype(np.float32)
            self._wt32 = np.ascontiguousarray(c.T)
        return self._wt32


def gemm_blas(a_centred, pw, amax):
    """Exact ``raw`` through float BLAS (see the module docstring); returns float32 or float64
    holding integers."""
    K = pw.K
    bound = max(amax * pw.wmax, 1)
    kb = _EXACT_F32 // bound
    if kb >= K:
        return a_centred.astype(np.float32, copy=False) @ pw.wt32()
    wt = pw.wt32()
    out = np.zeros((a_centred.shape[0], pw.N), dtype=np.float64)
    a32 = a_centred.astype(np.float32, copy=False)
    for k0 in range(0, K, kb):  # each block sums exactly in float32; the blocks in float64
        out += a32[:, k0:k0 + kb] @ wt[k0:k0 + kb]
    return out


def gemm_c(a_centred, pw):
    """Exact ``raw`` from the C kernel (int32)."""
    fn = _c_kernel()
    a = np.ascontiguousarray(a_centred, dtype=np.int16)
    M = a.shape[0]
    out = np.empty((M, pw.N), dtype=np.int32)
    fn(a.ctypes.data, pw.w.ctypes.data, out.ctypes.data, M, pw.N, pw.K)
    if not pw.symmetric:  # the kernel multiplied by w, not w - zw: take zw * rowsum(a) off
        out -= (a.sum(axis=1, dtype=np.int64)[:, None] * pw.zw[None, :]).astype(np.int32)
    return out


def gemm_u8(q, za, pw):
    """Exact ``raw`` for uint8 activations ``q`` below 128 with zero point ``za``: the
    fbgemm-style kernel (u8 x s8 pair sums), then the zero-point corrections."""
    fn = _c_kernel()
    q = np.ascontiguousarray(q, dtype=np.uint8)
    M, K = q.shape
    out = np.empty((M, pw.N), dtype=np.int32)
    fn(q.ctypes.data, pw.w.ctypes.data, out.ctypes.data, -M, pw.N, K)  # -M: the u8 kernel
    if za:
        out -= np.int32(za) * pw.wsum()[None, :]
    if not pw.symmetric:
        rs = q.sum(axis=1, dtype=np.int64)
        out -= (rs[:, None] * pw.zw[None, :] - K * za * pw.zw[None, :]).astype(np.int32)
    return out


def gemm_numpy(a_centred, pw):
    """Exact ``raw`` with NumPy integer matmul (the fallback: slow, needs no compiler)."""
    w = pw.w.astype(np.int32) - pw.zw[:, None].astype(np.int32)
    return a_centred.astype(np.int32) @ w.T


# Measured on this machine's CPU (AVX2, one thread, best of 30; benchmarks/quantization.py
# --kernels prints the table): for 512x784 weights the int16 C kernel takes 35/42/63/118/224 us
# at 1/2/4/8/16 rows against BLAS's 55/133/116/145/209 us, and at 64 rows 890 us against
# 735 us (float32 sgemm 620 us). The int16 kernel wins while the batch is small and the weights
# dominate memory traffic; below about 16K weights the ctypes call costs more than BLAS. The
# u8 kernel (activations below 128, as reduce_range gives) beats both at every batch: 396 us
# at 64 rows, 81 us against 150 us for 16x1024x256.
C_MAX_ROWS = 8
C_MIN_WEIGHTS = 1 << 14

_FORCE: list = [None]


def set_backend(name):
    """Force ``'c'``, ``'blas'`` or ``'numpy'`` for every shape (None: choose per shape)."""
    if name not in (None, "c", "blas", "numpy"):
        raise ValueError(f"int8 GEMM backend must be 'c', 'blas', 'numpy' or None, got {name!r}")
    _FORCE[0] = name


def choose(M, N, K):
    """The GEMM formulation used for an ``M x K`` by ``K x N`` product."""
    if _FORCE[0] is not None:
        return _FORCE[0]
    if M <= C_MAX_ROWS and N * K >= C_MIN_WEIGHTS and _c_kernel() is not None:
        return "c"
    return "blas"


def gemm_q(q, za, pw):
    """Exact ``raw = (q - za) @ (w - zw).T`` for uint8 activations ``q`` ``[M, K]``: the
    u8 kernel where every activation is below 128 (about twice float32 BLAS's speed from
    a batch of 16 up), else the centred-int16 formulations."""
    if _FORCE[0] is None and _c_kernel() is not None and q.size and int(q.max()) < 128:
        return gemm_u8(q, za, pw)
    a = q.astype(np.int16)
    a -= np.int16(za)
    amax = max(za, 255 - za)
    return gemm(a, pw, amax)


def gemm(a_centred, pw, amax):
    """``raw = (a - za) @ (w - zw).T`` exactly. ``a_centred`` holds ``a - za`` as int16 (any
    integer type); ``amax`` bounds ``|a - za|``. Returns an array of integers (int32 or
    float holding integers)."""
    M = a_centred.shape[0]
    how = choose(M, pw.N, pw.K)
    if how == "c":
        # int32 sums: exact while K * max|a| * max|w| stays below 2**31
        if _c_kernel() is None or pw.K * max(amax, 1) * max(pw.wmax, 1) >= 1 << 31:
            how = "blas"
        else:
            return gemm_c(a_centred, pw)
    if how == "numpy":
        return gemm_numpy(a_centred, pw)
    return gemm_blas(a_centred, pw, amax)
