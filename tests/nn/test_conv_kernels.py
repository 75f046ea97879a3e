"""Convolution and pooling kernels at every core (issue 25): the C kernels of
``ember/ops/_conv_c.py`` (Winograd transforms, 2-d max pooling and its scatter) and
``ember/ops/_wino_c.py`` (Winograd fused by blocks of tiles) against PyTorch and against the
NumPy formulation they replace, and results at 1 and several threads
(the channel-split copies of im2col/col2im, the kernels split over the thread pool)."""

import numpy as np
import pytest

from tests.parity.helpers import check, gradcheck

torch = pytest.importorskip("torch")
import ember  # noqa: E402
import ember.ops.conv as C  # noqa: E402
from ember.ops import _conv_c, _wino_c  # noqa: E402

DTYPES = [np.float32, np.float64]


@pytest.fixture(params=["fused", "c", "numpy"])
def path(request, monkeypatch):
    """Run a test with the fused Winograd kernels (``_wino_c``), then with the separate C
    kernels (``_conv_c``), then with the NumPy fallback."""
    if request.param == "fused":
        if not _wino_c.available(np.float32):
            pytest.skip("no C compiler or no OpenBLAS: the fused kernels are unavailable")
    else:
        monkeypatch.setattr(_wino_c, "_LIB", {None: None})
        assert not _wino_c.available(np.float32)
    if request.param in ("fused", "c"):
        if not _conv_c.available(np.float32):
            pytest.skip("no C compiler: the C kernels are unavailable")
        monkeypatch.setattr(_conv_c, "_BN_MIN_SIZE", 1)  # small batch norms take C too
    else:
        monkeypatch.setattr(_conv_c, "_LIB", {None: None})
        assert not _conv_c.available(np.float32)
    return request.param


@pytest.fixture
def always_split(monkeypatch):
    """Cut even small jobs over the thread pool, so small shapes test the split code."""
    monkeypatch.setattr(C, "_SPLIT_MIN", 1)
    monkeypatch.setattr(ember._parallel, "GEMM_SPLIT_MIN", 1)
    monkeypatch.setattr(_conv_c, "_MIN_SPLIT", 1)


# ---------------------------------------------------------------------- Winograd
WINOGRAD = [
    ((2, 16, 8, 8), (16, 16, 3, 3), {"padding": 1}),
    ((3, 17, 7, 9), (20, 17, 3, 3), {"padding": 1}),          # odd sizes and channels
    ((1, 16, 5, 6), (32, 16, 3, 3), {}),                      # batch 1, no padding
    ((2, 16, 7, 9), (24, 16, 3, 3), {"padding": (2, 0)}),     # asymmetric, odd output
    ((2, 32, 1, 1), (16, 32, 3, 3), {"padding": 1}),          # 1x1 image
    ((2, 16, 3, 4), (16, 16, 3, 3), {"padding": 2}),          # padding past the image
    ((1, 16, 5, 6), (16, 16, 3, 3), {"padding": "same"}),
    ((2, 64, 6, 5), (72, 64, 3, 3), {"padding": 1}),          # input grad by Winograd too
    ((4, 32, 20, 20), (32, 32, 3, 3), {"padding": 1}),        # large enough to split
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", WINOGRAD)
def test_winograd_parity(xs, ws, kw, dtype, path, monkeypatch):
    monkeypatch.setattr(C, "_WINOGRAD_MIN_TILES", 1)
    # the weight gradient sums N*H*W products: float32 rounding grows with that count
    atol = 1e-4 if dtype == np.float32 and xs[0] * xs[2] * xs[3] > 1000 else None
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, **kw), [xs, ws, (ws[0],)], dtype,
          low=-1, high=1, atol=atol)


def test_winograd_weight_grad_recomputed(path, monkeypatch):
    # without the forward's cached tiles the weight gradient transforms the input again
    monkeypatch.setattr(C, "_WINOGRAD_MIN_TILES", 1)
    monkeypatch.setattr(C, "_COLS_CACHE_BYTES", 0)
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [(2, 16, 6, 7),
                                                                    (16, 16, 3, 3)],
          np.float64)


def test_winograd_double_backward(path, monkeypatch):
    monkeypatch.setattr(C, "_WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(C, "_WINOGRAD_MIN_TILES", 1)
    gradcheck(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1),
              [(1, 2, 4, 5), (2, 2, 3, 3)], gradgrad=True)


