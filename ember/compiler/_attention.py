"""Multi-head self-attention of a compiled step as one C kernel per direction, skipping
the columns a mask sets to ``-inf`` (a causal mask's upper triangle).

Eager's ``PackedSelfAttention`` (what ``_passes._PackedAttention`` ran) makes, per batch
entry and head, two BLAS calls in the forward (``q @ k^T``, ``w @ v``) and four in the
backward, on 64 x 32 x 64 products for the GPT benchmark: 768 calls a step whose fixed
costs and packing dominate, and half of whose products a causal mask then multiplies by
zero. Here one C function walks the batch entries and heads: per head it transposes ``k``
(or ``v``) once into a small buffer, then for each query row ``i`` computes only the
columns ``j < lim[i]``, where ``lim[i]`` is one past the last column of the mask's row that
is not ``-inf`` (``L`` without a mask): the scores (vectorised over ``j``), the row's
scale, mask, maximum, exponentials and sum, and the output row (vectorised over the head
dimension). The columns skipped have weight exactly 0 in the full computation, so skipping
them changes no sum. The backward does the same per row (the columns past the row's last
non-zero weight, which add exact zeros): ``dV += w_i^T g_i``, ``dP = g_i
v^T``, ``dS = (dP - sum(dP w)) w scale``, ``dQ_i = dS k``, ``dK += dS^T q_i``, with ``dK``
and ``dV`` accumulated in per-head buffers and written once.

The arithmetic is eager's formula; the sums run in another order than BLAS's (each
product-sum is a chain of fused multiply-adds over the head dimension or the row) and the
float32 exponential is the vectorisable one of the generated kernels (within 2 ulp of
libm's), so values can differ from eager's in the last bits. A fully masked row gives NaN,
as eager's (and PyTorch's). Batch entries split over ember's pool (one run of entries per
thread; every head is computed alone, so the bits do not depend on the thread count).

Measured (one thread, the GPT benchmark's (64, 16, 384) float32 projection with a causal
(64, 64) mask; ``benchmarks/compiled_nodes.py``, per-call minimums inside the compiled
step, a loaded machine): forward 0.99-1.0 -> 0.79-0.85 ms a layer, backward 1.53-1.57 ->
1.26-1.32 ms (eager's per-head BLAS calls -> this kernel). Without a mask, or with one that
skips little, the BLAS calls are faster (forward 0.75 against 1.05 ms), so there it declines.
Tried and dropped: in-place strided reads of the heads (the rows 4 KB apart thrash the
cache: 2.4 ms forward), accumulators kept in memory (store-forwarding stalls: 2.7 ms).

Anything else (another dtype, a mask that is not one float (L, L) array, a last dimension
that is not contiguous) returns None and the eager kernel runs. ``EMBER_ATTN_C=0`` turns
this path off (for comparisons).
"""

from __future__ import annotations

import ctypes
import os
import subprocess

import numpy as np

__all__ = ["packed_forward", "packed_backward", "source", "sources", "ENABLED"]

ENABLED = os.environ.get("EMBER_ATTN_C", "1") != "0"

