"""The backward engine: iteration, freeing, retain_graph, grad/backward APIs, double backward."""

import gc
import weakref

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


def _pair(data, rg=True):
    a = np.asarray(data, dtype=np.float64)
    return (ember.tensor(a, requires_grad=rg), torch.tensor(a, requires_grad=rg))


def close(e, t):
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_long_chain_is_iterative():
    x = ember.tensor(1.0, dtype=ember.float64, requires_grad=True)
    y = x
    for _ in range(10000):
        y = y * 1.0001
    y.backward()
    assert abs(x.grad.item() - 1.0001 ** 10000) < 1e-6


def test_saved_buffers_are_freed():
    x = ember.randn(4, requires_grad=True)
    y = x.exp()  # saves its output
    z = (y * x).sum()  # saves both inputs
    node = z.grad_fn.next_functions[0][0]  # MulBackward0
    refs = [weakref.ref(t) for t, _, _ in node._saved if t is not None]
    del y
    z.backward()
    gc.collect()
    assert node._saved is None
    assert all(r() is None or r() is x for r in refs)


def test_saved_output_array_is_freed():
    x = ember.randn(4, requires_grad=True)
    y = x.exp()
    arr_ref = weakref.ref(y._data)
    s = y.sum()
    del y
    s.backward()
    gc.collect()
    assert arr_ref() is None


def test_second_backward_raises_and_retain_graph():
    x = ember.randn(3, requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.detach().numpy())
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()


def test_saved_tensors_access_after_free():
    x = ember.randn(3, requires_grad=True)
    y = x * x
    y.sum().backward()
    with pytest.raises(RuntimeError, match="after they have already been freed"):
        y.grad_fn.saved_tensors  # noqa: B018


def test_grads_accumulate_across_calls():
    (xe, xt) = _pair([1.0, 2.0, 3.0])
    for mod, x in ((ember, xe), (torch, xt)):
        for _ in range(3):
            (x * x).sum().backward()
    close(xe.grad, xt.grad)


def test_backward_with_gradient_and_inputs():
    (ae, at), (be, bt) = _pair([1.0, 2.0]), _pair([3.0, 4.0])
    ge, gt = ember.tensor([1.0, -1.0], dtype=ember.float64), torch.tensor([1.0, -1.0],
                                                                        dtype=torch.float64)
    (ae * be).backward(ge, inputs=[ae])
    (at * bt).backward(gt, inputs=[at])
    close(ae.grad, at.grad)
    assert be.grad is None and bt.grad is None


def test_backward_inputs_non_leaf():
    (ae, at) = _pair([1.0, 2.0])
    me, mt = ae * 2, at * 2
    (me * me).sum().backward(inputs=[me])
    (mt * mt).sum().backward(inputs=[mt])
    close(me.grad, mt.grad)
    assert ae.grad is None


def test_backward_empty_inputs_raises():
    x = ember.randn(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="cannot be empty"):
        x.sum().backward(inputs=[])


def test_non_scalar_backward_raises():
    x = ember.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar"):
        (x * 2).backward()


def test_backward_no_grad_tensor_raises():
    with pytest.raises(RuntimeError, match="does not require grad and does not have a grad_fn"):
        ember.ones(2).sum().backward()


def test_autograd_backward_function():
    (ae, at) = _pair([1.0, 2.0])
    ember.autograd.backward([(ae * 3).sum(), (ae * ae).sum()])
    torch.autograd.backward([(at * 3).sum(), (at * at).sum()])
    close(ae.grad, at.grad)
    ember.autograd.backward(ae * 2, grad_tensors=ember.ones(2, dtype=ember.float64))
    torch.autograd.backward(at * 2, grad_tensors=torch.ones(2, dtype=torch.float64))
    close(ae.grad, at.grad)


def test_grad_api():
    (ae, at), (be, bt) = _pair([1.0, 2.0]), _pair([0.5, -1.0])
    ge = ember.autograd.grad((ae * be).sum(), [ae, be])
    gt = torch.autograd.grad((at * bt).sum(), [at, bt])
    for e, t in zip(ge, gt):
        close(e, t)
    assert ae.grad is None
    assert not ge[0].requires_grad


def test_grad_grad_outputs_and_retain():
    (ae, at) = _pair([1.0, 2.0, 3.0])
    ye, yt = ae.sin(), at.sin()
    go = [1.0, 2.0, 3.0]
    e1, = ember.autograd.grad(ye, ae, ember.tensor(go, dtype=ember.float64), retain_graph=True)
    t1, = torch.autograd.grad(yt, at, torch.tensor(go, dtype=torch.float64), retain_graph=True)
    close(e1, t1)
    e2, = ember.autograd.grad(ye, ae, ember.tensor(go, dtype=ember.float64))
    close(e2, t1)
    with pytest.raises(RuntimeError, match="second time"):
        ember.autograd.grad(ye, ae, ember.tensor(go, dtype=ember.float64))


