"""The gradient of a cross-entropy loss over (N, C) logits as one C kernel, for compiled
training steps.

A captured step holds ``CrossEntropy``'s backward as composed ops (see
``ember.ops.nn._target_grad_coef``): the valid targets ``t != ignore_index``, the safe
targets ``t * valid``, the weights ``valid / sum(valid)`` (the 'mean' reduction), a one-hot
``classes == safe``, the softmax of the logits, and ``(p * w - onehot * w) * g``: eight small
ops on the targets, a softmax and a fused elementwise kernel, each a pass and a Python call
(on an MLP step, whose ops run with caches cold after each GEMM, about 0.2 ms of a 5-6 ms
step). Here one C function does it all, a row at a time: the row's maximum, its
exponentials and their sum, then ``(p * w - (classes[j] == safe ? w : 0)) * g`` written
once. The weight of a row is ``valid / count`` in the logits' dtype, as eager's ``Div``
computes it (an all-ignored batch gives NaN, as eager's does); the softmax's exponentials
are the generated kernels' float32 ``exp`` (within 2 ulp of libm's) or libm's ``exp`` for
float64, so values can differ from eager's in the last bits. Rows split over ember's pool
(one run per thread, one hand-off) when the work is large: with OpenMP they went through
libgomp's own threads, woken from sleep each call (a GPT step's (1024, 256) gradient: 0.46
ms at two threads, as at one).

Anything else (other shapes or dtypes, a weighted or 'sum' loss, which the pattern does
not match) keeps the composed ops.
"""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np

from ..autograd import graph as _dispatch

__all__ = ["ce_grad", "_CrossEntropyGrad", "KERNELS"]

# rows x classes at or above which the rows split over ember's pool (~30 operations an element)
PARALLEL_MIN = 1 << 14

_SRC = """
/* rows [r0, r1) of the n rows (the weight counts the valid targets of all n) */
void ce_grad_{T}(int64_t n, int64_t r0, int64_t r1, int64_t c, const {T} *restrict x,
                 const int64_t *restrict t, int64_t ignore, const int64_t *restrict cls,
                 double g, {T} *restrict out) {{
    int64_t count = 0;
    for (int64_t r = 0; r < n; r++)
        count += t[r] != ignore;
    const {T} total = ({T})count, tg = ({T})g;
    for (int64_t r = r0; r < r1; r++) {{
        const int valid = t[r] != ignore;
        const {T} w = valid ? ({T})1 / total : ({T})0;  /* ignored rows: 0, even if all are */
        const int64_t safe = t[r] * valid;
        const {T} *restrict xr = x + r * c;
        {T} *restrict o = out + r * c;
        {T} m = xr[0];
        for (int64_t j = 1; j < c; j++)
            m = xr[j] > m || xr[j] != xr[j] ? xr[j] : m;
        {T} s = 0;
        #pragma omp simd reduction(+:s)
        for (int64_t j = 0; j < c; j++) {{
            {T} e = {EXP}(xr[j] - m);
            o[j] = e;
            s += e;
        }}
        #pragma omp simd
        for (int64_t j = 0; j < c; j++) {{
            {T} p = o[j] / s;
            {T} hot = cls[j] == safe ? w : ({T})0;
            o[j] = (p * w - hot) * tg;
        }}
    }}
}}
"""
_FN = {}


# the float and double kernels (``_stepc`` compiles them with the other step kernels, after
# the float32 ``ember_expf`` of ``_codegen``)
KERNELS = (_SRC.format(T="float", EXP="ember_expf") + _SRC.format(T="double", EXP="exp"))


def _kernel(dt):
    if not _FN:
        from . import _stepc
        try:
            for t, name in ((np.float32, "float"), (np.float64, "double")):
                _FN[np.dtype(t)] = _stepc.load(f"ce_grad_{name}")
        except (RuntimeError, OSError, subprocess.SubprocessError):
            _FN[None] = None
    return _FN.get(dt)


def ce_grad(x, t, ignore, cls, g):
    """``(softmax(x, 1) * w - (cls == safe) * w) * g`` for (N, C) logits ``x``, (N,) integer
    targets ``t`` (``w``, ``safe``: see the module doc), ``cls`` the C class numbers, ``g``
    the loss's gradient (a scalar); None where the kernel does not serve."""
    from .. import _parallel, _threads
    if type(x) is not np.ndarray or x.ndim != 2 or type(t) is not np.ndarray or \
            t.dtype.kind not in "iu" or t.shape != x.shape[:1] or not x.shape[1] or \
            type(cls) is not np.ndarray or cls.dtype.kind not in "iu" or \
            cls.size != x.shape[1] or type(ignore) is not int or not x.shape[0]:
        return None
    g = np.asarray(g)
    if g.shape != () or g.dtype != x.dtype:
        return None
    fn = _kernel(x.dtype)
    if fn is None:
        return None
    x = np.ascontiguousarray(x)
    t = np.ascontiguousarray(t, dtype=np.int64)
    cls = np.ascontiguousarray(cls.reshape(-1), dtype=np.int64)
    out = np.empty(x.shape, x.dtype)
    n, c = x.shape
    args = (ctypes.c_int64(c), ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(t.ctypes.data),
            ctypes.c_int64(ignore), ctypes.c_void_p(cls.ctypes.data), ctypes.c_double(float(g)),
            ctypes.c_void_p(out.ctypes.data))
    threads = min(_threads.get_num_threads(), n)
    if threads < 2 or n * c < PARALLEL_MIN or getattr(_parallel._worker, "in_pool", False):
        fn(ctypes.c_int64(n), ctypes.c_int64(0), ctypes.c_int64(n), *args)
    else:  # a run of rows per thread of ember's pool (rows are computed alone: same bits)
        _parallel.run_split(lambda r0, r1: fn(ctypes.c_int64(n), ctypes.c_int64(r0),
                                              ctypes.c_int64(r1), *args),
                            _parallel._bounds(n, threads))
    return out


def _composed(x, t, ignore, cls, g):
    """The captured ops, one NumPy call each (where ``ce_grad`` does not serve)."""
    from ..ops.nn import Softmax
    valid = t != ignore
    safe = t * valid
    w0 = valid.astype(x.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(valid, w0 / w0.sum(dtype=x.dtype), 0).astype(x.dtype).reshape(-1, 1)
    hot = cls == safe.reshape(-1, 1)
    p = Softmax.forward(_dispatch._ScratchCtx(), x, 1)
    return ((p * w - hot * w) * g).astype(x.dtype, copy=False)


class _CrossEntropyGrad(_dispatch.Node):
    """The cross-entropy gradient of ``_crossentropy`` (``ce_grad``). Used only where no
    autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, x, t, ignore, cls, g):
        out = ce_grad(x, t, ignore, cls, g)
        return _composed(x, t, ignore, cls, g) if out is None else out