_SRC = """
typedef {T} vec_{T} __attribute__((vector_size(64)));
typedef {T} vecu_{T} __attribute__((vector_size(64), aligned(sizeof({T}))));
#define W_{T} ((int64_t)(64 / sizeof({T})))
#define LD_{T}(p) (*(const vecu_{T} *)(p))
#define ST_{T}(p, v) (*(vecu_{T} *)(p) = (v))
#define FAST_{T} __attribute__((optimize("fp-contract=fast", "no-tree-loop-distribute-patterns")))
/* (copy loops stay loops: as memcpy calls of one head's row each they cost more than the
   copy) */
#define NODIST_{T} __attribute__((optimize("no-tree-loop-distribute-patterns")))

/* out[j] = sum_d a[d] B[d * ldb + j] for j < n (columns up to a multiple of the vector
   width may be computed too while they lie inside ldb: the caller ignores them); four
   independent sums over d per chunk of columns */
static inline FAST_{T} void rowdot_{T}(const {T} *a, const {T} *B, int64_t ldb, int64_t D,
                                       int64_t n, {T} *out) {{
    int64_t j = 0;
    for (; j < n && j + W_{T} <= ldb; j += W_{T}) {{
        vec_{T} s0 = {{0}}, s1 = {{0}}, s2 = {{0}}, s3 = {{0}};
        int64_t d = 0;
        for (; d + 4 <= D; d += 4) {{
            s0 += a[d] * LD_{T}(B + d * ldb + j);
            s1 += a[d + 1] * LD_{T}(B + (d + 1) * ldb + j);
            s2 += a[d + 2] * LD_{T}(B + (d + 2) * ldb + j);
            s3 += a[d + 3] * LD_{T}(B + (d + 3) * ldb + j);
        }}
        for (; d < D; d++) s0 += a[d] * LD_{T}(B + d * ldb + j);
        ST_{T}(out + j, (s0 + s1) + (s2 + s3));
    }}
    for (; j < n; j++) {{
        {T} t = 0;
        for (int64_t d = 0; d < D; d++) t += a[d] * B[d * ldb + j];
        out[j] = t;
    }}
}}

/* out[d] = sum_j p[j * ps] B[j * ldb + d] for d < D, j < n; four independent sums over j
   per chunk of d */
static inline FAST_{T} void rowmix_{T}(const {T} *p, int64_t ps, const {T} *B, int64_t ldb,
                                       int64_t n, int64_t D, {T} *out) {{
    int64_t d = 0;
    for (; d + W_{T} <= D; d += W_{T}) {{
        vec_{T} s0 = {{0}}, s1 = {{0}}, s2 = {{0}}, s3 = {{0}};
        int64_t j = 0;
        for (; j + 4 <= n; j += 4) {{
            s0 += p[j * ps] * LD_{T}(B + j * ldb + d);
            s1 += p[(j + 1) * ps] * LD_{T}(B + (j + 1) * ldb + d);
            s2 += p[(j + 2) * ps] * LD_{T}(B + (j + 2) * ldb + d);
            s3 += p[(j + 3) * ps] * LD_{T}(B + (j + 3) * ldb + d);
        }}
        for (; j < n; j++) s0 += p[j * ps] * LD_{T}(B + j * ldb + d);
        ST_{T}(out + d, (s0 + s1) + (s2 + s3));
    }}
    for (; d < D; d++) {{
        {T} t = 0;
        for (int64_t j = 0; j < n; j++) t += p[j * ps] * B[j * ldb + d];
        out[d] = t;
    }}
}}

/* acc[j * ld + d] += sum_r p_r[j] a_r[d] for the r < R (<= 4) rows p_r = p + r * L,
   a_r = a + r * lda, j < n, d < D: a row block's weighted rows added into every column's
   row of acc, one load and store of acc per four products */
static inline FAST_{T} void blockadd_{T}(const {T} *p, int64_t L, const {T} *a, int64_t lda,
                                         int R, int64_t n, int64_t D, {T} *acc, int64_t ld) {{
    int64_t d = 0;
    for (; d + W_{T} <= D; d += W_{T}) {{
        const vec_{T} z = {{0}};
        const vec_{T} a0 = LD_{T}(a + d), a1 = R > 1 ? LD_{T}(a + lda + d) : z,
                      a2 = R > 2 ? LD_{T}(a + 2 * lda + d) : z,
                      a3 = R > 3 ? LD_{T}(a + 3 * lda + d) : z;
        const {T} *p1 = R > 1 ? p + L : p, *p2 = R > 2 ? p + 2 * L : p,
                  *p3 = R > 3 ? p + 3 * L : p;
        for (int64_t j = 0; j < n; j++) {{
            vec_{T} v = LD_{T}(acc + j * ld + d);
            v += (p[j] * a0 + p1[j] * a1) + (p2[j] * a2 + p3[j] * a3);
            ST_{T}(acc + j * ld + d, v);
        }}
    }}
    for (; d < D; d++)
        for (int64_t j = 0; j < n; j++) {{
            {T} t = acc[j * ld + d];
            for (int r = 0; r < R; r++) t += p[r * L + j] * a[r * lda + d];
            acc[j * ld + d] = t;
        }}
}}

static void attn_limits_{T}(const {T} *mask, int64_t L, int64_t *lim) {{
    for (int64_t i = 0; i < L; i++) {{
        int64_t n = L;
        if (mask) {{
            const {T} *m = mask + i * L;
            while (n > 0 && m[n - 1] == -INFINITY) n--;
        }}
        lim[i] = n;
    }}
}}

/* 1 where a mask leaves at most three quarters of the (L, L) scores to compute (the
   columns past each row's last finite entry are skipped): there this kernel beats the
   per-head BLAS calls; without such a mask they are faster (measured, GPT benchmark shapes) */
int attn_worth_{T}(const {T} *mask, int64_t L) {{
    if (!mask || L <= 0) return 0;
    int64_t *lim = (int64_t *)malloc((size_t)L * sizeof(int64_t)), total = 0;
    attn_limits_{T}(mask, L, lim);
    for (int64_t i = 0; i < L; i++) total += lim[i];
    free(lim);
    return 4 * total <= 3 * L * L;
}}

/* out (rows i of entry b: out + b * obs + i * ors) and w (B, H, L, L) from qkv (q of entry
   b, head h, row i at qkv + b * bs + i * rs + h * D; k at + E; v at + 2E) for the entries
   [b0, b1). */
NODIST_{T} void attn_fwd_{T}(int64_t b0, int64_t b1, int64_t H, int64_t L, int64_t D,
                  const {T} *qkv, int64_t rs, int64_t bs, int64_t E, const {T} *mask,
                  double scale_, {T} *out, int64_t ors, int64_t obs, {T} *w) {{
    const {T} scale = ({T})scale_;
    const int64_t E3 = 3 * E;
    int64_t *lim = (int64_t *)malloc((size_t)L * sizeof(int64_t));
    /* an entry's rows copied together first (rows of a (L, N, 3E) projection lie N * 3E
       elements apart, often a multiple of 4 KB, where reading them in place thrashes the
       cache's sets), its output gathered likewise; per head k^T */
    {T} *lb = ({T} *)malloc((size_t)(L * E3 + L * E + L * D) * sizeof({T}));
    {T} *ob = lb + L * E3, *kt = ob + L * E;
    attn_limits_{T}(mask, L, lim);
    for (int64_t b = b0; b < b1; b++) {{
        for (int64_t j = 0; j < L; j++)
            memcpy(lb + j * E3, qkv + b * bs + j * rs, (size_t)E3 * sizeof({T}));
        for (int64_t h = 0; h < H; h++) {{
            const {T} *q = lb + h * D, *k = q + E, *v = q + 2 * E;
            for (int64_t d = 0; d < D; d++)  /* (written in order: gathers read k) */
                for (int64_t j = 0; j < L; j++)
                    kt[d * L + j] = k[j * E3 + d];
            for (int64_t i = 0; i < L; i++) {{
                {T} *restrict s = w + ((b * H + h) * L + i) * L;
                {T} *restrict o = ob + i * E + h * D;
                int64_t n = lim[i];
                if (n == 0) {{  /* every column masked: NaN, as eager's softmax */
                    for (int64_t j = 0; j < L; j++) s[j] = NAN;
                    for (int64_t d = 0; d < D; d++) o[d] = NAN;
                    continue;
                }}
                rowdot_{T}(q + i * E3, kt, L, D, n, s);
                /* the softmax over whole vectors: columns [n, nn) count as -inf (weight
                   exactly 0), so that no loop ends in a scalar remainder */
                const int64_t nn = (n + W_{T} - 1) / W_{T} * W_{T} <= L ?
                                   (n + W_{T} - 1) / W_{T} * W_{T} : n;
                {T} mx = -INFINITY;
                const {T} *mr = mask ? mask + i * L : 0;
                #pragma omp simd reduction(max:mx)
                for (int64_t j = 0; j < nn; j++) {{
                    const {T} x = j >= n ? -INFINITY : mr ? s[j] * scale + mr[j]
                                                          : s[j] * scale;
                    s[j] = x;
                    mx = x > mx ? x : mx;
                }}
                {T} t = 0;
                #pragma omp simd reduction(+:t)
                for (int64_t j = 0; j < nn; j++) {{
                    const {T} e = {EXP}(s[j] - mx);
                    s[j] = e;
                    t += e;
                }}
                const {T} inv = ({T})1 / t;
                #pragma omp simd
                for (int64_t j = 0; j < nn; j++) s[j] = s[j] * inv;
                for (int64_t j = nn; j < L; j++) s[j] = 0;
                rowmix_{T}(s, 1, v, E3, n, D, o);
            }}
        }}
        for (int64_t i = 0; i < L; i++)
            memcpy(out + b * obs + i * ors, ob + i * E, (size_t)E * sizeof({T}));
    }}
    free(lb);
    free(lim);
}}

/* gqkv (rows as qkv's) from g (rows as out's: g + b * gbs + i * grs), qkv, the forward's
   mask and w, for the entries [b0, b1). */
NODIST_{T} void attn_bwd_{T}(int64_t b0, int64_t b1, int64_t H, int64_t L, int64_t D,
                  const {T} *g, int64_t grs, int64_t gbs, const {T} *qkv, int64_t rs,
                  int64_t bs, int64_t E, const {T} *mask, const {T} *w, double scale_,
                  {T} *gqkv) {{
    const {T} scale = ({T})scale_;
    const int64_t E3 = 3 * E;
    int64_t *lim = (int64_t *)malloc((size_t)L * sizeof(int64_t));
    /* an entry's rows of qkv and g copied together first, its gradient gathered likewise
       (see the forward); per head v^T, the scores' gradient ds row by row, and the k and
       v gradients accumulated in dk, dv */
    {T} *lb = ({T} *)malloc((size_t)(2 * L * E3 + L * E + 3 * L * D + L * L) * sizeof({T}));
    {T} *gl = lb + L * E3, *gb = gl + L * E, *vt = gb + L * E3, *dk = vt + L * D,
        *dv = dk + L * D, *ds = dv + L * D;
    /* a masked weight is exactly 0: row i reads only the columns < lim[i] */
    attn_limits_{T}(mask, L, lim);
    for (int64_t i = 0; i < L; i++)
        if (lim[i] == 0) lim[i] = L;  /* a NaN row: its NaN weights carry through */
    for (int64_t b = b0; b < b1; b++) {{
        for (int64_t j = 0; j < L; j++) {{
            memcpy(lb + j * E3, qkv + b * bs + j * rs, (size_t)E3 * sizeof({T}));
            memcpy(gl + j * E, g + b * gbs + j * grs, (size_t)E * sizeof({T}));
        }}
        for (int64_t h = 0; h < H; h++) {{
            const {T} *q = lb + h * D, *k = q + E, *v = q + 2 * E, *gh = gl + h * D;
            const {T} *wh = w + (b * H + h) * L * L;
            {T} *gq = gb + h * D, *gk = gq + E, *gv = gq + 2 * E;
            for (int64_t d = 0; d < D; d++)
                for (int64_t j = 0; j < L; j++)
                    vt[d * L + j] = v[j * E3 + d];
            for (int64_t x = 0; x < 2 * L * D; x++) dk[x] = 0;
            for (int64_t i = 0; i < L; i++) {{
                const {T} *restrict wi = wh + i * L;
                {T} *restrict dp = ds + i * L;
                const int64_t n = lim[i];
                rowdot_{T}(gh + i * E, vt, L, D, n, dp);
                /* whole vectors again: the columns [n, nn) (rowdot computed them) have
                   weight exactly 0, so they add 0 to t and get 0 */
                const int64_t nn = (n + W_{T} - 1) / W_{T} * W_{T} <= L ?
                                   (n + W_{T} - 1) / W_{T} * W_{T} : n;
                {T} t = 0;
                #pragma omp simd reduction(+:t)
                for (int64_t j = 0; j < nn; j++) t += dp[j] * wi[j];
                #pragma omp simd
                for (int64_t j = 0; j < nn; j++) dp[j] = (dp[j] - t) * wi[j] * scale;
                for (int64_t j = nn; j < L; j++) dp[j] = 0;
                rowmix_{T}(dp, 1, k, E3, n, D, gq + i * E3);
            }}
            /* dV = w^T g and dK = ds^T q, four rows at a time (a row's weights and score
               gradients past its lim are 0) */
            for (int64_t i = 0; i < L; i += 4) {{
                const int R = L - i < 4 ? (int)(L - i) : 4;
                int64_t n = 0;
                for (int r = 0; r < R; r++) n = lim[i + r] > n ? lim[i + r] : n;
                blockadd_{T}(wh + i * L, L, gh + i * E, E, R, n, D, dv, D);
                blockadd_{T}(ds + i * L, L, q + i * E3, E3, R, n, D, dk, D);
            }}
            for (int64_t j = 0; j < L; j++)
                for (int64_t d = 0; d < D; d++) {{
                    gk[j * E3 + d] = dk[j * D + d];
                    gv[j * E3 + d] = dv[j * D + d];
                }}
        }}
        for (int64_t i = 0; i < L; i++)
            memcpy(gqkv + b * bs + i * rs, gb + i * E3, (size_t)E3 * sizeof({T}));
    }}
    free(lb);
    free(lim);
}}
"""

