"""Tensor factories inside a compiled function (``zeros/ones/full/arange/eye/new_*`` sized from
an input's shape): with ``dynamic=True`` they follow the batch size; with static shapes a
factory whose tensor is written in place or returned is made anew on every call (never a
constant that carries one call's writes into the next)."""

import copy

import numpy as np
import pytest

import ember
from ember import nn

TOL = {ember.float32: 1e-5, ember.float64: 1e-12}
BACKENDS = ["aot_eager", "numpy", "inductor"]


def sized_from_input(x):
    b = x.shape[0]
    z = ember.zeros(b, x.shape[1], dtype=x.dtype)
    o = ember.ones(x.size(0), 1, dtype=x.dtype)
    a = ember.arange(b, dtype=x.dtype).reshape(-1, 1)
    f = ember.full((b, x.shape[1]), 2.0, dtype=x.dtype)
    n = x.new_zeros(b, x.shape[1]) + x.new_ones(b, 1)
    e = ember.eye(b, dtype=x.dtype) @ x
    return (x + a) * o + z + f + n + e + ember.zeros_like(x).sum(1, keepdim=True)


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 4)

    def forward(self, x):
        h = self.lin(x)
        mask = ember.ones(x.shape[0], 4, dtype=x.dtype)
        mask[:, 0] = 0                      # written in place: made anew on every call
        pos = ember.arange(x.shape[0], dtype=x.dtype).unsqueeze(1)
        acc = ember.zeros(4, dtype=x.dtype)  # fixed size, written in place
        acc += h.sum(0)
        return h * mask + pos * 0.1 + acc + ember.eye(x.shape[0], dtype=x.dtype) @ h


def _close(a, b, tol):
    np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_factories_follow_the_batch_size(backend, dtype):
    ember.manual_seed(0)
    c = ember.compile(sized_from_input, dynamic=True, backend=backend)
    for b in (6, 3, 11, 6, 2):
        x = ember.randn(b, 3, dtype=dtype)
        got = c(x)
        assert got.shape == (b, 3)
        _close(got, sized_from_input(x), TOL[dtype])
    assert len(c.entries) == 1 and c.dynamic_failure is None
    assert c.entries[0].cap.guards.dynamic


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_training_step_with_factories_at_three_batch_sizes(backend, dtype):
    ember.manual_seed(1)
    ref = Masked().to(dtype)
    model = copy.deepcopy(ref)
    opts = [ember.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (ref, model)]

    def step_of(m, opt):
        def step(x):
            loss = m(x).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            return loss
        return step
    eager, c = step_of(ref, opts[0]), ember.compile(step_of(model, opts[1]), dynamic=True,
                                                     backend=backend)
    for b in (6, 6, 3, 11, 6, 8):
        x = ember.randn(b, 5, dtype=dtype)
        np.testing.assert_allclose(c(x).item(), eager(x).item(), rtol=TOL[dtype],
                                   atol=TOL[dtype])
    assert len(c.entries) == 1 and c.dynamic_failure is None
    for p, q in zip(model.parameters(), ref.parameters()):
        _close(p, q, TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_module_forward_no_grad_dynamic(dtype):
    ember.manual_seed(2)
    m = Masked().to(dtype)
    c = ember.compile(m, dynamic=True)
    with ember.no_grad():
        for b in (4, 9, 3):
            x = ember.randn(b, 5, dtype=dtype)
            _close(c(x), m(x), TOL[dtype])


@pytest.mark.parametrize("dynamic", [None, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_factory_written_in_place_is_fresh_each_call(dynamic, backend):
    def f(x):
        acc = ember.zeros(4, dtype=x.dtype)
        acc += x.sum(0)
        acc[1:3] *= 2                       # through a view too
        return acc * 2
    c = ember.compile(f, dynamic=dynamic, backend=backend)
    for _ in range(4):
        x = ember.randn(6, 4)
        _close(c(x), f(x), 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_returned_factory_is_not_the_graphs_constant(backend):
    def f(x):
        return ember.zeros(3), x + 1
    c = ember.compile(f, backend=backend)
    for _ in range(3):
        z, _ = c(ember.ones(2))
        np.testing.assert_array_equal(z.numpy(), np.zeros(3))
        z += 5                              # the caller's tensor, not the graph's


def test_fixed_factories_still_fold_to_constants():
    def f(x):
        return x + ember.arange(4, dtype=x.dtype) * 2
    c = ember.compile(f)
    x = ember.randn(3, 4)
    _close(c(x), f(x), 1e-6)
    from ember.export import _capture
    assert not any(n.target is _capture.creation_op for n in c.graphs[0].nodes)


def test_empty_batch_and_threads():
    c = ember.compile(sized_from_input, dynamic=True)
    for b in (5, 7):
        c(ember.randn(b, 3))
    before = ember.get_num_threads()
    try:
        for t in (1, 2):
            ember.set_num_threads(t)
            x = ember.randn(9, 3)
            _close(c(x), sized_from_input(x), 1e-5)
    finally:
        ember.set_num_threads(before)
    x = ember.randn(0, 3)  # an empty batch: a new specialisation or the dynamic graph
    _close(c(x), sized_from_input(x), 1e-5)


def test_export_static_factory_written_in_place_is_fresh_each_call():
    class M(nn.Module):
        def forward(self, x):
            acc = ember.zeros(4)
            acc += x.sum(0)
            return acc * 2
    m = M()
    f = ember.export.export(m, (ember.randn(3, 4),)).module()
    for _ in range(3):
        x = ember.randn(3, 4)
        _close(f(x), m(x), 1e-6)
