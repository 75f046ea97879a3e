"""Argument and sample validation raise ValueError where PyTorch's do, with the same
messages (``torch.`` spelled ``ember.`` nowhere: the messages name no module)."""

from __future__ import annotations

import re

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _validation_on():
    """Validation on in both frameworks for these tests: other test files (or libraries they
    import) may switch PyTorch's process-wide default off."""
    saved = (torch.distributions.Distribution._validate_args,
             ember.distributions.Distribution._validate_args)
    torch.distributions.Distribution.set_default_validate_args(True)
    ember.distributions.Distribution.set_default_validate_args(True)
    yield
    torch.distributions.Distribution.set_default_validate_args(saved[0])
    ember.distributions.Distribution.set_default_validate_args(saved[1])

BAD = {
    "Normal negative scale": lambda L, D: D.Normal(L.tensor([0.0]), L.tensor([-1.0])),
    "Normal nan loc": lambda L, D: D.Normal(L.tensor([float("nan")]), L.tensor([1.0])),
    "Bernoulli probs > 1": lambda L, D: D.Bernoulli(probs=L.tensor([1.5])),
    "Bernoulli both": lambda L, D: D.Bernoulli(probs=L.tensor([0.5]), logits=L.tensor([0.0])),
    "Bernoulli neither": lambda L, D: D.Bernoulli(),
    "Categorical 0-d": lambda L, D: D.Categorical(probs=L.tensor(1.0)),
    "Categorical negative": lambda L, D: D.Categorical(probs=L.tensor([0.5, -0.5])),
    "Gamma zero rate": lambda L, D: D.Gamma(L.tensor([1.0]), L.tensor([0.0])),
    "Beta negative": lambda L, D: D.Beta(L.tensor([-1.0]), L.tensor([1.0])),
    "Dirichlet 0-d": lambda L, D: D.Dirichlet(L.tensor(1.0)),
    "Poisson negative": lambda L, D: D.Poisson(L.tensor([-1.0])),
    "Geometric zero": lambda L, D: D.Geometric(probs=L.tensor([0.0, 0.5])),
    "Binomial non-integer count": lambda L, D: D.Binomial(L.tensor([2.5]), L.tensor([0.5])),
    "MVN 0-d loc": lambda L, D: D.MultivariateNormal(L.tensor(0.0),
                                                     covariance_matrix=L.eye(1)),
    "MVN two matrices": lambda L, D: D.MultivariateNormal(L.zeros(2), covariance_matrix=L.eye(2),
                                                          scale_tril=L.eye(2)),
    "MVN not PD": lambda L, D: D.MultivariateNormal(
        L.zeros(2), covariance_matrix=L.tensor([[1.0, 2.0], [2.0, 1.0]])),
    "MVN not lower": lambda L, D: D.MultivariateNormal(
        L.zeros(2), scale_tril=L.tensor([[1.0, 2.0], [0.0, 1.0]])),
    "Independent too many dims": lambda L, D: D.Independent(D.Normal(L.zeros(3), 1.0), 2),
    "Normal log_prob wrong shape": lambda L, D: D.Normal(L.zeros(3), 1.0).log_prob(L.zeros(2)),
    "Poisson log_prob outside support": lambda L, D: D.Poisson(L.ones(2)).log_prob(
        L.tensor([0.5, 1.0])),
    "Categorical log_prob outside support": lambda L, D: D.Categorical(
        logits=L.zeros(3)).log_prob(L.tensor(3)),
    "Exponential log_prob negative": lambda L, D: D.Exponential(L.ones(1)).log_prob(
        L.tensor([-1.0])),
    "log_prob of a float": lambda L, D: D.Normal(0.0, 1.0).log_prob(0.5),
    "Mixture not Categorical": lambda L, D: D.MixtureSameFamily(D.Normal(L.zeros(2), 1.0),
                                                                D.Normal(L.zeros(2), 1.0)),
    "Mixture size mismatch": lambda L, D: D.MixtureSameFamily(
        D.Categorical(logits=L.zeros(3)), D.Normal(L.zeros(2), L.ones(2))),
    "Transformed bad transforms": lambda L, D: D.TransformedDistribution(
        D.Normal(0.0, 1.0), "exp"),
}


def _message(lib, fn):
    with pytest.raises(ValueError) as info:
        fn(lib, lib.distributions)
    # reprs of tensors and class paths differ between the libraries; compare the rest
    msg = str(info.value).split("\n")[0]
    return re.sub(r"torch\.|ember\.|tensor\(.*?\)|Size\(\[.*?\]\)|\[.*?\]", "", msg)


@pytest.mark.parametrize("case", sorted(BAD))
def test_invalid_raises_value_error(case):
    assert _message(ember, BAD[case]) == _message(torch, BAD[case])


def test_validate_args_false_and_default_switch():
    D = ember.distributions
    D.Normal(ember.tensor([0.0]), ember.tensor([-1.0]), validate_args=False)
    D.Poisson(ember.ones(2), validate_args=False).log_prob(ember.tensor([0.5, 1.0]))
    D.Distribution.set_default_validate_args(False)
    try:
        D.Normal(ember.tensor([0.0]), ember.tensor([-1.0]))
    finally:
        D.Distribution.set_default_validate_args(True)
    with pytest.raises(ValueError):
        D.Normal(ember.tensor([0.0]), ember.tensor([-1.0]))
    with pytest.raises(ValueError):
        D.Distribution.set_default_validate_args("yes")


def test_constraints_check_like_torch():
    cases = [("positive", [1.0, 0.0, -1.0]), ("unit_interval", [0.0, 0.5, 1.5]),
             ("nonnegative_integer", [0.0, 1.5, 2.0]), ("simplex", [[0.2, 0.8], [0.5, 0.6]]),
             ("real", [1.0, float("nan")]), ("boolean", [0.0, 1.0, 0.5]),
             ("lower_cholesky", [[[1.0, 0.0], [2.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]]]),
             ("positive_definite", [[[2.0, 1.0], [1.0, 2.0]], [[1.0, 2.0], [2.0, 1.0]]]),
             ("one_hot", [[0.0, 1.0], [1.0, 1.0]])]
    for name, value in cases:
        a = getattr(ember.distributions.constraints, name).check(ember.tensor(value))
        b = getattr(torch.distributions.constraints, name).check(torch.tensor(value))
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    a = ember.distributions.constraints.integer_interval(0, 3).check(ember.tensor([0, 3, 4]))
    np.testing.assert_array_equal(a.numpy(), [True, True, False])
    assert repr(ember.distributions.constraints.interval(0.0, 1.0)) == repr(
        torch.distributions.constraints.interval(0.0, 1.0))
