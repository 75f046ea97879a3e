"""Custom ``ember.autograd.Function``: ctx API, multiple outputs, once_differentiable."""

import numpy as np
import pytest

import ember
from ember.autograd import Function, once_differentiable

torch = pytest.importorskip("torch")


def _make_cube(mod):
    class Cube(mod.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return g * 3 * x ** 2
    return Cube


def test_save_for_backward_and_double_backward():
    res = []
    for mod in (ember, torch):
        x = mod.tensor([0.5, -2.0], dtype=mod.float64, requires_grad=True)
        y = _make_cube(mod).apply(x)
        assert type(y.grad_fn).__name__ == "CubeBackward"
        g, = mod.autograd.grad(y.sum(), x, create_graph=True)
        g.sum().backward()
        res.append((y, g, x.grad))
    for e, t in zip(*res):
        np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy())


def test_needs_input_grad_and_non_tensor_args():
    seen = {}

    class Scale(Function):
        @staticmethod
        def forward(ctx, x, w, k):
            seen["fwd"] = ctx.needs_input_grad
            ctx.k = k
            ctx.save_for_backward(x, w)
            return x * w * k

        @staticmethod
        def backward(ctx, g):
            x, w = ctx.saved_tensors
            seen["bwd"] = ctx.needs_input_grad
            gx = g * w * ctx.k if ctx.needs_input_grad[0] else None
            gw = g * x * ctx.k if ctx.needs_input_grad[1] else None
            return gx, gw, None

    x = ember.randn(3, requires_grad=True)
    w = ember.randn(3)
    Scale.apply(x, w, 2.0).sum().backward()
    assert seen["fwd"] == (True, False, False) == seen["bwd"]
    np.testing.assert_allclose(x.grad.numpy(), 2 * w.numpy(), rtol=1e-6)


def test_output_not_requiring_grad_without_grad_inputs():
    y = _make_cube(ember).apply(ember.ones(2))
    assert not y.requires_grad and y.grad_fn is None


def test_multiple_outputs_and_mark_non_differentiable():
    class SortWithIdx(Function):
        @staticmethod
        def forward(ctx, x):
            vals, idx = x * 2, x.floor()
            ctx.mark_non_differentiable(idx)
            return vals, idx

        @staticmethod
        def backward(ctx, gv, gi):
            return gv * 2

    x = ember.tensor([3.0, 1.0, 2.0], requires_grad=True)
    v, i = SortWithIdx.apply(x)
    assert v.requires_grad and not i.requires_grad
    (v * ember.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])


