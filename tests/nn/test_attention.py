"""Embeddings, attention and transformers against PyTorch (copied weights)."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _copy(tm, em):
    em.load_state_dict({k: ember.tensor(v.detach().numpy()) for k, v in tm.state_dict().items()})


def _cmp(a, b, tol=1e-10):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=tol, rtol=tol)


@pytest.mark.parametrize("kw", [dict(), dict(is_causal=True), dict(mask="bool"), dict(mask="float"),
                                dict(scale=0.3), dict(gqa=True)])
def test_sdpa(kw):
    rng = np.random.default_rng(0)
    q = rng.standard_normal((2, 4, 5, 3))
    kv_heads = 2 if kw.get("gqa") else 4
    k, v = rng.standard_normal((2, kv_heads, 6, 3)), rng.standard_normal((2, kv_heads, 6, 3))
    mask = rng.random((5, 6)) > 0.3
    mask[:, 0] = True
    res = []
    for m in (torch, ember):
        ts = [m.tensor(a, requires_grad=True) for a in (q, k, v)]
        args = {}
        if kw.get("mask") == "bool":
            args["attn_mask"] = m.tensor(mask)
        elif kw.get("mask") == "float":
            args["attn_mask"] = m.tensor(np.where(mask, 0.0, -1e9))
        if "is_causal" in kw:
            args["is_causal"] = True
        if "scale" in kw:
            args["scale"] = kw["scale"]
        if kw.get("gqa"):
            args["enable_gqa"] = True
        o = m.nn.functional.scaled_dot_product_attention(*ts, **args)
        (o * o).sum().backward()
        res.append((o, ts))
    _cmp(res[0][0], res[1][0])
    for a, b in zip(res[0][1], res[1][1]):
        _cmp(a.grad, b.grad)


MHA = [dict(), dict(batch_first=True), dict(add_bias_kv=True), dict(add_zero_attn=True),
       dict(kdim=3, vdim=6), dict(bias=False)]


@pytest.mark.parametrize("kw", MHA)
@pytest.mark.parametrize("masks", ["none", "bool", "float"])
@pytest.mark.parametrize("average", [True, False])
def test_multihead_attention(kw, masks, average):
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(8, 2, **kw).double()
    em = ember.nn.MultiheadAttention(8, 2, dtype=ember.float64, **kw)
    _copy(tm, em)
    assert repr(tm) == repr(em)
    rng = np.random.default_rng(1)
    bf = kw.get("batch_first", False)
    shp = lambda L, E: (3, L, E) if bf else (L, 3, E)  # noqa: E731
    x, kx = rng.standard_normal(shp(5, 8)), rng.standard_normal(shp(6, kw.get("kdim", 8)))
    vx = rng.standard_normal(shp(6, kw.get("vdim", 8)))
    kpm = np.zeros((3, 6), bool)
    kpm[0, -2:] = True
    am = rng.random((5, 6)) > 0.8
    res = []
    for m, mod in ((torch, tm), (ember, em)):
        xs = [m.tensor(a, requires_grad=True) for a in (x, kx, vx)]
        args = {}
        if masks == "bool":
            args = dict(key_padding_mask=m.tensor(kpm), attn_mask=m.tensor(am))
        elif masks == "float":
            args = dict(key_padding_mask=m.tensor(kpm * -1e4), attn_mask=m.tensor(am * -2.0))
        o, w = mod(*xs, average_attn_weights=average, **args)
        (o.sum() + (w * w).sum()).backward()
        res.append((o, w, xs))
    _cmp(res[0][0], res[1][0])
    _cmp(res[0][1], res[1][1])
    for a, b in zip(res[0][2], res[1][2]):
        _cmp(a.grad, b.grad)
    ep = dict(em.named_parameters())
    for n, p in tm.named_parameters():
        _cmp(p.grad, ep[n].grad)


def test_mha_self_attention_need_weights_false_and_unbatched():
    tm = torch.nn.MultiheadAttention(8, 4).double()
    em = ember.nn.MultiheadAttention(8, 4, dtype=ember.float64)
    _copy(tm, em)
    x = np.random.default_rng(2).standard_normal((5, 8))
    ot, wt = tm(torch.tensor(x), torch.tensor(x), torch.tensor(x), need_weights=False)
    xe = ember.tensor(x)
    oe, we = em(xe, xe, xe, need_weights=False)
    assert wt is None and we is None
    _cmp(ot, oe)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_decoder_layers(norm_first, activation, batch_first):
    torch.manual_seed(0)
    kw = dict(dim_feedforward=16, dropout=0.0, batch_first=batch_first, norm_first=norm_first,
              activation=activation)
    rng = np.random.default_rng(3)
    shp = (2, 5, 8) if batch_first else (5, 2, 8)
    src, mem = rng.standard_normal(shp), rng.standard_normal(shp)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(5).double().numpy()
    kpm = np.zeros((2, 5), bool)
    kpm[1, -1] = True
    for cls in ("TransformerEncoderLayer", "TransformerDecoderLayer"):
        tm = getattr(torch.nn, cls)(8, 2, **kw).double()
        em = getattr(ember.nn, cls)(8, 2, dtype=ember.float64, **kw)
        _copy(tm, em)
        assert repr(tm) == repr(em)
        tm.train()
        em.train()
        res = []
        for m, mod in ((torch, tm), (ember, em)):
            s = m.tensor(src, requires_grad=True)
            if cls == "TransformerEncoderLayer":
                o = mod(s, src_mask=m.tensor(mask), src_key_padding_mask=m.tensor(kpm))
            else:
                o = mod(s, m.tensor(mem), tgt_mask=m.tensor(mask),
                        memory_key_padding_mask=m.tensor(kpm))
            (o * o).sum().backward()
            res.append((o, s))
        _cmp(res[0][0], res[1][0], 1e-9)
        _cmp(res[0][1].grad, res[1][1].grad, 1e-9)


def test_full_transformer_and_stacks():
    torch.manual_seed(0)
    tm = torch.nn.Transformer(8, 2, 2, 2, 16, dropout=0.0).double()
    em = ember.nn.Transformer(8, 2, 2, 2, 16, dropout=0.0, dtype=ember.float64)
    _copy(tm, em)
    assert repr(tm) == repr(em)
    rng = np.random.default_rng(4)
    s, t = rng.standard_normal((6, 2, 8)), rng.standard_normal((4, 2, 8))
    tmask = torch.nn.Transformer.generate_square_subsequent_mask(4).double()
    emask = ember.nn.Transformer.generate_square_subsequent_mask(4, dtype=ember.float64)
    _cmp(tmask, emask)
    _cmp(tm(torch.tensor(s), torch.tensor(t), tgt_mask=tmask),
         em(ember.tensor(s), ember.tensor(t), tgt_mask=emask), 1e-9)
    layer = ember.nn.TransformerEncoderLayer(8, 2, 16)
    enc = ember.nn.TransformerEncoder(layer, 3, norm=ember.nn.LayerNorm(8))
    assert len(enc.layers) == 3 and enc.layers[0] is not enc.layers[1]
    assert enc(ember.randn(5, 2, 8)).shape == (5, 2, 8)


def test_embedding():
    torch.manual_seed(0)
    for kw in [dict(), dict(padding_idx=2), dict(scale_grad_by_freq=True), dict(padding_idx=-1)]:
        te = torch.nn.Embedding(10, 3, **kw).double()
        ee = ember.nn.Embedding(10, 3, dtype=ember.float64, **kw)
        _copy(te, ee)
        assert repr(te) == repr(ee)
        idx = np.array([[1, 2, 2], [5, 1, 9]])
        ot, oe = te(torch.tensor(idx)), ee(ember.tensor(idx))
        (ot ** 2).sum().backward()
        (oe ** 2).sum().backward()
        _cmp(ot, oe)
        _cmp(te.weight.grad, ee.weight.grad)
    w = np.random.default_rng(5).standard_normal((4, 3)) * 3
    te = torch.nn.Embedding.from_pretrained(torch.tensor(w), max_norm=1.0)
    ee = ember.nn.Embedding.from_pretrained(ember.tensor(w), max_norm=1.0)
    _cmp(te(torch.tensor([0, 2])), ee(ember.tensor([0, 2])))
    _cmp(te.weight, ee.weight)
    assert not ee.weight.requires_grad
    with pytest.raises(IndexError):
        ee(ember.tensor([4]))
    with pytest.raises(RuntimeError):
        ee(ember.tensor([0.5]))


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag(mode):
    torch.manual_seed(0)
    tb = torch.nn.EmbeddingBag(10, 3, mode=mode).double()
    eb = ember.nn.EmbeddingBag(10, 3, mode=mode, dtype=ember.float64)
    _copy(tb, eb)
    inp, off = np.array([1, 2, 4, 5, 4, 3, 2, 9]), np.array([0, 4, 4, 6])
    ot, oe = tb(torch.tensor(inp), torch.tensor(off)), eb(ember.tensor(inp), ember.tensor(off))
    (ot ** 2).sum().backward()
    (oe ** 2).sum().backward()
    _cmp(ot, oe)
    _cmp(tb.weight.grad, eb.weight.grad)
    two_d = np.array([[1, 2, 3], [4, 4, 0]])
    _cmp(tb(torch.tensor(two_d)), eb(ember.tensor(two_d)))
    if mode == "sum":
        psw = np.random.default_rng(6).random(8)
        _cmp(tb(torch.tensor(inp), torch.tensor(off), torch.tensor(psw)),
             eb(ember.tensor(inp), ember.tensor(off), ember.tensor(psw)))
