"""The C kernels of ``ember/ops/_nn_c.py`` (layer norm over trailing dims, exact GELU):
values and gradients against PyTorch (float32 and float64, odd sizes, with and without
weight/bias, non-contiguous and empty inputs), bit for bit the same at one and two threads,
and the NumPy fallback (no C compiler) giving the same values to rounding."""

import numpy as np
import pytest

import ember
from ember.ops import _nn_c

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not _nn_c.available(np.float32), reason="no C compiler")


@pytest.fixture
def no_c(monkeypatch):
    """The NumPy formulation, as where no C compiler works."""
    def off():
        monkeypatch.setattr(_nn_c, "_LIB", {None: None})
    return off


def _tol(dtype):
    return (2e-5, 2e-5) if dtype == np.float32 else (1e-10, 1e-10)


def _layer_norm(fw, x, shape, w, b, g, transpose=False):
    xt = fw.tensor(x, requires_grad=True)
    params = [None if p is None else fw.tensor(p, requires_grad=True) for p in (w, b)]
    xin = xt.transpose(0, 1) if transpose else xt
    y = fw.nn.functional.layer_norm(xin, shape, *params, eps=1e-5)
    y.backward(fw.tensor(g))
    return [y.detach().numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in params
                                                     if p is not None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("lead,shape", [((1031,), (127,)), ((4, 77), (3, 29)),
                                        ((16, 64), (128,)), ((3,), (5000,))])
@pytest.mark.parametrize("params", ["both", "weight", "bias", "none"])
def test_layer_norm_matches_torch(dtype, lead, shape, params):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(lead + shape) * 3 + 1).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    w = rng.standard_normal(shape).astype(dtype) if params in ("both", "weight") else None
    b = rng.standard_normal(shape).astype(dtype) if params in ("both", "bias") else None
    if x.size >= _nn_c.MIN_SIZE:  # the C kernel serves it
        assert ember.ops.nn._trailing_c(x, tuple(range(len(lead), x.ndim)), w, b)
    rtol, atol = _tol(dtype)
    for a, t in zip(_layer_norm(ember, x, shape, w, b, g), _layer_norm(torch, x, shape, w, b,
                                                                      g)):
        np.testing.assert_allclose(a, t, rtol=rtol, atol=atol * max(1, np.abs(t).max()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_non_contiguous_and_empty(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 64, 96)).astype(dtype)  # transposed to (64, 300, 96)
    g = rng.standard_normal((64, 300, 96)).astype(dtype)
    w, b = rng.standard_normal(96).astype(dtype), rng.standard_normal(96).astype(dtype)
    rtol, atol = _tol(dtype)
    for a, t in zip(_layer_norm(ember, x, (96,), w, b, g, True),
                    _layer_norm(torch, x, (96,), w, b, g, True)):
        np.testing.assert_allclose(a, t, rtol=rtol, atol=atol * max(1, np.abs(t).max()))
    e = np.zeros((0, 128), dtype)
    for a, t in zip(_layer_norm(ember, e, (128,), w[:1].repeat(128), None, e),
                    _layer_norm(torch, e, (128,), w[:1].repeat(128), None, e)):
        assert a.shape == t.shape
        np.testing.assert_array_equal(a, t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_one_and_two_threads_equal_and_numpy_fallback(dtype, threads, no_c):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2053, 130)).astype(dtype)  # rows not a multiple of the blocks
    g = rng.standard_normal(x.shape).astype(dtype)
    w, b = rng.standard_normal(130).astype(dtype), rng.standard_normal(130).astype(dtype)
    out = []
    for n in (1, 2, 3):
        threads(n)
        out.append(_layer_norm(ember, x, (130,), w, b, g))
    for r in out[1:]:
        for a, c in zip(out[0], r):
            np.testing.assert_array_equal(a, c)
    no_c()
    assert not ember.ops.nn._trailing_c(x, (1,), w, b)
    rtol, atol = _tol(dtype)
    for a, c in zip(out[0], _layer_norm(ember, x, (130,), w, b, g)):
        np.testing.assert_allclose(a, c, rtol=rtol, atol=atol * max(1, np.abs(c).max()))


