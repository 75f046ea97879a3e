"""The LKJ distribution over Cholesky factors of correlation matrices."""

from __future__ import annotations

import math

import ember

from . import constraints
from .beta import Beta
from .distribution import Distribution
from .utils import _standard_normal, broadcast_all

__all__ = ["LKJCholesky"]


class LKJCholesky(Distribution):
    """LKJ(``concentration`` = eta) over lower Cholesky factors ``L`` of ``dim x dim``
    correlation matrices: the density of ``M = L L^T`` is proportional to
    ``det(M)^(eta - 1)`` (eta = 1 is uniform over correlation matrices). Draws use the
    onion method (Lewandowski, Kurowicka and Joe, 2009, section 3.2); not reparameterised."""

    arg_constraints = {"concentration": constraints.positive}
    support = constraints.corr_cholesky

    def __init__(self, dim, concentration=1.0, validate_args=None):
        if dim < 2:
            raise ValueError(f"Expected dim to be an integer greater than or equal to 2. "
                             f"Found dim={dim}.")
        self.dim = dim
        (self.concentration,) = broadcast_all(concentration)
        batch_shape = self.concentration.shape
        event_shape = ember.Size((dim, dim))
        # The onion method draws the squared norm of row k's off-diagonal part (k >= 1)
        # from Beta(k/2, eta + (dim - 1 - k)/2); row 0 has no off-diagonal part, and its
        # entry (a Beta(1/2, .)) multiplies a zero direction.
        marginal_conc = self.concentration + 0.5 * (self.dim - 2)
        offset = ember.arange(self.dim - 1, dtype=self.concentration.dtype)
        offset = ember.cat([ember.zeros(1, dtype=offset.dtype), offset])
        beta_conc1 = offset + 0.5
        beta_conc0 = marginal_conc.unsqueeze(-1) - 0.5 * offset
        self._beta = Beta(beta_conc1, beta_conc0)
        super().__init__(batch_shape, event_shape, validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LKJCholesky, _instance)
        batch_shape = ember.Size(batch_shape)
        new.dim = self.dim
        new.concentration = self.concentration.expand(batch_shape)
        new._beta = self._beta.expand(batch_shape + (self.dim,))
        Distribution.__init__(new, batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def sample(self, sample_shape=ember.Size()):
        with ember.no_grad():
            y = self._beta.sample(sample_shape).unsqueeze(-1)
            shape = self._extended_shape(sample_shape)
            u_normal = _standard_normal(shape, dtype=y.dtype).tril(-1)
            # a uniform direction on the sphere for each row's off-diagonal part; row 0
            # has none (its norm would be 0/0), so it is zeroed
            norm = u_normal.norm(dim=-1, keepdim=True)
            u_sphere = u_normal / ember.where(norm > 0, norm, ember.ones_like(norm))
            w = y.sqrt() * u_sphere
            tiny = ember.finfo(w.dtype).tiny
            diag = (1 - w.pow(2).sum(-1)).clamp(min=tiny).sqrt()
            return w + diag.diag_embed()

    def log_prob(self, value):
        """Log density of ``value`` (the Cholesky factor), normalised as in LKJ (2009)."""
        if self._validate_args:
            self._validate_sample(value)
        diag = value.diagonal(0, -1, -2)[..., 1:]
        order = ember.arange(2, self.dim + 1, dtype=self.concentration.dtype)
        order = 2 * (self.concentration - 1).unsqueeze(-1) + self.dim - order
        unnormalized = (order * diag.log()).sum(-1)
        dm1 = self.dim - 1
        alpha = self.concentration + 0.5 * dm1
        denominator = ember.lgamma(alpha) * dm1
        numerator = ember.mvlgamma(alpha - 0.5, dm1)
        pi_constant = 0.5 * dm1 * math.log(math.pi)
        return unnormalized - (pi_constant + numerator - denominator)
