"""Randomized low-rank SVD and PCA (``torch.svd_lowrank``, ``torch.pca_lowrank``): Halko,
Martinsson and Tropp 2009, Algorithm 4.4 (randomized subspace iteration). Written with ember
ops, so gradients flow through ``A``."""

from __future__ import annotations

__all__ = ["get_approximate_basis", "svd_lowrank", "pca_lowrank"]


def _float_dtype(A):
    import ember
    return A.dtype if A.is_floating_point() or A.is_complex() else ember.get_default_dtype()


def get_approximate_basis(A, q, niter=2, M=None):
    """An orthonormal ``(m, q)`` basis ``Q`` whose span approximates that of ``A - M``, from
    a Gaussian sketch refined by ``niter`` subspace iterations."""
    import ember
    niter = 2 if niter is None else niter
    R = ember.randn(A.shape[-1], q, dtype=_float_dtype(A))

    def prod(X, B, Bm):
        out = X @ B
        return out - Bm @ B if Bm is not None else out

    Mh = M.mH if M is not None else None
    Q = ember.linalg.qr(prod(A, R, M)).Q
    for _ in range(niter):
        Q = ember.linalg.qr(prod(A.mH, Q, Mh)).Q
        Q = ember.linalg.qr(prod(A, Q, M)).Q
    return Q


def _svd_lowrank(A, q=6, niter=2, M=None):
    import ember
    q = 6 if q is None else q
    m, n = A.shape[-2:]
    if M is not None:
        M = M.broadcast_to(A.shape)
    if m < n:  # work on the tall orientation
        A = A.mH
        M = M.mH if M is not None else None
    Q = get_approximate_basis(A, q, niter=niter, M=M)
    B = Q.mH @ A
    if M is not None:
        B = B - Q.mH @ M
    U, S, Vh = ember.linalg.svd(B, full_matrices=False)
    U, V = Q @ U, Vh.mH
    return (V, S, U) if m < n else (U, S, V)


def svd_lowrank(A, q=6, niter=2, M=None):
    """An approximate rank-``q`` SVD ``(U, S, V)`` of ``A - M`` (``A ~ U diag(S) V^H``);
    random, so results vary with the generator's state. ``q`` should be a slight
    overestimate of the rank; ``niter`` subspace iterations sharpen it."""
    return _svd_lowrank(A, q, niter=niter, M=M)


def pca_lowrank(A, q=None, center=True, niter=2):
    """An approximate PCA ``(U, S, V)`` of ``A``: the low-rank SVD of ``A`` minus its column
    means (``center=True``). ``q`` defaults to ``min(6, m, n)``."""
    m, n = A.shape[-2:]
    if q is None:
        q = min(6, m, n)
    elif not (q >= 0 and q <= min(m, n)):
        raise ValueError(f"q(={q}) must be non-negative integer and not greater than "
                         f"min(m, n)={min(m, n)}")
    if not niter >= 0:
        raise ValueError(f"niter(={niter}) must be non-negative integer")
    if getattr(A, "is_sparse", False):
        A = A.to_dense()  # the dense centring is the same matrix
    if not center:
        return _svd_lowrank(A, q, niter=niter)
    return _svd_lowrank(A - A.mean(dim=-2, keepdim=True), q, niter=niter)