def test_group_norm_through_the_c_kernel_matches_torch():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 32, 15, 17)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    res = []
    for fw in (ember, torch):
        xt = fw.tensor(x, requires_grad=True)
        m = fw.nn.GroupNorm(4, 32)
        y = m(xt)
        y.backward(fw.tensor(g))
        res.append([y.detach().numpy(), xt.grad.numpy(), m.weight.grad.numpy()])
    for a, t in zip(*res):
        np.testing.assert_allclose(a, t, rtol=2e-5, atol=2e-5 * max(1, np.abs(t).max()))


def test_layer_norm_double_backward_keeps_composed_formula():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((256, 128))
    w = rng.standard_normal(128)
    res = []
    for fw in (ember, torch):
        xt, wt = fw.tensor(x, requires_grad=True), fw.tensor(w, requires_grad=True)
        y = fw.nn.functional.layer_norm(xt, (128,), wt)
        (gx,) = fw.autograd.grad((y * y.detach()).sum(), xt, create_graph=True)
        (ggw,) = fw.autograd.grad((gx * gx).sum(), wt)
        res.append(ggw.numpy())
    np.testing.assert_allclose(res[0], res[1], rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------- GELU
def _gelu(fw, x, g):
    xt = fw.tensor(x, requires_grad=True)
    y = fw.nn.functional.gelu(xt)
    y.backward(fw.tensor(g))
    return y.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1 << 14, 100003])
def test_gelu_matches_torch(dtype, n):
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.standard_normal(n - 2412) * 4, np.linspace(-15, 15, 2401),
                        [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0, 87.0, -87.0, 200.0, -200.0,
                         1e-40]]).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    rtol, atol = (1.3e-6, 1e-6) if dtype == np.float32 else (1e-12, 1e-12)
    # float32 against PyTorch in float64 rounded to float32: PyTorch's own float32 kernel
    # is off by up to 1.1e-6 on AVX-512 CPUs (4e-7 on AVX2), ember's by 4e-7 on both
    ref = [r.astype(dtype) for r in _gelu(torch, x.astype(np.float64), g.astype(np.float64))]
    for a, t in zip(_gelu(ember, x, g), ref):
        np.testing.assert_allclose(a, t, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_special_values_non_contiguous_and_fallback(dtype, threads, no_c):
    x = np.concatenate([[np.nan, np.inf, -np.inf, 0.0, -0.0],
                        np.linspace(-6, 6, 70000)]).astype(dtype)
    g = np.ones_like(x)
    ye, ge = _gelu(ember, x, g)
    yt, gt = _gelu(torch, x, g)
    # (PyTorch's float32 GELU gives NaN at +inf on AVX-512 CPUs; the limit is +inf)
    np.testing.assert_array_equal(np.isnan(ye), np.isnan(yt) & ~np.isposinf(x))
    np.testing.assert_array_equal(np.isnan(ge), np.isnan(gt))
    assert ye[1] == np.inf and ye[3] == 0 and ge[3] == 0.5
    # a strided input takes NumPy's formula: same values to rounding
    xs = np.linspace(-6, 6, 2 * 70001).astype(dtype)
    ys = ember.nn.functional.gelu(ember.tensor(xs)[::2]).numpy()
    yc = ember.nn.functional.gelu(ember.tensor(xs[::2].copy())).numpy()
    np.testing.assert_allclose(ys, yc, rtol=1e-6, atol=1e-6)
    out = []
    for n in (1, 2):
        threads(n)
        out.append(_gelu(ember, x[5:], g[5:]))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])
    no_c()
    for a, c in zip(out[0], _gelu(ember, x[5:], g[5:])):
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-6)


def test_gelu_empty_and_no_grad():
    y = ember.nn.functional.gelu(ember.zeros(0, 7))
    assert tuple(y.shape) == (0, 7)
    x = np.linspace(-3, 3, 1 << 15).astype(np.float32)
    with ember.no_grad():
        y = ember.nn.functional.gelu(ember.tensor(x)).numpy()
    np.testing.assert_allclose(y, torch.nn.functional.gelu(torch.tensor(x)).numpy(),
                               rtol=1.3e-6, atol=1e-6)