def test_winograd_chosen_by_tiles():
    # 3x3 stride 1 with enough channels: Winograd with many output tiles, im2col with few
    assert C._use_winograd((64, 64, 3, 3), (1, 1), (1, 1), 1, 16, (16, 16))
    assert not C._use_winograd((512, 512, 3, 3), (1, 1), (1, 1), 1, 16, (2, 2))
    assert not C._use_winograd((64, 64, 3, 3), (2, 2), (1, 1), 1, 16, (16, 16))


def test_winograd_transforms_match_numpy():
    # the C transforms equal the dense-matrix formulation of the NumPy fallback
    if not _conv_c.available(np.float64):
        pytest.skip("no C compiler")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 7, 6))
    pads = ((1, 2), (2, 1))
    oh, ow = 7 + 3 - 2, 6 + 3 - 2
    th, tw = -(-oh // 2), -(-ow // 2)
    np.testing.assert_allclose(_conv_c.wino_in(x, 1, 2, th, tw),
                               C._wino_tiles(x, pads, (oh, ow)), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal((3, 4, oh, ow))
    dm = _conv_c.wino_grad(g, th, tw)
    _, _, aa = C._wino_mats(g.dtype)
    gp = np.zeros((3, 4, 2 * th, 2 * tw))
    gp[:, :, :oh, :ow] = g
    tiles = gp.reshape(3, 4, th, 2, tw, 2).transpose(3, 5, 1, 0, 2, 4).reshape(4, -1)
    np.testing.assert_allclose(dm.reshape(16, -1), aa.T @ tiles, rtol=1e-12, atol=1e-12)
    # wino_out is the adjoint of wino_grad: <out(m), g> == <m, grad(g)>
    m = rng.standard_normal(dm.shape)
    y = _conv_c.wino_out(m, 3, th, tw, oh, ow)
    assert np.isclose(np.vdot(y, g), np.vdot(m, dm), rtol=1e-12)


@pytest.fixture
def small_blocks(monkeypatch):
    """Fused Winograd blocks of 16 tiles, at most 3 weight-gradient groups, their sum split
    at any size: blocks then cut tile rows and images, and small shapes have several
    blocks and groups."""
    monkeypatch.setattr(_wino_c, "_BLOCK_ELEMS", 1)
    monkeypatch.setattr(_wino_c, "_WGRAD_GROUPS", 3)
    monkeypatch.setattr(_wino_c, "_ADD_SPLIT_MIN", 1)
    monkeypatch.setattr(C, "_WINOGRAD_MIN_TILES", 1)
    assert _wino_c.block_tiles(64, 64) == 16


def _need_fused():
    if not _wino_c.available(np.float32):
        pytest.skip("no C compiler or no OpenBLAS: the fused kernels are unavailable")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", WINOGRAD + [
    ((3, 16, 11, 13), (17, 16, 3, 3), {"padding": 1}),   # 5 x 6 tiles: blocks cut rows
    ((5, 20, 3, 3), (16, 20, 3, 3), {"padding": 1}),     # 2 x 2 tiles: blocks cut images
])
def test_winograd_fused_blocks_parity(xs, ws, kw, dtype, small_blocks):
    _need_fused()
    atol = 1e-4 if dtype == np.float32 and xs[0] * xs[2] * xs[3] > 1000 else None
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, **kw), [xs, ws, (ws[0],)], dtype,
          low=-1, high=1, atol=atol)


def test_winograd_fused_noncontiguous_and_gradcheck(small_blocks):
    _need_fused()
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [(2, 16, 7, 6),
                                                                    (16, 16, 3, 3)],
          np.float64, noncontig=True)
    gradcheck(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, padding=1),
              [(2, 16, 5, 4), (16, 16, 3, 3), (16,)], gradgrad=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_winograd_fused_same_bits_at_every_thread_count(dtype, small_blocks, threads):
    # blocks and weight-gradient groups depend on the shapes only: the same bits at 1, 2
    # and 3 threads, for the forward, the input gradient and the weight gradient
    _need_fused()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 24, 9, 10)).astype(dtype)
    w = rng.standard_normal((32, 24, 3, 3)).astype(dtype)
    b = rng.standard_normal(32).astype(dtype)
    res = []
    for n in (1, 2, 3):
        ember.set_num_threads(n)
        ts = [ember.tensor(a, requires_grad=True) for a in (x, w, b)]
        y = ember.nn.functional.conv2d(*ts, padding=1)
        y.backward(ember.tensor(np.cos(np.arange(y.numel())).reshape(y.shape).astype(dtype)))
        res.append([y.detach().numpy()] + [t.grad.numpy() for t in ts])
    for other in res[1:]:
        for a, c in zip(res[0], other):
            np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("n", [1, 2])
