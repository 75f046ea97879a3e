"""``ember.linalg``: norms, decompositions, solvers and products (PyTorch's ``torch.linalg``).

The ops live in ``ember/ops/linalg.py`` (each a forward/backward pair); this module is the
namespace."""

from __future__ import annotations

import numpy as np

from .ops.linalg import (cholesky_ex, det, eig, eigh, eigvals, eigvalsh, inv, inv_ex,  # noqa: F401
                         linalg_cholesky, linalg_norm as norm, linalg_qr as qr,
                         linalg_svd as svd, lstsq, matmul, matrix_exp, matrix_norm,
                         matrix_power, matrix_rank, multi_dot, pinv, slogdet, solve, solve_ex,
                         solve_triangular, svdvals, tensordot, vecdot, vector_norm,
                         linalg_lu as lu, lu_factor, lu_factor_ex, linalg_lu_solve as lu_solve,
                         cond, linalg_vander as vander, tensorinv, tensorsolve)
from .ops.linalg import cross as _cross
from .ops.shape import diagonal as _diagonal
from ._autocast import autocast_function

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


# ---------------------------------------------------------------------- Householder reflectors
def _apply_reflectors(A, tau, X, adjoint=False):
    """``Q @ X`` (or ``Q^H @ X``) for ``Q = H_1 ... H_k``, ``H_i = I - tau_i v_i v_i^H``, the
    reflectors stored LAPACK-style below the diagonal of ``A`` (ember ops: differentiable)."""
    from .ops.creation import arange
    from .ops.elementwise import where
    m = A.shape[-2]
    k = tau.shape[-1]
    rows = arange(m).reshape(m, 1)
    order = range(k) if adjoint else range(k - 1, -1, -1)  # Q X applies H_k first
    for i in order:
        col = A[..., :, i:i + 1]
        v = where(rows < i, 0.0, where(rows == i, 1.0, col)).to(A.dtype)
        t = tau[..., i:i + 1].unsqueeze(-1)
        if adjoint:
            t = t.conj()
        X = X - t * v.matmul(v.mH.matmul(X))
    return X


@autocast_function("fp32")
def householder_product(A, tau, *, out=None):
    """The first ``n`` columns of ``H_1 ... H_k`` from reflectors in ``A`` ``(*, m, n)`` and
    their scalars ``tau`` ``(*, k)`` (LAPACK's orgqr)."""
    from .ops.creation import eye
    if A.ndim < 2:
        raise RuntimeError("torch.linalg.householder_product: input must have at least 2 "
                           "dimensions.")
    m, n = A.shape[-2:]
    if n > m:
        raise RuntimeError("torch.linalg.householder_product: input.shape[-2] must be greater "
                           "than or equal to input.shape[-1]")
    if tau.shape[-1] > n:
        raise RuntimeError("torch.linalg.householder_product: input.shape[-1] must be greater "
                           "than or equal to tau.shape[-1]")
    if tuple(tau.shape[:-1]) != tuple(A.shape[:-2]):
        raise RuntimeError(f"torch.linalg.householder_product: Expected batch dimensions of "
                           f"tau to be equal to input.shape[:-2], but got {list(tau.shape[:-1])}")
    E = eye(m, n, dtype=A.dtype).expand(tuple(A.shape[:-2]) + (m, n))
    if tau.shape[-1] == 0:  # no reflectors: the identity, still an output of A (zero grads)
        E = E + (A * 0).sum(dim=(-2, -1), keepdim=True)[..., :1, :1]
    r = _apply_reflectors(A, tau, E)
    if out is not None:
        out.copy_(r)
        return out
    return r


@autocast_function("fp32")
def _geqrf(input):
    """LAPACK's geqrf: R above the diagonal, the reflectors below, and their scalars."""
    from .ops.creation import tensor as _tensor
    a = input._data
    if a.ndim < 2:
        raise RuntimeError("torch.geqrf: input must have at least 2 dimensions.")
    h, tau = np.linalg.qr(a, mode="raw")
    return _tensor(np.ascontiguousarray(np.swapaxes(h, -1, -2)).astype(a.dtype)), \
        _tensor(tau.astype(a.dtype))


@autocast_function("fp32")
def _ormqr(input, tau, other, left=True, transpose=False):
    """``op(Q) @ other`` (``left``) or ``other @ op(Q)``, ``Q`` the full product of the
    reflectors from ``geqrf`` and ``op`` the conjugate transpose when ``transpose``."""
    if left:
        return _apply_reflectors(input, tau, other, adjoint=transpose)
    # other @ op(Q) = (op(Q)^H @ other^H)^H
    return _apply_reflectors(input, tau, other.mH, adjoint=not transpose).mH


# top-level ``ember.geqrf``/``orgqr``/``ormqr`` (PyTorch keeps them outside ``linalg``)
geqrf, ormqr = _geqrf, _ormqr


@autocast_function("fp32")
def orgqr(input, tau):
    return householder_product(input, tau)


__all__ += ["householder_product"]