def test_grad_allow_unused():
    a, b = ember.randn(2, requires_grad=True), ember.randn(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
        ember.autograd.grad((a * 2).sum(), [a, b], retain_graph=True)
    ga, gb = ember.autograd.grad((a * 2).sum(), [a, b], allow_unused=True)
    assert gb is None
    np.testing.assert_allclose(ga.numpy(), [2.0, 2.0])
    ga, gb = ember.autograd.grad((a * 2).sum(), [a, b], materialize_grads=True)
    np.testing.assert_array_equal(gb.numpy(), [0.0, 0.0])


def test_grad_of_non_leaf():
    (ae, at) = _pair([1.0, 2.0])
    me, mt = ae.exp(), at.exp()
    ge, = ember.autograd.grad((me * me).sum(), me)
    gt, = torch.autograd.grad((mt * mt).sum(), mt)
    close(ge, gt)


def test_grad_input_not_requiring_grad_raises():
    a = ember.randn(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        ember.autograd.grad(a.sum(), ember.ones(2))


def test_gradient_penalty_matches_torch():
    rng = np.random.default_rng(0)
    w0, x0 = rng.normal(size=(3, 4)), rng.normal(size=(2, 3))
    res = []
    for mod in (ember, torch):
        w = mod.tensor(w0, requires_grad=True)
        x = mod.tensor(x0, requires_grad=True)
        out = (x @ w).tanh().sum()
        g, = mod.autograd.grad(out, x, create_graph=True)
        assert g.requires_grad
        penalty = ((g.norm(2, dim=1) - 1) ** 2).mean()
        penalty.backward()
        res.append((w.grad, x.grad))
    close(res[0][0], res[1][0])
    close(res[0][1], res[1][1])


def test_hessian_vector_product_matches_torch():
    rng = np.random.default_rng(1)
    x0, v0 = rng.normal(size=5), rng.normal(size=5)
    res = []
    for mod in (ember, torch):
        x = mod.tensor(x0, requires_grad=True)
        v = mod.tensor(v0)
        y = (x.sin() * x * x).sum()
        g, = mod.autograd.grad(y, x, create_graph=True)
        hv, = mod.autograd.grad((g * v).sum(), x)
        res.append(hv)
    close(*res)


def test_create_graph_backward_third_order():
    res = []
    for mod in (ember, torch):
        x = mod.tensor(0.7, dtype=mod.float64, requires_grad=True)
        y = x.exp() * x ** 3
        y.backward(create_graph=True)
        g1 = x.grad
        x.grad = None
        g1.backward(create_graph=True)
        g2 = x.grad
        x.grad = None
        g2.backward()
        res.append((g1, g2, x.grad))
    for e, t in zip(*res):
        close(e, t)


def test_diamond_graph_and_shared_inputs():
    (ae, at) = _pair([0.3, -1.2])
    for x in (ae, at):
        y = x * 2
        z = y.exp() + y.sin() * y
        (z * x).sum().backward()
    close(ae.grad, at.grad)


def test_multi_output_unused_output():
    (ae, at) = _pair([[1.0, 5.0], [3.0, 2.0]])
    ve, ie = ae.max(dim=1)
    vt, it = at.max(dim=1)
    ve.sum().backward()
    vt.sum().backward()
    close(ae.grad, at.grad)
    e_parts, t_parts = ae.unbind(0), at.unbind(0)
    (e_parts[1] * 3).sum().backward()
    (t_parts[1] * 3).sum().backward()
    close(ae.grad, at.grad)


def test_broadcast_grad_reduced_and_cast():
    ae = ember.randn(3, 1, requires_grad=True)
    be = ember.randn(4, dtype=ember.float64)
    (ae * be).sum().backward()
    assert ae.grad.shape == (3, 1) and ae.grad.dtype == ember.float32


def test_grad_is_leaf_and_not_requiring_grad():
    x = ember.randn(3, requires_grad=True)
    (x * 2).sum().backward()
    assert x.grad.is_leaf and not x.grad.requires_grad and x.grad.grad_fn is None


def test_grad_does_not_alias_gradient_argument():
    x = ember.randn(3, requires_grad=True)
    g = ember.ones(3)
    (x + 0).backward(g)
    x.grad.add_(1)
    np.testing.assert_array_equal(g.numpy(), [1.0, 1.0, 1.0])


_NAMED_OPS = {
    "add": lambda m, x: x + 1, "mul": lambda m, x: x * 2, "sum": lambda m, x: x.sum(),
    "sub": lambda m, x: x - x, "div": lambda m, x: x / 2, "exp": lambda m, x: x.exp(),
    "mean": lambda m, x: x.mean(), "view": lambda m, x: x.view(6), "tanh": lambda m, x: x.tanh(),
    "sigmoid": lambda m, x: x.sigmoid(), "relu": lambda m, x: x.relu(),
    "pow": lambda m, x: x.pow(2), "neg": lambda m, x: -x, "log": lambda m, x: x.log(),
    "sqrt": lambda m, x: x.sqrt(), "permute": lambda m, x: x.permute(1, 0),
    "abs": lambda m, x: x.abs(), "sin": lambda m, x: x.sin(), "cos": lambda m, x: x.cos(),
    "cat": lambda m, x: m.cat([x, x]), "stack": lambda m, x: m.stack([x, x]),
    "expand": lambda m, x: x.expand(4, 2, 3), "clone": lambda m, x: x.clone(),
    "amax": lambda m, x: x.amax(1),
    "float_cast_mul": lambda m, x: x.float() * 1,
}
# PyTorch names these after the public function; ember's op classes are shared (one Permute
# serves t/transpose/permute), so the public functions name the node (``graph.named``).
_SHARED_CLASS_OPS = {
    "reshape": lambda m, x: x.reshape(3, 2), "t": lambda m, x: x.t(),
    "mm_via_matmul": lambda m, x: x @ x.t(), "select": lambda m, x: x[0],
    "unsqueeze": lambda m, x: x.unsqueeze(0), "transpose": lambda m, x: x.transpose(0, 1),
    "squeeze": lambda m, x: x[None].squeeze(), "max_dim": lambda m, x: x.max(1)[0], "max": lambda m, x: x.max(),
    "mm": lambda m, x: x.mm(x.t()),
}


def _names(op):
    ae = ember.randn(2, 3, requires_grad=True)
    at = torch.randn(2, 3, requires_grad=True)
    return op(ember, ae).grad_fn.name(), op(torch, at).grad_fn.name()


@pytest.mark.parametrize("name", sorted(_NAMED_OPS))
def test_node_names_match_torch(name):
    ne, nt = _names(_NAMED_OPS[name])
    assert ne == nt


@pytest.mark.parametrize("name", sorted(_SHARED_CLASS_OPS))
def test_node_names_of_shared_op_classes(name):
    ne, nt = _names(_SHARED_CLASS_OPS[name])
    assert ne == nt


def test_accumulate_grad_node():
    ae = ember.randn(2, requires_grad=True)
    assert type(ae.sum().grad_fn.next_functions[0][0]).__name__ == "AccumulateGrad"


def test_next_functions_structure():
    ae = ember.randn(2, requires_grad=True)
    y = ae * 2
    fn, nr = y.grad_fn.next_functions[0]
    assert fn.name() == "torch::autograd::AccumulateGrad" and nr == 0 and fn.variable is ae
    assert y.grad_fn.next_functions[1] == (None, 0)


def test_saved_tensors_hooks_match_torch():
    def run(mod):
        calls = []

        def pack(t):
            calls.append("pack")
            return t.detach().clone()

        def unpack(t):
            calls.append("unpack")
            return t
        x = mod.tensor([0.5, 1.5], dtype=mod.float64, requires_grad=True)
        with mod.autograd.graph.saved_tensors_hooks(pack, unpack):
            y = (x * x).exp().sum()
        y.backward()
        return x.grad, calls
    (ge, ce), (gt, ct) = run(ember), run(torch)
    np.testing.assert_allclose(ge.numpy(), gt.numpy())
    assert ce.count("pack") == ct.count("pack") and ce.count("unpack") == ct.count("unpack")


def test_disable_saved_tensors_hooks():
    with ember.autograd.graph.disable_saved_tensors_hooks("no hooks here"):
        with pytest.raises(RuntimeError, match="no hooks here"):
            with ember.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
                pass
    x = ember.ones(2, requires_grad=True)
    with ember.autograd.graph.save_on_cpu():
        y = (x * x).sum()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])


def test_grad_is_grads_batched_matches_torch():
    res = []
    for mod in (ember, torch):
        x = mod.tensor([0.5, 1.0, 2.0], dtype=mod.float64, requires_grad=True)
        y = x.sin() * x
        eye = mod.eye(3, dtype=mod.float64)
        jac, = mod.autograd.grad(y, x, eye, is_grads_batched=True)
        res.append(jac)
    close(*res)
