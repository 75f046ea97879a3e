"""ResNet-shaped convolution paths (issue 25): the stride-1 input gradient over tiny planes by
GEMM + col2im (no flipped copy of the weight), against PyTorch (values and gradients,
float32 and float64), by finite differences, and at 1 and several threads."""

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402
import ember.ops.conv as C  # noqa: E402

DTYPES = [np.float32, np.float64]

# (input, weight, kwargs): stride 1, O <= C, output planes of at most _FULL_MIN_PLANE
# positions, no Winograd (too few tiles) and too many taps (O * 9 > 400) or groups for the
# direct kernels
TINY = [
    ((16, 64, 2, 2), (64, 64, 3, 3), {"padding": 1}),            # ResNet's last stage
    ((4, 56, 4, 3), (48, 56, 3, 3), {"padding": 1}),             # odd plane, O < C
    ((1, 48, 4, 4), (48, 48, 3, 3), {"padding": 1}),             # batch 1
    ((3, 52, 5, 4), (50, 52, 3, 3), {}),                         # no padding: 3x2 plane
    ((5, 32, 3, 3), (32, 16, 3, 3), {"padding": 1, "groups": 2}),
    ((2, 50, 4, 4), (48, 50, 3, 3), {"padding": 2, "dilation": 2}),
    ((3, 48, 2, 3), (48, 48, 3, 3), {"padding": (1, 2)}),        # asymmetric padding
]


@pytest.fixture
def spy_flip(monkeypatch):
    """Count the flipped, transposed weight copies (the full-convolution path)."""
    calls = []
    real = C._flipped_transposed

    def spy(w, groups):
        calls.append(w.shape)
        return real(w, groups)
    monkeypatch.setattr(C, "_flipped_transposed", spy)
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", TINY)
def test_tiny_plane_input_grad_parity(xs, ws, kw, dtype, spy_flip):
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, **kw), [xs, ws], dtype, low=-1, high=1)
    assert not spy_flip  # col2im, not the full convolution


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_plane_input_grad_conv1d_and_noncontiguous(dtype, spy_flip):
    check(lambda m, x, w: m.nn.functional.conv1d(x, w, padding=1), [(4, 48, 8), (48, 48, 3)],
          dtype, low=-1, high=1)
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [(6, 48, 3, 4),
                                                                     (48, 48, 3, 3)],
          dtype, low=-1, high=1, noncontig=True)
    assert not spy_flip


def test_larger_planes_keep_the_full_convolution(spy_flip):
    # 5x5 output planes (25 positions), too few tiles for Winograd: the full convolution
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [(1, 48, 5, 5),
                                                                     (48, 48, 3, 3)],
          np.float64, low=-1, high=1)
    assert spy_flip


def test_tiny_plane_input_grad_double_backward():
    gradcheck(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1, groups=2),
              [(2, 8, 2, 3), (8, 4, 3, 3)], gradgrad=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_plane_input_grad_threads(dtype, threads, monkeypatch):
    monkeypatch.setattr(C, "_SPLIT_MIN", 1)
    monkeypatch.setattr(ember._parallel, "GEMM_SPLIT_MIN", 1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((16, 64, 2, 2)).astype(dtype)
    w = rng.standard_normal((64, 64, 3, 3)).astype(dtype)
    res = []
    for n in (1, 2, 3):
        threads(n)
        xt, wt = (ember.tensor(a, requires_grad=True) for a in (x, w))
        y = ember.nn.functional.conv2d(xt, wt, padding=1)
        y.backward(ember.ones_like(y))
        res.append([y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()])
    for other in res[1:]:
        for a, b in zip(res[0], other):
            # parts split no sum; only BLAS's kernels on a part's edge tiles may differ
            np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       atol=1e-5 if dtype == np.float32 else 1e-12)


# ---------------------------------------------------------------------- side-by-side backward
PAIRED = [
    ((3, 16, 9, 7), (20, 16, 3, 3), {"padding": 1}),             # Winograd (forced)
    ((2, 48, 2, 3), (48, 48, 3, 3), {"padding": 1}),             # tiny planes: GEMM + col2im
    ((2, 20, 9, 8), (24, 20, 3, 3), {"padding": 1}),             # im2col, full convolution
    ((4, 12, 6, 5), (18, 6, 3, 3), {"padding": 1, "groups": 2}),
    ((2, 200, 5, 4), (16, 200, 1, 1), {}),                        # 1x1 (too many taps
    # for the direct kernels: those layers are left out)
    ((2, 20, 8, 9), (16, 20, 3, 3), {"padding": 2, "dilation": 2}),
]


