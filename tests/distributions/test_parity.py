"""Distributions against PyTorch on the same float64 parameters: log_prob, entropy, cdf,
icdf, moments, KL divergences, their gradients with respect to the parameters, and the
batch/event/sample shapes."""

from __future__ import annotations

import numpy as np
import pytest

import ember

from .cases import CASES, KL_CASES

torch = pytest.importorskip("torch")

QUANTITIES = ("log_prob", "entropy", "mean", "variance", "stddev", "mode", "cdf", "icdf")


def _params(lib, arrays):
    return {k: lib.tensor(v, dtype=lib.float64, requires_grad=True) for k, v in arrays.items()}


def _values(name):
    """Points in the support (drawn by torch) and probabilities for icdf."""
    build, arrays, _ = CASES[name]
    torch.manual_seed(0)
    with torch.no_grad():
        d = build(torch.distributions, _params(torch, arrays))
        x = d.sample((4,)).numpy()
    u = np.random.default_rng(0).uniform(0.05, 0.95, (4,) + tuple(d.batch_shape))
    return x, u


def _evaluate(lib, name, quantity):
    """(value, {param: grad}) for one quantity, or None where the library raises."""
    build, arrays, _ = CASES[name]
    params = _params(lib, arrays)
    d = build(lib.distributions, params)
    x, u = _values(name)
    try:
        if quantity in ("log_prob", "cdf"):
            out = getattr(d, quantity)(lib.tensor(x))
        elif quantity == "icdf":
            out = d.icdf(lib.tensor(u))
        elif quantity == "entropy":
            out = d.entropy()
        else:
            out = getattr(d, quantity)
    except NotImplementedError:
        return None
    value = out.detach().numpy().copy()
    grads = {}
    if out.requires_grad:
        finite = np.isfinite(value)
        weights = np.where(finite, np.linspace(0.5, 1.5, value.size).reshape(value.shape), 0.0)
        masked = lib.where(lib.tensor(finite), out, lib.zeros_like(out))
        try:
            (masked * lib.tensor(weights)).sum().backward()
        except (NotImplementedError, RuntimeError):
            return value, None
        grads = {k: (p.grad.numpy() if p.grad is not None else np.zeros_like(arrays[k]))
                 for k, p in params.items()}
    return value, grads


