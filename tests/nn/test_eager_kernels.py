"""Issue 25's eager kernels: float32 exact GELU without SciPy, the fused attention of
``multi_head_attention_forward``, and softmax / layer norm as cache-sized blocks of rows.
Each is compared with PyTorch (values and gradients, float32 and float64) and with itself at
one and two threads (bit for bit: the work is split by rows, heads or elements)."""

import math

import numpy as np
import pytest

import ember
from ember import _parallel as P
from ember.ops import nn as K

torch = pytest.importorskip("torch")


def _close(a, b, dtype, rtol=None, atol=None):
    if rtol is None:
        rtol, atol = (1.3e-6, 1e-5) if dtype == np.float32 else (1e-7, 1e-7)
    torch.testing.assert_close(torch.from_numpy(np.asarray(a)), b.detach(), rtol=rtol,
                               atol=atol)


# ---------------------------------------------------------------------- GELU
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_values_and_grads_match_torch(dtype, approximate):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000) * 3, np.linspace(-12, 12, 2401),
                        [0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0]]).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    xe, xt = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ye = ember.nn.functional.gelu(xe, approximate=approximate)
    yt = torch.nn.functional.gelu(xt, approximate=approximate)
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    _close(ye.detach().numpy(), yt, dtype)
    _close(xe.grad.numpy(), xt.grad, dtype)


def test_gelu_float32_is_accurate_against_float64():
    """The float32 erf (A&S 7.1.26 as erfc) against the exact GELU: absolute error at
    PyTorch's level, and far better than ``0.5 * (1 + erf)`` in the negative tail."""
    x = np.linspace(-9, 9, 200001).astype(np.float32)
    y = ember.nn.functional.gelu(ember.tensor(x)).numpy()
    x64 = x.astype(np.float64)
    exact = x64 * 0.5 * np.asarray([math.erfc(-v / math.sqrt(2)) for v in x64])
    yt = torch.nn.functional.gelu(torch.tensor(x)).numpy()
    assert np.abs(y - exact).max() <= 1.5 * max(np.abs(yt - exact).max(), 4e-7)
    tail = (x < -4) & (exact != 0)
    assert (np.abs(y - exact)[tail] / np.abs(exact)[tail]).max() < 0.02


@pytest.mark.parametrize("n", [0, 1 << 15])  # SciPy's erf below _GELU_FAST_MIN, A&S above
def test_gelu_special_values(n):
    x = np.concatenate([[np.nan, np.inf, -np.inf, 0.0], np.ones(n)]).astype(np.float32)
    t = ember.tensor(x, requires_grad=True)
    y = ember.nn.functional.gelu(t)
    y.sum().backward()
    want = torch.nn.functional.gelu(torch.tensor(x)).numpy()
    # (PyTorch's float32 GELU gives NaN at +inf on AVX-512 CPUs; the limit is +inf)
    np.testing.assert_array_equal(np.isnan(y.detach().numpy()),
                                  np.isnan(want) & ~np.isposinf(x))
    assert y.detach().numpy()[1] == np.inf and y.detach().numpy()[3] == 0
    assert t.grad.numpy()[3] == 0.5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_one_and_two_threads_equal(dtype, threads):
    x = np.random.default_rng(1).standard_normal((3, P.MIN_SIZE_HEAVY + 4097)).astype(dtype)
    g = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    out = []
    for n in (1, 2):
        threads(n)
        t = ember.tensor(x, requires_grad=True)
        y = ember.nn.functional.gelu(t)
        y.backward(ember.tensor(g))
        out.append((y.detach().numpy(), t.grad.numpy()))
    np.testing.assert_array_equal(out[0][0], out[1][0])
    np.testing.assert_array_equal(out[0][1], out[1][1])


def test_gelu_double_backward_matches_torch():
    x = np.random.default_rng(3).standard_normal(50)
    xe, xt = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (ge,) = ember.autograd.grad(ember.nn.functional.gelu(xe).sum(), xe, create_graph=True)
    (gt,) = torch.autograd.grad(torch.nn.functional.gelu(xt).sum(), xt, create_graph=True)
    (gge,) = ember.autograd.grad((ge * ge).sum(), xe)
    (ggt,) = torch.autograd.grad((gt * gt).sum(), xt)
    _close(gge.numpy(), ggt, np.float64)