# ---------------------------------------------------------------------- attention softmax
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mask", ["none", "causal", "per_batch", "padded_row"])
def test_fused_attention_c_softmax_matches_torch_and_fallback(dtype, mask, threads, no_c):
    from ember.ops import nn as K
    rng = np.random.default_rng(7)
    B, L, S, D = 37, 65, 67, 19  # B * L * S past the split threshold: heads over threads
    q, k, v = (rng.standard_normal(s).astype(dtype) for s in ((B, L, D), (B, S, D),
                                                               (B, S, D)))
    g = rng.standard_normal((B, L, D)).astype(dtype)
    m = None
    if mask == "causal":
        m = np.triu(np.full((L, S), -np.inf, dtype), 1)
    elif mask == "per_batch":
        m = (rng.standard_normal((B, L, S)) * 2).astype(dtype)
    elif mask == "padded_row":  # a fully masked row: NaN, as PyTorch's
        m = np.zeros((L, S), dtype)
        m[3] = -np.inf

    def run(fw, n=1):
        if fw is ember:
            threads(n)
        ts = [fw.tensor(a, requires_grad=True) for a in (q, k, v)]
        if fw is ember:
            y = K.attention(*ts, None if m is None else ember.tensor(m), 0.3)
        else:
            sc = ts[0] @ ts[1].transpose(1, 2) * 0.3
            if m is not None:
                sc = sc + torch.tensor(m)
            y = torch.softmax(sc, -1) @ ts[2]
        y.backward(fw.tensor(g))
        return [y.detach().numpy()] + [t.grad.numpy() for t in ts]

    one, two, want = run(ember, 1), run(ember, 2), run(torch)
    no_c()
    fallback = run(ember, 1)
    rtol, atol = (2e-5, 2e-5) if dtype == np.float32 else (1e-10, 1e-10)
    for a, b, t, f in zip(one, two, want, fallback):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(t))
        ok = ~np.isnan(t)
        np.testing.assert_allclose(a[ok], t[ok], rtol=rtol, atol=atol)
        np.testing.assert_allclose(a[ok], f[ok], rtol=rtol, atol=atol)


# ---------------------------------------------------------------------- packed self-attention
def _mha_pair(dtype, batch_first, E=48, H=4):
    torch.manual_seed(0)
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    mt = torch.nn.MultiheadAttention(E, H, batch_first=batch_first).to(tdt)
    me = ember.nn.MultiheadAttention(E, H, batch_first=batch_first).to(
        ember.float64 if dtype == np.float64 else ember.float32)
    me.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in
                        mt.state_dict().items()})
    return me, mt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", [None, "causal", "float"])
