"""Ready-made parametrizations: ``weight_norm``, ``spectral_norm`` and ``orthogonal``."""

from __future__ import annotations

import math

import numpy as np

from ..._tensor import Tensor, _make
from ...autograd.grad_mode import no_grad
from ...ops.creation import eye, zeros
from ...ops.linalg import matmul, mv, vdot
from ...ops.shape import cat
from .. import functional as F
from ..modules.module import Module
from . import parametrize
from ..._dtype import np_finfo as _np_finfo

__all__ = ["orthogonal", "spectral_norm", "weight_norm"]


def _norm_except_dim(v, dim):
    """The 2-norm of ``v`` over every dim but ``dim`` (keepdims), or of all of it for -1."""
    if dim == -1:
        return v.norm(2)
    dim = dim % v.ndim
    others = tuple(d for d in range(v.ndim) if d != dim)
    return (v * v).sum(others, keepdim=True).sqrt() if others else v.abs()


class _WeightNorm(Module):
    def __init__(self, dim=0):
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, weight_g, weight_v):
        return weight_v * (weight_g / _norm_except_dim(weight_v, self.dim))

    def right_inverse(self, weight):
        return _norm_except_dim(weight, self.dim), weight


def weight_norm(module, name="weight", dim=0):
    """``w = g * v / ||v||``: magnitude ``original0`` and direction ``original1``."""
    parametrize.register_parametrization(module, name, _WeightNorm(dim), unsafe=True)

    def compat_hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                    error_msgs):
        # checkpoints of the older hook-based weight_norm store name_g / name_v
        g_key, v_key = f"{prefix}{name}_g", f"{prefix}{name}_v"
        if g_key in state_dict and v_key in state_dict:
            state_dict[f"{prefix}parametrizations.{name}.original0"] = state_dict.pop(g_key)
            state_dict[f"{prefix}parametrizations.{name}.original1"] = state_dict.pop(v_key)

    module._register_load_state_dict_pre_hook(compat_hook)
    return module


class _SpectralNorm(Module):
    """``W / sigma(W)``, sigma estimated by power iteration (Miyato et al., 2018)."""

    def __init__(self, weight, n_power_iterations=1, dim=0, eps=1e-12):
        super().__init__()
        ndim = weight.ndim
        if dim >= ndim or dim < -ndim:
            raise IndexError("Dimension out of range (expected to be in range of "
                             f"[-{ndim}, {ndim - 1}] but got {dim})")
        if n_power_iterations <= 0:
            raise ValueError("Expected n_power_iterations to be positive, but got "
                             f"n_power_iterations={n_power_iterations}")
        self.dim = dim if dim >= 0 else dim + ndim
        self.eps = eps
        if ndim > 1:
            self.n_power_iterations = n_power_iterations
            weight_mat = self._reshape_weight_to_matrix(weight)
            h, w = weight_mat.shape
            u = weight_mat.new_empty(h).normal_(0, 1)
            v = weight_mat.new_empty(w).normal_(0, 1)
            self.register_buffer("_u", F.normalize(u, dim=0, eps=self.eps))
            self.register_buffer("_v", F.normalize(v, dim=0, eps=self.eps))
            self._power_method(weight_mat, 15)

    def _reshape_weight_to_matrix(self, weight):
        if self.dim != 0:
            weight = weight.permute(self.dim, *(d for d in range(weight.ndim) if d != self.dim))
        return weight.flatten(1)

    def _power_method(self, weight_mat, n_power_iterations):
        with no_grad():
            for _ in range(n_power_iterations):
                F.normalize(mv(weight_mat, self._v), dim=0, eps=self.eps, out=self._u)
                F.normalize(mv(weight_mat.t(), self._u), dim=0, eps=self.eps, out=self._v)

    def forward(self, weight):
        if weight.ndim == 1:
            return F.normalize(weight, dim=0, eps=self.eps)
        weight_mat = self._reshape_weight_to_matrix(weight)
        if self.training:
            self._power_method(weight_mat, self.n_power_iterations)
        u = self._u.clone()
        v = self._v.clone()
        sigma = vdot(u, mv(weight_mat, v))
        return weight / sigma

    def right_inverse(self, value):
        return value


def spectral_norm(module, name="weight", n_power_iterations=1, eps=1e-12, dim=None):
    """Divide ``module.<name>`` by its spectral norm on every access."""
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    if dim is None:
        dim = 1 if type(module).__name__.startswith("ConvTranspose") else 0
    parametrize.register_parametrization(
        module, name, _SpectralNorm(weight, n_power_iterations, dim, eps))
    return module


def _matrix_exp(a):
    """exp(A) by scaling and squaring a degree-18 Taylor polynomial, with ember ops (so it is
    differentiable)."""
    norm = float(np.abs(a._data).sum(-2).max()) if a._data.size else 0.0
    s = max(0, int(math.ceil(math.log2(norm))) + 1) if norm > 0.5 else 0
    a = a / (2 ** s)
    n = a.shape[-1]
    ident = eye(n, dtype=a.dtype)
    result = ident + a
    term = a
    for k in range(2, 19):
        term = matmul(term, a) / k
        result = result + term
    for _ in range(s):
        result = matmul(result, result)
    return result