def test_two_differentiable_outputs_one_unused_materialized():
    got = {}

    class Split2(Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, g1, g2):
            got["g2"] = g2
            return g1 * 2 + g2 * 3

    x = ember.randn(2, requires_grad=True)
    a, b = Split2.apply(x)
    a.sum().backward()
    assert isinstance(got["g2"], ember.Tensor)
    np.testing.assert_array_equal(got["g2"].numpy(), [0.0, 0.0])
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_set_materialize_grads_false():
    got = {}

    class Split2(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.set_materialize_grads(False)
            return x.clone(), x.clone()

        @staticmethod
        def backward(ctx, g1, g2):
            got["g2"] = g2
            return g1

    x = ember.randn(2, requires_grad=True)
    a, b = Split2.apply(x)
    a.sum().backward()
    assert got["g2"] is None


def test_mark_dirty():
    class AddOne_(Function):
        @staticmethod
        def forward(ctx, x):
            x.add_(1)
            ctx.mark_dirty(x)
            return x

        @staticmethod
        def backward(ctx, g):
            return g

    for mod, Fn in ((ember, AddOne_), (torch, None)):
        if Fn is None:
            class TAddOne_(torch.autograd.Function):
                forward = staticmethod(AddOne_.forward)
                backward = staticmethod(AddOne_.backward)
            Fn = TAddOne_
        leaf = mod.zeros(2, requires_grad=True)
        x = leaf * 1
        v0 = x._version
        y = Fn.apply(x)
        assert y is x and x._version == v0 + 2  # add_ and mark_dirty
        assert x.grad_fn.name().startswith(Fn.__name__)
        y.sum().backward()
        np.testing.assert_array_equal(leaf.grad.numpy(), [1.0, 1.0])
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            Fn.apply(mod.zeros(2, requires_grad=True))


def test_once_differentiable():
    class Sq(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        @once_differentiable
        def backward(ctx, g):
            x, = ctx.saved_tensors
            assert not ember.is_grad_enabled()
            return 2 * x * g

    x = ember.randn(3, requires_grad=True)
    g, = ember.autograd.grad(Sq.apply(x).sum(), x)
    np.testing.assert_allclose(g.numpy(), 2 * x.detach().numpy(), rtol=1e-6)
    g, = ember.autograd.grad(Sq.apply(x).sum(), x, create_graph=True)
    assert not g.requires_grad  # as in PyTorch: the grad_output did not require grad
    g, = ember.autograd.grad(Sq.apply(x), x, ember.ones(3, requires_grad=True),
                             create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        g.sum().backward()
    assert ember.autograd.function.once_differentiable is once_differentiable


def test_saved_tensor_modified_in_place_raises():
    x = ember.randn(3, requires_grad=True)
    y = x * 1
    z = _make_cube(ember).apply(y)
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_function_returning_input():
    class Ident(Function):
        @staticmethod
        def forward(ctx, x):
            return x

        @staticmethod
        def backward(ctx, g):
            return g * 5

    x = ember.randn(2, requires_grad=True)
    y = Ident.apply(x)
    assert y is not x and y.grad_fn is not None
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [5.0, 5.0])


def test_wrong_number_of_grads_raises():
    class Bad(Function):
        @staticmethod
        def forward(ctx, x, y):
            return x + y

        @staticmethod
        def backward(ctx, g):
            return g

    a, b = ember.randn(2, requires_grad=True), ember.randn(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="returned an incorrect number of gradients"):
        Bad.apply(a, b).sum().backward()


def test_function_inside_no_grad_records_nothing():
    x = ember.randn(2, requires_grad=True)
    with ember.no_grad():
        y = _make_cube(ember).apply(x)
    assert y.grad_fn is None and not y.requires_grad


def test_setup_context_style_and_vjp_alias():
    class Mul(Function):
        @staticmethod
        def forward(x, y):
            return x * y

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(*inputs)

        @staticmethod
        def vjp(ctx, g):
            x, y = ctx.saved_tensors
            return g * y, g * x

    a = ember.tensor([1.0, 2.0], requires_grad=True)
    b = ember.tensor([3.0, 4.0], requires_grad=True)
    Mul.apply(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 4.0])
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 2.0])


def test_function_saved_none_and_non_tensor_outputs():
    class F(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x, None)
            return x * 2, 7

        @staticmethod
        def backward(ctx, g, g_int):
            x, nothing = ctx.saved_tensors
            assert nothing is None
            return g * 2

    x = ember.ones(2, requires_grad=True)
    y, k = F.apply(x)
    assert k == 7
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_ctx_attributes_freed_after_backward():
    class Scale(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.k = 3.0
            return x * 3

        @staticmethod
        def backward(ctx, g):
            return g * ctx.k

    x = ember.ones(2, requires_grad=True)
    y = Scale.apply(x)
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.grad_fn.k  # noqa: B018
    assert not hasattr(y.grad_fn, "no_such_attribute")


def test_function_saved_tensors_are_freed():
    import gc
    import weakref
    refs = []

    class Exp(Function):
        @staticmethod
        def forward(ctx, x):
            e = x.exp()
            refs.append(weakref.ref(e))
            ctx.save_for_backward(e)
            return e * 1

        @staticmethod
        def backward(ctx, g):
            e, = ctx.saved_tensors
            return g * e

    x = ember.ones(2, requires_grad=True)
    y = Exp.apply(x)
    gc.collect()
    assert refs[0]() is not None  # kept alive by the graph until backward
    y.sum().backward()
    gc.collect()
    assert refs[0]() is None
