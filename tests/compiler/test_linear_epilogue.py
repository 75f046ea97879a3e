"""The C Linear of compiled steps (``compiler._linear``): the bias written first and added by
the GEMM itself (beta = 1), ReLU in the same call. Values against PyTorch and against eager
over 20 training steps, threads 1 and 2, and the cases it must leave alone."""

import copy

import numpy as np
import pytest

import ember
from ember.compiler import _codegen, _linear, _passes

torch = pytest.importorskip("torch")

needs_c = pytest.mark.skipif(_codegen.c_compiler() is None or not _linear.available(),
                             reason="no C compiler or no CBLAS")
TOL = {ember.float32: 1e-5, ember.float64: 1e-10}


@pytest.fixture(params=[1, 2])
def threads(request):
    old = ember.get_num_threads()
    ember.set_num_threads(request.param)
    yield request.param
    ember.set_num_threads(old)


def _targets(c):
    return [getattr(n.target, "__self__", None) for n in c.graphs[0].nodes
            if n.op == "call_function"]


@needs_c
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("shape,n", [((4, 6), 5), ((7,), 3), ((1, 9), 4), ((3, 40, 70), 130),
                                     ((130, 300), 600), ((2, 1200), 1100),  # column parts
                                     ((1000, 64), 48)])  # row parts (at two threads)
def test_linear_act_matches_pytorch(dtype, relu, shape, n, threads):
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in (shape, (n, shape[-1]), (n,)))
    got = _linear.linear_act(x, w, b, relu)
    want = torch.nn.functional.linear(*(torch.from_numpy(a) for a in (x, w, b)))
    if relu:
        want = torch.relu(want)
    # float32 sums of hundreds of products: errors relative to the largest value
    tol = 1e-5 if dtype == "float32" else 1e-12
    assert got.shape == tuple(want.shape) and got.dtype == np.dtype(dtype)
    np.testing.assert_allclose(got, want.numpy(), rtol=tol,
                               atol=tol * max(1.0, float(np.abs(want.numpy()).max())))


@needs_c
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linear_act_reads_strided_inputs(dtype, threads):
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal((48, 32)).astype(dtype), rng.standard_normal(48).astype(dtype)
    cases = [rng.standard_normal((10, 6, 32)).astype(dtype).transpose(1, 0, 2),  # a copy
             rng.standard_normal((50, 64)).astype(dtype)[:, :32],                 # row stride
             rng.standard_normal((50, 64)).astype(dtype)[::2, 5:37]]
    tol = 1e-5 if dtype == "float32" else 1e-12
    for x in cases:
        want = torch.nn.functional.linear(*(torch.from_numpy(np.array(a)) for a in (x, w, b)))
        np.testing.assert_allclose(_linear.linear_act(x, w, b), want.numpy(), rtol=tol, atol=tol)
    # a transposed weight is read as the GEMM's operand once made contiguous
    wt = np.asfortranarray(w)
    np.testing.assert_allclose(_linear.linear_act(cases[1], wt, b), cases[1] @ w.T + b,
                               rtol=tol, atol=tol)


@needs_c
def test_linear_act_declines_what_it_does_not_serve():
    x, w, b = np.ones((3, 4), np.float32), np.ones((5, 4), np.float32), np.ones(5, np.float32)
    assert _linear.linear_act(x, w.astype(np.float64), b) is None   # mixed dtypes
    assert _linear.linear_act(x.astype(np.int64), w, b) is None     # not a float
    assert _linear.linear_act(x, w, np.ones((1, 5), np.float32)) is None  # another bias shape
    assert _linear.linear_act(x, w[:, :3], b) is None                # shapes that do not fit
    assert _linear.linear_act(np.ones((0, 4), np.float32), w, b) is None  # empty
    assert _linear.linear_act(x, np.ones((0, 4), np.float32), b[:0]) is None


def _train(model, dtype, steps=20, compiled=True, act=None):
    opt = ember.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def step(x, y):
        loss = ember.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    fn = ember.compile(step) if compiled else step
    gen = np.random.default_rng(3)
    losses = []
    for _ in range(steps):
        x = ember.tensor(gen.standard_normal((16, 12)), dtype=dtype)
        y = ember.tensor(gen.integers(0, 5, 16))
        losses.append(fn(x, y).item())
    return fn, losses


def _mlp(act):
    ember.manual_seed(5)
    return ember.nn.Sequential(ember.nn.Linear(12, 32), act(), ember.nn.Linear(32, 32),
                               ember.nn.Tanh(), ember.nn.Linear(32, 5, bias=False),
                               act(), ember.nn.Linear(5, 5))


@needs_c
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("act", [ember.nn.ReLU, ember.nn.GELU])
def test_training_steps_match_eager(dtype, act, threads):
    ref = _mlp(act).to(dtype)
    model = copy.deepcopy(ref)
    _, want = _train(ref, dtype, compiled=False)
    fn, got = _train(model, dtype)
    tol = TOL[dtype]
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=tol, atol=tol)
    kinds = _targets(fn)
    # Linear(12, 32) + ReLU fused (with GELU: the Linear alone); Linear(32, 32) before Tanh;
    # the last Linear; the bias-free Linear(32, 5) stays eager's (with ReLU: the NumPy
    # epilogue)
    from ember.ops.nn import Linear
    if act is ember.nn.ReLU:
        assert kinds.count(_passes._LinearReluC) == 1 and kinds.count(_passes._LinearC) == 2
        assert kinds.count(_passes._LinearRelu) == 1 and Linear not in kinds
    else:
        assert kinds.count(_passes._LinearC) == 3 and kinds.count(Linear) == 1


@needs_c
def test_not_lowered_where_a_record_is_needed_or_on_the_numpy_backend():
    ember.manual_seed(0)
    lin = ember.nn.Linear(6, 5)
    x = ember.randn(4, 6)
    # a forward under grad mode without its backward in the graph: the output needs a record
    c = ember.compile(lambda v: ember.relu(lin(v)) + lin(v))
    out = c(x)
    out.sum().backward()
    kinds = _targets(c)
    assert _passes._LinearC not in kinds and _passes._LinearReluC not in kinds
    assert lin.weight.grad is not None
    # the numpy backend never loads C: the NumPy epilogue
    with ember.no_grad():
        c2 = ember.compile(lambda v: ember.relu(lin(v)), backend="numpy")
        got = c2(x)
    assert _passes._LinearRelu in _targets(c2) and _passes._LinearReluC not in _targets(c2)
    np.testing.assert_allclose(got.numpy(), ember.relu(lin(x)).detach().numpy(), rtol=1e-6)


@needs_c
def test_switch_off_keeps_eager_linear(monkeypatch):
    monkeypatch.setattr(_linear, "ENABLED", False)
    monkeypatch.setattr(_linear, "_STATE", {})
    lin = ember.nn.Linear(6, 5)
    with ember.no_grad():
        c = ember.compile(lambda v: lin(v) * 2)
        x = ember.randn(3, 6)
        got = c(x)
    assert _passes._LinearC not in _targets(c)
    np.testing.assert_allclose(got.numpy(), (lin(x) * 2).detach().numpy(), rtol=1e-6)
