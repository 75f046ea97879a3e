"""Autocast: output dtypes of PyTorch's CPU autocast lists, values, gradients, nesting."""

import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

R = np.random.default_rng(0)


def arr(*shape, positive=False):
    a = R.standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


def spd(n):
    a = R.standard_normal((n, n))
    return a @ a.T + n * np.eye(n)


def tgt(*shape, high=3):
    return R.integers(0, high, shape)


# name -> (function of (lib, F, make), inputs); ``make(a)`` builds a floating tensor of the
# dtype under test, integer arrays stay int64.
OPS = {
    # lower precision
    "mm": lambda L, F, m: L.mm(m(arr(3, 4)), m(arr(4, 5))),
    "bmm": lambda L, F, m: L.bmm(m(arr(2, 3, 4)), m(arr(2, 4, 5))),
    "matmul": lambda L, F, m: L.matmul(m(arr(2, 3, 4)), m(arr(4, 5))),
    "baddbmm": lambda L, F, m: L.baddbmm(m(arr(2, 3, 5)), m(arr(2, 3, 4)), m(arr(2, 4, 5))),
    "addmm": lambda L, F, m: L.addmm(m(arr(3, 5)), m(arr(3, 4)), m(arr(4, 5))),
    "addbmm": lambda L, F, m: L.addbmm(m(arr(3, 5)), m(arr(2, 3, 4)), m(arr(2, 4, 5))),
    "linear": lambda L, F, m: F.linear(m(arr(2, 4)), m(arr(3, 4)), m(arr(3))),
    "conv1d": lambda L, F, m: F.conv1d(m(arr(1, 2, 8)), m(arr(3, 2, 3)), m(arr(3))),
    "conv2d": lambda L, F, m: F.conv2d(m(arr(1, 2, 6, 6)), m(arr(3, 2, 3, 3))),
    "conv3d": lambda L, F, m: F.conv3d(m(arr(1, 2, 4, 4, 4)), m(arr(3, 2, 2, 2, 2))),
    "conv_transpose1d": lambda L, F, m: F.conv_transpose1d(m(arr(1, 2, 5)), m(arr(2, 3, 3))),
    "conv_transpose2d": lambda L, F, m: F.conv_transpose2d(m(arr(1, 2, 4, 4)),
                                                           m(arr(2, 3, 3, 3))),
    "conv_transpose3d": lambda L, F, m: F.conv_transpose3d(m(arr(1, 2, 3, 3, 3)),
                                                           m(arr(2, 3, 2, 2, 2))),
    "prelu": lambda L, F, m: F.prelu(m(arr(2, 3, 4)), m(arr(3))),
    "sdpa": lambda L, F, m: F.scaled_dot_product_attention(m(arr(1, 2, 4, 8)), m(arr(1, 2, 4, 8)),
                                                           m(arr(1, 2, 4, 8))),
    # float32
    "prod": lambda L, F, m: L.prod(m(arr(3, 4)), 1),
    "quantile": lambda L, F, m: L.quantile(m(arr(10)), 0.3),
    "cdist": lambda L, F, m: L.cdist(m(arr(3, 4)), m(arr(5, 4))),
    "trace": lambda L, F, m: L.trace(m(arr(4, 4))),
    "inverse": lambda L, F, m: L.inverse(m(spd(3))),
    "linalg_inv": lambda L, F, m: L.linalg.inv(m(spd(3))),
    "cholesky": lambda L, F, m: L.linalg.cholesky(m(spd(3))),
    "linalg_svd": lambda L, F, m: L.linalg.svd(m(arr(3, 3)))[1],
    "linalg_qr": lambda L, F, m: L.linalg.qr(m(arr(3, 3)))[1],
    "linalg_eigh": lambda L, F, m: L.linalg.eigh(m(spd(3)))[0],
    "linalg_solve": lambda L, F, m: L.linalg.solve(m(spd(3)), m(arr(3, 2))),
    "pinverse": lambda L, F, m: L.pinverse(m(arr(3, 4))),
    "fft_rfft": lambda L, F, m: L.fft.rfft(m(arr(8))),
    "fft_fft": lambda L, F, m: L.fft.fft(m(arr(8))),
    "max_pool3d": lambda L, F, m: F.max_pool3d(m(arr(1, 1, 4, 4, 4)), 2),
    "avg_pool3d": lambda L, F, m: F.avg_pool3d(m(arr(1, 1, 4, 4, 4)), 2),
    "adaptive_avg_pool3d": lambda L, F, m: F.adaptive_avg_pool3d(m(arr(1, 1, 4, 4, 4)), 2),
    "mse_loss": lambda L, F, m: F.mse_loss(m(arr(3, 4)), m(arr(3, 4))),
    "l1_loss": lambda L, F, m: F.l1_loss(m(arr(3, 4)), m(arr(3, 4))),
    "smooth_l1_loss": lambda L, F, m: F.smooth_l1_loss(m(arr(3, 4)), m(arr(3, 4))),
    "huber_loss": lambda L, F, m: F.huber_loss(m(arr(3, 4)), m(arr(3, 4))),
    "kl_div": lambda L, F, m: F.kl_div(m(arr(3, 4)), m(arr(3, 4, positive=True)),
                                       reduction="batchmean"),
    "nll_loss": lambda L, F, m: F.nll_loss(m(arr(4, 3)), L.tensor(tgt(4))),
    "cross_entropy": lambda L, F, m: F.cross_entropy(m(arr(4, 3)), L.tensor(tgt(4))),
    "binary_cross_entropy": lambda L, F, m: F.binary_cross_entropy(
        L.sigmoid(m(arr(3, 4))), m(R.random((3, 4)))),
    "bce_with_logits": lambda L, F, m: F.binary_cross_entropy_with_logits(m(arr(3, 4)),
                                                                          m(R.random((3, 4)))),
    "soft_margin_loss": lambda L, F, m: F.soft_margin_loss(m(arr(3, 4)), m(np.sign(arr(3, 4)))),
    "margin_ranking_loss": lambda L, F, m: F.margin_ranking_loss(m(arr(4)), m(arr(4)),
                                                                 m(np.sign(arr(4)))),
    "hinge_embedding_loss": lambda L, F, m: F.hinge_embedding_loss(m(arr(4)),
                                                                   m(np.sign(arr(4)))),
    "cosine_embedding_loss": lambda L, F, m: F.cosine_embedding_loss(
        m(arr(3, 4)), m(arr(3, 4)), m(np.sign(arr(3)))),
    "poisson_nll_loss": lambda L, F, m: F.poisson_nll_loss(m(arr(3, 4)), m(arr(3, 4,
                                                                               positive=True))),
    "triplet_margin_loss": lambda L, F, m: F.triplet_margin_loss(m(arr(3, 4)), m(arr(3, 4)),
                                                                 m(arr(3, 4))),
    "multi_margin_loss": lambda L, F, m: F.multi_margin_loss(m(arr(4, 3)), L.tensor(tgt(4))),
    "polar": lambda L, F, m: L.polar(m(arr(4, positive=True)), m(arr(4))),
    "nanquantile": lambda L, F, m: L.nanquantile(m(arr(10)), 0.7),
    "cholesky_inverse": lambda L, F, m: L.cholesky_inverse(L.linalg.cholesky(m(spd(3)))),
    "cholesky_solve": lambda L, F, m: L.cholesky_solve(m(arr(3, 2)),
                                                       L.linalg.cholesky(m(spd(3)))),
    "triangular_solve": lambda L, F, m: L.triangular_solve(m(arr(3, 2)), m(spd(3)))[0],
    "linalg_eigvalsh": lambda L, F, m: L.linalg.eigvalsh(m(spd(3))),
    "linalg_svdvals": lambda L, F, m: L.linalg.svdvals(m(arr(3, 4))),
    "linalg_lstsq": lambda L, F, m: L.linalg.lstsq(m(spd(3)), m(arr(3, 2)))[0],
    "linalg_matrix_rank": lambda L, F, m: L.linalg.matrix_rank(m(spd(3))),
    "linalg_cond": lambda L, F, m: L.linalg.cond(m(spd(3))),
    "linalg_eigvals": lambda L, F, m: L.linalg.eigvals(m(spd(3))),
    "linalg_cholesky_ex": lambda L, F, m: L.linalg.cholesky_ex(m(spd(3)))[0],
    "linalg_inv_ex": lambda L, F, m: L.linalg.inv_ex(m(spd(3)))[0],
    "linalg_householder_product": lambda L, F, m: L.linalg.householder_product(
        m(arr(4, 3)), m(arr(3))),
    "linalg_tensorinv": lambda L, F, m: L.linalg.tensorinv(m(spd(4)).reshape(4, 2, 2), 1),
    "linalg_tensorsolve": lambda L, F, m: L.linalg.tensorsolve(m(spd(4)), m(arr(4))),
    "linalg_vecdot": lambda L, F, m: L.linalg.vecdot(m(arr(3, 4)), m(arr(3, 4))),
    "geqrf": lambda L, F, m: L.geqrf(m(arr(4, 3)))[0],
    "fft_ifft": lambda L, F, m: L.fft.ifft(m(arr(8))),
    "fft_fft2": lambda L, F, m: L.fft.fft2(m(arr(4, 4))),
    "fft_rfftn": lambda L, F, m: L.fft.rfftn(m(arr(4, 4))),
    "fft_irfft": lambda L, F, m: L.fft.irfft(m(arr(8))),
    "fft_hfft": lambda L, F, m: L.fft.hfft(m(arr(8))),
    "stft": lambda L, F, m: L.stft(m(arr(64)), 16, window=L.hann_window(16),
                                   return_complex=True),
    "adaptive_max_pool3d": lambda L, F, m: F.adaptive_max_pool3d(m(arr(1, 1, 4, 4, 4)), 2),
    "max_unpool2d": lambda L, F, m: F.max_unpool2d(*F.max_pool2d(
        m(arr(1, 1, 4, 4)), 2, return_indices=True), 2),
    "reflection_pad2d": lambda L, F, m: F.pad(m(arr(1, 1, 4, 4)), (1, 1, 1, 1),
                                              mode="reflect"),
    "replication_pad1d": lambda L, F, m: F.pad(m(arr(1, 2, 4)), (1, 2), mode="replicate"),
    "constant_pad": lambda L, F, m: F.pad(m(arr(1, 2, 4)), (1, 2)),
    "grid_sample": lambda L, F, m: F.grid_sample(m(arr(1, 1, 4, 4)),
                                                 m(R.random((1, 3, 3, 2)) * 2 - 1),
                                                 align_corners=False),
    "multilabel_margin_loss": lambda L, F, m: F.multilabel_margin_loss(
        m(arr(2, 4)), L.tensor([[3, 0, -1, 1], [1, 2, 3, -1]])),
    "ctc_loss": lambda L, F, m: F.ctc_loss(L.log_softmax(m(arr(6, 2, 4)), -1),
                                           L.tensor([[1, 2], [3, 1]]), L.tensor([6, 6]),
                                           L.tensor([2, 2])),
    "index_copy": lambda L, F, m: L.index_copy(m(arr(4, 2)), 0, L.tensor([0, 2]), m(arr(2, 2))),
    # promote
    "cat": lambda L, F, m: L.cat([m(arr(2, 3)), L.tensor(arr(2, 3), dtype=L.float32)]),
    "stack": lambda L, F, m: L.stack([m(arr(2, 3)), L.tensor(arr(2, 3), dtype=L.float32)]),
    # the inputs' dtype
    "softmax": lambda L, F, m: L.softmax(m(arr(3, 4)), -1),
    "layer_norm": lambda L, F, m: F.layer_norm(m(arr(3, 4)), (4,)),
    "exp": lambda L, F, m: L.exp(m(arr(3, 4))),
    "sum": lambda L, F, m: L.sum(m(arr(3, 4))),
    "relu": lambda L, F, m: L.relu(m(arr(3, 4))),
    "add": lambda L, F, m: m(arr(3, 4)) + m(arr(3, 4)),
    "gelu": lambda L, F, m: F.gelu(m(arr(3, 4))),
    "einsum": lambda L, F, m: L.einsum("ij,jk->ik", m(arr(3, 4)), m(arr(4, 2))),
    "mv": lambda L, F, m: L.mv(m(arr(3, 4)), m(arr(4))),
    "dot": lambda L, F, m: L.dot(m(arr(4)), m(arr(4))),
    "max_pool2d": lambda L, F, m: F.max_pool2d(m(arr(1, 1, 4, 4)), 2),
    "avg_pool2d": lambda L, F, m: F.avg_pool2d(m(arr(1, 1, 4, 4)), 2),
    "mean": lambda L, F, m: L.mean(m(arr(3, 4))),
}

