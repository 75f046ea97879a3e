"""Rows of a gradient added into a zero table at integer indices (an embedding's backward,
``x[int_array]``'s backward) as one C loop, for compiled steps.

Eager's ``IndexAddZeros`` sorts the indices (stable), sums each run with
``np.add.reduceat`` and writes the sums: several NumPy passes and an argsort per call
(measured: a GPT step's token embedding, 1024 rows of 128 into 256, 0.43 ms of CPU; its
position embedding, 64 rows, 0.15 ms). Here one C function checks the indices, clears the
table and adds each row into its place in the order the rows come: a row picked once is
its gradient copied, a row picked several times the sum of its gradients in their order
(``np.add.reduceat`` may sum a run in another order: such a row can differ from eager's in
the last bit, as PyTorch's order differs from both).

Anything else (a basic or multi-array index, an index out of range, other dtypes) runs
eager's forward, which raises eager's errors.
"""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np

from ..autograd import graph as _dispatch

__all__ = ["scatter_rows", "_IndexAddRows"]

_SRC = """
#include <stdint.h>
#include <string.h>
/* out (rows x cols) = 0; out[idx[i]] += g[i] for i in order. 1 where an index is out of
   range (nothing written). */
int scatter_rows_{T}(int64_t n, const int64_t *idx, int64_t rows, int64_t cols,
                     const {T} *g, {T} *out) {{
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < -rows || idx[i] >= rows) return 1;
    memset(out, 0, (size_t)(rows * cols) * sizeof({T}));
    for (int64_t i = 0; i < n; i++) {{
        int64_t r = idx[i] < 0 ? idx[i] + rows : idx[i];
        {T} *restrict o = out + r * cols;
        const {T} *restrict s = g + i * cols;
        #pragma omp simd
        for (int64_t c = 0; c < cols; c++)
            o[c] += s[c];
    }}
    return 0;
}}
"""

KERNELS = "".join(_SRC.format(T=t) for t in ("float", "double"))  # built by ``_stepc``
_FN = {}


def _kernel(dt):
    if not _FN:
        from . import _stepc
        try:
            for t, name in ((np.float32, "float"), (np.float64, "double")):
                fn = _stepc.load(f"scatter_rows_{name}")
                fn.restype = ctypes.c_int
                _FN[np.dtype(t)] = fn
        except (RuntimeError, OSError, subprocess.SubprocessError):
            _FN[None] = None
    return _FN.get(dt)


def scatter_rows(g, shape, idx):
    """``zeros(shape)`` with ``g``'s rows added at ``idx`` (a tuple of one integer array
    picking rows), or None where this kernel does not serve."""
    if type(idx) is not tuple or len(idx) != 1 or type(g) is not np.ndarray:
        return None
    rows = idx[0]
    if type(rows) is not np.ndarray or rows.dtype.kind not in "iu" or len(shape) < 1 or \
            tuple(g.shape) != tuple(rows.shape) + tuple(shape[1:]) or not shape[0]:
        return None
    fn = _kernel(g.dtype)
    if fn is None:
        return None
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    g = np.ascontiguousarray(g)
    out = np.empty(tuple(shape), g.dtype)
    cols = out.size // shape[0]
    if fn(ctypes.c_int64(rows.size), ctypes.c_void_p(rows.ctypes.data),
          ctypes.c_int64(shape[0]), ctypes.c_int64(cols), ctypes.c_void_p(g.ctypes.data),
          ctypes.c_void_p(out.ctypes.data)):
        return None  # an index out of range: eager's forward raises its error
    return out


class _IndexAddRows(_dispatch.Node):
    """``IndexAddZeros`` through ``scatter_rows`` (eager's forward where that does not
    serve). Used only where no autograd record is needed."""

    differentiable = False

    @staticmethod
    def forward(ctx, g, shape, idx):
        out = scatter_rows(g, shape, idx)
        if out is None:
            from ..ops.indexing import IndexAddZeros
            out = IndexAddZeros.forward(ctx, g, shape, idx)
        return out
