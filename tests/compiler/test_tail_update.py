"""The last weight gradient and the optimizer update of a compiled step as one node
(``ember/compiler/_tail.py``): made for an MLP step, bit for bit the step without it at the
same thread count (parameters, ``p.grad`` after the step, optimizer state; shapes whose GEMM
parts OpenBLAS computes as the whole), equal to eager and to PyTorch within the compiler's
tolerances at one and two threads, and the plain path where gradients accumulate."""

import copy

import numpy as np
import pytest

import ember
from ember import nn
from ember.compiler import _codegen, _tail

torch = pytest.importorskip("torch")
needs_cc = pytest.mark.skipif(_codegen.c_compiler() is None, reason="no C compiler")
TOL = {ember.float32: 1e-5, ember.float64: 1e-10}
ODD = (300, 257, 263, 10, 129)   # layer widths, then the batch
EVEN = (784, 512, 256, 10, 128)  # OpenBLAS computes these shapes' row parts as the whole


def _mlp(sizes):
    return nn.Sequential(nn.Linear(sizes[0], sizes[1]), nn.ReLU(), nn.Linear(sizes[1], sizes[2]),
                         nn.Tanh(), nn.Linear(sizes[2], sizes[3]))


def _opt(kind, params):
    if kind == "sgd":
        return ember.optim.SGD(params, lr=0.01, momentum=0.9)
    return ember.optim.AdamW(params, lr=1e-3, weight_decay=0.01)


def _step_of(model, opt, y, zero_first=True):
    def step(x):
        if zero_first:
            opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def _run(kind, dtype, threads, tail, steps=5, zero_first=True, sizes=ODD):
    """(losses, parameters, gradients, optimizer state) after ``steps`` compiled steps, and
    the compiled function."""
    prev, prev_on = ember.get_num_threads(), _tail.ENABLED
    ember.set_num_threads(threads)
    _tail.ENABLED = tail
    try:
        ember.manual_seed(4)
        model = _mlp(sizes).to(dtype)
        opt = _opt(kind, model.parameters())
        y = ember.randint(0, 10, (sizes[4],))
        xs = [ember.randn(sizes[4], sizes[0]).to(dtype) for _ in range(steps)]
        fn = ember.compile(_step_of(model, opt, y, zero_first))
        losses = [float(fn(x)) for x in xs]
    finally:
        ember.set_num_threads(prev)
        _tail.ENABLED = prev_on
    params = [p.detach().numpy().copy() for p in model.parameters()]
    grads = [p.grad.numpy().copy() for p in model.parameters()]
    state = [v.numpy().copy() for p in model.parameters()
             for v in opt.state[p].values()]
    return (losses, params, grads, state), fn


@needs_cc
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_tail_node_same_bits_as_separate_nodes(kind, dtype, threads):
    """The node against the separate nodes at the same thread count (at one thread the node
    runs them itself; at two, its parts on two cores), bit for bit."""
    want, off = _run(kind, dtype, threads, tail=False, sizes=EVEN)
    assert off.pass_stats.get("tail_update") == 0
    got, fn = _run(kind, dtype, threads, tail=True, sizes=EVEN)
    assert fn.pass_stats["tail_update"] == 1
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)


@needs_cc
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_tail_step_matches_eager_and_pytorch(kind, dtype, threads):
    (losses, params, grads, _), _ = _run(kind, dtype, threads, tail=True)
    # eager ember, the same seeds
    ember.manual_seed(4)
    model = _mlp(ODD).to(dtype)
    ref = copy.deepcopy(model)
    opt = _opt(kind, model.parameters())
    y = ember.randint(0, 10, (ODD[4],))
    xs = [ember.randn(ODD[4], ODD[0]).to(dtype) for _ in range(5)]
    step = _step_of(model, opt, y)
    eager = [float(step(x)) for x in xs]
    tol = TOL[dtype]
    np.testing.assert_allclose(losses, eager, rtol=tol, atol=tol)
    for p, a, g in zip(model.parameters(), params, grads):
        np.testing.assert_allclose(a, p.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=tol, atol=tol)
    # PyTorch from the same initial parameters and data
    tdt = torch.float32 if dtype == ember.float32 else torch.float64
    tm = torch.nn.Sequential(torch.nn.Linear(ODD[0], ODD[1]), torch.nn.ReLU(),
                             torch.nn.Linear(ODD[1], ODD[2]), torch.nn.Tanh(),
                             torch.nn.Linear(ODD[2], ODD[3])).to(tdt)
    with torch.no_grad():
        for tp, ep in zip(tm.parameters(), ref.parameters()):
            tp.copy_(torch.from_numpy(ep.detach().numpy().copy()))
    topt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9) if kind == "sgd" else \
        torch.optim.AdamW(tm.parameters(), lr=1e-3, weight_decay=0.01)
    ty = torch.from_numpy(y.numpy().copy())
    tl = []
    for x in xs:
        topt.zero_grad()
        loss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x.numpy().copy())), ty)
        loss.backward()
        topt.step()
        tl.append(loss.item())
    ttol = 1e-4 if dtype == ember.float32 else 1e-9
    np.testing.assert_allclose(losses, tl, rtol=ttol, atol=ttol)
    for tp, a, g in zip(tm.parameters(), params, grads):
        np.testing.assert_allclose(a, tp.detach().numpy(), rtol=ttol, atol=ttol)
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=ttol, atol=ttol)


@needs_cc
@pytest.mark.parametrize("threads", [1, 2])
def test_accumulating_gradients_take_the_plain_path(threads):
    """No ``zero_grad`` in the step: the first layer's weight already has a gradient when the
    node runs, so it adds the product to it and steps as the separate nodes did."""
    want, _ = _run("sgd", ember.float64, threads, tail=False, zero_first=False, sizes=EVEN)
    got, fn = _run("sgd", ember.float64, threads, tail=True, zero_first=False, sizes=EVEN)
    assert fn.pass_stats["tail_update"] == 1
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)
