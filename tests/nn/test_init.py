"""nn.init: each initialiser's distribution, and every layer's default init, match PyTorch's
(moments and ranges checked statistically; the random streams differ)."""

import math

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.nn import init


def _arr(t):
    return t.detach().numpy().astype(np.float64)


def test_calculate_gain():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75 and init.calculate_gain("conv2d") == 1
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("nope")


def test_uniform_normal_constant():
    t = ember.empty(200, 300)
    a = _arr(init.uniform_(t, -2, 3))
    assert a.min() >= -2 and a.max() < 3 and abs(a.mean() - 0.5) < 0.03
    a = _arr(init.normal_(t, 1.0, 2.0))
    assert abs(a.mean() - 1) < 0.03 and abs(a.std() - 2) < 0.03
    a = _arr(init.trunc_normal_(t, 0.0, 1.0, -1.0, 1.5))
    assert a.min() >= -1 and a.max() <= 1.5
    # mean of N(0,1) truncated to [-1, 1.5]: (phi(-1) - phi(1.5)) / (Phi(1.5) - Phi(-1))
    phi = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    assert abs(a.mean() - (phi(-1) - phi(1.5)) / (cdf(1.5) - cdf(-1))) < 0.01
    assert np.all(_arr(init.constant_(t, 0.3)) == np.float32(0.3))
    assert np.all(_arr(init.ones_(t)) == 1) and np.all(_arr(init.zeros_(t)) == 0)


def test_init_does_not_record_autograd():
    p = nn.Parameter(ember.empty(3, 3))
    init.normal_(p)
    init.kaiming_uniform_(p)
    init.orthogonal_(p)
    assert p.is_leaf and p.requires_grad and p.grad_fn is None


def test_eye_dirac():
    np.testing.assert_array_equal(_arr(init.eye_(ember.empty(3, 4))), np.eye(3, 4))
    w = init.dirac_(ember.empty(4, 2, 3, 3), groups=2)
    a = _arr(w)
    assert a.sum() == 4 and a[0, 0, 1, 1] == 1 and a[1, 1, 1, 1] == 1 and a[2, 0, 1, 1] == 1
    with pytest.raises(ValueError, match="3, 4, or 5"):
        init.dirac_(ember.empty(3, 3))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_xavier_bounds_and_std(mode):
    t = ember.empty(256, 128, 3)
    fan = 128 * 3 if mode == "fan_in" else 256 * 3
    a = _arr(init.kaiming_uniform_(t, a=0, mode=mode, nonlinearity="relu"))
    bound = math.sqrt(2) * math.sqrt(3 / fan)
    assert a.max() <= bound and a.min() >= -bound and a.max() > 0.99 * bound
    a = _arr(init.kaiming_normal_(t, mode=mode, nonlinearity="relu"))
    assert abs(a.std() / (math.sqrt(2) / math.sqrt(fan)) - 1) < 0.02
    a = _arr(init.xavier_uniform_(t, gain=2.0))
    bound = 2.0 * math.sqrt(6 / (128 * 3 + 256 * 3))
    assert a.max() <= bound and a.max() > 0.99 * bound
    a = _arr(init.xavier_normal_(t))
    assert abs(a.std() / math.sqrt(2 / (128 * 3 + 256 * 3)) - 1) < 0.02


def test_orthogonal_and_sparse():
    q = _arr(init.orthogonal_(ember.empty(6, 10), gain=2.0))
    np.testing.assert_allclose(q @ q.T, 4 * np.eye(6), atol=1e-5)
    q = _arr(init.orthogonal_(ember.empty(10, 3, 2)).reshape(10, 6))
    np.testing.assert_allclose(q.T @ q, np.eye(6), atol=1e-5)
    s = _arr(init.sparse_(ember.empty(10, 50), sparsity=0.3, std=0.1))
    assert np.all((s == 0).sum(0) >= 3)


def test_generator_makes_init_reproducible():
    g1, g2 = ember.Generator().manual_seed(5), ember.Generator().manual_seed(5)
    a = init.normal_(ember.empty(4), generator=g1)
    b = init.normal_(ember.empty(4), generator=g2)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def _ks_uniform(a, lo, hi):
    """Kolmogorov-Smirnov distance between the sample and U(lo, hi)."""
    x = np.sort(a.ravel())
    cdf = (x - lo) / (hi - lo)
    n = len(x)
    return max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))


def test_layer_default_inits_match_pytorch_distributions():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    # (module, parameter, bound of PyTorch's U(-bound, bound))
    cases = [(lambda m: m.nn.Linear(300, 200), "weight", 1 / math.sqrt(300)),
             (lambda m: m.nn.Linear(300, 200), "bias", 1 / math.sqrt(300)),
             (lambda m: m.nn.Bilinear(20, 30, 400), "weight", 1 / math.sqrt(20)),
             (lambda m: m.nn.Bilinear(20, 30, 400), "bias", 1 / math.sqrt(20))]
    for make, name, bound in cases:
        for mod in (ember, torch):
            a = getattr(make(mod), name).detach().numpy().astype(np.float64)
            assert np.abs(a).max() <= bound * (1 + 1e-6), (mod.__name__, name)
            # 99.9% critical value of the Kolmogorov-Smirnov statistic is about 1.95/sqrt(n)
            assert _ks_uniform(a, -bound, bound) < 1.95 / math.sqrt(a.size), (mod.__name__, name)
    for make in (lambda m: m.nn.BatchNorm1d(5), lambda m: m.nn.LayerNorm(5),
                 lambda m: m.nn.GroupNorm(1, 5), lambda m: m.nn.PReLU(5),
                 lambda m: m.nn.RMSNorm(5), lambda m: m.nn.InstanceNorm1d(5, affine=True)):
        em, tm = make(ember), make(torch)
        for (n, v), (n2, v2) in zip(em.state_dict().items(), tm.state_dict().items()):
            assert n == n2
            np.testing.assert_array_equal(v.numpy(), v2.numpy())
