"""Helpers shared by the distributions: broadcasting parameters, probs/logits conversions,
lazy properties, random draws from ember's generator, and triangular solves."""

from __future__ import annotations

import numbers
from functools import update_wrapper

import numpy as np

import ember
from ember._tensor import Tensor, _make
from ember.autograd.graph import Node

euler_constant = 0.57721566490153286060  # Euler-Mascheroni constant

__all__ = ["broadcast_all", "logits_to_probs", "clamp_probs", "probs_to_logits",
           "lazy_property", "tril_matrix_to_vec", "vec_to_tril_matrix"]


def broadcast_all(*values):
    """Broadcast tensors and numbers together; numbers take the first tensor's dtype (or the
    default dtype when all are numbers)."""
    if not all(isinstance(v, (Tensor, numbers.Number)) for v in values):
        raise ValueError("Input arguments must all be instances of Number, torch.Tensor or "
                         "objects implementing __torch_function__.")
    dtype = next((v.dtype for v in values if isinstance(v, Tensor)),
                 ember.get_default_dtype())
    tensors = [v if isinstance(v, Tensor) else ember.tensor(v, dtype=dtype) for v in values]
    return ember.broadcast_tensors(*tensors)


def _draw(fn, shape, dtype):
    """A tensor of ``shape`` filled by ``fn(rng, shape)`` with ember's default generator, so
    that ``ember.manual_seed`` makes draws repeat."""
    from ember._random import _rng
    arr = np.asarray(fn(_rng(), tuple(shape)))
    return _make(arr.astype(dtype.np if dtype is not None else np.float32, copy=False))


def _standard_normal(shape, dtype=None, device=None):
    return _draw(lambda r, s: r.standard_normal(s), shape, dtype)


def _uniform(shape, dtype=None, low=0.0, high=1.0):
    return _draw(lambda r, s: r.uniform(low, high, s), shape, dtype)


def _sum_rightmost(value, dim):
    """Sum out the ``dim`` rightmost dimensions of ``value``."""
    if dim == 0:
        return value
    return value.reshape(tuple(value.shape[:value.ndim - dim]) + (-1,)).sum(-1)


def logits_to_probs(logits, is_binary=False):
    """Probabilities from logits: sigmoid when ``is_binary``, softmax over the last dim else."""
    if is_binary:
        return ember.sigmoid(logits)
    return ember.softmax(logits, -1)


def clamp_probs(probs):
    """Clamp to ``[eps, 1 - eps]`` with ``eps`` the dtype's machine epsilon."""
    eps = ember.finfo(probs.dtype).eps
    return probs.clamp(min=eps, max=1 - eps)


def probs_to_logits(probs, is_binary=False):
    """Logits from probabilities (log-odds when ``is_binary``, log-probabilities else)."""
    ps = clamp_probs(probs)
    if is_binary:
        return ember.log(ps) - ember.log1p(-ps)
    return ember.log(ps)


class lazy_property:
    """A property computed on first access and then stored on the instance (parameters given
    as probs or logits derive the other one this way)."""

    def __init__(self, wrapped):
        self.wrapped = wrapped
        update_wrapper(self, wrapped)

    def __get__(self, instance, obj_type=None):
        if instance is None:
            return _LazyPropertyAndProperty(self.wrapped)
        with ember.enable_grad():
            value = self.wrapped(instance)
        setattr(instance, self.wrapped.__name__, value)
        return value


class _LazyPropertyAndProperty(lazy_property, property):
    """What ``Class.attr`` returns for a lazy property (usable as a property too)."""

    def __init__(self, wrapped):
        property.__init__(self, wrapped)


def tril_matrix_to_vec(mat, diag=0):
    """The lower triangle (from diagonal ``diag``) of ``mat``, flattened row by row."""
    n = mat.shape[-1]
    if not -n <= diag < n:
        raise ValueError(f"diag ({diag}) provided is outside [{-n}, {n - 1}].")
    rows, cols = np.tril_indices(n, diag)
    return mat[..., ember.tensor(rows), ember.tensor(cols)]


