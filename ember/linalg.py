"""``ember.linalg``: norms, decompositions, solvers and products (PyTorch's ``torch.linalg``).

The ops live in ``ember/ops/linalg.py`` (each a forward/backward pair); this module is the
namespace."""

from __future__ import annotations

from .ops.linalg import (det, eigh, eigvalsh, inv, linalg_cholesky,  # noqa: F401
                         linalg_norm as norm, linalg_qr as qr, linalg_svd as svd, lstsq,
                         matmul, matrix_exp, matrix_norm, matrix_power, matrix_rank, multi_dot,
                         pinv, slogdet, solve, svdvals, tensordot, vecdot, vector_norm)
from .ops.linalg import cross as _cross
from .ops.shape import diagonal as _diagonal

__all__ = ["norm", "vector_norm", "matrix_norm", "inv", "det", "slogdet", "solve", "cholesky",
           "qr", "svd", "svdvals", "eigh", "eigvalsh", "pinv", "matrix_power", "cross",
           "tensordot", "multi_dot", "vecdot", "lstsq", "matrix_rank", "matrix_exp", "matmul",
           "diagonal"]

cholesky = linalg_cholesky


def cross(input, other, *, dim=-1, out=None):
    """The 3-vector cross product along ``dim`` (default: the last dim)."""
    return _cross(input, other, dim, out=out)


def diagonal(A, *, offset=0, dim1=-2, dim2=-1):
    """The diagonals of (batches of) matrices: ``diagonal`` with matrix-last defaults."""
    return _diagonal(A, offset, dim1, dim2)
