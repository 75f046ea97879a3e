"""The kernels of a GPT training step made to use every core (issue 25): the bias gradient
of ``Linear`` as a BLAS product, and the whole step at one and two threads."""

import numpy as np
import pytest

import ember
from ember.ops import nn as K

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 5, 7), (1024, 384), (37, 443), (16, 64, 130)])
def test_linear_bias_grad_matches_torch(dtype, shape, threads):
    """``_column_sums`` (ones @ g on one BLAS thread from ``_COLSUM_BLAS_MIN`` elements,
    NumPy's sum below): the bias gradient, and the others, against PyTorch at 1 and 2
    threads."""
    rng = np.random.default_rng(0)
    out_f = shape[-1]
    x = rng.standard_normal(shape[:-1] + (29,)).astype(dtype)
    w = rng.standard_normal((out_f, 29)).astype(dtype)
    b = rng.standard_normal(out_f).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    res = []
    for fw, n in ((ember, 1), (ember, 2), (torch, None)):
        if n:
            threads(n)
        ts = [fw.tensor(a, requires_grad=True) for a in (x, w, b)]
        fw.nn.functional.linear(*ts).backward(fw.tensor(g))
        res.append([t.grad.numpy() for t in ts])
    tol = 2e-5 if dtype == np.float32 else 1e-11
    for one, two, want in zip(*res):
        np.testing.assert_array_equal(one, two)
        np.testing.assert_allclose(one, want, rtol=tol, atol=tol * np.abs(want).max())


def test_column_sums_declines_and_matches_numpy():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((700, 50)).astype(np.float32)
    np.testing.assert_allclose(K._column_sums(a), a.sum(0), rtol=1e-5, atol=1e-4)
    assert K._column_sums(a).dtype == np.float32
    t = rng.standard_normal((50, 700)).T  # column-strided: NumPy's sum
    np.testing.assert_allclose(K._column_sums(t), t.sum(0), rtol=1e-12)
    h = a.astype(np.float16)
    assert K._column_sums(h).dtype == np.float16


def _gpt_step(fw, init=None, steps=2):
    """benchmarks/run.py's GPT block, smaller: embeddings, 2 pre-norm encoder layers with
    GELU and causal self-attention (batch_first), final norm, head, cross-entropy, AdamW."""
    from benchmarks.run import gpt_model
    fw.manual_seed(0)
    vocab, d, heads, seq, batch = 50, 32, 4, 24, 8
    model = gpt_model(fw, vocab, d, heads, seq)
    if init is not None:
        model.load_state_dict({k: fw.tensor(v) for k, v in init.items()})
    start = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    rng = np.random.default_rng(2)
    idx = fw.tensor(rng.integers(0, vocab, (batch, seq)))
    tgt = fw.tensor(rng.integers(0, vocab, (batch, seq)))
    opt = fw.optim.AdamW(model.parameters(), lr=1e-2)
    losses, grads = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = fw.nn.functional.cross_entropy(model(idx).reshape(-1, vocab), tgt.reshape(-1))
        loss.backward()
        grads.append({k: p.grad.numpy().copy() for k, p in model.named_parameters()})
        opt.step()
        losses.append(loss.item())
    return losses, start, grads


def test_gpt_step_one_and_two_threads_match_torch(threads):
    """The GPT step at one and two threads, and PyTorch's from the same initial weights:
    the losses of three AdamW steps and every gradient of each step. (Parameters after a
    step are no fair comparison: Adam's first update is about lr * sign(g), so an element
    whose gradient is rounding noise, such as the key bias's, moves by +-lr either way.)"""
    threads(1)
    l1, init, g1 = _gpt_step(ember, steps=3)
    threads(2)
    l2, _, g2 = _gpt_step(ember, steps=3)
    lt, _, gt = _gpt_step(torch, init, steps=3)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    np.testing.assert_allclose(l1, lt, rtol=1e-5)
    for s1, s2, st in zip(g1, g2, gt):
        for k in s1:
            scale = np.abs(st[k]).max()
            np.testing.assert_allclose(s1[k], s2[k], rtol=1e-3, atol=1e-4 * scale, err_msg=k)
            np.testing.assert_allclose(s1[k], st[k], rtol=1e-3, atol=1e-4 * scale, err_msg=k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(7, 3), (256, 128), (33, 5, 3)])
def test_scatter_rows_c_is_add_at(dtype, shape, monkeypatch):
    """``_nn_c.scatter_rows`` (the embedding backward's row scatter) equals ``np.add.at`` bit
    for bit (same order of additions), with repeated and negative indices; the NumPy
    fallback (no C compiler) equals it to rounding."""
    from ember.ops import _nn_c
    from ember.ops.indexing import _scatter_rows
    rng = np.random.default_rng(3)
    n = shape[0]
    idx = rng.integers(-n, n, (9, 131))
    g = rng.standard_normal(idx.shape + shape[1:]).astype(dtype)
    want = np.zeros(shape, dtype)
    np.add.at(want, idx, g)
    got = np.zeros(shape, dtype)
    assert _scatter_rows(got, (idx,), g)
    np.testing.assert_array_equal(got, want)
    monkeypatch.setattr(_nn_c, "_LIB", {None: None})
    fb = np.zeros(shape, dtype)
    assert _scatter_rows(fb, (idx.astype(np.int32),), g)
    np.testing.assert_allclose(fb, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("padding_idx", [None, 3])
def test_embedding_backward_matches_torch(dtype, padding_idx):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((40, 17)).astype(dtype)
    idx = rng.integers(0, 40, (6, 50))
    g = rng.standard_normal((6, 50, 17)).astype(dtype)
    res = []
    for fw in (ember, torch):
        wt = fw.tensor(w, requires_grad=True)
        fw.nn.functional.embedding(fw.tensor(idx), wt, padding_idx=padding_idx).backward(
            fw.tensor(g))
        res.append(wt.grad.numpy())
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(res[0], res[1], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1000, (1 << 17) + 1023, 3 * (1 << 17) + 5])
def test_gelu_backward_blocks_match_torch(dtype, n, threads):
    """GELU's backward as one multiply by the kept derivative, written by blocks over the
    cores (sizes below, at and past the split): the same bits at 1 and 2 threads, and
    PyTorch's float64 gradient (torch's own vectorised float32 GELU is further from the
    exact value than ember's in the tails)."""
    rng = np.random.default_rng(6)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    got = []
    for k in (1, 2):
        threads(k)
        t = ember.tensor(x, requires_grad=True)
        ember.nn.functional.gelu(t).backward(ember.tensor(g))
        got.append(t.grad.numpy())
    np.testing.assert_array_equal(got[0], got[1])
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    torch.nn.functional.gelu(t).backward(torch.tensor(g.astype(np.float64)))
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got[0], t.grad.numpy(), rtol=tol, atol=tol)