def test_winograd_fused_keeps_no_tiles(n, small_blocks, threads):
    # the weight gradient transforms the input again, so the forward holds no V for it
    # (with one block, one group, at two threads it keeps V for the stacked GEMMs)
    _need_fused()
    ember.set_num_threads(2)
    x = ember.randn(n, 16, 8, 8, requires_grad=True)
    w = ember.randn(16, 16, 3, 3, requires_grad=True)
    y = ember.nn.functional.conv2d(x, w, padding=1)
    assert hasattr(y.grad_fn, "cols") == (n == 1)
    assert C._wino_wgrad_fused(np.dtype(np.float32), 16, 16, 16 * n) == (n == 2)


def test_winograd_fused_wide_layers_keep_stacked_weight_grad(monkeypatch, threads):
    # too few partial sums to share (a huge O * C): the weight gradient keeps the stacked
    # GEMMs at several threads, and the forward keeps V for it
    _need_fused()
    monkeypatch.setattr(_wino_c, "_WGRAD_PARTIAL_ELEMS", 16 * 16 * 16)
    monkeypatch.setattr(C, "_WINOGRAD_MIN_TILES", 1)
    ember.set_num_threads(2)
    assert not C._wino_wgrad_fused(np.dtype(np.float32), 16, 16, 4096)
    check(lambda m, x, w: m.nn.functional.conv2d(x, w, padding=1), [(2, 16, 6, 5),
                                                                    (16, 16, 3, 3)],
          np.float64)
    ember.set_num_threads(1)
    assert C._wino_wgrad_fused(np.dtype(np.float32), 16, 16, 4096)


def test_winograd_fused_env_switch(monkeypatch):
    monkeypatch.setenv("EMBER_WINO_FUSED", "0")
    monkeypatch.setattr(_wino_c, "_LIB", {})
    assert not _wino_c.available(np.float32)
    monkeypatch.setattr(_wino_c, "_LIB", {})
    monkeypatch.delenv("EMBER_WINO_FUSED")
    assert _wino_c.available(np.float32) == (bool(_wino_c._gemm_pointer())
                                             and _conv_c.available(np.float32))


def test_winograd_fused_block_sizes():
    # a block's V and M fit the cache budget; 16 to 256 tiles, multiples of 16
    for c, o in ((16, 16), (64, 64), (32, 64), (256, 256), (1024, 1024)):
        tb = _wino_c.block_tiles(c, o)
        assert tb % 16 == 0 and 16 <= tb <= 256
        assert tb == 16 or 16 * (c + o) * tb <= _wino_c._BLOCK_ELEMS
    # few tiles: smaller blocks, so that there are several to share over the threads
    assert _wino_c.block_tiles(64, 64, 64) == 16
    assert _wino_c.block_tiles(64, 64, 4096) == _wino_c.block_tiles(64, 64)
    assert _wino_c.block_tiles(16, 16, 8) == 16
    assert _wino_c.wgrad_groups(64, 64, 10 ** 6) == _wino_c._WGRAD_GROUPS
    assert _wino_c.wgrad_groups(64, 64, 16) == 1


# ---------------------------------------------------------------------- max pooling
POOL = [
    ((2, 3, 8, 8), {"kernel_size": 2}),
    ((2, 3, 9, 7), {"kernel_size": 2}),                                  # odd: a remainder
    ((2, 3, 9, 9), {"kernel_size": 3, "stride": 2, "padding": 1}),       # ResNet's stem
    ((1, 2, 10, 9), {"kernel_size": (3, 2), "stride": (2, 1), "dilation": (2, 3)}),
    ((2, 2, 7, 8), {"kernel_size": 3, "stride": 2, "ceil_mode": True}),
    ((2, 2, 7, 8), {"kernel_size": 2, "stride": 1, "padding": 1}),       # overlapping
    ((3, 8, 8), {"kernel_size": 2}),                                     # unbatched
    ((0, 3, 8, 8), {"kernel_size": 2}),                                  # empty batch
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,kw", POOL)
def test_max_pool2d_parity(xs, kw, dtype, path):
    check(lambda m, x: m.nn.functional.max_pool2d(x, **kw), [xs], dtype)
    check(lambda m, x: m.nn.functional.max_pool2d(x, return_indices=True, **kw)[1], [xs],
          dtype, grad=False)


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2,
                                                      "padding": 1}])
