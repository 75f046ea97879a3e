"""Activation checkpointing: same gradients as without (dropout included), less memory."""

import tracemalloc
import warnings

import numpy as np
import pytest

import ember
from ember import nn
from ember.utils.checkpoint import CheckpointError, checkpoint, checkpoint_sequential

torch = pytest.importorskip("torch")


class Block(nn.Module):
    def __init__(self, d, p=0.0):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        return x + self.drop(self.fc2(nn.functional.gelu(self.fc1(self.ln(x)))))


def grads(model, x, run):
    model.zero_grad()
    x.grad = None
    ember.manual_seed(7)
    out = run()
    (out * out).sum().backward()
    return [out.detach().clone(), x.grad.clone()] + [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_same_gradients_with_dropout(reentrant, dtype):
    model = nn.Sequential(*[Block(8, p=0.3) for _ in range(4)]).to(dtype)
    x = ember.randn(5, 8, dtype=dtype, requires_grad=True)
    ref = grads(model, x, lambda: model(x))

    def per_block():
        h = x
        for b in model:
            h = checkpoint(b, h, use_reentrant=reentrant)
        return h
    for run in (per_block, lambda: checkpoint_sequential(model, 2, x, use_reentrant=reentrant)):
        got = grads(model, x, run)
        for a, b in zip(ref, got):
            assert a.dtype == b.dtype and ember.equal(a, b)


def test_without_preserved_rng_dropout_differs():
    model = Block(8, p=0.5)
    x = ember.randn(5, 8, requires_grad=True)
    ref = grads(model, x, lambda: model(x))
    got = grads(model, x, lambda: checkpoint(model, x, preserve_rng_state=False, use_reentrant=False))
    assert ember.equal(ref[0], got[0])  # the forward is the same ...
    assert not ember.equal(ref[1], got[1])  # ... the recomputed masks are not


def test_matches_pytorch_checkpoint():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 6))
    xs = rng.standard_normal((3, 6))
    out = {}
    for lib in (ember, torch):
        W = lib.tensor(w, requires_grad=True)
        X = lib.tensor(xs, requires_grad=True)
        f = (lambda a: lib.tanh(a @ W).sin() * 2)
        y = lib.utils.checkpoint.checkpoint(f, X, use_reentrant=False)
        y.sum().backward()
        out[lib.__name__] = (y.detach().numpy(), X.grad.numpy(), W.grad.numpy())
    for a, b in zip(out["ember"], out["torch"]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def activation_bytes(run, params):
    for p in params:
        p.grad = None
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    out = run()
    kept = tracemalloc.get_traced_memory()[0] - base  # what the graph holds for backward
    tracemalloc.reset_peak()
    out.sum().backward()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return kept, peak


def test_lower_peak_memory_on_12_block_mlp():
    model = nn.Sequential(*[Block(64) for _ in range(12)])
    x = ember.randn(64, 64, requires_grad=True)
    params = list(model.parameters()) + [x]
    grad_bytes = sum(p.numel() * 4 for p in params)
    kept, peak = activation_bytes(lambda: model(x), params)

    def per_block():
        h = x
        for b in model:
            h = checkpoint(b, h, use_reentrant=False)
        return h
    kept_c, peak_c = activation_bytes(per_block, params)
    assert kept_c <= 0.5 * kept  # measured: about 0.12x
    # the backward peak, gradients set aside: one block's activations at a time
    assert peak_c - grad_bytes <= 0.5 * (peak - grad_bytes)


def test_determinism_check():
    calls = []

    def f(a):
        calls.append(1)
        return (a * a).sum(0) if len(calls) == 1 else (a[:1] * a[:1]).sum(0)
    x = ember.randn(3, 2, requires_grad=True)
    y = checkpoint(f, x, use_reentrant=False)
    with pytest.raises(CheckpointError, match="metadata"):
        y.sum().backward()
    with pytest.raises(ValueError, match="determinism_check"):
        checkpoint(f, x, determinism_check="bogus", use_reentrant=False)


def test_context_fn_kwargs_and_no_grad():
    entered = []

    class Ctx:
        def __init__(self, tag):
            self.tag = tag

        def __enter__(self):
            entered.append(self.tag)

        def __exit__(self, *exc):
            return False
    x = ember.randn(3, requires_grad=True)
    y = checkpoint(lambda a, scale: (a * scale).exp(), x, scale=2.0, use_reentrant=False,
                   context_fn=lambda: (Ctx("fwd"), Ctx("re")))
    y.sum().backward()
    assert entered == ["fwd", "re"]
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(2 * x.detach().numpy()), rtol=1e-6)
    with ember.no_grad():
        z = checkpoint(lambda a: a * 2, x, use_reentrant=False)
    assert not z.requires_grad
    with pytest.raises(ValueError, match="use_reentrant=False"):
        checkpoint(lambda a: a, x, use_reentrant=True, context_fn=lambda: (Ctx(1), Ctx(2)))


def test_retain_graph_backward_twice():
    x = ember.randn(4, requires_grad=True)
    y = checkpoint(lambda a: a.sin() * a, x, use_reentrant=False)
    y.sum().backward(retain_graph=True)
    g1 = x.grad.clone()
    y.sum().backward()
    assert ember.allclose(x.grad, 2 * g1)


def test_reentrant_warns_without_grad_inputs():
    lin = nn.Linear(3, 3)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = checkpoint(lin, ember.randn(2, 3), use_reentrant=True)
    assert any("None of the inputs have requires_grad" in str(m.message) for m in w)
    assert not out.requires_grad  # as PyTorch's: parameters get no gradient this way


def test_checkpoint_under_autocast_recomputes_in_low_precision():
    lin = nn.Linear(4, 4)
    x = ember.randn(2, 4, requires_grad=True)
    with ember.autocast("cpu"):
        y = checkpoint(lin, x, use_reentrant=False)
    assert y.dtype is ember.bfloat16
    y.float().sum().backward()
    ref_x = x.grad.clone()
    x.grad = None
    with ember.autocast("cpu"):
        y2 = lin(x)
    y2.float().sum().backward()
    assert ember.equal(ref_x, x.grad)
