"""ReLU and cross-entropy through their C kernels (``ember/ops/_nn_c.py``, issue 25): values and
gradients against PyTorch in float32 and float64, sizes around the thresholds, NaN/inf
corners, the NumPy fallbacks, and the same bits at one and two threads."""

import numpy as np
import pytest
import torch

import ember
from ember.ops import _nn_c, elementwise as E

DTYPES = [np.float32, np.float64]


def _rand(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _relu_pair(a, g):
    x = ember.tensor(a, requires_grad=True)
    y = ember.relu(x)
    y.backward(ember.tensor(g))
    tx = torch.tensor(a, requires_grad=True)
    ty = torch.relu(tx)
    ty.backward(torch.tensor(g))
    return (y.detach().numpy(), x.grad.numpy()), (ty.detach().numpy(), tx.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [100, 4095, 4096, 65536, (1 << 18) - 1, (1 << 18) + 5])
@pytest.mark.parametrize("c_kernels", [True, False])
def test_relu_values_and_gradients_equal_pytorch(n, dtype, c_kernels, monkeypatch):
    if not c_kernels:
        monkeypatch.setattr(E, "_relu_c", {np.dtype(dtype): None})
    a, g = _rand(n, dtype, 0), _rand(n, dtype, 1)
    a[:4] = [np.nan, -0.0, np.inf, -np.inf]
    g[4:8] = [np.inf, np.nan, -np.inf, 1.0]  # an infinite gradient at clipped elements: 0
    a[4:8] = -1.0
    (y, gx), (ty, tgx) = _relu_pair(a, g)
    np.testing.assert_array_equal(y, ty)
    np.testing.assert_array_equal(gx, tgx)  # a NaN output passes its gradient, as PyTorch's
    assert y.dtype == dtype and gx.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_strided_inplace_and_double_backward(dtype):
    a = _rand((64, 130), dtype, 2)
    x = ember.tensor(a)[:, ::2]  # not contiguous: NumPy's path
    np.testing.assert_array_equal(ember.relu(x).numpy(), np.maximum(a[:, ::2], 0))
    xi = ember.tensor(a.copy())
    xi.relu_()
    np.testing.assert_array_equal(xi.numpy(), np.maximum(a, 0))
    # a recorded backward (create_graph): the same mask as the array path
    x = ember.tensor(a, requires_grad=True)
    (gx,) = ember.autograd.grad((ember.relu(x) ** 2).sum(), x, create_graph=True)
    gx.sum().backward()
    tx = torch.tensor(a, requires_grad=True)
    (tgx,) = torch.autograd.grad((torch.relu(tx) ** 2).sum(), tx, create_graph=True)
    tgx.sum().backward()
    np.testing.assert_allclose(gx.detach().numpy(), tgx.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_one_and_two_threads_same_bits(dtype, threads):
    a, g = _rand((1 << 18) + 3, dtype, 3), _rand((1 << 18) + 3, dtype, 4)
    out = []
    for n in (1, 2):
        threads(n)
        (y, gx), _ = _relu_pair(a, g)
        out.append((y, gx))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def _ce_pair(a, t, reduction, ignore_index, upstream=1.7):
    dt = a.dtype
    x = ember.tensor(a, requires_grad=True)
    loss = ember.nn.functional.cross_entropy(x, ember.tensor(t), reduction=reduction,
                                             ignore_index=ignore_index)
    loss.backward(ember.tensor(np.array(upstream, dt)))
    tx = torch.tensor(a, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tx, torch.tensor(t), reduction=reduction,
                                           ignore_index=ignore_index)
    tl.backward(torch.tensor(upstream, dtype=tl.dtype))
    return (loss, x.grad.numpy()), (tl, tx.grad.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(128, 10), (3, 1), (64, 1000), (7, 5)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_c_equals_pytorch(n, c, reduction, ignore_index, dtype):
    a = _rand((n, c), dtype, 5) * 3
    t = np.random.default_rng(6).integers(0, c, n)
    if c > 2 and n > 3:
        t[:2] = 2  # some ignored rows when ignore_index is 2
    (loss, gx), (tl, tgx) = _ce_pair(a, t, reduction, ignore_index)
    tol = 2e-6 if dtype == np.float32 else 1e-12
    assert loss.dtype == ember.float32 if dtype == np.float32 else ember.float64
    np.testing.assert_allclose(loss.item(), tl.item(), rtol=tol, atol=tol)
    np.testing.assert_allclose(gx, tgx, rtol=10 * tol, atol=tol)


def test_cross_entropy_c_edge_cases():
    a = _rand((4, 3), np.float32, 7)
    (loss, gx), (tl, tgx) = _ce_pair(a, np.full(4, -100), "mean", -100)  # all ignored
    assert np.isnan(loss.item()) and np.isnan(tl.item())
    np.testing.assert_array_equal(gx, tgx)
    with pytest.raises(IndexError, match="Target 3 is out of bounds"):
        ember.nn.functional.cross_entropy(ember.tensor(a), ember.tensor([0, 1, 3, 0]))
    with pytest.raises(IndexError, match="Target -1 is out of bounds"):
        ember.nn.functional.cross_entropy(ember.tensor(a), ember.tensor([0, 1, -1, 0]))
    b = a.copy()
    b[1, 2] = np.inf
    b[2, 0] = np.nan
    (loss, gx), (tl, tgx) = _ce_pair(b, np.array([0, 1, 2, 0]), "sum", -100)
    assert np.isnan(loss.item()) and np.isnan(tl.item())
    np.testing.assert_array_equal(np.isnan(gx), np.isnan(tgx))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_c_double_backward_and_strided_fallback(dtype):
    a = _rand((8, 5), dtype, 8)
    t = np.random.default_rng(9).integers(0, 5, 8)
    x = ember.tensor(a, requires_grad=True)
    (g,) = ember.autograd.grad(ember.nn.functional.cross_entropy(x, ember.tensor(t)), x,
                               create_graph=True)
    (g * g).sum().backward()
    tx = torch.tensor(a, requires_grad=True)
    (tg,) = torch.autograd.grad(torch.nn.functional.cross_entropy(tx, torch.tensor(t)), tx,
                                create_graph=True)
    (tg * tg).sum().backward()
    tol = 1e-5 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=tol, atol=tol)
    # a transposed (not contiguous) input takes the NumPy path: the same values
    xt = ember.tensor(np.ascontiguousarray(a.T), requires_grad=True)
    lt = ember.nn.functional.cross_entropy(xt.t(), ember.tensor(t))
    lt.backward()
    tl = torch.nn.functional.cross_entropy(torch.tensor(a), torch.tensor(t))
    np.testing.assert_allclose(lt.item(), tl.item(), rtol=tol)


def test_c_kernels_are_there_or_the_numpy_paths_serve():
    # without a C compiler both fall back (the tests above then cover the NumPy paths)
    k = _nn_c.relu_kernels(np.float32)
    assert (k is None) == (not _nn_c.available(np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(1024, 256), (2048, 70)])  # split over the pool (float32)
def test_cross_entropy_large_one_and_two_threads_same_bits(n, c, dtype, threads):
    # float32 rows go over the pool from _nn_c.MIN_SPLIT elements; float64 this large keeps
    # NumPy's path (_nn_c.CE_DOUBLE_MAX): either way the same bits at 1 and 2 threads
    a = _rand((n, c), dtype, 10) * 4
    t = np.random.default_rng(11).integers(0, c, n)
    t[::7] = 3
    got = []
    for k in (1, 2):
        threads(k)
        (loss, gx), (tl, tgx) = _ce_pair(a, t, "mean", 3)
        got.append((loss.item(), gx))
    assert got[0][0] == got[1][0]
    np.testing.assert_array_equal(got[0][1], got[1][1])
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got[0][0], tl.item(), rtol=tol)
    np.testing.assert_allclose(got[0][1], tgx, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-9)
    assert _nn_c.cross_entropy_ok(a, t) == (dtype == np.float32 and _nn_c.available(dtype))
