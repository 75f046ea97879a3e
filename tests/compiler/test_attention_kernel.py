"""``ember.compiler._attention``: the C self-attention of compiled steps (forward and
backward, the columns a mask's ``-inf`` tail removes skipped) against eager's
``PackedSelfAttention`` and PyTorch, float32 and float64, causal and other tail masks, odd
sizes, strided projections, fully masked rows, 1 vs 2 threads; and the masks it declines."""

import types

import numpy as np
import pytest

import ember
from ember.compiler import _attention, _codegen
from ember.ops.nn import PackedSelfAttention

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(_codegen.c_compiler() is None, reason="no C compiler")

TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _causal(L, dt):
    return np.triu(np.full((L, L), -np.inf, dt), 1)


def _eager(qkv, mask, heads, scale, g):
    ctx = types.SimpleNamespace()
    out = PackedSelfAttention.forward(ctx, qkv, mask, heads, scale)
    st = types.SimpleNamespace(saved_arrays=(qkv,), heads=heads, w=ctx.w, scale=scale)
    return out, ctx.w, PackedSelfAttention.array_backward(st, g)[0]


def _torch(qkv, mask, heads, scale, g):
    """PyTorch's attention of the packed (L, N, 3E) projection and its gradient."""
    L, N, E3 = qkv.shape
    E = E3 // 3
    hd = E // heads
    t = torch.tensor(qkv, requires_grad=True)
    q, k, v = (a.reshape(L, N, heads, hd).permute(1, 2, 0, 3) for a in t.split(E, -1))
    s = q @ k.transpose(-1, -2) * scale + torch.tensor(mask)
    o = (s.softmax(-1) @ v).permute(2, 0, 1, 3).reshape(L, N, E)
    o.backward(torch.tensor(g))
    return o.detach().numpy(), t.grad.numpy()


def _close(a, b, tol, what):
    scale = max(1.0, float(np.nanmax(np.abs(b))))
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
    err = float(np.nanmax(np.abs(a - b)))
    assert err <= tol * scale, f"{what}: {err:.3g}"


def _run(qkv, mask, heads, scale, g):
    got = _attention.packed_forward(qkv, mask, heads, scale)
    assert got is not None, "the C kernel declined"
    out, w = got
    return out, w, _attention.packed_backward(g, qkv, w, heads, scale, mask)