def _householder_product(v, tau):
    """Q = H_1 ... H_k with H_i = I - tau_i u_i u_i^T, u_i the i-th column of ``v`` below the
    diagonal with a unit diagonal; the first k columns of the n x n product."""
    n, k = v.shape[-2], v.shape[-1]
    q = eye(n, dtype=v.dtype).expand(*v.shape[:-2], n, n)
    rows = np.arange(n)
    for i in range(k):
        mask = _make((rows > i).astype(v._data.dtype))
        unit = _make((rows == i).astype(v._data.dtype))
        u = v[..., :, i] * mask + unit
        qu = matmul(q, u.unsqueeze(-1))
        q = q - (qu * tau[..., i:i + 1].unsqueeze(-1)) * u.unsqueeze(-2)
    return q[..., :k]


def _make_orthogonal(a):
    """The Q of A = QR with a non-negative diagonal of R (A tall), computed under no_grad."""
    q, r = np.linalg.qr(a._data)
    d = np.sign(np.diagonal(r, axis1=-2, axis2=-1))
    d[d == 0] = 1
    return _make((q * d[..., None, :]).astype(a._data.dtype))


class _Orthogonal(Module):
    def __init__(self, weight, orthogonal_map, *, use_trivialization=True):
        super().__init__()
        if weight.is_complex() and orthogonal_map == "householder":
            raise ValueError("The householder parametrization does not support complex "
                             "tensors.")
        self.shape = weight.shape
        self.orthogonal_map = orthogonal_map
        if use_trivialization:
            self.register_buffer("base", None)

    def forward(self, x):
        n, k = x.shape[-2], x.shape[-1]
        transposed = n < k
        if transposed:
            x = x.mT
            n, k = k, n
        if self.orthogonal_map in ("matrix_exp", "cayley"):
            x = x.tril()
            if n != k:
                x = cat([x, zeros(n, n - k, dtype=x.dtype).expand(*x.shape[:-2], n, n - k)], -1)
            a = x - x.mT
            if self.orthogonal_map == "matrix_exp":
                q = _matrix_exp(a)
            else:  # the Cayley map (I - A/2)^-1 (I + A/2) of the skew-symmetric A
                from ...ops.linalg import solve
                ident = eye(n, dtype=a.dtype)
                q = solve(ident - 0.5 * a, ident + 0.5 * a)
            if n != k:
                q = q[..., :k]
        else:
            a = x.tril(diagonal=-1)
            tau = 2.0 / (1.0 + (a * a).sum(-2))
            q = _householder_product(a, tau)
            q = q * x.diagonal(dim1=-2, dim2=-1).int().unsqueeze(-2)
        if "base" in self._buffers:
            q = matmul(self.base, q)
        return q.mT if transposed else q

    def right_inverse(self, q):
        if q.shape != self.shape:
            raise ValueError(f"Expected a matrix or batch of matrices of shape {self.shape}. "
                             f"Got a tensor of shape {q.shape}.")
        q_init = q
        n, k = q.shape[-2], q.shape[-1]
        if n < k:
            q = q.mT
            n, k = k, n
        if "base" not in self._buffers:
            return self._householder_inverse(q, transposed=q_init.shape[-2] < q_init.shape[-1])
        with no_grad():
            if n == k:
                eps = 10.0 * n * _np_finfo(q._data.dtype).eps
                qtq = np.swapaxes(q._data, -1, -2) @ q._data
                if not np.allclose(qtq, np.eye(k), atol=eps):
                    q = _make_orthogonal(q)
                else:
                    q = q.clone()
            else:
                noise = np.random.default_rng().standard_normal(q.shape[:-2] + (n, n - k))
                q = _make_orthogonal(cat([q, _make(noise.astype(q._data.dtype))], -1))
            self.base = q
            neg_id = np.zeros(q_init.shape, dtype=q_init._data.dtype)
            idx = np.arange(min(q_init.shape[-2:]))
            neg_id[..., idx, idx] = -1.0
        return _make(neg_id)

    def _householder_inverse(self, q, transposed):
        """Without the trivialization only the Householder map can be inverted: the reflectors
        of Q's QR decomposition (``geqrf``), with R's diagonal signs on the diagonal. (The
        parametrization machinery keeps the tensor as it is when this raises.)"""
        if self.orthogonal_map != "householder":
            raise NotImplementedError("It is not possible to assign to the matrix exponential or "
                                      "the Cayley parametrizations when use_trivialization=False.")
        from ...linalg import geqrf
        with no_grad():
            a, tau = geqrf(q)
            d = a._data
            diag = np.sign(np.diagonal(d, axis1=-2, axis2=-1))
            # LAPACK returns tau == 0 where it skips a reflection: flip that sign back
            diag = np.where(tau._data == 0, -diag, diag)
            idx = np.arange(diag.shape[-1])
            d = d.copy()
            d[..., idx, idx] = diag
            a = _make(d)
        return a.mT if transposed else a


def orthogonal(module, name="weight", orthogonal_map=None, *, use_trivialization=True):
    """Constrain ``module.<name>`` to (semi-)orthogonal matrices."""
    weight = getattr(module, name, None)
    if not isinstance(weight, Tensor):
        raise ValueError(f"Module '{module}' has no parameter or buffer with name '{name}'")
    if weight.ndim < 2:
        raise ValueError("Expected a matrix or batch of matrices. Got a tensor of "
                         f"{weight.ndim} dimensions.")
    if orthogonal_map is None:
        orthogonal_map = ("matrix_exp" if weight.shape[-2] == weight.shape[-1]
                          or weight.is_complex() else "householder")
    if orthogonal_map not in ("matrix_exp", "cayley", "householder"):
        raise ValueError('orthogonal_map has to be one of "matrix_exp", "cayley", '
                         f'"householder". Got: {orthogonal_map}')
    orth = _Orthogonal(weight, orthogonal_map, use_trivialization=use_trivialization)
    parametrize.register_parametrization(module, name, orth, unsafe=True)
    return module
