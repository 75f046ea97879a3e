"""Seeding, generators, and saving/restoring random state."""

import pytest

import ember

torch = pytest.importorskip("torch")


def _draw(gen=None):
    return (ember.randn(4, generator=gen).tolist(), ember.rand(3, generator=gen).tolist(),
            ember.randint(0, 100, (3,), generator=gen).tolist(),
            ember.randperm(6, generator=gen).tolist())


def test_manual_seed_reproducible():
    g = ember.manual_seed(123)
    assert isinstance(g, ember.Generator) and g is ember.default_generator
    a = _draw()
    ember.manual_seed(123)
    assert _draw() == a
    assert ember.initial_seed() == 123
    ember.manual_seed(124)
    assert _draw() != a


def test_in_place_fillers_follow_seed():
    ember.manual_seed(5)
    a = ember.empty(4).normal_().tolist() + ember.empty(4).uniform_().tolist()
    ember.manual_seed(5)
    b = ember.empty(4).normal_().tolist() + ember.empty(4).uniform_().tolist()
    assert a == b


def test_seed_returns_new_seed():
    s = ember.seed()
    assert isinstance(s, int) and ember.initial_seed() == s
    assert ember.random.initial_seed() == s


def test_generator_object():
    g = ember.Generator()
    assert g.device == ember.device("cpu") and g.device == torch.Generator().device.type
    assert g.manual_seed(7) is g and g.initial_seed() == 7
    a = _draw(g)
    g.manual_seed(7)
    assert _draw(g) == a
    ember.manual_seed(0)
    before = ember.get_rng_state()
    ember.randn(3, generator=g)
    assert ember.get_rng_state().tolist() == before.tolist()  # default untouched


def test_get_set_state():
    g = ember.Generator().manual_seed(3)
    st = g.get_state()
    assert isinstance(st, ember.Tensor) and st.dtype == ember.uint8
    a = _draw(g)
    assert g.set_state(st) is g
    assert _draw(g) == a
    ember.manual_seed(11)
    s = ember.get_rng_state()
    x = ember.randn(5).tolist()
    ember.set_rng_state(s)
    assert ember.randn(5).tolist() == x
    ember.random.set_rng_state(s)
    assert ember.random.get_rng_state().tolist() == s.tolist()
    assert ember.randn(5).tolist() == x
    with pytest.raises((TypeError, RuntimeError)):
        ember.set_rng_state([1, 2, 3])


def test_fork_rng_restores():
    ember.random.manual_seed(9)
    with ember.random.fork_rng():
        inside = ember.randn(3).tolist()
    after = ember.randn(3).tolist()
    assert inside == after
    with ember.random.fork_rng(enabled=False):
        ember.randn(3)
    assert ember.randn(3).tolist() != after


def test_negative_and_large_seeds():
    ember.manual_seed(-1)
    ember.manual_seed(2 ** 63)
    a = ember.randn(2).tolist()
    ember.manual_seed(2 ** 63)
    assert ember.randn(2).tolist() == a