def _tail_mask(L, dt, seed):
    """A mask whose rows end in -inf tails of random lengths (not monotone, some rows
    longer than others), finite random values elsewhere."""
    r = np.random.default_rng(seed)
    m = r.standard_normal((L, L)).astype(dt)
    for i in range(L):
        m[i, r.integers(1, max(2, L // 3)):] = -np.inf
    return m


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(64, 16, 128, 4), (37, 3, 15, 3), (5, 2, 48, 1)])
@pytest.mark.parametrize("kind", ["causal", "tails"])
def test_against_eager_and_pytorch(dtype, shape, kind):
    L, N, E, H = shape
    r = np.random.default_rng(0)
    qkv = r.standard_normal((L, N, 3 * E)).astype(dtype)
    g = r.standard_normal((L, N, E)).astype(dtype)
    mask = _causal(L, dtype) if kind == "causal" else _tail_mask(L, dtype, 1)
    scale = (E // H) ** -0.5
    out, w, gq = _run(qkv, mask, H, scale, g)
    eo, ew, eg = _eager(qkv, mask, H, scale, g)
    tol = TOL[dtype]
    _close(out, eo, tol, "output vs eager")
    _close(w, ew, tol, "weights vs eager")
    _close(gq, eg, tol, "gradient vs eager")
    to, tg = _torch(qkv, mask, H, scale, g)
    _close(out, to, tol * 10, "output vs PyTorch")
    _close(gq, tg, tol * 10, "gradient vs PyTorch")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_projection_and_gradient(dtype):
    """A projection that is a view (rows further apart than 3E) and a non-contiguous
    output gradient."""
    L, N, E, H = 32, 4, 32, 2
    r = np.random.default_rng(2)
    big = r.standard_normal((L, N, 3 * E + 8)).astype(dtype)
    qkv = big[:, :, 4:4 + 3 * E]
    g = np.ascontiguousarray(r.standard_normal((N, L, E)).astype(dtype)).transpose(1, 0, 2)
    mask = _causal(L, dtype)
    out, w, gq = _run(qkv, mask, H, 0.3, g)
    eo, ew, eg = _eager(np.ascontiguousarray(qkv), mask, H, 0.3, np.ascontiguousarray(g))
    _close(out, eo, TOL[dtype], "output")
    _close(gq, eg, TOL[dtype], "gradient")


def test_fully_masked_row_is_nan_as_eager():
    L, N, E, H = 16, 2, 16, 2
    r = np.random.default_rng(3)
    qkv = r.standard_normal((L, N, 3 * E))
    mask = _causal(L, np.float64)
    mask[5] = -np.inf
    g = r.standard_normal((L, N, E))
    out, w, gq = _run(qkv, mask, H, 0.25, g)
    eo, ew, eg = _eager(qkv, mask, H, 0.25, g)
    assert np.isnan(out[5]).all() and np.isnan(w[:, :, 5]).all()
    _close(out, eo, 1e-12, "output")
    _close(w, ew, 1e-12, "weights")
    _close(gq, eg, 1e-12, "gradient")


def test_same_bits_at_one_and_two_threads():
    L, N, E, H = 64, 16, 128, 4
    r = np.random.default_rng(4)
    qkv = r.standard_normal((L, N, 3 * E)).astype(np.float32)
    g = r.standard_normal((L, N, E)).astype(np.float32)
    mask = _causal(L, np.float32)
    old = ember.get_num_threads()
    try:
        ember.set_num_threads(1)
        one = _run(qkv, mask, H, 0.2, g)
        ember.set_num_threads(2)
        two = _run(qkv, mask, H, 0.2, g)
    finally:
        ember.set_num_threads(old)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_declines_what_it_does_not_serve():
    """No mask, a mask with too few -inf to skip (eager's BLAS calls are faster there),
    another mask shape, an integer projection: None (eager runs)."""
    L, N, E = 16, 2, 8
    qkv = np.random.default_rng(5).standard_normal((L, N, 3 * E)).astype(np.float32)
    g = np.zeros((L, N, E), np.float32)
    w = np.zeros((N, 2, L, L), np.float32)
    sparse = np.zeros((L, L), np.float32)
    sparse[:, -1] = -np.inf
    for mask in (None, sparse, np.zeros((L, L + 1), np.float32)):
        assert _attention.packed_forward(qkv, mask, 2, 0.5) is None
        assert _attention.packed_backward(g, qkv, w, 2, 0.5, mask) is None
    assert _attention.packed_forward(qkv.astype(np.int64), _causal(L, np.float32), 2,
                                     0.5) is None


def test_compiled_causal_block_runs_the_kernel(monkeypatch):
    """A compiled training step with causal multi-head attention takes this kernel (both
    directions) and matches eager's step."""
    calls = {"fwd": 0, "bwd": 0}
    fwd, bwd = _attention.packed_forward, _attention.packed_backward

    def count_fwd(*a):
        r = fwd(*a)
        calls["fwd"] += r is not None
        return r

    def count_bwd(*a):
        r = bwd(*a)
        calls["bwd"] += r is not None
        return r
    monkeypatch.setattr(_attention, "packed_forward", count_fwd)
    monkeypatch.setattr(_attention, "packed_backward", count_bwd)
    nn = ember.nn
    ember.manual_seed(0)

    def make():
        ember.manual_seed(0)
        return nn.MultiheadAttention(32, 4, batch_first=True)
    ref, model = make(), make()
    mask = nn.Transformer.generate_square_subsequent_mask(24)
    x = ember.randn(3, 24, 32)

    def step_of(m):
        def step():
            for p in m.parameters():
                p.grad = None
            loss = m(x, x, x, attn_mask=mask, need_weights=False)[0].pow(2).mean()
            loss.backward()
            return loss
        return step
    compiled, eager = ember.compile(step_of(model)), step_of(ref)
    for _ in range(3):
        lc, le = float(compiled()), float(eager())
        assert abs(lc - le) <= 1e-5 * max(1.0, abs(le))
        for pc, pe in zip(model.parameters(), ref.parameters()):
            np.testing.assert_allclose(pc.grad.numpy(), pe.grad.numpy(), rtol=1e-4,
                                       atol=1e-5)
    assert calls["fwd"] >= 2 and calls["bwd"] >= 2, calls
    # the batch-first input, permuted, feeds the in-projection and its weight gradient:
    # made contiguous once for both (``_passes.share_permuted_copies``)
    assert compiled.pass_stats["permuted_copies"] >= 1, compiled.pass_stats
