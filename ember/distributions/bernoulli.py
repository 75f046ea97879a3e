"""The Bernoulli distribution, parameterised by ``probs`` or ``logits``."""

from __future__ import annotations

import math

import numpy as np

import ember

from . import constraints
from .distribution import Distribution
from .exp_family import ExponentialFamily
from .utils import BinaryProbsOrLogits, _draw, broadcast_all

__all__ = ["Bernoulli"]


def _bce_with_logits(logits, target):
    """Elementwise binary cross-entropy of ``target`` under ``sigmoid(logits)``, stably."""
    return logits.clamp(min=0) - logits * target + ember.log1p(ember.exp(-logits.abs()))


class Bernoulli(BinaryProbsOrLogits, ExponentialFamily):
    """Bernoulli distribution: 1 with probability ``probs`` (or ``sigmoid(logits)``)."""

    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.boolean
    has_enumerate_support = True
    _mean_carrier_measure = 0

    def __init__(self, probs=None, logits=None, validate_args=None):
        self._set_probs_or_logits(probs, logits)
        super().__init__(self._param.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Bernoulli, _instance)
        batch_shape = ember.Size(batch_shape)
        self._expand_probs_or_logits(new, batch_shape)
        Distribution.__init__(new, batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self):
        return self.probs

    @property
    def mode(self):
        mode = (self.probs >= 0.5).to(self.probs.dtype)
        return ember.where(self.probs == 0.5, math.nan, mode)

    @property
    def variance(self):
        return self.probs * (1 - self.probs)

    def sample(self, sample_shape=ember.Size()):
        shape = self._extended_shape(sample_shape)
        p = np.broadcast_to(self.probs.detach().numpy(), shape)
        return _draw(lambda r, s: r.random(s) < p, shape, self.probs.dtype)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.logits, value)
        return -_bce_with_logits(logits, value)

    def entropy(self):
        return _bce_with_logits(self.logits, self.probs)

    def enumerate_support(self, expand=True):
        values = ember.arange(2, dtype=self._param.dtype)
        values = values.reshape((-1,) + (1,) * len(self._batch_shape))
        if expand:
            values = values.expand((-1,) + tuple(self._batch_shape))
        return values

    @property
    def _natural_params(self):
        return (ember.log(self.probs / (1 - self.probs)),)

    def _log_normalizer(self, x):
        return ember.log1p(ember.exp(x))