# ---------------------------------------------------------------------- attention
def _mha_pair(dtype, batch_first, seed=0, E=32, H=4):
    torch.manual_seed(seed)
    mt = torch.nn.MultiheadAttention(E, H, batch_first=batch_first).to(
        torch.float64 if dtype == np.float64 else torch.float32)
    me = ember.nn.MultiheadAttention(E, H, batch_first=batch_first).to(
        ember.float64 if dtype == np.float64 else ember.float32)
    me.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in
                        mt.state_dict().items()})
    return me, mt


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mask", ["none", "causal", "padding", "both", "bool"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_fused_attention_matches_torch(dtype, mask, batch_first):
    me, mt = _mha_pair(dtype, batch_first)
    rng = np.random.default_rng(1)
    N, L, E = 3, 7, 32
    x = rng.standard_normal((N, L, E) if batch_first else (L, N, E)).astype(dtype)
    kw_e, kw_t = {}, {}
    if mask in ("causal", "both"):
        m = np.triu(np.full((L, L), -np.inf), 1).astype(dtype)
        kw_e["attn_mask"], kw_t["attn_mask"] = ember.tensor(m), torch.tensor(m)
    if mask == "bool":
        m = np.triu(np.ones((L, L), bool), 1)
        kw_e["attn_mask"], kw_t["attn_mask"] = ember.tensor(m), torch.tensor(m)
    if mask in ("padding", "both"):
        p = np.zeros((N, L), bool)
        p[0, -2:] = True
        kw_e["key_padding_mask"], kw_t["key_padding_mask"] = ember.tensor(p), torch.tensor(p)
    xe, xt = ember.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ye = me(xe, xe, xe, need_weights=False, **kw_e)[0]
    yt = mt(xt, xt, xt, need_weights=False, **kw_t)[0]
    g = rng.standard_normal(ye.shape).astype(dtype)
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    tol = {} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-5}
    _close(ye.detach().numpy(), yt, dtype, **tol)
    _close(xe.grad.numpy(), xt.grad, dtype, **tol)
    for (n, pe), (_, pt) in zip(me.named_parameters(), mt.named_parameters()):
        _close(pe.grad.numpy(), pt.grad, dtype, **tol)


def test_fused_attention_equals_composed_ops_and_double_backward():
    """The fused op against the composed ops it replaces (float64), first and second
    derivatives (``create_graph=True`` records the backward with ember ops)."""
    rng = np.random.default_rng(4)
    B, L, S, D = 4, 5, 6, 3
    mask = ember.tensor(np.triu(np.full((L, S), -1e9), 2))
    arrays = [rng.standard_normal((B, n, D)) for n in (L, S, S)]

    def run(fused):
        q, k, v = (ember.tensor(a, requires_grad=True) for a in arrays)
        if fused:
            y = K.attention(q, k, v, mask, 0.5)
            assert type(y.grad_fn).__name__ == "Attention"
        else:
            y = ember.nn.functional.softmax(q @ k.transpose(-2, -1) * 0.5 + mask, -1) @ v
        gs = ember.autograd.grad((y * y).sum(), (q, k, v), create_graph=True)
        hs = ember.autograd.grad(sum((g * g).sum() for g in gs), (q, k, v))
        return [y] + list(gs) + list(hs)

    for a, b in zip(run(True), run(False)):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-10,
                                   atol=1e-12)


def test_fused_attention_declines_what_it_does_not_cover():
    q = ember.randn(2, 3, 4)
    assert K.attention(q.unsqueeze(0), q.unsqueeze(0), q.unsqueeze(0), None, 1.0) is None
    m = ember.zeros(3, 3, requires_grad=True)
    assert K.attention(q, q, q, m, 1.0) is None  # a mask that needs a gradient
    assert K.attention(q, q, q.double(), None, 1.0) is None
    assert K.attention(q, q, q, ember.zeros(5, 3, 3), 1.0) is None  # unbroadcastable
    assert K.attention(q, q, q, None, 1.0) is not None


