"""Distribution cases shared by the tests: each builds the same distribution from the same
float64 parameters in PyTorch or ember (``build(D, params)`` with ``D`` the library's
``distributions`` module)."""

from __future__ import annotations

import numpy as np

_rng = np.random.default_rng(1234)


def _pos(*shape, low=0.5, high=2.5):
    return _rng.uniform(low, high, shape)


def _real(*shape):
    return _rng.standard_normal(shape)


def _simplex(*shape):
    p = _rng.uniform(0.2, 1.0, shape)
    return p / p.sum(-1, keepdims=True)


def _tril(n):
    a = np.tril(_rng.standard_normal((n, n)) * 0.3)
    a[np.diag_indices(n)] = _rng.uniform(0.5, 1.5, n)
    return a


def _spd(n):
    a = _rng.standard_normal((n, n))
    return a @ a.T / n + np.eye(n)


def _transformed(D, p):
    T = D.transforms
    return D.TransformedDistribution(D.Normal(p["loc"], p["scale"]), [
        T.AffineTransform(p["shift"], 0.5), T.TanhTransform(), T.AffineTransform(1.0, 2.0)])


def _transformed_sigmoid(D, p):
    T = D.transforms
    return D.TransformedDistribution(D.Normal(p["loc"], p["scale"]), T.ComposeTransform(
        [T.SigmoidTransform(), T.AffineTransform(0.0, -3.0)]))


def _transformed_softplus(D, p):
    T = D.transforms
    return D.TransformedDistribution(D.Laplace(p["loc"], p["scale"]),
                                     [T.SoftplusTransform(), T.ExpTransform().inv])