@pytest.mark.parametrize("quantity", QUANTITIES)
@pytest.mark.parametrize("name", sorted(CASES))
def test_values_and_grads(name, quantity):
    expected = _evaluate(torch, name, quantity)
    if expected is None:
        return  # PyTorch has no such quantity for this distribution either
    got = _evaluate(ember, name, quantity)
    assert got is not None, f"{name}.{quantity} is missing in ember"
    # PyTorch's Multinomial.entropy takes lgamma of an int64 tensor, which it computes in
    # float32; ember keeps float64
    rtol = 1e-7 if (name, quantity) == ("Multinomial", "entropy") else 1e-9
    np.testing.assert_allclose(got[0], expected[0], rtol=rtol, atol=1e-10, equal_nan=True,
                               err_msg=f"{name}.{quantity}")
    if expected[1] is None:
        return  # no derivative in PyTorch (e.g. gammainc's shape parameter)
    for k, g in expected[1].items():
        np.testing.assert_allclose(got[1][k], g, rtol=1e-7, atol=1e-9,
                                   err_msg=f"d {name}.{quantity} / d {k}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_shapes(name):
    build, arrays, _ = CASES[name]
    shapes = {}
    for lib in (torch, ember):
        d = build(lib.distributions, _params(lib, arrays))
        s = d.sample((5, 2))
        e = d.expand((4,) + tuple(d.batch_shape))
        x = lib.tensor(_values(name)[0][:1])
        shapes[lib] = (tuple(d.batch_shape), tuple(d.event_shape), tuple(s.shape),
                       tuple(e.batch_shape), tuple(e.sample().shape),
                       tuple(e.log_prob(x).shape), d.has_rsample, str(s.dtype)[6:])
    assert shapes[ember] == shapes[torch]


@pytest.mark.parametrize("name", sorted(KL_CASES))
def test_kl_divergence(name):
    build_p, build_q, arrays = KL_CASES[name]
    out = {}
    for lib in (torch, ember):
        params = _params(lib, arrays)
        kl = lib.distributions.kl_divergence(build_p(lib.distributions, params),
                                             build_q(lib.distributions, params))
        (kl * lib.linspace(0.5, 1.5, kl.numel(), dtype=lib.float64).reshape(kl.shape)
         ).sum().backward()
        out[lib] = (kl.detach().numpy(),
                    {k: p.grad.numpy() if p.grad is not None else 0 for k, p in params.items()})
    np.testing.assert_allclose(out[ember][0], out[torch][0], rtol=1e-9, atol=1e-10)
    for k in arrays:
        np.testing.assert_allclose(out[ember][1][k], out[torch][1][k], rtol=1e-7, atol=1e-9,
                                   err_msg=f"d KL / d {k}")


def test_kl_not_implemented():
    p = ember.distributions.Normal(0.0, 1.0)
    q = ember.distributions.Categorical(logits=ember.zeros(3))
    with pytest.raises(NotImplementedError, match="No KL"):
        ember.distributions.kl_divergence(p, q)
    with pytest.raises(NotImplementedError, match="different exponential families"):
        ember.distributions.kl_divergence(p, ember.distributions.Poisson(1.0))


def test_register_kl_custom_pair():
    D = ember.distributions

    class MyNormal(D.Normal):
        pass

    @D.register_kl(MyNormal, D.Normal)
    def _kl(p, q):
        return ember.zeros(p.batch_shape)

    assert float(D.kl_divergence(MyNormal(0.0, 1.0), D.Normal(1.0, 1.0))) == 0.0
    assert float(D.kl_divergence(D.Normal(0.0, 1.0), D.Normal(1.0, 1.0))) == 0.5


@pytest.mark.parametrize("name", ["Bernoulli(probs)", "Categorical(logits)", "OneHotCategorical",
                                  "Binomial(logits)"])
@pytest.mark.parametrize("expand", [True, False])
def test_enumerate_support(name, expand):
    build, arrays, _ = CASES[name]
    out = []
    for lib in (torch, ember):
        d = build(lib.distributions, _params(lib, arrays))
        assert d.has_enumerate_support
        out.append(d.enumerate_support(expand=expand).numpy())
    np.testing.assert_array_equal(out[1], out[0])
    assert out[1].dtype == out[0].dtype


@pytest.mark.parametrize("name", ["Normal", "Bernoulli(probs)", "Beta", "Gamma", "Dirichlet",
                                  "Exponential"])
def test_exponential_family_bregman_entropy_and_kl(name):
    """The generic Bregman-divergence entropy and KL agree with the closed forms."""
    D = ember.distributions
    build, arrays, _ = CASES[name]
    p = build(D, _params(ember, arrays))
    q = build(D, {k: ember.tensor(np.flip(v).copy(), dtype=ember.float64)
                  for k, v in arrays.items()})
    assert isinstance(p, D.ExponentialFamily)
    if name in ("Beta", "Dirichlet"):  # no carrier measure given, as in PyTorch
        with pytest.raises(NotImplementedError):
            D.ExponentialFamily.entropy(p)
    else:
        np.testing.assert_allclose(D.ExponentialFamily.entropy(p).detach().numpy(),
                                   p.entropy().detach().numpy(), rtol=1e-10, atol=1e-12)
    from ember.distributions.kl import _kl_expfamily_expfamily
    np.testing.assert_allclose(_kl_expfamily_expfamily(p, q).detach().numpy(),
                               D.kl_divergence(p, q).detach().numpy(), rtol=1e-8, atol=1e-10)
