"""Sampling: moments over many draws match the distribution's mean and variance; draws repeat
under ``ember.manual_seed``; reparameterised gradients (including the implicit Gamma
gradient) are right."""

from __future__ import annotations

import numpy as np
import pytest

import ember

from .cases import CASES

D = ember.distributions
N = 20000

SKIP_MOMENTS = {"Cauchy", "StudentT", "HalfCauchy", "Pareto", "InverseGamma"}  # undefined or infinite moments for some parameters


def _dist(name):
    build, arrays, _ = CASES[name]
    return build(D, {k: ember.tensor(v, dtype=ember.float64) for k, v in arrays.items()})


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_moments(name):
    d = _dist(name)
    try:
        mean, var = d.mean.numpy(), d.variance.numpy()
    except NotImplementedError:
        pytest.skip(f"{name} has no closed-form moments (PyTorch neither)")
    if name in SKIP_MOMENTS:
        pytest.skip(f"{name}: heavy tails")
    if np.isnan(mean).any():
        pytest.skip(f"{name}: moments are NaN by definition (frequencies tested below)")
    ember.manual_seed(0)
    x = d.sample((N,)).numpy().astype(np.float64)
    assert x.shape == (N,) + tuple(d.batch_shape) + tuple(d.event_shape)
    tol = 5 * np.sqrt(var / N) + 1e-3
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), tol, err_msg=f"{name} mean")
    np.testing.assert_allclose(x.var(0), var, rtol=0.08, atol=2e-3, err_msg=f"{name} var")
    support = d.support
    assert bool(support.check(ember.tensor(x)).all()), f"{name}: samples outside support"


def test_mvn_sample_covariance():
    cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
    d = D.MultivariateNormal(ember.tensor([1.0, -1.0, 0.0], dtype=ember.float64),
                             covariance_matrix=ember.tensor(cov))
    ember.manual_seed(1)
    x = d.sample((N,)).numpy()
    np.testing.assert_allclose(np.cov(x.T), cov, atol=0.06)


@pytest.mark.parametrize("name", ["Normal", "Categorical(probs)", "Gamma", "Poisson",
                                  "Dirichlet", "Binomial(probs)", "Multinomial"])
def test_manual_seed_repeats(name):
    d = _dist(name)
    ember.manual_seed(7)
    a = d.sample((3,)).numpy()
    ember.manual_seed(7)
    b = d.sample((3,)).numpy()
    np.testing.assert_array_equal(a, b)


def test_categorical_frequencies():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]])
    d = D.Categorical(probs=ember.tensor(probs))
    ember.manual_seed(2)
    x = d.sample((N,)).numpy()
    assert x.dtype == np.int64 and x.shape == (N, 2)
    freq = np.stack([(x == k).mean(0) for k in range(4)], -1)
    np.testing.assert_allclose(freq, probs, atol=0.015)


_ALPHA = np.array([0.05, 0.3, 1.0, 2.5, 10.0, 100.0, 1000.0])
_X = np.array([1e-4, 0.2, 0.7, 3.0, 9.0, 105.0, 990.0])


def test_gamma_implicit_gradient_matches_torch():
    """PyTorch approximates d x / d alpha to about 1e-4; ember differentiates the CDF."""
    torch = pytest.importorskip("torch")
    from ember.distributions.gamma import _gamma_sample_grad
    expected = torch._standard_gamma_grad(torch.tensor(_ALPHA), torch.tensor(_X)).numpy()
    np.testing.assert_allclose(_gamma_sample_grad(_ALPHA, _X), expected, rtol=1e-4)


def test_gamma_implicit_gradient_exact():
    mp = pytest.importorskip("mpmath")
    from ember.distributions.gamma import _gamma_sample_grad
    mp.mp.dps = 30
    expected = []
    for a, x in zip(_ALPHA, _X):
        a, x = mp.mpf(a), mp.mpf(x)
        dcdf = mp.diff(lambda s: mp.gammainc(s, 0, x, regularized=True), a)
        expected.append(float(-dcdf * mp.gamma(a) / (x ** (a - 1) * mp.e ** (-x))))
    np.testing.assert_allclose(_gamma_sample_grad(_ALPHA, _X), expected, rtol=1e-7)


def test_rsample_gradients_are_unbiased():
    """d/dtheta E[f(x)] estimated through rsample matches the closed form."""
    ember.manual_seed(3)
    conc = ember.tensor([0.7, 3.0], dtype=ember.float64, requires_grad=True)
    rate = ember.tensor([2.0, 0.5], dtype=ember.float64, requires_grad=True)
    D.Gamma(conc, rate).rsample((N,)).mean(0).sum().backward()
    # E[x] = conc / rate
    np.testing.assert_allclose(conc.grad.numpy(), 1 / rate.detach().numpy(), rtol=0.05)
    np.testing.assert_allclose(rate.grad.numpy(),
                               -conc.detach().numpy() / rate.detach().numpy() ** 2, rtol=0.05)

    a = ember.tensor(2.0, dtype=ember.float64, requires_grad=True)
    b = ember.tensor(3.0, dtype=ember.float64, requires_grad=True)
    D.Beta(a, b).rsample((N,)).mean().backward()
    # E[x] = a / (a + b)
    np.testing.assert_allclose(a.grad.item(), 3.0 / 25.0, rtol=0.06)
    np.testing.assert_allclose(b.grad.item(), -2.0 / 25.0, rtol=0.06)

    loc = ember.tensor([0.5], dtype=ember.float64, requires_grad=True)
    scale = ember.tensor([1.5], dtype=ember.float64, requires_grad=True)
    (D.Normal(loc, scale).rsample((N,)) ** 2).mean().backward()
    # E[x^2] = loc^2 + scale^2
    np.testing.assert_allclose(loc.grad.numpy(), [1.0], rtol=0.06)
    np.testing.assert_allclose(scale.grad.numpy(), [3.0], rtol=0.06)


def test_no_rsample_for_discrete():
    with pytest.raises(NotImplementedError):
        D.Categorical(logits=ember.zeros(3)).rsample()
    with pytest.raises(NotImplementedError):
        D.Poisson(ember.ones(2)).rsample()