# name -> (build, params, quantities to compare)
CASES = {
    "Normal": (lambda D, p: D.Normal(p["loc"], p["scale"]),
               {"loc": _real(3), "scale": _pos(3)}, "all"),
    "Bernoulli(probs)": (lambda D, p: D.Bernoulli(probs=p["probs"]),
                         {"probs": _rng.uniform(0.1, 0.9, 3)}, "all"),
    "Bernoulli(logits)": (lambda D, p: D.Bernoulli(logits=p["logits"]),
                          {"logits": _real(2, 3)}, "all"),
    "Categorical(probs)": (lambda D, p: D.Categorical(probs=p["probs"]),
                           {"probs": _simplex(2, 4)}, "all"),
    "Categorical(logits)": (lambda D, p: D.Categorical(logits=p["logits"]),
                            {"logits": _real(2, 4)}, "all"),
    "OneHotCategorical": (lambda D, p: D.OneHotCategorical(logits=p["logits"]),
                          {"logits": _real(2, 4)}, "all"),
    "Beta": (lambda D, p: D.Beta(p["a"], p["b"]), {"a": _pos(3), "b": _pos(3)}, "all"),
    "Gamma": (lambda D, p: D.Gamma(p["concentration"], p["rate"]),
              {"concentration": _pos(3), "rate": _pos(3)}, "all"),
    "Dirichlet": (lambda D, p: D.Dirichlet(p["concentration"]),
                  {"concentration": _pos(2, 3)}, "all"),
    "Exponential": (lambda D, p: D.Exponential(p["rate"]), {"rate": _pos(3)}, "all"),
    "Laplace": (lambda D, p: D.Laplace(p["loc"], p["scale"]),
                {"loc": _real(3), "scale": _pos(3)}, "all"),
    "LogNormal": (lambda D, p: D.LogNormal(p["loc"], p["scale"]),
                  {"loc": _real(3) * 0.3, "scale": _pos(3, low=0.3, high=0.8)}, "all"),
    "Uniform": (lambda D, p: D.Uniform(p["low"], p["high"]),
                {"low": _real(3), "high": _real(3) + 4}, "all"),
    "Poisson": (lambda D, p: D.Poisson(p["rate"]), {"rate": _pos(3, high=6)}, "all"),
    "Binomial(probs)": (lambda D, p: D.Binomial(5, probs=p["probs"]),
                        {"probs": _rng.uniform(0.1, 0.9, 3)}, "all"),
    "Binomial(logits)": (lambda D, p: D.Binomial(7, logits=p["logits"]),
                         {"logits": _real(2, 2)}, "all"),
    "Multinomial": (lambda D, p: D.Multinomial(6, probs=p["probs"]),
                    {"probs": _simplex(2, 3)}, "all"),
    "MultivariateNormal(scale_tril)": (
        lambda D, p: D.MultivariateNormal(p["loc"], scale_tril=p["scale_tril"]),
        {"loc": _real(2, 3), "scale_tril": _tril(3)}, "all"),
    "MultivariateNormal(covariance)": (
        lambda D, p: D.MultivariateNormal(p["loc"], covariance_matrix=p["cov"]),
        {"loc": _real(3), "cov": _spd(3)}, "all"),
    "MultivariateNormal(precision)": (
        lambda D, p: D.MultivariateNormal(p["loc"], precision_matrix=p["prec"]),
        {"loc": _real(3), "prec": _spd(3)}, "all"),
    "Independent": (lambda D, p: D.Independent(D.Normal(p["loc"], p["scale"]), 1),
                    {"loc": _real(2, 3), "scale": _pos(2, 3)}, "all"),
    "Gumbel": (lambda D, p: D.Gumbel(p["loc"], p["scale"]),
               {"loc": _real(3), "scale": _pos(3)}, "all"),
    "Cauchy": (lambda D, p: D.Cauchy(p["loc"], p["scale"]),
               {"loc": _real(3), "scale": _pos(3)}, "all"),
    "StudentT": (lambda D, p: D.StudentT(p["df"], p["loc"], p["scale"]),
                 {"df": np.array([0.8, 1.5, 3.0, 7.0]), "loc": _real(4), "scale": _pos(4)},
                 "all"),
    "Geometric(probs)": (lambda D, p: D.Geometric(probs=p["probs"]),
                         {"probs": _rng.uniform(0.2, 0.9, 3)}, "all"),
    "Geometric(logits)": (lambda D, p: D.Geometric(logits=p["logits"]),
                          {"logits": _real(3)}, "all"),
    "RelaxedBernoulli": (lambda D, p: D.RelaxedBernoulli(p["temp"], probs=p["probs"]),
                         {"probs": _rng.uniform(0.2, 0.8, 3), "temp": np.array(0.7)}, "all"),
    "RelaxedOneHotCategorical": (
        lambda D, p: D.RelaxedOneHotCategorical(p["temp"], logits=p["logits"]),
        {"logits": _real(2, 3), "temp": np.array(0.6)}, "all"),
    "TransformedDistribution(affine,tanh)": (
        _transformed, {"loc": _real(3), "scale": _pos(3), "shift": _real(3)}, "all"),
    "TransformedDistribution(sigmoid)": (
        _transformed_sigmoid, {"loc": _real(3), "scale": _pos(3)}, "all"),
    "TransformedDistribution(softplus)": (
        _transformed_softplus, {"loc": _real(3), "scale": _pos(3)}, "all"),
    "Chi2": (lambda D, p: D.Chi2(p["df"]), {"df": _pos(3, low=1.0, high=5.0)}, "all"),
    "HalfNormal": (lambda D, p: D.HalfNormal(p["scale"]), {"scale": _pos(3)}, "all"),
    "HalfCauchy": (lambda D, p: D.HalfCauchy(p["scale"]), {"scale": _pos(3)}, "all"),
    "Pareto": (lambda D, p: D.Pareto(p["scale"], p["alpha"]),
               {"scale": _pos(3), "alpha": np.array([0.8, 1.5, 3.5])}, "all"),
    "Weibull": (lambda D, p: D.Weibull(p["scale"], p["concentration"]),
                {"scale": _pos(3), "concentration": _pos(3, low=1.2, high=3.0)}, "all"),
    "InverseGamma": (lambda D, p: D.InverseGamma(p["concentration"], p["rate"]),
                     {"concentration": np.array([0.8, 1.5, 3.5]), "rate": _pos(3)}, "all"),
    "NegativeBinomial": (lambda D, p: D.NegativeBinomial(p["total_count"], logits=p["logits"]),
                         {"total_count": _pos(3, low=1.0, high=4.0), "logits": _real(3) * 0.5},
                         "all"),
    "MixtureSameFamily": (
        lambda D, p: D.MixtureSameFamily(D.Categorical(logits=p["logits"]),
                                         D.Normal(p["loc"], p["scale"])),
        {"logits": _real(2, 3), "loc": _real(2, 3), "scale": _pos(2, 3)}, "all"),
    "MixtureSameFamily(MVN)": (
        lambda D, p: D.MixtureSameFamily(
            D.Categorical(logits=p["logits"]),
            D.Independent(D.Normal(p["loc"], p["scale"]), 1)),
        {"logits": _real(3), "loc": _real(3, 2), "scale": _pos(3, 2)}, "all"),
}