_HEAD = "#include <math.h>\n#include <stdint.h>\n#include <stdlib.h>\n#include <string.h>\n"


def source(ctype):
    """The C library of the ``ctype`` ("float" or "double") kernels: one per dtype, compiled
    only for a step that has such an attention (a cold compile of the float one costs about
    0.4 s of CPU; ``_optim.sources`` hands it to ``prebuild`` with the step's others)."""
    if ctype == "float":
        from ..ops._nn_c import EXP_NEG_F
        return _HEAD + EXP_NEG_F + _SRC.format(T="float", FMA="__builtin_fmaf", EXP="exp_neg_f")
    return _HEAD + _SRC.format(T="double", FMA="__builtin_fma", EXP="exp")


def sources(graph):
    """The sources ``graph``'s packed attention nodes will load (for ``prebuild``)."""
    from ._passes import _PackedAttention, _PackedAttentionGrad
    return _sources_of(graph, (_PackedAttention, _PackedAttentionGrad), source)


def _sources_of(graph, classes, make):
    out = set()
    for n in graph.nodes:
        cls = getattr(n.target, "__self__", None)
        if n.op == "call_function" and cls in classes:
            meta = n.args[0].meta.get("tensor_meta") if hasattr(n.args[0], "meta") else None
            ct = _CT.get(np.dtype(str(meta[1]).replace("ember.", ""))) if meta else None
            if ct is not None:
                out.add(ct)
    return [make(ct) for ct in sorted(out)] if ENABLED else []

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
                fn = load_kernel(source(ct), f"attn_{direction}_{ct}")
            except (RuntimeError, OSError, AttributeError, subprocess.SubprocessError):
                fn = False
            if fn and direction == "worth":
                fn.restype = ctypes.c_int
        _FNS[key] = fn
    return fn


