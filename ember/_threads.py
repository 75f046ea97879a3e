"""Thread count for the BLAS under NumPy (``set_num_threads``), through threadpoolctl when
installed; otherwise the value is recorded and the environment decides."""

from __future__ import annotations

import os


def _env_threads():
    """``OMP_NUM_THREADS`` as OpenMP reads it (the first level of a list such as ``"4,2"``);
    empty, zero or unreadable means every core, as PyTorch takes it."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    try:
        n = int(value)
    except ValueError:
        n = 0
    return n if n > 0 else os.cpu_count() or 1


_n = [_env_threads()]


def set_num_threads(n):
    _n[0] = int(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(int(n))
    except ImportError:
        pass


def get_num_threads():
    return _n[0]


_BLAS = []  # [(get, set)] ctypes functions of NumPy's OpenBLAS, or [None]; found on first use


def blas_controls():
    """``(get, set)``: the raw thread-count functions of the OpenBLAS under NumPy (its own
    thread pool, "pthreads" layer), or None (another BLAS, OpenMP threading, no
    threadpoolctl). Callers that run GEMMs on several of ember's threads at once set it to 1
    meanwhile: OpenBLAS's threaded GEMM holds a process-wide lock, so concurrent threaded
    calls would queue behind each other (and its spinning threads would compete with ours)."""
    if not _BLAS:
        found = None
        try:
            import ctypes

            import numpy  # noqa: F401  (loads the BLAS that threadpoolctl looks for)
            from threadpoolctl import ThreadpoolController
            for lib in ThreadpoolController().lib_controllers:
                if lib.internal_api != "openblas" or lib.threading_layer != "pthreads":
                    continue
                dll = ctypes.CDLL(lib.filepath)
                for pre in ("", "scipy_"):
                    for suf in ("", "64_", "_64"):
                        get = getattr(dll, f"{pre}openblas_get_num_threads{suf}", None)
                        put = getattr(dll, f"{pre}openblas_set_num_threads{suf}", None)
                        if get is not None and put is not None and found is None:
                            get.restype, get.argtypes = ctypes.c_int, []
                            put.restype, put.argtypes = None, [ctypes.c_int]
                            found = (get, put)
                break
        except (ImportError, OSError, AttributeError):
            found = None
        _BLAS.append(found)
    return _BLAS[0]


_FUNCS = []  # [(sgemm, dgemm, sgemv, dgemv, ilp64)] addresses, or [None]; found on first use


def blas_functions():
    """``(cblas_sgemm, cblas_dgemm, cblas_sgemv, cblas_dgemv, ilp64)``: the addresses of the
    CBLAS functions of the OpenBLAS under NumPy and whether its integers are 64-bit, or None
    (another BLAS, no threadpoolctl, symbols not found). ``ember._pool_c`` calls them from
    its batches, as NumPy's matmul and dot call them."""
    if not _FUNCS:
        found = None
        try:
            import ctypes

            import numpy  # noqa: F401  (loads the BLAS that threadpoolctl looks for)
            from threadpoolctl import ThreadpoolController
            for lib in ThreadpoolController().lib_controllers:
                if lib.internal_api != "openblas":
                    continue
                dll = ctypes.CDLL(lib.filepath)
                for pre, suf, ilp64 in (("scipy_", "64_", 1), ("", "64_", 1), ("scipy_", "", 0),
                                        ("", "", 0)):
                    fns = [getattr(dll, f"{pre}cblas_{n}{suf}", None)
                           for n in ("sgemm", "dgemm", "sgemv", "dgemv")]
                    if any(f is None for f in fns):
                        continue
                    # ILP64 builds mark their symbols; an unmarked one is 64-bit only when
                    # the library says so (OpenBLAS's config string names USE64BITINT)
                    if not ilp64:
                        cfg = getattr(dll, f"{pre}openblas_get_config{suf}", None)
                        if cfg is None:
                            continue
                        cfg.restype = ctypes.c_char_p
                        ilp64 = int(b"USE64BITINT" in (cfg() or b""))
                    found = tuple(ctypes.cast(f, ctypes.c_void_p).value for f in fns) + (ilp64,)
                    break
                break
        except (ImportError, OSError, AttributeError):
            found = None
        _FUNCS.append(found)
    return _FUNCS[0]
