"""Random sampling: reproducibility, generator state, and statistical checks."""

import numpy as np
import pytest

import ember


def test_same_seed_same_numbers():
    ember.manual_seed(123)
    a = [ember.rand(4), ember.randn(3), ember.randint(0, 10, (5,)), ember.randperm(6)]
    ember.manual_seed(123)
    b = [ember.rand(4), ember.randn(3), ember.randint(0, 10, (5,)), ember.randperm(6)]
    for x, y in zip(a, b):
        assert np.array_equal(x.numpy(), y.numpy())
    assert not np.array_equal(ember.rand(4).numpy(), a[0].numpy())


def test_generator_state_roundtrip():
    g = ember.Generator().manual_seed(7)
    assert g.initial_seed() == 7
    ember.rand(3, generator=g)
    state = g.get_state()
    assert state.dtype == ember.uint8
    x = ember.randn(5, generator=g)
    g.set_state(state)
    assert np.array_equal(ember.randn(5, generator=g).numpy(), x.numpy())
    s = ember.get_rng_state()
    y = ember.rand(2)
    ember.set_rng_state(s)
    assert np.array_equal(ember.rand(2).numpy(), y.numpy())


def test_separate_generators_independent_of_default():
    g1 = ember.Generator().manual_seed(1)
    g2 = ember.Generator().manual_seed(1)
    ember.rand(10)
    assert np.array_equal(ember.rand(3, generator=g1).numpy(),
                          ember.rand(3, generator=g2).numpy())


def test_uniform_and_normal_stats():
    u = ember.rand(20000)
    assert u.dtype == ember.float32 and 0 <= u.min().item() and u.max().item() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    n = ember.randn(20000, dtype=ember.float64)
    assert n.dtype == ember.float64
    assert abs(n.mean().item()) < 0.03 and abs(n.std().item() - 1) < 0.03
    c = ember.randn(5000, dtype=ember.complex64)
    assert abs(c.abs().pow(2).mean().item() - 1) < 0.1


def test_randint_randperm():
    r = ember.randint(3, 7, (10000,))
    assert r.dtype == ember.int64 and set(np.unique(r.numpy())) == {3, 4, 5, 6}
    assert ember.randint(5, (2, 3)).shape == (2, 3)
    assert ember.randint(0, 5, (3,), dtype=ember.int32).dtype == ember.int32
    p = ember.randperm(50)
    assert sorted(p.tolist()) == list(range(50))
    with pytest.raises(RuntimeError):
        ember.randint(5, 5, (2,))


def test_normal_variants():
    x = ember.normal(2.0, 3.0, size=(20000,))
    assert abs(x.mean().item() - 2) < 0.1 and abs(x.std().item() - 3) < 0.1
    m = ember.tensor([0.0, 100.0])
    y = ember.normal(m, 0.01)
    assert y.shape == (2,) and abs(y[1].item() - 100) < 1
    z = ember.normal(m, ember.tensor([1.0, 2.0]))
    assert z.shape == (2,)
    with pytest.raises(RuntimeError):
        ember.normal(0.0, -1.0, size=(2,))


def test_bernoulli_multinomial():
    p = ember.full((20000,), 0.3)
    b = ember.bernoulli(p)
    assert set(np.unique(b.numpy())) <= {0.0, 1.0} and abs(b.mean().item() - 0.3) < 0.02
    w = ember.tensor([0.1, 0.0, 0.9])
    s = ember.multinomial(w, 5000, replacement=True)
    counts = np.bincount(s.numpy(), minlength=3) / 5000
    assert counts[1] == 0 and abs(counts[2] - 0.9) < 0.03
    s2 = ember.multinomial(ember.ones(2, 6), 6)
    assert s2.shape == (2, 6) and all(sorted(r) == list(range(6)) for r in s2.tolist())
    with pytest.raises(RuntimeError):
        ember.multinomial(w, 3)  # only two non-zero categories


def test_inplace_fillers():
    t = ember.empty(20000, dtype=ember.float64)
    t.uniform_(-2, 2)
    assert -2 <= t.min().item() and t.max().item() < 2 and abs(t.mean().item()) < 0.05
    t.normal_(5, 2)
    assert abs(t.mean().item() - 5) < 0.1 and abs(t.std().item() - 2) < 0.1
    t.exponential_(2.0)
    assert t.min().item() >= 0 and abs(t.mean().item() - 0.5) < 0.03
    t.bernoulli_(0.25)
    assert abs(t.mean().item() - 0.25) < 0.02
    i = ember.empty(1000, dtype=ember.int64)
    i.random_(0, 3)
    assert set(np.unique(i.numpy())) == {0, 1, 2}
    v = t._version
    t.uniform_()
    assert t._version == v + 1
    g = ember.Generator().manual_seed(3)
    a = ember.empty(4).normal_(generator=g)
    g.manual_seed(3)
    assert np.array_equal(ember.empty(4).normal_(generator=g).numpy(), a.numpy())


def test_like_variants():
    x = ember.zeros(2, 3, dtype=ember.float64)
    assert ember.rand_like(x).dtype == ember.float64 and ember.randn_like(x).shape == (2, 3)
    r = ember.randint_like(x, 10)
    assert r.dtype == ember.float64 and r.max().item() < 10


def test_fill_on_graph_tensor_cuts_gradient():
    x = ember.ones(3, requires_grad=True)
    y = x * 2
    y.uniform_()
    (y * 1).sum().backward()
    assert x.grad is None or float(x.grad.abs().sum()) == 0
    with pytest.raises(RuntimeError, match="leaf Variable"):
        ember.ones(2, requires_grad=True).normal_()
    w = ember.ones(2, requires_grad=True)
    with ember.no_grad():
        w.normal_()
    assert w.requires_grad and w.is_leaf


def test_random_bounds_forms():
    t = ember.empty(2000, dtype=ember.int64)
    assert set(np.unique(t.random_(4).numpy())) == {0, 1, 2, 3}
    assert set(np.unique(t.random_(5, 7).numpy())) == {5, 6}
    assert set(np.unique(t.random_(to=2).numpy())) == {0, 1}
    f = ember.empty(1000).random_()
    assert f.min().item() >= 0 and f.max().item() <= 2 ** 24
    with pytest.raises(RuntimeError):
        t.random_(3, 3)


def test_other_distributions():
    t = ember.empty(20000, dtype=ember.float64)
    t.geometric_(0.25)
    assert t.min().item() >= 1 and abs(t.mean().item() - 4) < 0.15
    t.log_normal_(0.0, 0.25)
    assert abs(t.log().mean().item()) < 0.02
    t.cauchy_(1.0, 0.5)
    assert abs(t.median().item() - 1.0) < 0.05
    p = ember.poisson(ember.full((20000,), 3.0))
    assert abs(p.mean().item() - 3) < 0.1
