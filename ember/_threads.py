"""Thread count for the BLAS under NumPy (``set_num_threads``), through threadpoolctl when
installed; otherwise the value is recorded and the environment decides."""

from __future__ import annotations

import os

_n = [int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count() or 1]


def set_num_threads(n):
    _n[0] = int(n)
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(int(n))
    except ImportError:
        pass


def get_num_threads():
    return _n[0]