# KL pairs: name -> (build_p, build_q, params)
KL_CASES = {
    "Normal": (lambda D, p: D.Normal(p["a"], p["b"]), lambda D, p: D.Normal(p["c"], p["d"]),
               {"a": _real(3), "b": _pos(3), "c": _real(3), "d": _pos(3)}),
    "Bernoulli": (lambda D, p: D.Bernoulli(probs=p["a"]), lambda D, p: D.Bernoulli(p["b"]),
                  {"a": _rng.uniform(0.1, 0.9, 3), "b": _rng.uniform(0.1, 0.9, 3)}),
    "Categorical": (lambda D, p: D.Categorical(probs=p["a"]),
                    lambda D, p: D.Categorical(logits=p["b"]),
                    {"a": _simplex(2, 4), "b": _real(2, 4)}),
    "OneHotCategorical": (lambda D, p: D.OneHotCategorical(probs=p["a"]),
                          lambda D, p: D.OneHotCategorical(probs=p["b"]),
                          {"a": _simplex(4), "b": _simplex(4)}),
    "Beta": (lambda D, p: D.Beta(p["a"], p["b"]), lambda D, p: D.Beta(p["c"], p["d"]),
             {"a": _pos(3), "b": _pos(3), "c": _pos(3), "d": _pos(3)}),
    "Gamma": (lambda D, p: D.Gamma(p["a"], p["b"]), lambda D, p: D.Gamma(p["c"], p["d"]),
              {"a": _pos(3), "b": _pos(3), "c": _pos(3), "d": _pos(3)}),
    "Dirichlet": (lambda D, p: D.Dirichlet(p["a"]), lambda D, p: D.Dirichlet(p["b"]),
                  {"a": _pos(2, 3), "b": _pos(2, 3)}),
    "Exponential": (lambda D, p: D.Exponential(p["a"]), lambda D, p: D.Exponential(p["b"]),
                    {"a": _pos(3), "b": _pos(3)}),
    "Laplace": (lambda D, p: D.Laplace(p["a"], p["b"]), lambda D, p: D.Laplace(p["c"], p["d"]),
                {"a": _real(3), "b": _pos(3), "c": _real(3), "d": _pos(3)}),
    "Uniform": (lambda D, p: D.Uniform(p["a"], p["b"]), lambda D, p: D.Uniform(p["c"], p["d"]),
                {"a": np.array([0.0, 0.5, -1.0]), "b": np.array([1.0, 2.0, 1.0]),
                 "c": np.array([-1.0, 0.0, 0.0]), "d": np.array([2.0, 3.0, 2.0])}),
    "MultivariateNormal": (
        lambda D, p: D.MultivariateNormal(p["a"], scale_tril=p["b"]),
        lambda D, p: D.MultivariateNormal(p["c"], covariance_matrix=p["d"]),
        {"a": _real(2, 3), "b": _tril(3), "c": _real(3), "d": _spd(3)}),
    "Independent": (lambda D, p: D.Independent(D.Normal(p["a"], p["b"]), 1),
                    lambda D, p: D.Independent(D.Normal(p["c"], p["d"]), 1),
                    {"a": _real(2, 3), "b": _pos(2, 3), "c": _real(2, 3), "d": _pos(2, 3)}),
    "Poisson": (lambda D, p: D.Poisson(p["a"]), lambda D, p: D.Poisson(p["b"]),
                {"a": _pos(3), "b": _pos(3)}),
    "Geometric": (lambda D, p: D.Geometric(p["a"]), lambda D, p: D.Geometric(p["b"]),
                  {"a": _rng.uniform(0.1, 0.9, 3), "b": _rng.uniform(0.1, 0.9, 3)}),
    "Binomial": (lambda D, p: D.Binomial(6, p["a"]), lambda D, p: D.Binomial(6, p["b"]),
                 {"a": _rng.uniform(0.1, 0.9, 3), "b": _rng.uniform(0.1, 0.9, 3)}),
    "Gumbel": (lambda D, p: D.Gumbel(p["a"], p["b"]), lambda D, p: D.Gumbel(p["c"], p["d"]),
               {"a": _real(3), "b": _pos(3), "c": _real(3), "d": _pos(3)}),
    "Cauchy": (lambda D, p: D.Cauchy(p["a"], p["b"]), lambda D, p: D.Cauchy(p["c"], p["d"]),
               {"a": _real(3), "b": _pos(3), "c": _real(3), "d": _pos(3)}),
    "LogNormal": (lambda D, p: D.LogNormal(p["a"], p["b"]),
                  lambda D, p: D.LogNormal(p["c"], p["d"]),
                  {"a": _real(3), "b": _pos(3), "c": _real(3), "d": _pos(3)}),
    "Exponential-Gamma": (lambda D, p: D.Exponential(p["a"]),
                          lambda D, p: D.Gamma(p["b"], p["c"]),
                          {"a": _pos(3), "b": _pos(3), "c": _pos(3)}),
}