DTYPES = ["float32", "bfloat16", "float64"]


def run(lib, fn, dtype, low, seed):
    global R
    R = np.random.default_rng(seed)
    F = lib.nn.functional
    dt = getattr(lib, dtype)

    def make(a):
        return lib.tensor(np.asarray(a, dtype=np.float64), dtype=dt)

    with lib.autocast("cpu", dtype=getattr(lib, low)):
        return fn(lib, F, make)


@pytest.mark.parametrize("low", ["bfloat16", "float16"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(OPS))
def test_output_dtype_matches_pytorch(name, dtype, low):
    fn = OPS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = run(torch, fn, dtype, low, 1)
        except RuntimeError as e:  # e.g. cat of bfloat16 and float32 under float16 autocast
            with pytest.raises(RuntimeError, match=str(e).split("\n")[0][:40]):
                run(ember, fn, dtype, low, 1)
            return
        got = run(ember, fn, dtype, low, 1)
    assert str(got.dtype) == str(expected.dtype).replace("torch.", "ember."), (
        name, dtype, got.dtype, expected.dtype)
    if expected.dtype.is_complex:
        return
    tol = {"bfloat16": 3e-2, "float16": 4e-3}
    t = tol[low] if expected.dtype in (torch.bfloat16, torch.float16) or dtype != "float64" \
        else 1e-7
    if dtype == "bfloat16" or expected.dtype in (torch.bfloat16, torch.float16):
        t = max(t, tol["bfloat16"])
    e = expected.float().numpy() if expected.dtype != torch.float64 else expected.numpy()
    g = got.float().numpy() if str(got.dtype) != "ember.float64" else got.numpy()
    np.testing.assert_allclose(g, e, rtol=t * 4, atol=t * 4 * max(1.0, np.abs(e).max()))


@pytest.mark.parametrize("low", ["bfloat16", "float16"])
def test_mlp_values_and_gradients(low):
    """A small MLP under autocast: loss and float32 parameter gradients within PyTorch's
    low-precision tolerance of PyTorch's."""
    rng = np.random.default_rng(3)
    w1, b1 = rng.standard_normal((16, 8)) * 0.3, rng.standard_normal(16) * 0.1
    w2, b2 = rng.standard_normal((4, 16)) * 0.3, rng.standard_normal(4) * 0.1
    x, y = rng.standard_normal((32, 8)), rng.integers(0, 4, 32)
    out = {}
    for lib in (torch, ember):
        params = [lib.tensor(a, dtype=lib.float32, requires_grad=True) for a in (w1, b1, w2, b2)]
        with lib.autocast("cpu", dtype=getattr(lib, low)):
            h = lib.nn.functional.linear(lib.tensor(x, dtype=lib.float32), params[0], params[1])
            h = lib.relu(h)
            logits = lib.nn.functional.linear(h, params[2], params[3])
            assert str(logits.dtype).endswith(low)
            loss = lib.nn.functional.cross_entropy(logits, lib.tensor(y))
            assert str(loss.dtype).endswith("float32")
        loss.backward()
        assert all(str(p.grad.dtype).endswith("float32") for p in params)
        out[lib.__name__] = [loss.detach().numpy()] + [p.grad.numpy() for p in params]
    for a, b in zip(out["ember"], out["torch"]):
        np.testing.assert_allclose(a, b, rtol=5e-2, atol=2e-2)


def test_nesting_disable_and_queries():
    x = ember.randn(3, 4)
    w = ember.randn(5, 4)
    assert not ember.is_autocast_enabled("cpu")
    with ember.autocast("cpu"):
        assert ember.is_autocast_enabled("cpu")
        assert not ember.is_autocast_enabled()  # PyTorch: no argument asks about CUDA
        assert ember.get_autocast_dtype("cpu") is ember.bfloat16
        assert ember.nn.functional.linear(x, w).dtype is ember.bfloat16
        with ember.autocast("cpu", enabled=False):
            assert not ember.is_autocast_enabled("cpu")
            assert ember.nn.functional.linear(x, w).dtype is ember.float32
        with ember.autocast("cpu", dtype=ember.float16):
            assert ember.get_autocast_cpu_dtype() is ember.float16
            assert ember.mm(x, w.t()).dtype is ember.float16
        assert ember.mm(x, w.t()).dtype is ember.bfloat16
    assert ember.mm(x, w.t()).dtype is ember.float32
    assert not ember.is_autocast_enabled("cpu")
    assert torch.get_autocast_dtype("cpu") == torch.bfloat16  # same default as ours
    assert ember.get_autocast_dtype("cpu") is ember.bfloat16


def test_decorator_and_aliases():
    @ember.autocast("cpu")
    def f(a, b):
        return a @ b

    @ember.amp.autocast("cpu", dtype=ember.float16)
    def g(a, b):
        return a @ b

    a = ember.randn(2, 3)
    b = ember.randn(3, 2)
    assert f(a, b).dtype is ember.bfloat16
    assert g(a, b).dtype is ember.float16
    assert (a @ b).dtype is ember.float32
    with pytest.warns(FutureWarning):
        ctx = ember.cpu.amp.autocast()
    with ctx:
        assert (a @ b).dtype is ember.bfloat16


def test_exception_inside_region_restores_state():
    with pytest.raises(ValueError):
        with ember.autocast("cpu"):
            raise ValueError("boom")
    assert not ember.is_autocast_enabled("cpu")
    from ember.autograd import graph
    assert graph._MODES == []


def test_unsupported_dtype_warns_and_disables():
    with pytest.warns(UserWarning, match="CPU Autocast only supports"):
        ctx = ember.autocast("cpu", dtype=ember.float64)
    with ctx:
        assert not ember.is_autocast_enabled("cpu")
        assert (ember.randn(2, 2) @ ember.randn(2, 2)).dtype is ember.float32
    with pytest.raises(RuntimeError, match="device_type"):
        ember.autocast("tpu")


def test_cast_cache_reuses_parameter_casts():
    lin = ember.nn.Linear(4, 4)
    x = ember.randn(2, 4)
    with ember.autocast("cpu"):
        y1 = lin(x)
        y2 = lin(x)
        from ember.amp import autocast_mode
        n = len(autocast_mode._MODE.cache)
        assert n == 2  # weight and bias, each rounded once for the region
    assert len(autocast_mode._MODE.cache) == 0  # cleared on leaving the outermost region
    assert ember.equal(y1, y2)
    with ember.autocast("cpu", cache_enabled=False):
        lin(x)
        assert len(autocast_mode._MODE.cache) == 0


def test_backward_of_lower_op_reaches_float32_leaf():
    a = ember.randn(3, 4, requires_grad=True)
    b = ember.randn(4, 2, requires_grad=True)
    with ember.autocast("cpu"):
        c = a @ b
    assert c.dtype is ember.bfloat16
    c.float().sum().backward()
    assert a.grad.dtype is ember.float32
    ta = torch.tensor(a.detach().numpy(), requires_grad=True)
    tb = torch.tensor(b.detach().numpy(), requires_grad=True)
    with torch.autocast("cpu"):
        tc = ta @ tb
    tc.float().sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=2e-2, atol=2e-2)