def test_max_pool2d_ties_infinities_and_nan(kw, path):
    # ties: the first maximum in window order wins (values, indices and gradient)
    x = np.array([[[[1.0, 1.0, -np.inf, -np.inf], [1.0, 0.0, -np.inf, -np.inf],
                    [np.nan, 2.0, 3.0, 3.0], [2.0, np.nan, 3.0, -1.0]]]], np.float32)
    xt, xe = torch.tensor(x, requires_grad=True), ember.tensor(x, requires_grad=True)
    yt, it = torch.nn.functional.max_pool2d(xt, return_indices=True, **kw)
    ye, ie = ember.nn.functional.max_pool2d(xe, return_indices=True, **kw)
    np.testing.assert_array_equal(ye.detach().numpy(), yt.detach().numpy())
    finite = ~np.isnan(yt.detach().numpy())  # NaN windows: PyTorch takes the last NaN
    np.testing.assert_array_equal(ie.numpy()[finite], it.numpy()[finite])
    yt.sum().backward()
    ye.sum().backward()
    np.testing.assert_array_equal(xe.grad.numpy().sum(), xt.grad.numpy().sum())


def test_max_pool2d_double_backward(path):
    gradcheck(lambda m, x: m.nn.functional.max_pool2d(x, 3, 2, 1), [(2, 2, 5, 6)],
              gradgrad=True)
    gradcheck(lambda m, x: m.nn.functional.max_pool2d(x, 2), [(1, 2, 4, 6)], gradgrad=True)


def test_max_pool2d_inference_and_integers(path):
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    with ember.no_grad():
        ye = ember.nn.functional.max_pool2d(ember.tensor(x), 2)
    np.testing.assert_array_equal(ye.numpy(), torch.nn.functional.max_pool2d(
        torch.tensor(x), 2).numpy())
    xi = np.arange(2 * 3 * 6 * 6, dtype=np.int64).reshape(2, 3, 6, 6) % 7
    np.testing.assert_array_equal(
        ember.nn.functional.max_pool2d(ember.tensor(xi), 2).numpy(),
        torch.nn.functional.max_pool2d(torch.tensor(xi), 2).numpy())


def test_scatter_planes_skips_bad_indices():
    if not _conv_c.available(np.float32):
        pytest.skip("no C compiler")
    g = np.ones((1, 2, 3), np.float32)
    flat = np.array([[[0, 5, -1], [2, 2, 99]]], np.int64)
    out = _conv_c.scatter_planes(g, flat, (1, 2, 6))
    np.testing.assert_array_equal(out, [[[1, 0, 0, 0, 0, 1], [0, 0, 2, 0, 0, 0]]])


def test_conv_c_env_switch(monkeypatch):
    monkeypatch.setenv("EMBER_CONV_C", "0")
    monkeypatch.setattr(_conv_c, "_LIB", {})
    assert not _conv_c.available(np.float32)
    monkeypatch.setattr(_conv_c, "_LIB", {})
    monkeypatch.delenv("EMBER_CONV_C")
    from ember.compiler._codegen import c_compiler
    assert _conv_c.available(np.float32) == (c_compiler() is not None)


# ---------------------------------------------------------------------- 1 vs N threads
def _cnn_step(seed, dtype):
    """Outputs and gradients of a small CNN covering every kernel (im2col batch-first and
    batch-last, Winograd, col2im, full-convolution input gradients, both max poolings)."""
    ember.manual_seed(seed)
    nn = ember.nn
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(32, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 8, 5, stride=2, padding=2), nn.Flatten())
    model = model.to({np.float32: ember.float32, np.float64: ember.float64}[dtype])
    rng = np.random.default_rng(seed)
    x = ember.tensor(rng.standard_normal((6, 3, 24, 20)).astype(dtype), requires_grad=True)
    y = model(x)
    y.backward(ember.tensor(rng.standard_normal(tuple(y.shape)).astype(dtype)))
    return [y.detach().numpy(), x.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_give_the_same_results(dtype, path, threads, always_split, monkeypatch):
    monkeypatch.setattr(C, "_WINOGRAD_MIN_TILES", 1)
    ember.set_num_threads(1)
    one = _cnn_step(0, dtype)
    for n in (2, 3):
        ember.set_num_threads(n)
        many = _cnn_step(0, dtype)
        for a, b in zip(one, many):
            # the split parts are independent; only BLAS's own blocking may differ
            np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       atol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("xs,ws,kw", [
    ((5, 3, 11, 9), (8, 3, 3, 3), {"padding": 1}),                     # im2col batch first
    ((9, 4, 7, 6), (6, 2, 3, 2), {"stride": 2, "padding": 1, "groups": 2}),  # batch last
    ((4, 32, 12, 10), (48, 32, 3, 3), {"padding": 1}),                 # Winograd
    ((3, 6, 9, 8), (8, 6, 5, 5), {"stride": 2, "padding": 2}),         # col2im
])
def test_split_conv_parity_at_threads(xs, ws, kw, path, threads, always_split):
    ember.set_num_threads(3)
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, **kw), [xs, ws, (ws[0],)],
          np.float32, low=-1, high=1)
    check(lambda m, x, w: m.nn.functional.conv_transpose2d(x, w, stride=2, padding=1),
          [(xs[0], ws[0], 5, 4), (ws[0], 3, 3, 3)], np.float64)


