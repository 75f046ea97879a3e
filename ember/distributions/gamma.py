"""The Gamma distribution, and the standard-gamma sampler with implicit reparameterisation
gradients shared by Beta, Dirichlet, Chi2 and StudentT."""

from __future__ import annotations


import numpy as np

import ember
from ember._tensor import _make
from ember.autograd.graph import Node

from . import constraints
from .exp_family import ExponentialFamily
from .utils import broadcast_all
from .._dtype import np_finfo as _np_finfo

__all__ = ["Gamma"]


def _lgamma(a):
    return ember.lgamma(_make(np.asarray(a, dtype=np.float64)))._data


def _gammainc(a, x, iters=1000):
    """The regularised lower incomplete gamma function P(a, x) on float64 arrays.

    A power series where x < a + 1 and Lentz's continued fraction for Q = 1 - P elsewhere
    (Numerical Recipes, section 6.2); both converge to machine precision."""
    a, x = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(x, np.float64))
    out = np.zeros(a.shape)
    pos = x > 0
    with np.errstate(all="ignore"):
        log_pref = np.where(pos, a * np.log(np.where(pos, x, 1.0)) - x - _lgamma(a), -np.inf)
        series = pos & (x < a + 1)
        if series.any():
            aa, xx = a[series], x[series]
            term = 1.0 / aa
            total = term.copy()
            ap = aa.copy()
            for _ in range(iters):
                ap = ap + 1
                term = term * xx / ap
                total = total + term
                if np.all(np.abs(term) < np.abs(total) * 1e-17):
                    break
            out[series] = total * np.exp(log_pref[series])
        frac = pos & ~series
        if frac.any():
            aa, xx = a[frac], x[frac]
            tiny = 1e-300
            b = xx + 1 - aa
            c = np.full(aa.shape, 1 / tiny)
            d = 1 / b
            h = d.copy()
            for i in range(1, iters):
                an = -i * (i - aa)
                b = b + 2
                d = an * d + b
                d = np.where(np.abs(d) < tiny, tiny, d)
                c = b + an / c
                c = np.where(np.abs(c) < tiny, tiny, c)
                d = 1 / d
                delta = d * c
                h = h * delta
                if np.all(np.abs(delta - 1) < 1e-16):
                    break
            out[frac] = 1 - np.exp(log_pref[frac]) * h
    out[np.isinf(x) & (x > 0)] = 1.0
    return out


def _gamma_sample_grad(alpha, x):
    """d x / d alpha for x ~ Gamma(alpha, 1) held at fixed CDF value (implicit
    reparameterisation, Figurnov et al. 2018): -(dP/dalpha) / pdf, with dP/dalpha by a central
    difference of the incomplete gamma function."""
    alpha = np.asarray(alpha, np.float64)
    x = np.asarray(x, np.float64)
    h = 1e-5 * np.maximum(alpha, 1e-3)
    dcdf = (_gammainc(alpha + h, x) - _gammainc(alpha - h, x)) / (2 * h)
    with np.errstate(all="ignore"):
        log_pdf = (alpha - 1) * np.log(x) - x - _lgamma(alpha)
        grad = -dcdf / np.exp(log_pdf)
    return np.where(np.isfinite(grad), grad, 0.0)


class _StandardGamma(Node):
    """Draws from Gamma(alpha, 1) with the implicit reparameterisation gradient in alpha."""

    saves = (0,)
    saves_output = True

    @staticmethod
    def forward(ctx, alpha):
        from ember._random import _rng
        x = _rng().standard_gamma(alpha.astype(np.float64))
        tiny = _np_finfo(alpha.dtype).tiny
        return np.maximum(x, tiny).astype(alpha.dtype)

    @staticmethod
    def backward(ctx, g):
        alpha, x = ctx.saved_tensors
        dx = _gamma_sample_grad(alpha.detach().numpy(), x.detach().numpy())
        return g * _make(dx.astype(alpha._data.dtype))


def _standard_gamma(alpha):
    """Gamma(alpha, 1) samples of ``alpha``'s shape, differentiable in ``alpha``."""
    return _StandardGamma.apply(alpha)


class _GammaInc(Node):
    """P(a, x) with the gradient in ``x`` (the gradient in ``a`` is not implemented, as in
    PyTorch's ``special.gammainc``)."""

    saves = (0, 1)

    @staticmethod
    def forward(ctx, a, x):
        return _gammainc(a, x).astype(np.result_type(a.dtype, x.dtype))

    @staticmethod
    def backward(ctx, g):
        a, x = ctx.saved_tensors
        if ctx.needs_input_grad[0]:
            raise NotImplementedError("derivative of gammainc with respect to the shape "
                                      "parameter (concentration) is not implemented")
        pdf = ember.exp(ember.xlogy(a - 1, x) - x - ember.lgamma(a))
        return None, g * pdf


class Gamma(ExponentialFamily):
    """Gamma distribution with ``concentration`` (shape) and ``rate`` (inverse scale)."""

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True
    _mean_carrier_measure = 0

    def __init__(self, concentration, rate, validate_args=None):
        self.concentration, self.rate = broadcast_all(concentration, rate)
        super().__init__(self.concentration.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Gamma, batch_shape, _instance, "concentration", "rate")

    @property
    def mean(self):
        return self.concentration / self.rate

    @property
    def mode(self):
        return ((self.concentration - 1) / self.rate).clamp(min=0)

    @property
    def variance(self):
        return self.concentration / self.rate.pow(2)

    def rsample(self, sample_shape=ember.Size()):
        shape = self._extended_shape(sample_shape)
        value = _standard_gamma(self.concentration.expand(shape)) / self.rate.expand(shape)
        return value.clamp(min=ember.finfo(value.dtype).tiny)

    def log_prob(self, value):
        value = ember.as_tensor(value, dtype=self.rate.dtype)
        if self._validate_args:
            self._validate_sample(value)
        return (ember.xlogy(self.concentration, self.rate)
                + ember.xlogy(self.concentration - 1, value)
                - self.rate * value - ember.lgamma(self.concentration))

    def entropy(self):
        c = self.concentration
        return c - ember.log(self.rate) + ember.lgamma(c) + (1.0 - c) * ember.digamma(c)

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return _GammaInc.apply(self.concentration, self.rate * value)

    @property
    def _natural_params(self):
        return self.concentration - 1, -self.rate

    def _log_normalizer(self, x, y):
        return ember.lgamma(x + 1) + (x + 1) * ember.log(-y.reciprocal())
