"""One C library for the step kernels of ``_linear``, ``_scatter`` and ``_crossentropy``:
a cold cache compiles it in one compiler run (each run of ``cc -O3`` costs 0.2-0.3 s of CPU;
three separate sources made an MLP step's first call 0.3-0.4 s of CPU slower), and a warm
one loads one library."""

from __future__ import annotations

__all__ = ["source", "load"]

_SOURCE = []


def source():
    """The library's C source (the integer type of the CBLAS found is part of it)."""
    if not _SOURCE:
        from . import _crossentropy, _linear, _scatter
        from ._codegen import _PRELUDE_F32
        found = _linear._find_gemm()
        _SOURCE.append("\n".join([
            "#include <math.h>", "#include <stdint.h>", "#include <string.h>", _PRELUDE_F32,
            _linear.source(found[1] if found else "int64_t"), _scatter.KERNELS,
            _crossentropy.KERNELS]))
    return _SOURCE[0]


def load(symbol):
    """The ctypes function ``symbol`` of the library (compiled on a cold cache); raises as
    ``load_kernel`` does."""
    from .._cc import load_kernel
    return load_kernel(source(), symbol)