def test_packed_self_attention_matches_torch(dtype, batch_first, mask, threads, no_c,
                                             monkeypatch):
    """Self-attention through ``PackedSelfAttention`` (heads as strided views, no copies):
    values and gradients of the input and every parameter against PyTorch, the same at one
    and two threads to rounding, and against ember's own composed path (the op declined)."""
    from ember.ops import nn as K
    rng = np.random.default_rng(8)
    N, L, E = 7, 37, 48
    x = rng.standard_normal((N, L, E) if batch_first else (L, N, E)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    m = None
    if mask == "causal":
        m = np.triu(np.full((L, L), -np.inf, dtype), 1)
    elif mask == "float":
        m = rng.standard_normal((L, L)).astype(dtype)
    calls = []
    real = K.PackedSelfAttention.apply
    monkeypatch.setattr(K.PackedSelfAttention, "apply",
                        lambda *a: calls.append(1) or real(*a))

    def run(fw, mod, n=1):
        if fw is ember:
            threads(n)
        mod.zero_grad()
        xt = fw.tensor(x, requires_grad=True)
        mt = None if m is None else fw.tensor(m)
        y, _ = mod(xt, xt, xt, attn_mask=mt, need_weights=False, is_causal=mask == "causal")
        y.backward(fw.tensor(g))
        return [y.detach().numpy(), xt.grad.numpy()] + [p.grad.numpy().copy()
                                                         for p in mod.parameters()]

    me, mt = _mha_pair(dtype, batch_first)
    one, two = run(ember, me, 1), run(ember, me, 2)
    assert calls
    want = run(torch, mt)
    monkeypatch.setattr(K, "packed_self_attention", lambda *a: None)
    no_c()
    composed = run(ember, me, 1)
    rtol, atol = (2e-5, 2e-5) if dtype == np.float32 else (1e-10, 1e-10)
    for a, b, t, c in zip(one, two, want, composed):
        # (the projections' GEMMs round differently at 1 and 2 BLAS threads)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * max(1, np.abs(t).max()))
        np.testing.assert_allclose(a, t, rtol=rtol, atol=atol * max(1, np.abs(t).max()))
        np.testing.assert_allclose(a, c, rtol=rtol, atol=atol * max(1, np.abs(t).max()))


def test_packed_self_attention_double_backward_matches_torch():
    me, mt = _mha_pair(np.float64, True, E=16, H=2)
    x = np.random.default_rng(9).standard_normal((3, 5, 16))
    m = np.triu(np.full((5, 5), -np.inf), 1)
    res = []
    for fw, mod in ((ember, me), (torch, mt)):
        xt = fw.tensor(x, requires_grad=True)
        # PyTorch's need_weights=False path (flash attention) has no double backward
        y, _ = mod(xt, xt, xt, attn_mask=fw.tensor(m), need_weights=fw is torch)
        (gx,) = fw.autograd.grad((y * y).sum(), xt, create_graph=True)
        (ggx,) = fw.autograd.grad((gx * gx).sum(), xt)
        res.append((gx.detach().numpy(), ggx.numpy()))
    for a, t in zip(*res):
        np.testing.assert_allclose(a, t, rtol=1e-9, atol=1e-9)


def test_packed_self_attention_declines():
    from ember.ops import nn as K
    qkv = ember.randn(5, 2, 24)
    assert K.packed_self_attention(qkv, None, 5, 1.0) is None  # 24 not a multiple of 3 * 5
    assert K.packed_self_attention(qkv, ember.zeros(5, 4), 2, 1.0) is None  # mask shape
    assert K.packed_self_attention(qkv, ember.zeros(5, 5, requires_grad=True), 2, 1.0) is None
    assert K.packed_self_attention(qkv.double(), None, 2, 1.0) is not None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_self_attention_batch_first_takes_no_transposes(dtype, monkeypatch):
    """``MultiheadAttention(batch_first=True)`` self-attention runs ``PackedSelfAttention``
    on the (N, L, 3E) projection as it comes (no transposed views, so no copies of the
    projection's input or of its gradient), with PyTorch's values and gradients; a
    mask of the wrong shape still raises PyTorch's error."""
    from ember.ops import nn as K
    seen = []
    real = K.PackedSelfAttention.apply
    monkeypatch.setattr(K.PackedSelfAttention, "apply",
                        lambda qkv, *a: seen.append((qkv.shape, qkv._data.flags.c_contiguous,
                                                     a[-1])) or real(qkv, *a))
    N, L, E = 3, 9, 16
    me, mt = _mha_pair(dtype, True, E=E, H=2)
    x = np.random.default_rng(10).standard_normal((N, L, E)).astype(dtype)
    m = np.triu(np.full((L, L), -np.inf, dtype), 1)
    res = []
    for fw, mod in ((ember, me), (torch, mt)):
        xt = fw.tensor(x, requires_grad=True)
        y, w = mod(xt, xt, xt, attn_mask=fw.tensor(m), need_weights=False, is_causal=True)
        assert w is None
        (y * y).sum().backward()
        res.append([y.detach().numpy(), xt.grad.numpy()] +
                   [p.grad.numpy() for p in mod.parameters()])
    assert seen == [((N, L, 3 * E), True, True)]
    rtol = 2e-5 if dtype == np.float32 else 1e-10
    for a, t in zip(*res):
        np.testing.assert_allclose(a, t, rtol=rtol, atol=rtol * max(1, np.abs(t).max()))
    xe = ember.tensor(x)
    with pytest.raises(RuntimeError, match="2D attn_mask"):
        me(xe, xe, xe, attn_mask=ember.zeros(L, L + 1), need_weights=False)