def _mask2d(mask, L, dtype):
    """The mask as a contiguous (L, L) array of ``dtype`` where this kernel serves it (a
    float (L, L) mask whose ``-inf`` tails skip a quarter of the scores or more, such as a
    causal mask: ``attn_worth``), else None."""
    if type(mask) is not np.ndarray or mask.dtype.kind != "f":
        return None
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.shape != (L, L):
        return None
    m = np.ascontiguousarray(mask, dtype)
    worth = _kernel("worth", m.dtype)
    if not worth or not worth(_P(m.ctypes.data), _I(L)):
        return None
    return m


def _parts(fn, n):
    """``fn(start, stop)`` over the ``n`` batch entries: one run per thread (ember's pool)
    where there are several entries and threads, else one call."""
    from .. import _parallel
    threads = min(_parallel.get_num_threads(), n)
    if threads < 2 or getattr(_parallel._worker, "in_pool", False):
        fn(0, n)
    else:
        _parallel.run_split(fn, _parallel._bounds(n, threads))


def packed_forward(qkv, mask, heads, scale):
    """``(out, w)`` of self-attention from the packed projection ``qkv`` (L, N, 3E): out
    (L, N, E), the weights w (N, heads, L, L); None where this kernel does not serve (the
    caller runs eager's)."""
    if type(qkv) is not np.ndarray or qkv.ndim != 3:
        return None
    fn = _kernel("fwd", qkv.dtype)
    L, N, E3 = qkv.shape
    if not fn or E3 % (3 * heads) or not L or not N or qkv.strides[2] != qkv.itemsize or \
            qkv.strides[0] % qkv.itemsize or qkv.strides[1] % qkv.itemsize:
        return None
    m = _mask2d(mask, L, qkv.dtype)
    if m is None:
        return None
    E = E3 // 3
    it = qkv.itemsize
    out = np.empty((L, N, E), qkv.dtype)
    w = np.empty((N, heads, L, L), qkv.dtype)
    args = (_I(heads), _I(L), _I(E // heads), _P(qkv.ctypes.data), _I(qkv.strides[0] // it),
            _I(qkv.strides[1] // it), _I(E), _P(m.ctypes.data),
            _D(scale), _P(out.ctypes.data), _I(N * E), _I(E), _P(w.ctypes.data))
    _parts(lambda s, e: fn(_I(s), _I(e), *args), N)
    return out, w


def packed_backward(g, qkv, w, heads, scale, mask):
    """The gradient of ``qkv`` (L, N, 3E) from the output's gradient ``g`` (L x N x E
    elements) and the forward's weights ``w``; None where this kernel does not serve."""
    if type(qkv) is not np.ndarray or type(g) is not np.ndarray or \
            type(w) is not np.ndarray or qkv.ndim != 3:
        return None
    fn = _kernel("bwd", qkv.dtype)
    L, N, E3 = qkv.shape
    E = E3 // 3
    if not fn or g.dtype != qkv.dtype or w.dtype != qkv.dtype or g.size != L * N * E or \
            w.shape != (N, heads, L, L) or not w.flags.c_contiguous or E3 % (3 * heads) or \
            qkv.strides[2] != qkv.itemsize or qkv.strides[0] % qkv.itemsize or \
            qkv.strides[1] % qkv.itemsize:
        return None
    m = _mask2d(mask, L, qkv.dtype)
    if m is None:
        return None
    g = g.reshape(L, N, E)
    if g.strides[2] != g.itemsize or g.strides[0] % g.itemsize or g.strides[1] % g.itemsize:
        g = np.ascontiguousarray(g)
    it = qkv.itemsize
    gqkv = np.empty((L, N, E3), qkv.dtype)
    args = (_I(heads), _I(L), _I(E // heads), _P(g.ctypes.data), _I(g.strides[0] // it),
            _I(g.strides[1] // it), _P(qkv.ctypes.data), _I(qkv.strides[0] // it),
            _I(qkv.strides[1] // it), _I(E), _P(m.ctypes.data),
            _P(w.ctypes.data), _D(scale))
    if qkv.strides[:2] != gqkv.strides[:2]:  # the gradient's layout is its own
        q2 = np.ascontiguousarray(qkv)
        args = args[:6] + (_P(q2.ctypes.data), _I(N * E3), _I(E3)) + args[9:]
    else:
        q2 = qkv
    _parts(lambda s, e: fn(_I(s), _I(e), *args, _P(gqkv.ctypes.data)), N)
    return gqkv
