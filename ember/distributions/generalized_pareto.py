"""The generalised Pareto distribution."""

from __future__ import annotations

import math
import numbers

import ember

from . import constraints
from .distribution import Distribution
from .utils import _uniform, broadcast_all

__all__ = ["GeneralizedPareto"]


class GeneralizedPareto(Distribution):
    """Generalised Pareto with ``loc``, ``scale`` and ``concentration`` (xi): Exponential at
    xi = 0, a shifted Pareto for xi > 0, bounded above by ``loc - scale / xi`` for xi < 0.
    Sampled by inverting the CDF, so ``rsample`` is reparameterised."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive,
                       "concentration": constraints.real}
    has_rsample = True

    def __init__(self, loc, scale, concentration, validate_args=None):
        self.loc, self.scale, self.concentration = broadcast_all(loc, scale, concentration)
        if all(isinstance(v, numbers.Number) for v in (loc, scale, concentration)):
            batch_shape = ember.Size()
        else:
            batch_shape = self.loc.shape
        super().__init__(batch_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(GeneralizedPareto, batch_shape, _instance,
                                   "loc", "scale", "concentration")

    def _z(self, x):
        return (x - self.loc) / self.scale

    def _safe_concentration(self):
        """(is xi zero, xi with zeros replaced by 1): the xi != 0 formulas are evaluated on
        the safe value everywhere, then ``where`` picks the xi = 0 limit, so no NaN leaks
        into values or gradients."""
        conc = self.concentration
        eq_zero = ember.isclose(conc, ember.zeros_like(conc))
        return eq_zero, ember.where(eq_zero, ember.ones_like(conc), conc)

    def rsample(self, sample_shape=ember.Size()):
        u = _uniform(self._extended_shape(sample_shape), dtype=self.loc.dtype)
        return self.icdf(u)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = self._z(value)
        eq_zero, safe = self._safe_concentration()
        y = 1 / safe + ember.ones_like(z)
        nonzero = ember.where(y == 0, y, y * ember.log1p(safe * z))
        return -self.scale.log() - ember.where(eq_zero, z, nonzero)

    def log_survival_function(self, value):
        """log P(X > value)."""
        if self._validate_args:
            self._validate_sample(value)
        z = self._z(value)
        eq_zero, safe = self._safe_concentration()
        return ember.where(eq_zero, -z, -ember.log1p(safe * z) / safe)

    def log_cdf(self, value):
        """log P(X <= value)."""
        return ember.log1p(-ember.exp(self.log_survival_function(value)))

    def cdf(self, value):
        return ember.exp(self.log_cdf(value))

    def icdf(self, value):
        eq_zero, safe = self._safe_concentration()
        logu = ember.log1p(-value)
        nonzero = self.loc + self.scale / safe * ember.expm1(-safe * logu)
        zero = self.loc - self.scale * logu
        return ember.where(eq_zero, zero, nonzero)

    @property
    def mean(self):
        conc = self.concentration
        valid = conc < 1
        safe = ember.where(valid, conc, 0.5 * ember.ones_like(conc))
        return ember.where(valid, self.loc + self.scale / (1 - safe), math.nan)

    @property
    def variance(self):
        conc = self.concentration
        valid = conc < 0.5
        safe = ember.where(valid, conc, 0.25 * ember.ones_like(conc))
        result = self.scale.pow(2) / ((1 - safe).pow(2) * (1 - 2 * safe))
        return ember.where(valid, result, math.nan)

    def entropy(self):
        return (self.scale.log() + self.concentration + 1).expand(self._batch_shape)

    @property
    def mode(self):
        return self.loc

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        lower = self.loc
        upper = ember.where(self.concentration < 0, lower - self.scale / self.concentration,
                            math.inf)
        return constraints.interval(lower, upper)
