"""The direct C convolution and 2x2 max pooling of ``ember/ops/_conv_small_c.py`` (issue
25): parity with PyTorch (values and gradients, float32 and float64), the same results as
im2col + GEMM (``EMBER_CONV_DIRECT=0``), the same results at 1 and 2 threads, and that the
shapes meant for the direct kernels take them."""

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402
from ember.ops import _conv_small_c as S  # noqa: E402

DTYPES = [np.float32, np.float64]

pytestmark = pytest.mark.skipif(not S.available(np.float32),
                                reason="no C compiler: the direct kernels are unavailable")


@pytest.fixture
def calls(monkeypatch):
    """Counts of the direct kernels' entry points run during a test."""
    seen = {"conv2d": 0, "conv2d_weight_grad": 0, "maxpool2x2": 0}
    for name in seen:
        fn = getattr(S, name)

        def counted(*a, _fn=fn, _name=name, **k):
            seen[_name] += 1
            return _fn(*a, **k)
        monkeypatch.setattr(S, name, counted)
    return seen


# (x shape, w shape, kwargs): few taps per output (C * KH * KW), groups 1
CONV = [
    ((4, 1, 28, 28), (6, 1, 5, 5), {"padding": 2}),          # LeNet's first, smaller batch
    ((3, 6, 14, 14), (16, 6, 5, 5), {}),                      # LeNet's second
    ((1, 3, 11, 13), (10, 3, 3, 3), {"padding": 1, "stride": 2}),
    ((2, 4, 9, 17), (17, 4, 3, 3), {"padding": 2, "dilation": 2}),
    ((2, 2, 20, 37), (9, 2, 3, 5), {"padding": (1, 2), "stride": (2, 1)}),
    ((3, 1, 7, 40), (3, 1, 1, 4), {"padding": (0, 3), "stride": (1, 3), "dilation": (1, 2)}),
    ((2, 5, 6, 6), (8, 5, 2, 2), {"padding": "same"}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", CONV)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_parity(xs, ws, kw, dtype, bias, calls):
    if bias:
        check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, **kw), [xs, ws, (ws[0],)],
              dtype)
    else:
        check(lambda m, x, w: m.nn.functional.conv2d(x, w, **kw), [xs, ws], dtype)
    # a strided convolution whose weight gradient is wanted keeps im2col (its columns serve
    # the weight gradient); without gradients it is direct too
    assert calls["conv2d"] >= (1 if kw.get("stride", 1) == 1 else 0)
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, **kw), [xs, ws], dtype, grad=False)
    assert calls["conv2d"] >= 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_noncontiguous_input(dtype, calls):
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, padding=1),
          [(2, 3, 9, 12), (5, 3, 3, 3), (5,)], dtype, noncontig=True)
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, padding=1, stride=2),
          [(2, 3, 9, 12), (5, 3, 3, 3), (5,)], dtype, noncontig=True, grad=False)
    assert calls["conv2d"] >= 1


def test_weight_grad_and_full_input_grad_paths(calls):
    """LeNet's layers: the first layer's weight gradient is direct, the second's input
    gradient is a direct full convolution (16 -> 6 channels, 400 taps)."""
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, padding=2),
          [(3, 1, 12, 12), (6, 1, 5, 5), (6,)], np.float32)
    assert calls["conv2d_weight_grad"] >= 1
    before = calls["conv2d"]
    check(lambda m, x, w: m.nn.functional.conv2d(x, w), [(2, 6, 14, 14), (16, 6, 5, 5)],
          np.float64)
    assert calls["conv2d"] >= before + 2  # forward, input gradient


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose2d_parity(dtype, calls):
    """A stride-1 transposed convolution is the input gradient: a direct full convolution."""
    check(lambda m, x, w, b: m.nn.functional.conv_transpose2d(x, w, b, padding=1),
          [(2, 16, 7, 9), (16, 4, 5, 5), (4,)], dtype)
    assert calls["conv2d"] >= 1


def test_gradcheck():
    gradcheck(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, padding=1, stride=(1, 2)),
              [(2, 2, 5, 7), (3, 2, 3, 3), (3,)], gradgrad=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_as_im2col(dtype, monkeypatch):
    """The direct kernels and im2col + GEMM agree to rounding (EMBER_CONV_DIRECT=0)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6, 14, 14)).astype(dtype)
    w = rng.standard_normal((16, 6, 5, 5)).astype(dtype)
    g = rng.standard_normal((5, 16, 12, 12)).astype(dtype)

    def run():
        xt = ember.tensor(x, requires_grad=True)
        wt = ember.tensor(w, requires_grad=True)
        y = ember.nn.functional.conv2d(xt, wt, padding=1)
        y.backward(ember.tensor(g))
        return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()
    direct = run()
    monkeypatch.setenv("EMBER_CONV_DIRECT", "0")
    assert not S.available(dtype)
    ref = run()
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for a, b in zip(direct, ref):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 7, 64])
def test_threads_equal(dtype, n, threads):
    """Samples split over threads, weight-gradient blocks fixed by the shape: outputs and
    gradients are the same bit for bit at 1 and 2 threads."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, 1, 28, 28)).astype(dtype)
    w1 = rng.standard_normal((6, 1, 5, 5)).astype(dtype)
    w2 = rng.standard_normal((16, 6, 5, 5)).astype(dtype)

    def run(t):
        ember.set_num_threads(t)
        xt = ember.tensor(x, requires_grad=True)
        a, b = ember.tensor(w1, requires_grad=True), ember.tensor(w2, requires_grad=True)
        h = ember.nn.functional.max_pool2d(ember.nn.functional.conv2d(xt, a, padding=2), 2)
        y = ember.nn.functional.max_pool2d(ember.nn.functional.conv2d(h, b), 2)
        (y * y).sum().backward()
        return [v.numpy() for v in (y.detach(), xt.grad, a.grad, b.grad)]
    one, two = run(1), run(2)
    for p, q in zip(one, two):
        np.testing.assert_array_equal(p, q)