@pytest.fixture
def pairs(monkeypatch, threads):
    """Every convolution backward with input and weight gradients pairs them (2 threads);
    returns the list of ``_parallel.pair`` calls."""
    monkeypatch.setattr(C, "_PAIR_MIN_WORK", 1)
    monkeypatch.setattr(C, "_PAIRS", True)
    monkeypatch.setattr(C, "_WINOGRAD_MIN_TILES", 1)
    calls = []
    real = ember._parallel.pair

    def spy(fa, fb):
        calls.append(1)
        return real(fa, fb)
    monkeypatch.setattr(ember._parallel, "pair", spy)
    threads(2)
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", PAIRED)
def test_paired_backward_parity(xs, ws, kw, dtype, pairs):
    if not ember._parallel.gemm_split_ok():
        pytest.skip("no BLAS thread control: the gradients run one after the other")
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, **kw), [xs, ws, (ws[0],)], dtype,
          low=-1, high=1)
    assert pairs  # the pair served the backward


@pytest.mark.parametrize("dtype", DTYPES)
def test_paired_backward_equals_one_thread(dtype, pairs, threads):
    """Each gradient of the pair runs as at one thread: the one-thread values exactly."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 32, 10, 9)).astype(dtype)
    w = rng.standard_normal((32, 32, 3, 3)).astype(dtype)
    res = []
    for n in (1, 2):
        threads(n)
        xt, wt = (ember.tensor(a, requires_grad=True) for a in (x, w))
        y = ember.nn.functional.conv2d(xt, wt, padding=1)
        y.backward(ember.tensor(np.cos(y.detach().numpy())))
        res.append([xt.grad.numpy(), wt.grad.numpy()])
    assert pairs and ember.get_num_threads() == 2
    for a, b in zip(*res):
        np.testing.assert_array_equal(a, b)


def test_paired_backward_double_backward(pairs):
    gradcheck(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1),
              [(2, 3, 4, 5), (4, 3, 3, 3)], gradgrad=True)


def test_pairs_left_out(pairs, monkeypatch):
    x = ember.randn(2, 16, 6, 6, requires_grad=True)
    w = ember.randn(16, 16, 3, 3, requires_grad=True)  # Winograd (forced)
    # strided, weight gradient only, under the profiler, and switched off: one after the other
    ember.nn.functional.conv2d(x, w, stride=2, padding=1).sum().backward()
    ember.nn.functional.conv2d(x.detach(), w, padding=1).sum().backward()
    with ember.profiler.profile():
        ember.nn.functional.conv2d(x, w, padding=1).sum().backward()
    monkeypatch.setattr(C, "_PAIRS", False)
    ember.nn.functional.conv2d(x, w, padding=1).sum().backward()
    assert not pairs
    monkeypatch.setattr(C, "_PAIRS", True)
    ember.nn.functional.conv2d(x, w, padding=1).sum().backward()
    assert pairs == [1] or not ember._parallel.gemm_split_ok()


def test_pair_runs_each_as_at_one_thread(threads):
    threads(2)
    seen = ember._parallel.pair(ember.get_num_threads, ember.get_num_threads)
    assert seen == ((1, 1) if ember._parallel.gemm_split_ok() else (2, 2))
    assert ember.get_num_threads() == 2
    with pytest.raises(ZeroDivisionError):
        ember._parallel.pair(lambda: 1, lambda: 1 // 0)
    assert ember.get_num_threads() == 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_stem_weight_grad_long_k(dtype, monkeypatch):
    """A 7x7/2 stem: the weight gradient's product over N * L >= 8192 positions and few
    columns runs as (cols @ g^T)^T."""
    calls = []
    real = C._parallel.gemm

    def spy(a, b, *args, **kw):
        calls.append((a.shape, b.shape))
        return real(a, b, *args, **kw)
    monkeypatch.setattr(C._parallel, "gemm", spy)
    # (float32: sums of 8192 products in another order than PyTorch's, either orientation)
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, stride=2, padding=3),
          [(8, 3, 64, 64), (32, 3, 7, 7)], dtype, low=-1, high=1,
          atol=2e-4 if dtype == np.float32 else None)
    assert ((1, 147, 8192), (1, 8192, 32)) in calls


# ---------------------------------------------------------------------- 1x1 on NCHW
POINTWISE = [
    ((4, 8, 9, 7), (6, 8, 1, 1), {}),
    ((3, 5, 9, 8), (7, 5, 1, 1), {"stride": 2}),                 # ResNet's downsampling
    ((2, 4, 5, 6), (3, 4, 1, 1), {"stride": (2, 3)}),
    ((1, 200, 3, 4), (24, 200, 1, 1), {"stride": 2}),            # batch 1, many channels
    ((5, 16, 1, 1), (32, 16, 1, 1), {}),                          # 1x1 image
    ((2, 6, 7, 7), (9, 6, 1, 1), {"dilation": 2, "stride": 3}),
]


@pytest.fixture
def spy_pointwise(monkeypatch):
    calls = []
    for name in ("_conv1x1", "_conv1x1_input_grad"):
        real = getattr(C, name)

        def spy(*args, _real=real, _name=name):
            calls.append(_name)
            return _real(*args)
        monkeypatch.setattr(C, name, spy)
    return calls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", POINTWISE)
def test_pointwise_parity(xs, ws, kw, dtype, spy_pointwise):
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, **kw), [xs, ws, (ws[0],)], dtype,
          low=-1, high=1)
    assert "_conv1x1" in spy_pointwise and "_conv1x1_input_grad" in spy_pointwise


@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_noncontiguous_and_transposed(dtype, spy_pointwise):
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, stride=2), [(3, 6, 7, 5), (4, 6, 1, 1)],
          dtype, low=-1, high=1, noncontig=True)
    # the transposed convolution of a 1x1 kernel is the input gradient's kernel, with an
    # output_padding (below the dilation) leaving rows no input reaches
    check(lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, stride=2, output_padding=1),
          [(2, 5, 4, 3), (5, 3, 1, 1)], dtype, low=-1, high=1)
    check(lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, stride=2, output_padding=2,
                                                           dilation=3),
          [(2, 5, 4, 3), (5, 3, 1, 1)], dtype, low=-1, high=1)
    assert "_conv1x1_input_grad" in spy_pointwise


def test_pointwise_double_backward(spy_pointwise):
    gradcheck(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, stride=2),
              [(2, 3, 5, 4), (4, 3, 1, 1), (4,)], gradgrad=True)
    assert spy_pointwise


@pytest.mark.parametrize("dtype", DTYPES)
def test_pointwise_threads_same_bits(dtype, threads, monkeypatch):
    monkeypatch.setattr(ember._parallel, "GEMM_SPLIT_MIN", 1)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 24, 9, 8)).astype(dtype)
    w = rng.standard_normal((16, 24, 1, 1)).astype(dtype)
    b = rng.standard_normal(16).astype(dtype)
    res = []
    for n in (1, 2, 3):
        threads(n)
        ts = [ember.tensor(a, requires_grad=True) for a in (x, w, b)]
        y = ember.nn.functional.conv2d(*ts, stride=2)
        y.backward(ember.tensor(np.sin(y.detach().numpy())))
        res.append([y.detach().numpy()] + [t.grad.numpy() for t in ts])
    for other in res[1:]:
        for a, c in zip(res[0], other):
            # per-sample products: the samples' cut changes no value (the weight gradient's
            # GEMM is cut by columns: within rounding)
            np.testing.assert_allclose(a, c, rtol=1e-6 if dtype == np.float32 else 1e-13,
                                       atol=1e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_array_equal(res[0][0], res[1][0])
    np.testing.assert_array_equal(res[0][1], res[2][1])


def test_bench_cnn_steps_switches_and_restores(threads):
    from benchmarks import bench_cnn_steps as B
    from ember.ops import _reduce_c
    _reduce_c.available("float32")  # loaded (lazily, on first use)
    before = (C._PAIRS, dict(_reduce_c._FNS))
    r = B.measure("LeNet-5 train step", 2, 1, 1)
    assert set(r) == {False, True} and all(v["cpu_med"] > 0 for v in r.values())
    assert (C._PAIRS, dict(_reduce_c._FNS)) == before
