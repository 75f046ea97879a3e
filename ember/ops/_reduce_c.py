"""The largest (or smallest) value of a big contiguous float array in C, on every core
(issue 25: ``max`` over 16M float32).

NumPy's ``maximum.reduce`` runs on one core at about 20 GB/s here; the float32 sum's C
kernel (``ember/_parallel.py``) reads at about 24 GB/s. These kernels take the same shape:
fixed chunks of ``CHUNK`` elements (each chunk's extreme is its own, whichever thread takes
it, and a max is exact, so the result is the same at every thread count), ``LANES`` running
maxima that the compiler keeps in vector registers (``v > acc ? v : acc`` is one vector max
instruction, no fast-math), and a NaN flag per lane: PyTorch's ``max()``/``amax`` propagate
NaN, so a chunk that holds one returns its first NaN. The chunks' extremes are then reduced
by NumPy in order (NaN wins there too).

Compiled on first use by ``ember/_cc.py``; where no C compiler works (or with
``EMBER_REDUCE_C=0``) ``available`` is False and the caller keeps NumPy's reduction.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

CHUNK = 1 << 16  # elements per chunk: fixed, so the work does not depend on the thread count
_DTYPES = {np.dtype(np.float32): ("f32", "float", 32), np.dtype(np.float64): ("f64", "double", 16)}

_TEMPLATE = r"""
/* Per chunk [c * CHUNK, ...) of x[0:n]: its largest (GT = >) or smallest (GT = <) value, or
   its first NaN. */
void NAME(const REAL *x, long n, long c0, long c1, REAL *out) {
    for (long c = c0; c < c1; c++) {
        long s = c * CHUNK, e = s + CHUNK < n ? s + CHUNK : n;
        REAL acc[LANES];
        int bad[LANES];
        for (int l = 0; l < LANES; l++) {
            acc[l] = x[s];
            bad[l] = 0;
        }
        long i = s;
        for (; i + LANES <= e; i += LANES)
            for (int l = 0; l < LANES; l++) {
                REAL v = x[i + l];
                acc[l] = v GT acc[l] ? v : acc[l];
                bad[l] |= v != v;
            }
        REAL r = acc[0];
        int nan = 0;
        for (int l = 0; l < LANES; l++) {
            r = acc[l] GT r ? acc[l] : r;
            nan |= bad[l];
        }
        for (; i < e; i++) {
            r = x[i] GT r ? x[i] : r;
            nan |= x[i] != x[i];
        }
        if (nan)
            for (i = s; i < e; i++)
                if (x[i] != x[i]) {
                    r = x[i];
                    break;
                }
        out[c] = r;
    }
}
"""


def _source():
    parts = []
    for sfx, real, lanes in _DTYPES.values():
        for op, gt in (("max", ">"), ("min", "<")):
            parts.append(_TEMPLATE.replace("NAME", f"ember_extreme_{op}_{sfx}")
                         .replace("REAL", real).replace("LANES", str(lanes))
                         .replace("CHUNK", str(CHUNK)).replace("GT", gt))
    return "\n".join(parts)


_FNS: dict = {}  # {(op, dtype): ctypes function}; {None: None} once loading failed


def _kernel(op, dtype):
    if not _FNS:
        fns = {}
        if os.environ.get("EMBER_REDUCE_C", "1") != "0":
            from .._cc import load_kernel
            src = _source()
            try:
                for dt, (sfx, _, _) in _DTYPES.items():
                    for name in ("max", "min"):
                        fn = load_kernel(src, f"ember_extreme_{name}_{sfx}")
                        fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long,
                                       ctypes.c_long, ctypes.c_void_p]
                        fns[(name, dt)] = fn
            except (RuntimeError, OSError, AttributeError):
                fns = {}
        _FNS.update(fns or {None: None})
    return _FNS.get((op, dtype))


def available(dtype):
    """Whether ``extreme`` serves arrays of ``dtype`` (float32/float64, a C compiler works,
    not ``EMBER_REDUCE_C=0``)."""
    return _kernel("max", np.dtype(dtype)) is not None


def extreme(flat, op):
    """``flat.max()`` (``op`` "max") or ``flat.min()`` ("min") of a contiguous 1-d float32 or
    float64 array, NaN if it holds one, as a 0-d array; chunks split over the thread
    pool."""
    from .. import _parallel
    fn = _kernel(op, flat.dtype)
    n = flat.size
    chunks = -(-n // CHUNK)
    parts = np.empty(chunks, flat.dtype)
    src = flat.__array_interface__["data"][0]
    dst = parts.__array_interface__["data"][0]

    def run(s, e):
        fn(src, n, s, e, dst)

    k = min(_parallel.threads_for(n), chunks)
    if k > 1:
        # more parts than threads: a thread that starts late takes fewer
        _parallel.run_split(run, [(i * chunks // (2 * k), (i + 1) * chunks // (2 * k))
                                  for i in range(2 * k)])
    else:
        run(0, chunks)
    ufunc = np.maximum if op == "max" else np.minimum
    return ufunc.reduce(parts, None, None, np.empty((), flat.dtype))