# ---------------------------------------------------------------- 2x2 max pooling
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (1, 2, 10, 10), (2, 1, 9, 35), (1, 1, 2, 2),
                                   (3, 2, 5, 17)])
def test_maxpool2x2_parity(shape, dtype, calls):
    check(lambda m, x: m.nn.functional.max_pool2d(x, 2), [shape], dtype)
    check(lambda m, x: m.nn.functional.max_pool2d(x, 2, return_indices=True)[1], [shape],
          dtype, grad=False)
    assert calls["maxpool2x2"] >= 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2x2_ties_nan_inf(dtype, calls):
    """PyTorch's rule: the first maximum of each window (row-major), but the last NaN (a NaN
    takes over from anything): indices equal PyTorch's exactly, across whole vectors of
    windows and the scalar tail."""
    rng = np.random.default_rng(2)
    x = rng.integers(-2, 3, (2, 3, 12, 38)).astype(dtype)  # many ties
    x[0, 0, 0, :6] = np.nan
    x[0, 1, 3, 5] = np.nan
    x[1, 2, 4, 9] = np.inf
    x[1, 2, 5, 8] = np.nan
    x[1, 0, 6:8, 36:38] = np.nan  # a window of NaNs in the scalar tail
    x[0, 2, 2:4, 4] = np.nan  # two NaNs in one column of a window
    x[1, 1, :, 20:] = -np.inf
    out, idx = ember.nn.functional.max_pool2d(ember.tensor(x), 2, return_indices=True)
    tout, tidx = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(out.numpy(), tout.numpy())
    np.testing.assert_array_equal(idx.numpy(), tidx.numpy())
    assert calls["maxpool2x2"] == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2x2_noncontiguous(dtype, calls):
    check(lambda m, x: m.nn.functional.max_pool2d(x, 2), [(2, 3, 12, 10)], dtype,
          noncontig=True)
    assert calls["maxpool2x2"] >= 1


def test_maxpool_other_geometry_not_taken(calls):
    check(lambda m, x: m.nn.functional.max_pool2d(x, 2, ceil_mode=True), [(1, 2, 7, 9)],
          np.float32)
    check(lambda m, x: m.nn.functional.max_pool2d(x, 2, padding=1), [(1, 2, 8, 8)],
          np.float32)
    assert calls["maxpool2x2"] == 0


def test_maxpool2x2_threads_equal(threads):
    x = np.random.default_rng(3).standard_normal((64, 6, 28, 28)).astype(np.float32)
    res = []
    for t in (1, 2):
        ember.set_num_threads(t)
        out, idx = ember.nn.functional.max_pool2d(ember.tensor(x), 2, return_indices=True)
        res.append((out.numpy(), idx.numpy()))
    np.testing.assert_array_equal(res[0][0], res[1][0])
    np.testing.assert_array_equal(res[0][1], res[1][1])


@pytest.mark.parametrize("c_kernels", [True, False])
@pytest.mark.parametrize("args", [(3, 1, 1), (2, 2, 0), (2, 1, 0), ((2, 3), (1, 2), (1, 0))])
def test_maxpool_nan_rule_every_path(args, c_kernels, monkeypatch):
    """Every max-pooling path (the generic C kernel, the NumPy formulation, its disjoint
    backward) follows PyTorch: the first maximum of a window, or its last NaN."""
    from ember.ops import _conv_c
    if not c_kernels:
        monkeypatch.setattr(_conv_c, "_LIB", {None: None})
    monkeypatch.setenv("EMBER_CONV_DIRECT", "0")
    x = np.arange(49, dtype=np.float64).reshape(1, 1, 7, 7) % 5
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = x[0, 0, 4, 3] = x[0, 0, 4, 4] = np.nan
    x[0, 0, 5, :] = np.nan
    check(lambda m, t: m.nn.functional.max_pool2d(t, *args, return_indices=True), [],
          arrays=[x])
    check(lambda m, t: m.nn.functional.max_pool2d(t, *args), [], arrays=[x])