# ---------------------------------------------------------------------- batch norm
BATCH_NORM = [(4, 3, 5, 6), (2, 8, 7), (16, 5), (1, 4, 3, 3), (3, 64, 16, 16),
              # rows of at most 16 values go channels-inner in blocks of 1024 // L channels
              # (600 channels of 4: three blocks; 300 of 15: five), longer ones in 16 lanes
              # with a tail (17, 33)
              (3, 600, 2, 2), (2, 300, 3, 5), (4, 24, 4, 4), (2, 9, 17), (3, 4, 33)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs", BATCH_NORM)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training_parity(xs, affine, dtype, path):
    c = xs[1]

    def fn(m, x, *wb):
        w, b = wb if affine else (None, None)
        rm, rv = m.zeros(c, dtype=x.dtype), m.ones(c, dtype=x.dtype)
        y = m.nn.functional.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3)
        return y, rm, rv

    shapes = [xs, (c,), (c,)] if affine else [xs]
    check(fn, shapes, dtype)


def test_batch_norm_double_backward(path):
    gradcheck(lambda m, x, w, b: m.nn.functional.batch_norm(x, None, None, w, b, training=True),
              [(3, 2, 2, 3), (2,), (2,)], gradgrad=True)


@pytest.mark.parametrize("xs", [(4, 6, 5, 5), (5, 700, 2, 2), (3, 20, 4, 4)])
def test_batch_norm_threads(xs, path, threads, always_split):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(xs).astype(np.float32)
    out = []
    for n in (1, 2, 3):
        ember.set_num_threads(n)
        bn = ember.nn.BatchNorm2d(xs[1])
        xe = ember.tensor(x, requires_grad=True)
        y = bn(xe)
        (y * y).sum().backward()
        out.append([y.detach().numpy(), xe.grad.numpy(), bn.weight.grad.numpy(),
                    bn.bias.grad.numpy(), bn.running_var.numpy()])
    for other in out[1:]:
        for a, b in zip(out[0], other):
            np.testing.assert_array_equal(a, b)  # channels are independent: bit for bit


# ---------------------------------------------------------------------- few channels, bias
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("xs,ws,kw", [
    ((9, 1, 12, 11), (6, 1, 5, 5), {"padding": 2}),   # LeNet's first layer: batch last
    ((3, 2, 12, 11), (4, 2, 3, 3), {"padding": 1}),   # two channels, batch first
    ((2, 3, 9, 8), (5, 3, 3, 2), {"stride": 2}),      # three channels over three threads
])
def test_few_channel_im2col_and_bias_grad_split(xs, ws, kw, dtype, path, threads,
                                                always_split):
    """im2col cut by (channel, kernel row) and the bias gradient cut by channels: PyTorch's
    values and gradients at 3 threads, and the same bits at 1 and 3 threads."""
    ember.set_num_threads(3)
    check(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, **kw), [xs, ws, (ws[0],)],
          dtype, low=-1, high=1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    res = []
    for n in (1, 3):
        ember.set_num_threads(n)
        ts = [ember.tensor(a, requires_grad=True) for a in (x, w, b)]
        y = ember.nn.functional.conv2d(*ts, **kw)
        y.backward(ember.ones_like(y))
        res.append([y.detach().numpy()] + [t.grad.numpy() for t in ts])
    for a, c in zip(*res):
        np.testing.assert_array_equal(a, c)


def test_bias_grad_split_double_backward(threads, always_split):
    ember.set_num_threads(2)
    gradcheck(lambda m, x, w, b: m.nn.functional.conv2d(x, w, b, padding=1),
              [(2, 3, 5, 4), (4, 3, 3, 3), (4,)], gradgrad=True)
