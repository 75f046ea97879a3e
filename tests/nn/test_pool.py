"""Pooling: max (with indices, ceil_mode, dilation), average (ceil_mode, count_include_pad,
divisor_override), power-average, adaptive, unpooling; parity with PyTorch and module reprs."""

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402
import ember.ops.conv as C  # noqa: E402

DTYPES = [np.float32, np.float64]


def fn(name, *args, **kw):
    """The same call through torch.nn.functional or ember's functional forms."""
    def call(m, x):
        mod = m.nn.functional if m is torch or hasattr(m.nn.functional, name) else C
        return getattr(mod, name)(x, *args, **kw)
    return call


MAX = [
    ("max_pool1d", (2, 3, 9), (3, 2, 1), {"ceil_mode": True}),
    ("max_pool1d", (3, 8), (2,), {}),  # unbatched
    ("max_pool2d", (2, 3, 8, 8), (2,), {}),
    ("max_pool2d", (2, 3, 7, 8), (3, 2, 1), {"ceil_mode": True}),
    ("max_pool2d", (2, 3, 7, 8), ((2, 3), (1, 2), (1, 1)), {"dilation": 2}),
    ("max_pool2d", (2, 3, 6, 7), (3, 1), {}),
    ("max_pool3d", (2, 3, 4, 3, 4), (2, 1, 1), {}),
    ("max_pool3d", (1, 2, 5, 4, 5), (2,), {"ceil_mode": True}),
    # windows that do not overlap (the scatter-free backward)
    ("max_pool2d", (2, 3, 9, 8), (2, 2, 1), {}),
    ("max_pool2d", (2, 3, 9, 9), (2, 3), {"dilation": 2}),
    ("max_pool3d", (2, 3, 4, 6, 4), (2,), {}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,shape,args,kw", MAX)
@pytest.mark.parametrize("indices", [False, True])
def test_max_pool(name, shape, args, kw, dtype, indices):
    check(fn(name, *args, return_indices=indices, **kw), [shape], dtype)


def test_max_pool_with_indices_and_ties():
    check(fn("max_pool2d_with_indices", 2, 1), [(1, 2, 4, 4)])
    x = np.zeros((1, 1, 4, 4))  # all ties: the first position of each window wins
    check(fn("max_pool2d", 3, 1, 1, return_indices=True), [], arrays=[x])
    x = np.round(np.random.default_rng(1).standard_normal((2, 3, 6, 6)))  # many ties
    check(fn("max_pool2d", 2), [], arrays=[x])
    check(fn("max_pool2d", 3, 3, 1), [], arrays=[x])


AVG = [
    ("avg_pool1d", (2, 3, 9), (3, 2, 1), {"ceil_mode": True}),
    ("avg_pool1d", (2, 3, 9), (3, 2, 1), {"count_include_pad": False}),
    ("avg_pool2d", (2, 3, 8, 8), (2,), {}),
    ("avg_pool2d", (2, 3, 7, 8), (3, 2, 1), {"ceil_mode": True}),
    ("avg_pool2d", (2, 3, 7, 8), (3, 2, 1), {"ceil_mode": True, "count_include_pad": False}),
    ("avg_pool2d", (2, 3, 7, 8), ((3, 2), (2, 1), (1, 0)), {"divisor_override": 5}),
    ("avg_pool2d", (3, 7, 8), (3, 2), {}),  # unbatched
    ("avg_pool3d", (2, 3, 5, 4, 5), (2, 2, 1), {"ceil_mode": True, "count_include_pad": False}),
    ("avg_pool3d", (1, 2, 4, 4, 4), (3, 1, 1), {"divisor_override": 7}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,shape,args,kw", AVG)
def test_avg_pool(name, shape, args, kw, dtype):
    check(fn(name, *args, **kw), [shape], dtype)


ADAPTIVE = [
    ("adaptive_avg_pool1d", (2, 3, 7), 3),
    ("adaptive_avg_pool2d", (2, 3, 7, 8), (3, None)),
    ("adaptive_avg_pool2d", (2, 3, 8, 8), 4),
    ("adaptive_avg_pool2d", (2, 3, 5, 6), 1),
    ("adaptive_avg_pool2d", (2, 3, 8, 8), 1),
    ("adaptive_avg_pool3d", (2, 3, 4, 6, 2), (2, 3, 1)),
    ("adaptive_avg_pool3d", (2, 3, 5, 7, 4), (2, 3, 1)),
    ("adaptive_max_pool1d", (2, 3, 7), 3),
    ("adaptive_max_pool2d", (2, 3, 7, 8), (3, 5)),
    ("adaptive_max_pool2d", (2, 3, 8, 8), 4),
    ("adaptive_max_pool2d", (3, 5, 6), 4),  # unbatched
    ("adaptive_max_pool3d", (1, 2, 5, 4, 6), (2, 3, 4)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,shape,size", ADAPTIVE)
def test_adaptive_pool(name, shape, size, dtype):
    if "max" in name:
        check(fn(name, size, return_indices=True), [shape], dtype)
    else:
        check(fn(name, size), [shape], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lp_pool(dtype):
    check(fn("lp_pool2d", 2, 3, 2), [(2, 3, 7, 8)], dtype, low=0.1)
    check(fn("lp_pool2d", 3, (2, 3), ceil_mode=True), [(2, 3, 7, 8)], dtype, low=0.1)
    check(fn("lp_pool1d", 1.5, 3, 2), [(2, 3, 7)], dtype, low=0.1)
    check(fn("lp_pool2d", float("inf"), 2), [(1, 2, 4, 4)], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_unpool(dtype):
    def unpool2d(m, x):
        F = m.nn.functional
        out, idx = F.max_pool2d(x, 2, return_indices=True)
        return F.max_unpool2d(out * 2, idx, 2, output_size=(7, 9))
    check(unpool2d, [(2, 3, 7, 9)], dtype)

    def unpool1d(m, x):
        F = m.nn.functional
        out, idx = F.max_pool1d(x, 3, 2, 1, return_indices=True)
        return F.max_unpool1d(out, idx, 3, 2, 1)
    check(unpool1d, [(2, 3, 9)], dtype)


def test_pool_double_backward():
    gradcheck(lambda m, x: C.max_pool2d(x, 3, 2, 1), [(1, 2, 5, 5)], gradgrad=True)
    gradcheck(lambda m, x: C.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
              [(1, 2, 5, 5)], gradgrad=True)
    gradcheck(lambda m, x: C.adaptive_max_pool2d(x, 3), [(1, 2, 5, 5)], gradgrad=True)
    gradcheck(lambda m, x: C.adaptive_avg_pool2d(x, 3), [(1, 2, 5, 5)], gradgrad=True)


def test_max_pool_nan_and_inplace_safety():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan
    check(fn("max_pool2d", 2, return_indices=True), [], arrays=[x])
    # editing the output in place must not change which element gets the gradient
    xe = ember.tensor(-np.arange(16.0).reshape(1, 1, 4, 4), requires_grad=True)
    y = ember.nn.functional.max_pool2d(xe * 1, 2)
    y.add_(100.0)
    y.sum().backward()
    assert xe.grad.numpy().sum() == 4


def test_pool_errors():
    F = ember.nn.functional
    with pytest.raises(RuntimeError, match="pad should be at most half"):
        F.max_pool2d(ember.randn(1, 1, 5, 5), 2, padding=2)
    with pytest.raises(RuntimeError, match="Output size is too small"):
        F.avg_pool2d(ember.randn(1, 1, 2, 2), 3)
    with pytest.raises(NotImplementedError, match="not implemented for 'Long'"):
        F.adaptive_max_pool2d(ember.ones(1, 1, 4, 4, dtype=ember.int64), 2)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8])
def test_integer_pooling(dtype):
    x = np.random.default_rng(0).integers(0 if dtype == np.uint8 else -50, 50, (2, 3, 7, 8))
    x = x.astype(dtype)
    check(fn("max_pool2d", 3, 2, 1, return_indices=True), [], arrays=[x], grad=False)
    if dtype == np.uint8:  # PyTorch averages signed integers only
        with pytest.raises(NotImplementedError, match="not implemented for 'Byte'"):
            ember.nn.functional.avg_pool2d(ember.tensor(x), 2)
        return
    # integer averages divide toward zero, as C does
    check(fn("avg_pool2d", 3, 2, 1, ceil_mode=True), [], arrays=[x], grad=False)
    check(fn("avg_pool1d", 2), [], arrays=[x[:, :, 0]], grad=False)


MODULES = [
    ("MaxPool1d", (3,), {"stride": 2, "padding": 1}),
    ("MaxPool2d", (2,), {}),
    ("MaxPool2d", ((3, 2),), {"stride": 1, "dilation": (1, 2), "ceil_mode": True,
                              "return_indices": True}),
    ("MaxPool3d", (2,), {"padding": 1}),
    ("AvgPool1d", (3,), {"stride": 2, "ceil_mode": True}),
    ("AvgPool2d", (3,), {"stride": 2, "padding": 1, "count_include_pad": False}),
    ("AvgPool2d", ((2, 3),), {"divisor_override": 4}),
    ("AvgPool3d", (2,), {}),
    ("LPPool1d", (2, 3), {}),
    ("LPPool2d", (2, 3), {"stride": 2}),
    ("AdaptiveAvgPool1d", (3,), {}),
    ("AdaptiveAvgPool2d", ((3, None),), {}),
    ("AdaptiveAvgPool3d", (2,), {}),
    ("AdaptiveMaxPool1d", (3,), {}),
    ("AdaptiveMaxPool2d", (3,), {"return_indices": True}),
    ("MaxUnpool2d", (2,), {"stride": 2}),
]


@pytest.mark.parametrize("name,args,kw", MODULES)
def test_pool_module(name, args, kw):
    tm = getattr(torch.nn, name)(*args, **kw)
    em = getattr(ember.nn, name)(*args, **kw)
    assert repr(em) == repr(tm)
    nd = 3 if name.endswith("3d") else 2 if name.endswith("2d") else 1
    x = np.abs(np.random.default_rng(0).standard_normal((2, 3) + (6, 7, 6)[:nd])) + 0.1
    if name.startswith("MaxUnpool"):
        x = x[..., :6]  # unpooling a 6x7 plane would give 6x6: keep it even
        out, idx = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
        yt = tm(out, idx)
        ye = em(ember.tensor(out.numpy()), ember.tensor(idx.numpy()))
    else:
        yt, ye = tm(torch.tensor(x)), em(ember.tensor(x))
    yt = yt if isinstance(yt, tuple) else (yt,)
    ye = ye if isinstance(ye, tuple) else (ye,)
    for a, b in zip(ye, yt):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("nd,shape,kw", [
    (2, (2, 3, 9, 10), dict(kernel_size=2, output_size=(4, 5))),
    (2, (2, 3, 9, 10), dict(kernel_size=(3, 2), output_ratio=(0.5, 0.7))),
    (2, (3, 9, 10), dict(kernel_size=3, output_size=7)),  # unbatched
    (3, (1, 2, 7, 6, 8), dict(kernel_size=(2, 3, 2), output_size=(3, 3, 4))),
])
def test_fractional_max_pool(nd, shape, kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    samples = rng.random(((shape[0] if len(shape) == nd + 2 else 1), shape[-nd - 1], nd))
    name = f"fractional_max_pool{nd}d"
    res = []
    for m in (torch, ember):
        t = m.tensor(x, requires_grad=True)
        out, idx = getattr(m.nn.functional, name)(t, return_indices=True,
                                                  _random_samples=m.tensor(samples), **kw)
        (out * m.tensor(np.arange(out.numel()).reshape(tuple(out.shape)) * 1.0)).sum().backward()
        res.append((out.detach().numpy(), idx.numpy(), t.grad.numpy()))
    for a, b in zip(res[0], res[1]):
        np.testing.assert_array_equal(a, b)
    # without given samples: random windows, still the right shape, from the seeded generator
    mod = getattr(ember.nn, f"FractionalMaxPool{nd}d")(**kw)
    assert tuple(mod(ember.tensor(x)).shape) == res[1][0].shape
    with pytest.raises(ValueError):
        getattr(ember.nn, f"FractionalMaxPool{nd}d")(2)
