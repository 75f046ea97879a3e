"""Selective activation checkpointing (``create_selective_checkpoint_contexts``): the ops a
policy keeps are not recomputed in backward, and gradients equal plain autograd's (and
PyTorch's, under the same policy on its own ops)."""

import numpy as np
import pytest

import ember
import ember.nn as nn
from ember.ops.linalg import Matmul
from ember.utils import checkpoint as ce


def _block(seed=0):
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Dropout(0.3), nn.Linear(8, 6),
                         nn.Tanh())


def _grads(model, x, context_fn=None):
    model.zero_grad()
    ember.manual_seed(5)
    xi = x.clone().requires_grad_(True)
    if context_fn is None:
        out = model(xi) @ model[0].weight.t()
    else:
        out = ce.checkpoint(lambda a: model(a) @ model[0].weight.t(), xi, use_reentrant=False,
                            context_fn=context_fn)
    (out.sin().sum()).backward()
    return [p.grad.numpy().copy() for p in model.parameters()] + [xi.grad.numpy().copy()]


def _count(monkeypatch, cls):
    calls = []
    orig = cls.forward

    def counted(*a, **k):
        calls.append(1)
        return orig(*a, **k)
    monkeypatch.setattr(cls, "forward", staticmethod(counted))
    return calls


@pytest.mark.parametrize("kind", ["list", "function", "bool"])
def test_kept_ops_are_not_recomputed_and_grads_equal(kind, monkeypatch):
    from ember.ops.nn import Linear as LinearOp
    x = ember.randn(4, 6)
    ref = _grads(_block(), x)
    seen = []
    if kind == "list":
        policy = [LinearOp, Matmul]
    elif kind == "function":
        def policy(ctx, op, *args, **kwargs):
            seen.append((op, ctx.is_recompute))
            return ce.CheckpointPolicy.MUST_SAVE if op in (LinearOp, Matmul) else \
                ce.CheckpointPolicy.PREFER_RECOMPUTE
    else:
        def policy(ctx, op, *args, **kwargs):
            return op in (LinearOp, Matmul)
    calls = _count(monkeypatch, LinearOp)
    got = _grads(_block(), x, lambda: ce.create_selective_checkpoint_contexts(policy))
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    assert len(calls) == 2  # the forward's two Linear ops; the recomputation ran neither
    if kind == "function":
        ops_fwd = [op for op, r in seen if not r]
        ops_re = [op for op, r in seen if r]
        assert ops_fwd == ops_re and LinearOp in ops_fwd


def test_recompute_everything_runs_ops_again(monkeypatch):
    from ember.ops.nn import Linear as LinearOp
    x = ember.randn(4, 6)
    ref = _grads(_block(), x)
    calls = _count(monkeypatch, LinearOp)
    got = _grads(_block(), x, lambda: ce.create_selective_checkpoint_contexts(
        lambda ctx, op, *a, **k: ce.CheckpointPolicy.PREFER_RECOMPUTE))
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    assert len(calls) == 4  # two in the forward, two again in the recomputation


def test_mutated_kept_output_raises_unless_allowed():
    w = ember.randn(3, 3, requires_grad=True)

    def fn(a):
        y = a @ w
        z = y + 1
        y.mul_(2)  # the kept output changes after the op
        return z * y

    for allow in (False, True):
        x = ember.randn(2, 3, requires_grad=True)
        out = ce.checkpoint(fn, x, use_reentrant=False, context_fn=lambda: (
            ce.create_selective_checkpoint_contexts([Matmul], allow_cache_entry_mutation=allow)))
        if not allow:
            with pytest.raises(RuntimeError, match="modified in place"):
                out.sum().backward()
        else:
            out.sum().backward()
            x2 = x.detach().clone().requires_grad_(True)
            w.grad, g = None, None
            fn_ref = fn(x2)
            fn_ref.sum().backward()
            g = x2.grad.numpy()
            np.testing.assert_allclose(x.grad.numpy(), g, rtol=1e-6)


def test_policy_must_return_a_policy():
    x = ember.randn(2, 6, requires_grad=True)
    with pytest.raises(TypeError, match="CheckpointPolicy"):
        ce.checkpoint(_block(), x, use_reentrant=False, context_fn=lambda: (
            ce.create_selective_checkpoint_contexts(lambda ctx, op, *a, **k: "save")))
