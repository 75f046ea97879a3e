"""``ember.linalg``: norms, decompositions, solvers and products (PyTorch's ``torch.linalg``).

The ops live in ``ember/ops/linalg.py`` (each a forward/backward pair); this module is the
namespace."""

from __future__ import annotations

from .ops.linalg import (cholesky_ex, det, eig, eigh, eigvals, eigvalsh, inv, inv_ex,  # noqa: F401
                         linalg_cholesky, linalg_norm as norm, linalg_qr as qr,
                         linalg_svd as svd, lstsq, matmul, matrix_exp, matrix_norm,
                         matrix_power, matrix_rank, multi_dot, pinv, slogdet, solve, solve_ex,
                         solve_triangular, svdvals, tensordot, vecdot, vector_norm,
                         linalg_lu as lu, lu_factor, lu_factor_ex, linalg_lu_solve as lu_solve,
                         cond, linalg_vander as vander, tensorinv, tensorsolve)
from .ops.linalg import cross as _cross
from .ops.shape import diagonal as _diagonal

__all__ = ["norm", "vector_norm", "matrix_norm", "inv", "det", "slogdet", "solve", "cholesky",
           "qr", "svd", "svdvals", "eigh", "eigvalsh", "pinv", "matrix_power", "cross",
           "tensordot", "multi_dot", "vecdot", "lstsq", "matrix_rank", "matrix_exp", "matmul",
           "diagonal", "eig", "eigvals", "solve_triangular", "inv_ex", "cholesky_ex",
           "solve_ex", "lu", "lu_factor", "lu_factor_ex", "lu_solve", "cond", "vander",
           "tensorinv", "tensorsolve"]

cholesky = linalg_cholesky


def cross(input, other, *, dim=-1, out=None):
    """The 3-vector cross product along ``dim`` (default: the last dim)."""
    return _cross(input, other, dim, out=out)


def diagonal(A, *, offset=0, dim1=-2, dim2=-1):
    """The diagonals of (batches of) matrices: ``diagonal`` with matrix-last defaults."""
    return _diagonal(A, offset, dim1, dim2)
