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
    from ._meta import MetaArray
    if type(a) is MetaArray:  # R and the reflectors fill the input's shape; min(m, n) scalars
        from ._tensor import _make
        return _make(MetaArray(a.shape, a.dtype)), \
            _make(MetaArray(a.shape[:-2] + (min(a.shape[-2:]),), a.dtype))
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


# ---------------------------------------------------------------------- LDL (Bunch-Kaufman)
from .ops.linalg import LinAlgError  # noqa: E402
from .autograd.graph import Node as _Node  # noqa: E402
from .ops.reduction import _rt  # noqa: E402

_ldl_factor_rt = _rt("linalg_ldl_factor", ["LD", "pivots"])
_ldl_factor_ex_rt = _rt("linalg_ldl_factor_ex", ["LD", "pivots", "info"])


def _lapack(name, a):
    try:
        from scipy.linalg import lapack
    except ImportError:  # pragma: no cover - depends on the environment
        raise NotImplementedError(f"ember.linalg.{name} calls LAPACK through SciPy: install "
                                  "the 'special' extra (pip install 'ember[special]')") from None
    return lapack


class _LDLFactor(_Node):
    """LAPACK's ``?sytrf`` (``?hetrf`` for complex Hermitian) on the lower triangle, per
    matrix of a batch: ``(LD, 1-based pivots, info)`` exactly as PyTorch returns them."""

    @staticmethod
    def forward(ctx, a, hermitian):
        lapack = _lapack("ldl_factor", a)
        n = a.shape[-1]
        batch = a.reshape(-1, n, n)
        ld = np.empty_like(batch)
        piv = np.empty(batch.shape[:2], np.int32)
        info = np.empty(batch.shape[0], np.int32)
        kind = "hetrf" if hermitian and a.dtype.kind == "c" else "sytrf"
        fn = lapack.get_lapack_funcs(kind, (batch,))
        for i, m in enumerate(batch):
            lu, ipiv, inf = fn(m, lower=1)
            ld[i], piv[i], info[i] = np.tril(lu), ipiv, inf
        lead = a.shape[:-2]
        return ld.reshape(a.shape), piv.reshape(lead + (n,)), info.reshape(lead)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("derivative for aten::linalg_ldl_factor_ex is not implemented")


class _LDLSolve(_Node):
    @staticmethod
    def forward(ctx, ld, piv, b, hermitian):
        lapack = _lapack("ldl_solve", ld)
        n = ld.shape[-1]
        lead = np.broadcast_shapes(ld.shape[:-2], b.shape[:-2])
        ldb = np.broadcast_to(ld, lead + ld.shape[-2:]).reshape(-1, n, n)
        pb = np.broadcast_to(piv, lead + piv.shape[-1:]).reshape(-1, n)
        bb = np.broadcast_to(b, lead + b.shape[-2:]).reshape((-1,) + b.shape[-2:])
        rt = np.result_type(ld, b)
        out = np.empty(bb.shape, rt)
        kind = "hetrs" if hermitian and rt.kind == "c" else "sytrs"
        fn = lapack.get_lapack_funcs(kind, (ldb.astype(rt, copy=False),))
        for i in range(ldb.shape[0]):
            out[i], _ = fn(ldb[i].astype(rt, copy=False), pb[i], bb[i].astype(rt), lower=1)
        return out.reshape(lead + b.shape[-2:])

    @staticmethod
    def backward(ctx, g):
        raise RuntimeError("derivative for aten::linalg_ldl_solve is not implemented")


def _square(A, fn):
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"torch.linalg.{fn}: A must be batches of square matrices, but they "
                           f"are {A.shape[-2] if A.ndim > 1 else 1} by {A.shape[-1]} matrices")
    if not (A.is_floating_point() or A.is_complex()):
        raise RuntimeError(f"torch.linalg.{fn}: Expected a floating point or complex tensor as "
                           f"input. Got {A.dtype}")


def ldl_factor_ex(A, *, hermitian=False, check_errors=False, out=None):
    """``(LD, pivots, info)``: the Bunch-Kaufman LDL^T (LDL^H) factorisation of symmetric
    (Hermitian) ``A`` from its lower triangle, LAPACK's compact form and 1-based pivots."""
    _square(A, "ldl_factor_ex")
    ld, piv, info = _LDLFactor.apply(A, bool(hermitian))
    if check_errors and bool((info != 0).any()):
        raise LinAlgError(f"torch.linalg.ldl_factor_ex: the factorization could not be "
                          f"completed: D has a zero diagonal element (info = "
                          f"{int(info.reshape(-1)[(info.reshape(-1) != 0).nonzero()[0, 0]])})")
    return _ldl_factor_ex_rt(ld, piv, info)


def ldl_factor(A, *, hermitian=False, out=None):
    """``(LD, pivots)`` of ``ldl_factor_ex``, raising ``LinAlgError`` when D is singular."""
    _square(A, "ldl_factor")
    ld, piv, info = _LDLFactor.apply(A, bool(hermitian))
    if bool((info != 0).any()):
        raise LinAlgError("torch.linalg.ldl_factor: the factorization could not be completed "
                          "because the input is singular (a zero diagonal element of D)")
    return _ldl_factor_rt(ld, piv)


def ldl_solve(LD, pivots, B, *, hermitian=False, out=None):
    """Solve ``A X = B`` from ``ldl_factor``'s ``LD`` and ``pivots``."""
    _square(LD, "ldl_solve")
    if B.ndim < 2 or B.shape[-2] != LD.shape[-1]:
        raise RuntimeError(f"torch.linalg.ldl_solve: Incompatible shapes of A and B for the "
                           f"equation AX = B ({list(LD.shape[-2:])} and {list(B.shape[-2:])})")
    if pivots.dtype != _D.int32:
        raise RuntimeError(f"torch.linalg.ldl_solve: Expected pivots to be integers. Got "
                           f"{pivots.dtype}")
    return _LDLSolve.apply(LD, pivots, B, bool(hermitian))


from . import _dtype as _D  # noqa: E402

__all__ += ["LinAlgError", "ldl_factor", "ldl_factor_ex", "ldl_solve"]