def vec_to_tril_matrix(vec, diag=0):
    """The inverse of ``tril_matrix_to_vec``: a lower-triangular matrix from its entries."""
    size = vec.shape[-1]
    n = next((k for k in range(1, size + abs(diag) + 2) if _tril_count(k, diag) == size), None)
    if n is None:
        raise ValueError(f"The size of last dimension is {size} which cannot be expressed as "
                         "the lower triangular part of a square D x D matrix.")
    rows, cols = np.tril_indices(n, diag)
    flat = ember.zeros(tuple(vec.shape[:-1]) + (n * n,), dtype=vec.dtype)
    flat = flat.index_add(-1, ember.tensor(rows * n + cols), vec)
    return flat.reshape(tuple(vec.shape[:-1]) + (n, n))


def _tril_count(n, diag):
    return len(np.tril_indices(n, diag)[0])


# ---------------------------------------------------------------------- linear algebra
class _TriangularSolve(Node):
    """``X`` with ``A X = B`` for a triangular ``A`` (lower unless ``upper``); only the
    triangle of ``A`` is read, and only that triangle receives a gradient."""

    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, a, b, upper):
        ctx.upper = upper
        tri = np.triu(a) if upper else np.tril(a)
        shape = np.broadcast_shapes(tri.shape[:-2], b.shape[:-2])
        tri = np.broadcast_to(tri, shape + tri.shape[-2:])
        b = np.broadcast_to(b, shape + b.shape[-2:])
        return np.linalg.solve(tri, b)

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        gb = _TriangularSolve.apply(a.transpose(-2, -1), g, not ctx.upper)
        ga = None
        if ctx.needs_input_grad[0]:
            full = -ember.matmul(gb, x.transpose(-2, -1))
            ga = full.triu() if ctx.upper else full.tril()
        return ga, gb, None


def solve_triangular(a, b, upper=False):
    """Solve ``a @ x = b`` for a triangular ``a`` (batched, broadcasting)."""
    return _TriangularSolve.apply(a, b, upper)


def _batch_mv(bmat, bvec):
    """Batched matrix-vector product with broadcasting."""
    return ember.matmul(bmat, bvec.unsqueeze(-1)).squeeze(-1)


def _batch_mahalanobis(bL, bx):
    """The squared Mahalanobis distance ``x^T (L L^T)^{-1} x`` for a Cholesky factor ``L``."""
    y = solve_triangular(bL, bx.unsqueeze(-1)).squeeze(-1)
    return (y * y).sum(-1)


class BinaryProbsOrLogits:
    """Mixin of the distributions given by one success probability, as exactly one of ``probs``
    and ``logits`` (Bernoulli, Binomial, Geometric, ...): the one given is stored and the other
    derived on first use."""

    def _set_probs_or_logits(self, probs, logits, *others):
        """Store the given one of ``probs``/``logits`` broadcast with ``others`` (which come
        first, so that numbers take their dtype) and return ``others`` broadcast."""
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")
        name = "probs" if probs is not None else "logits"
        *others, param = broadcast_all(*others, probs if probs is not None else logits)
        setattr(self, name, param)
        self._param = param
        return others

    def _expand_probs_or_logits(self, new, shape):
        """Give ``new`` (an ``expand`` in progress) this one's probs/logits, expanded."""
        for name in ("probs", "logits"):
            if name in self.__dict__:
                setattr(new, name, self.__dict__[name].expand(shape))
                new._param = new.__dict__[name]

    @lazy_property
    def logits(self):
        return probs_to_logits(self.probs, is_binary=True)

    @lazy_property
    def probs(self):
        return logits_to_probs(self.logits, is_binary=True)

    @property
    def param_shape(self):
        return self._param.shape
