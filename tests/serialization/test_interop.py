"""Zero-copy exchange: NumPy (numpy/from_numpy/as_tensor) and DLPack (torch, NumPy)."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

NAMES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
         "uint8", "bool", "complex64", "complex128"]


def test_numpy_from_numpy_as_tensor_share_memory():
    a = np.zeros(4, dtype=np.float32)
    t = ember.from_numpy(a)
    u = ember.as_tensor(a)
    a[0] = 1.0
    assert t[0].item() == 1.0 and u[0].item() == 1.0
    t[1] = 2.0
    assert a[1] == 2.0 and u.numpy()[1] == 2.0
    assert np.shares_memory(t.numpy(), a)
    e = ember.arange(3.0)
    e.numpy()[2] = 9.0
    assert e[2].item() == 9.0


@pytest.mark.parametrize("name", NAMES)
def test_torch_from_dlpack_of_ember_shares_memory(name):
    e = ember.arange(6).to(getattr(ember, name)).reshape(2, 3)
    t = torch.from_dlpack(e)
    assert t.dtype == getattr(torch, name) and t.shape == (2, 3)
    t[0, 1] = 0
    assert e[0, 1].item() == 0
    e[1, 2] = 1
    assert t[1, 2].item() == 1
    assert t.data_ptr() == e.data_ptr()


@pytest.mark.parametrize("name", NAMES)
def test_ember_from_dlpack_of_torch_shares_memory(name):
    t = torch.arange(6).to(getattr(torch, name)).reshape(2, 3)
    e = ember.from_dlpack(t)
    assert e.dtype is getattr(ember, name) and e.shape == (2, 3)
    e[0, 1] = 0
    assert t[0, 1].item() == 0
    t[1, 2] = 1
    assert e[1, 2].item() == 1


def test_dlpack_keeps_strides_both_ways():
    e = ember.arange(12.0).reshape(3, 4).t()
    t = torch.from_dlpack(e)
    assert t.stride() == e.stride() and torch.equal(t, torch.arange(12.0).reshape(3, 4).t())
    back = ember.from_dlpack(torch.arange(12.0).reshape(3, 4)[:, 1::2])
    assert back.stride() == (4, 2) and back.tolist() == [[1.0, 3.0], [5.0, 7.0], [9.0, 11.0]]


def test_from_dlpack_of_numpy_array_shares_memory():
    a = np.arange(5.0)
    e = ember.from_dlpack(a)
    e[0] = -1.0
    assert a[0] == -1.0
    back = np.from_dlpack(e)
    back[1] = -2.0
    assert e[1].item() == -2.0


def test_dlpack_memory_outlives_the_producer():
    t = torch.arange(1000.0)
    e = ember.from_dlpack(t)
    del t
    assert e.sum().item() == sum(range(1000))
    e2 = ember.arange(1000.0)
    t2 = torch.from_dlpack(e2)
    del e2
    assert t2.sum().item() == sum(range(1000))
