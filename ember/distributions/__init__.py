"""``ember.distributions``: probability distributions with PyTorch's API.

Each distribution gives ``sample``/``rsample`` (reparameterised where PyTorch's is),
``log_prob``, ``entropy``, moments, ``cdf``/``icdf`` where closed forms exist, batch and
event shapes, and argument validation. Draws use ember's default generator, so
``ember.manual_seed`` makes them repeat. ``kl_divergence`` dispatches on the pair of types
registered with ``register_kl``.
"""

from __future__ import annotations

from . import constraints, transforms
from .bernoulli import Bernoulli
from .beta import Beta
from .binomial import Binomial
from .categorical import Categorical
from .cauchy import Cauchy
from .chi2 import Chi2
from .constraint_registry import biject_to, transform_to
from .continuous_bernoulli import ContinuousBernoulli
from .dirichlet import Dirichlet
from .distribution import Distribution
from .exp_family import ExponentialFamily
from .exponential import Exponential
from .fishersnedecor import FisherSnedecor
from .gamma import Gamma
from .generalized_pareto import GeneralizedPareto
from .geometric import Geometric
from .gumbel import Gumbel
from .half_cauchy import HalfCauchy
from .half_normal import HalfNormal
from .independent import Independent
from .inverse_gamma import InverseGamma
from .kl import kl_divergence, register_kl
from .kumaraswamy import Kumaraswamy
from .lkj_cholesky import LKJCholesky
from .laplace import Laplace
from .log_normal import LogNormal
from .logistic_normal import LogisticNormal
from .lowrank_multivariate_normal import LowRankMultivariateNormal
from .mixture_same_family import MixtureSameFamily
from .multinomial import Multinomial
from .multivariate_normal import MultivariateNormal
from .negative_binomial import NegativeBinomial
from .normal import Normal
from .pareto import Pareto
from .one_hot_categorical import OneHotCategorical, OneHotCategoricalStraightThrough
from .poisson import Poisson
from .relaxed_bernoulli import LogitRelaxedBernoulli, RelaxedBernoulli
from .relaxed_categorical import ExpRelaxedCategorical, RelaxedOneHotCategorical
from .studentT import StudentT
from .transformed_distribution import TransformedDistribution
from .transforms import *  # noqa: F401,F403
from .transforms import __all__ as _transforms_all
from .uniform import Uniform
from .von_mises import VonMises
from .weibull import Weibull
from .wishart import Wishart

__all__ = [
    "Bernoulli", "Beta", "Binomial", "Categorical", "Cauchy", "Chi2", "Dirichlet",
    "Distribution", "HalfCauchy", "HalfNormal", "InverseGamma", "NegativeBinomial", "Pareto",
    "Weibull",
    "ExpRelaxedCategorical", "Exponential", "ExponentialFamily", "Gamma", "Geometric",
    "Gumbel", "Independent",
    "Laplace", "LogNormal", "LogitRelaxedBernoulli", "MixtureSameFamily", "Multinomial",
    "MultivariateNormal", "Normal", "OneHotCategorical", "OneHotCategoricalStraightThrough",
    "Poisson", "RelaxedBernoulli", "RelaxedOneHotCategorical", "StudentT",
    "TransformedDistribution", "Uniform", "constraints", "kl_divergence", "register_kl",
    "transforms",
    "ContinuousBernoulli", "FisherSnedecor", "GeneralizedPareto", "Kumaraswamy",
    "LogisticNormal", "LowRankMultivariateNormal", "VonMises", "Wishart", "LKJCholesky",
    "biject_to", "transform_to",
] + list(_transforms_all)
