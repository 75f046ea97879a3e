"""The cross-entropy gradient of compiled steps as one C kernel (``compiler._crossentropy``):
values against PyTorch's autograd, training steps compiled == eager, and the losses it
must leave as composed ops."""

import copy

import numpy as np
import pytest

import ember
from ember.compiler import _codegen, _crossentropy

torch = pytest.importorskip("torch")

needs_cc = pytest.mark.skipif(_codegen.c_compiler() is None, reason="no C compiler")
TOL = {ember.float32: 1e-5, ember.float64: 1e-10}


@pytest.fixture(params=[1, 2])
def threads(request):
    old = ember.get_num_threads()
    ember.set_num_threads(request.param)
    yield request.param
    ember.set_num_threads(old)


def _torch_grad(x, t, ignore, g=1.0):
    xt = torch.tensor(x, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(xt, torch.tensor(t), ignore_index=ignore)
    loss.backward(torch.tensor(g, dtype=xt.dtype))
    return xt.grad.numpy()


@needs_cc
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n,c", [(7, 3), (128, 10), (300, 257), (1, 1)])
def test_ce_grad_matches_pytorch(dtype, n, c, threads):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    t = rng.integers(0, c, n)
    t[::3] = -100  # ignored rows: weight 0
    t[0] = c - 1
    got = _crossentropy.ce_grad(x, t, -100, np.arange(c).reshape(1, c), np.asarray(0.5, dtype))
    tol = 1e-6 if dtype == "float32" else 1e-14
    np.testing.assert_allclose(got, _torch_grad(x, t, -100, 0.5), rtol=tol, atol=tol)
    assert got.dtype == np.dtype(dtype)


@needs_cc
def test_ce_grad_all_ignored_gives_zero_as_pytorch():
    # every target ignored: the loss is NaN (0 / 0) but the gradient is 0, as PyTorch's and
    # eager's
    x = np.ones((4, 3), np.float32)
    t = np.full(4, 7)
    got = _crossentropy.ce_grad(x, t, 7, np.arange(3), np.asarray(1.0, np.float32))
    xe = ember.ones(4, 3, requires_grad=True)
    ember.nn.functional.cross_entropy(xe, ember.tensor(t), ignore_index=7).backward()
    assert (got == 0).all() and (xe.grad.numpy() == 0).all()
    assert (_crossentropy._composed(x, t, 7, np.arange(3).reshape(1, 3), 1.0) == 0).all()


@needs_cc
def test_ce_grad_declines_what_it_does_not_serve():
    x, t, cls = np.ones((4, 3), np.float32), np.zeros(4, np.int64), np.arange(3)
    g = np.asarray(1.0, np.float32)
    assert _crossentropy.ce_grad(x.reshape(4, 3, 1), t, -100, cls, g) is None  # 3-d logits
    assert _crossentropy.ce_grad(x, t.astype(np.float32), -100, cls, g) is None
    assert _crossentropy.ce_grad(x, t[:3], -100, cls, g) is None
    assert _crossentropy.ce_grad(x, t, -100, cls, np.asarray(1.0)) is None  # g's dtype
    # its fallback computes the composed ops
    want = _torch_grad(x, t, -100)
    np.testing.assert_allclose(_crossentropy._composed(x, t, -100, cls.reshape(1, 3), g), want,
                               rtol=1e-6)


def _step(model, opt, **kw):
    def step(x, y):
        loss = ember.nn.functional.cross_entropy(model(x), y, **kw)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    return step


def _model(dtype):
    ember.manual_seed(7)
    return ember.nn.Sequential(ember.nn.Linear(6, 16), ember.nn.ReLU(),
                               ember.nn.Linear(16, 5)).to(dtype)


def _kinds(c):
    return [getattr(n.target, "__self__", None) for n in c.graphs[0].nodes]


@needs_cc
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_training_steps_match_eager(dtype, threads):
    ref = _model(dtype)
    model = copy.deepcopy(ref)
    o1, o2 = (ember.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (ref, model))
    eager, compiled = _step(ref, o1, ignore_index=2), ember.compile(_step(model, o2,
                                                                         ignore_index=2))
    gen = np.random.default_rng(1)
    for _ in range(20):
        x = ember.tensor(gen.standard_normal((12, 6)), dtype=dtype)
        y = ember.tensor(gen.integers(0, 5, 12))  # class 2 ignored
        want, got = eager(x, y).item(), compiled(x, y).item()
        assert abs(got - want) <= TOL[dtype] * max(1.0, abs(want))
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=TOL[dtype],
                                   atol=TOL[dtype])
    assert _kinds(compiled).count(_crossentropy._CrossEntropyGrad) == 1


@needs_cc
@pytest.mark.parametrize("kw", [{"reduction": "sum"}, {"weight": "w"},
                                {"label_smoothing": 0.1}])
def test_other_losses_keep_their_composed_ops(kw):
    ref = _model(ember.float32)
    model = copy.deepcopy(ref)
    if "weight" in kw:
        kw = {"weight": ember.tensor([1.0, 2.0, 0.5, 1.0, 3.0])}
    o1, o2 = (ember.optim.SGD(m.parameters(), lr=0.1) for m in (ref, model))
    eager, compiled = _step(ref, o1, **kw), ember.compile(_step(model, o2, **kw))
    gen = np.random.default_rng(2)
    for _ in range(5):
        x = ember.tensor(gen.standard_normal((8, 6)), dtype=ember.float32)
        y = ember.tensor(gen.integers(0, 5, 8))
        np.testing.assert_allclose(compiled(x, y).item(), eager(x, y).item(), rtol=1e-5)
    assert _crossentropy._CrossEntropyGrad not in _kinds(compiled)


def test_numpy_backend_keeps_composed_ops():
    model = _model(ember.float32)
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    c = ember.compile(_step(model, opt), backend="numpy")
    x, y = ember.randn(4, 6), ember.tensor([0, 1, 2, 3])
    c(x, y)
    c(x, y)
    assert _crossentropy._CrossEntropyGrad not in _kinds(c)


@needs_cc
def test_ce_grad_rows_split_over_the_pool_give_one_calls_bits():
    """At two threads a large gradient's rows run as one run per thread of ember's pool
    (each weight still counts the valid targets of every row): the same bits as one call."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((1024, 256)) * 3).astype(np.float32)
    t = rng.integers(0, 256, 1024)
    t[::5] = -100
    cls, g = np.arange(256), np.asarray(0.25, np.float32)
    old = ember.get_num_threads()
    try:
        ember.set_num_threads(1)
        one = _crossentropy.ce_grad(x, t, -100, cls, g)
        ember.set_num_threads(2)
        two = _crossentropy.ce_grad(x, t, -100, cls, g)
    finally:
        ember.set_num_threads(old)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, _torch_grad(x, t, -100, 0.25), rtol=1e-6, atol=1e-6)
