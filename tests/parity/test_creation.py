"""Parity of tensor creation (factories, dtype inference, memory sharing) with PyTorch."""

import numpy as np
import pytest

from .helpers import assert_close

torch = pytest.importorskip("torch")
import ember  # noqa: E402


def same(fn):
    t, e = fn(torch), fn(ember)
    assert_close(e, t, 1e-6, 1e-6)
    return e


@pytest.mark.parametrize("data", [1, 2.5, True, [1, 2], [1.0, 2], [[1, 2], [3, 4]], [True, False],
                                  [], [[]], 1 + 2j, [1, 2.5j], np.float32(3.0), (1, 2)])
def test_tensor_dtype_inference(data):
    same(lambda m: m.tensor(data))


def test_tensor_of_tensors_and_arrays():
    same(lambda m: m.tensor([m.tensor(1.0), m.tensor(2.0)]))
    same(lambda m: m.tensor(np.arange(3, dtype=np.int32)))
    same(lambda m: m.tensor([1, 2], dtype=m.float64))
    same(lambda m: m.tensor(np.zeros((2, 0))))


def test_default_dtype_respected():
    ember.set_default_dtype(ember.float64)
    try:
        assert ember.tensor([1.0]).dtype == ember.float64
        assert ember.zeros(2).dtype == ember.float64
        assert ember.arange(0.0, 1.0, 0.5).dtype == ember.float64
    finally:
        ember.set_default_dtype(ember.float32)


def test_tensor_copies_and_as_tensor_shares():
    a = np.zeros(3)
    t = ember.tensor(a)
    a[0] = 1
    assert t[0].item() == 0
    s = ember.as_tensor(a)
    a[1] = 2
    assert s[1].item() == 2
    f = ember.from_numpy(a)
    f[2] = 5
    assert a[2] == 5
    assert f.numpy() is a or np.shares_memory(f.numpy(), a)
    x = ember.ones(2)
    assert ember.as_tensor(x) is x
    with pytest.raises(TypeError):
        ember.from_numpy([1, 2])


FACTORIES = [
    lambda m: m.zeros(2, 3), lambda m: m.zeros((2, 3), dtype=m.int32), lambda m: m.ones(0),
    lambda m: m.ones([2]), lambda m: m.full((2, 2), 3), lambda m: m.full((2,), 1.5),
    lambda m: m.full((2,), True), lambda m: m.full((2,), 2, dtype=m.float64),
    lambda m: m.zeros_like(m.ones(2, dtype=m.int64)), lambda m: m.ones_like(m.zeros(3)),
    lambda m: m.full_like(m.zeros(2), 7), lambda m: m.zeros(()),
    lambda m: m.empty(2, 3).shape, lambda m: m.empty_like(m.zeros(2, dtype=m.int8)).dtype,
    lambda m: m.arange(5), lambda m: m.arange(1, 4), lambda m: m.arange(0, 1, 0.1),
    lambda m: m.arange(5.0), lambda m: m.arange(10, 0, -3), lambda m: m.arange(0, 5, dtype=m.float64),
    lambda m: m.arange(1, 2.5, 0.5), lambda m: m.arange(0),
    lambda m: m.linspace(0, 1, 5), lambda m: m.linspace(-1, 1, 1), lambda m: m.linspace(0, 1, 0),
    lambda m: m.linspace(0, 10, 4, dtype=m.int64), lambda m: m.linspace(2, 3, 7, dtype=m.float64),
    lambda m: m.logspace(0, 2, 3), lambda m: m.logspace(0, 3, 4, base=2),
    lambda m: m.eye(3), lambda m: m.eye(2, 4), lambda m: m.eye(3, dtype=m.int64),
    lambda m: m.zeros(2, requires_grad=True).detach(),
]


@pytest.mark.parametrize("i", range(len(FACTORIES)))
def test_factories(i):
    t, e = FACTORIES[i](torch), FACTORIES[i](ember)
    if isinstance(t, torch.Size):
        assert tuple(e) == tuple(t)
    elif isinstance(t, torch.dtype):
        assert str(e).split(".")[-1] == str(t).split(".")[-1]
    else:
        assert_close(e, t, 1e-6, 1e-6)


def test_requires_grad_factories():
    assert ember.zeros(2, requires_grad=True).requires_grad
    assert ember.tensor([1.0], requires_grad=True).is_leaf
    with pytest.raises(RuntimeError, match="floating point"):
        ember.tensor([1], requires_grad=True)


def test_creation_errors():
    with pytest.raises(RuntimeError):
        ember.arange(0, 1, 0)
    with pytest.raises(RuntimeError):
        ember.arange(0, -1, 1)
    with pytest.raises(TypeError):
        ember.zeros(2.5)


def test_size_keyword_and_out():
    assert ember.zeros(size=(2, 3)).shape == (2, 3)
    assert ember.ones(size=[4]).shape == (4,)
    assert ember.empty(size=(1, 2)).shape == (1, 2)
    assert ember.rand(size=(2,)).shape == (2,) and ember.randn(size=(3, 1)).shape == (3, 1)
    o = ember.empty(5, dtype=ember.float64)
    r = ember.zeros(2, 2, out=o)
    assert r is o and o.shape == (2, 2) and o.dtype == ember.float64 and o.sum().item() == 0
    assert ember.ones(3, out=o) is o and o.tolist() == [1.0, 1.0, 1.0]
    assert ember.rand(4, out=o) is o and o.shape == (4,)
    assert ember.randn(2, out=o) is o and o.shape == (2,)
    with pytest.raises(TypeError):
        ember.zeros(2, bogus=1)