def test_fused_attention_one_and_two_threads_equal(threads):
    rng = np.random.default_rng(5)
    B, L, D = 40, 64, 32  # B * L * L above MIN_SIZE_HEAVY: the heads split over threads
    arrays = [rng.standard_normal((B, L, D)).astype(np.float32) for _ in range(3)]
    mask = ember.nn.Transformer.generate_square_subsequent_mask(L)
    g = ember.tensor(rng.standard_normal((B, L, D)).astype(np.float32))
    out = []
    for n in (1, 2):
        threads(n)
        q, k, v = (ember.tensor(a, requires_grad=True) for a in arrays)
        y = K.attention(q, k, v, mask, D ** -0.5)
        y.backward(g)
        out.append([y.detach().numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_transformer_layer_under_capture_uses_composed_ops():
    """Modes (capture, profiler, autocast, forward AD, vmap) see the composed ops, so
    export and ONNX keep their core op set."""
    layer = ember.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    x = ember.randn(2, 5, 16)
    ep = ember.export.export(layer, (x,))
    names = {str(n.target) for n in ep.graph.nodes}
    assert not any("Attention" in n and "multi" not in n.lower() for n in names), names
    np.testing.assert_allclose(ep.module()(x).detach().numpy(), layer(x).detach().numpy(),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- row kernels
@pytest.mark.parametrize("kind", ["softmax", "log_softmax", "layer_norm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_kernels_blocked_and_threaded_equal_one_call(kind, dtype, threads, monkeypatch):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((300, 1000)).astype(dtype)  # 300K elements: blocked and split
    g = rng.standard_normal(x.shape).astype(dtype)
    w = rng.standard_normal(1000).astype(dtype)
    b = rng.standard_normal(1000).astype(dtype)
    F = ember.nn.functional

    def run(fw, n):
        xt = fw.tensor(x, requires_grad=True)
        extra = []
        if kind == "layer_norm":
            extra = [fw.tensor(w, requires_grad=True), fw.tensor(b, requires_grad=True)]
            y = fw.nn.functional.layer_norm(xt, (1000,), *extra)
        else:
            y = getattr(fw.nn.functional if fw is torch else F, kind)(xt, -1)
        y.backward(fw.tensor(g))
        return [y.detach().numpy(), xt.grad.numpy()] + [e.grad.numpy() for e in extra]

    results = []
    for n, block in ((1, 1 << 40), (1, P.BLOCK), (2, P.BLOCK), (2, 4096)):
        threads(n)
        monkeypatch.setattr(P, "BLOCK", block)
        results.append(run(ember, n))
    for r in results[1:]:
        for a, c in zip(results[0], r):
            np.testing.assert_array_equal(a, c)
    for a, t in zip(results[0], run(torch, 1)):
        tol = (1e-5, 1e-4) if dtype == np.float32 else (1e-10, 1e-10)
        np.testing.assert_allclose(a, t, rtol=tol[0], atol=tol[1])


# ---------------------------------------------------------------------- row scatter
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_embedding_and_index_backward_row_scatter(dtype):
    """Embedding and ``x[int_array]`` backward sum repeated rows (sorted runs and
    ``np.add.reduceat``) as ``np.add.at`` and PyTorch do, negative indices included."""
    rng = np.random.default_rng(7)
    w = rng.standard_normal((50, 33)).astype(dtype)
    idx = rng.integers(0, 50, (8, 40))
    g = rng.standard_normal((8, 40, 33)).astype(dtype)
    we, wt = ember.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
    ember.nn.functional.embedding(ember.tensor(idx), we).backward(ember.tensor(g))
    torch.nn.functional.embedding(torch.tensor(idx), wt).backward(torch.tensor(g))
    _close(we.grad.numpy(), wt.grad, dtype)
    neg = idx - 50 * (idx % 2)  # the same rows, half of them counted from the end
    xe = ember.tensor(w, requires_grad=True)
    xe[ember.tensor(neg)].backward(ember.tensor(g))
    want = np.zeros_like(w)
    np.add.at(want, neg, g)
    np.testing.assert_allclose(xe.grad.numpy(), want, rtol=1e-6 if dtype == np.float32
                               else 1e-13, atol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mask", ["none", "causal", "float2d", "bool2d", "bool4d", "float4d"])
def test_sdpa_fused_matches_torch(dtype, mask):
    rng = np.random.default_rng(8)
    N, H, L, S, D = 2, 3, 5, 6 if mask not in ("causal",) else 5, 4
    arrays = [rng.standard_normal(s).astype(dtype) for s in
              ((N, H, L, D), (N, H, S, D), (N, H, S, D))]
    kw_e, kw_t = {}, {}
    if mask == "causal":
        kw_e["is_causal"] = kw_t["is_causal"] = True
    elif mask != "none":
        m = rng.standard_normal((L, S)).astype(dtype) if "float" in mask else \
            np.tril(np.ones((L, S), bool))
        if mask.endswith("4d"):
            m = m[None, None]
        kw_e["attn_mask"], kw_t["attn_mask"] = ember.tensor(m), torch.tensor(m)
    qe = [ember.tensor(a, requires_grad=True) for a in arrays]
    qt = [torch.tensor(a, requires_grad=True) for a in arrays]
    ye = ember.nn.functional.scaled_dot_product_attention(*qe, **kw_e)
    yt = torch.nn.functional.scaled_dot_product_attention(*qt, **kw_t)
    g = rng.standard_normal(ye.shape).astype(dtype)
    ye.backward(ember.tensor(g))
    yt.backward(torch.tensor(g))
    tol = {} if dtype == np.float64 else {"rtol": 1e-5, "atol": 1e-5}
    _close(ye.detach().numpy(), yt, dtype, **tol)
    for a, b in zip(qe, qt):
        _close(a.grad.numpy(), b.grad, dtype, **tol)


# ---------------------------------------------------------------------- cross-entropy backward
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_backward_by_rows_matches_torch_and_one_thread(dtype, reduction,
                                                                     weighted, threads,
                                                                     monkeypatch):
    """(N, C) logits: the backward runs as blocks of rows (several per thread: small
    ``BLOCK``), bit for bit the whole-array passes at 1, 2 and 3 threads, and PyTorch's."""
    monkeypatch.setattr(P, "BLOCK", 700)
    rng = np.random.default_rng(4)
    n, c = 1031, 67  # odd sizes, above MIN_SIZE_HEAVY elements
    assert n * c >= P.MIN_SIZE_HEAVY
    x = rng.standard_normal((n, c)).astype(dtype) * 3
    y = rng.integers(0, c, n)
    y[::13] = -100  # ignored rows
    w = rng.random(c).astype(dtype) + 0.5 if weighted else None
    g = rng.standard_normal(n).astype(dtype) if reduction == "none" else None
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(xt, torch.tensor(y), None if w is None else
                                           torch.tensor(w), reduction=reduction)
    lt.backward(None if g is None else torch.tensor(g))
    got = []
    for th in (1, 2, 3):
        threads(th)
        xe = ember.tensor(x, requires_grad=True)
        le = ember.nn.functional.cross_entropy(xe, ember.tensor(y), None if w is None else
                                               ember.tensor(w), reduction=reduction)
        le.backward(None if g is None else ember.tensor(g))
        got.append(xe.grad.numpy())
    _close(le.detach().numpy(), lt, dtype)
    _close(got[0], xt.grad, dtype)
    for a in got[1:]:
        np.testing.assert_array_equal(a, got[0])
    # the whole-array formula (what smaller inputs take) gives the same bits
    monkeypatch.setattr(P, "MIN_SIZE_HEAVY", 1 << 60)
    xe = ember.tensor(x, requires_grad=True)
    le = ember.nn.functional.cross_entropy(xe, ember.tensor(y), None if w is None else
                                           ember.tensor(w), reduction=reduction)
    le.backward(None if g is None else ember.tensor(g))
    np.testing.assert_array_equal(xe.grad.numpy(), got[0])
