"""Tensor hooks, retain_grad, post-accumulate hooks and Node hooks, against PyTorch."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _both(fn):
    """Run ``fn(mod)`` with ember and torch; compare every returned tensor."""
    re, rt = fn(ember), fn(torch)
    for e, t in zip(re, rt):
        if t is None:
            assert e is None
            continue
        np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=1e-12)


def test_leaf_hook_replaces_grad():
    def run(mod):
        x = mod.tensor([1.0, 2.0], dtype=mod.float64, requires_grad=True)
        seen = []
        x.register_hook(lambda g: seen.append(g.clone()) or g * 10)
        (x * x).sum().backward()
        return x.grad, seen[0]
    _both(run)


def test_non_leaf_hook_and_retain_grad():
    def run(mod):
        x = mod.tensor([1.0, 2.0], dtype=mod.float64, requires_grad=True)
        y = x * 3
        y.retain_grad()
        z = y * y
        z.retain_grad()
        y.register_hook(lambda g: g + 1)
        z.sum().backward()
        return x.grad, y.grad, z.grad
    _both(run)


def test_retain_grad_accumulates_and_flags():
    x = ember.randn(2, requires_grad=True)
    y = x * 2
    assert not y.retains_grad
    y.retain_grad()
    assert y.retains_grad
    y.sum().backward(retain_graph=True)
    y.sum().backward()
    np.testing.assert_array_equal(y.grad.numpy(), [2.0, 2.0])
    with pytest.raises(RuntimeError, match="retain_grad"):
        ember.ones(2).retain_grad()


def test_non_leaf_grad_is_none_without_retain():
    x = ember.randn(2, requires_grad=True)
    y = x * 2
    y.sum().backward()
    assert y.grad is None


def test_hook_handle_remove():
    calls = []
    x = ember.randn(2, requires_grad=True)
    h = x.register_hook(lambda g: calls.append(1))
    (x * 1).sum().backward()
    h.remove()
    (x * 1).sum().backward()
    assert calls == [1]
    y = x * 2
    h2 = y.register_hook(lambda g: calls.append(2))
    h2.remove()
    y.sum().backward()
    assert calls == [1]


def test_hook_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        ember.ones(2).register_hook(lambda g: g)


def test_hooks_run_in_registration_order():
    order = []
    x = ember.randn(2, requires_grad=True)
    y = x * 2
    y.register_hook(lambda g: order.append("a") or g * 2)
    y.register_hook(lambda g: order.append("b") or g * 3)
    y.sum().backward()
    assert order == ["a", "b"]
    np.testing.assert_allclose(x.grad.numpy(), [12.0, 12.0])


def test_post_accumulate_grad_hook():
    def run(mod):
        x = mod.tensor([1.0, 2.0], dtype=mod.float64, requires_grad=True)
        seen = []
        h = x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.clone()))
        (x * 3).sum().backward()
        (x * 3).sum().backward()
        h.remove()
        (x * 3).sum().backward()
        assert len(seen) == 2
        return seen[0], seen[1], x.grad
    _both(run)
    with pytest.raises(RuntimeError, match="post accumulate grad hooks cannot be registered"):
        (ember.ones(1, requires_grad=True) * 2).register_post_accumulate_grad_hook(print)


def test_node_hooks():
    def run(mod):
        x = mod.tensor([1.0, 2.0], dtype=mod.float64, requires_grad=True)
        y = x * 3
        got = {}

        def pre(grad_outputs):
            got["pre"] = grad_outputs[0].clone()
            return (grad_outputs[0] * 2,)

        def post(grad_inputs, grad_outputs):
            got["post_in"] = grad_inputs[0].clone()
            got["post_out"] = grad_outputs[0].clone()

        y.grad_fn.register_prehook(pre)
        h = y.grad_fn.register_hook(post)
        y.sum().backward(retain_graph=True)
        h.remove()
        res = (x.grad.clone(), got["pre"], got["post_in"], got["post_out"])
        got.clear()
        y.sum().backward()
        assert "post_in" not in got
        return res + (x.grad,)
    _both(run)


def test_hook_on_grad_with_create_graph():
    def run(mod):
        x = mod.tensor([0.5, 1.5], dtype=mod.float64, requires_grad=True)
        y = x ** 3
        y.register_hook(lambda g: g * x)
        g, = mod.autograd.grad(y.sum(), x, create_graph=True)
        g.sum().backward()
        return g, x.grad
    _both(run)


def test_leaf_hook_applies_to_autograd_grad():
    def run(mod):
        x = mod.tensor([1.0, 2.0], dtype=mod.float64, requires_grad=True)
        x.register_hook(lambda g: g * 10)
        return mod.autograd.grad((x * x).sum(), x)
    _both(run)


def test_grad_assignment_is_validated():
    x = ember.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="attempting to assign a gradient of size"):
        x.grad = ember.ones(3)
    with pytest.raises(RuntimeError, match="different type"):
        x.grad = ember.ones(2, dtype=ember.float64)
    with pytest.raises(TypeError):
        x.grad = [1.0, 2.0]
    x.grad = ember.full((2,), 5.0)
    (x * 1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [6.0, 6.0])
    x.grad = None
    assert x.grad is None


def test_non_leaf_grad_access_warns():
    y = ember.ones(2, requires_grad=True) * 2
    with pytest.warns(UserWarning, match="not a leaf Tensor is being accessed"):
        assert y.grad is None


def test_accumulate_grad_node_hooks():
    def run(mod):
        x = mod.tensor([1.0, 2.0], dtype=mod.float64, requires_grad=True)
        y = x * 2
        acc = y.grad_fn.next_functions[0][0]
        got = {}
        acc.register_prehook(lambda go: got.update(pre=go[0].clone()))
        acc.register_hook(lambda gi, go: got.update(post=(len(gi), go[0].clone())))
        y.sum().backward()
        assert got["post"][0] == 0
        return got["pre"], got["post"][1], x.grad
    _both(run)


def test_error_names_the_output_index():
    x = ember.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="element 1 of tensors does not require grad"):
        ember.autograd.grad([(x * 2).sum(), (x * 0).sum().detach()], x)


def test_node_hook_must_return_tuple():
    x = ember.ones(2, requires_grad=True)
    y = x * 2
    y.grad_fn.register_prehook(lambda go: go[0])
    with pytest.raises(TypeError, match="expected tuple, but hook returned 'Tensor'"):
        y.sum().backward()
