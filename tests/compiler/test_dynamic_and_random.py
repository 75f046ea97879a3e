"""dynamic=True (a symbolic batch dimension) and random ops' state under compile."""

import copy

import numpy as np
import pytest

import ember
from ember import nn


def _step_of(model, opt):
    def step(x, y):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    return step


@pytest.mark.parametrize("dtype", [ember.float32, ember.float64])
def test_dynamic_batch_replays_one_graph_and_matches_eager(dtype):
    ember.manual_seed(0)
    ref = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).to(dtype)
    model = copy.deepcopy(ref)
    opts = [ember.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (ref, model)]
    eager, c = _step_of(ref, opts[0]), ember.compile(_step_of(model, opts[1]), dynamic=True)
    tol = 1e-5 if dtype == ember.float32 else 1e-12
    for b in (8, 8, 5, 12, 3, 8, 31):
        x, y = ember.randn(b, 8, dtype=dtype), ember.randint(0, 4, (b,))
        np.testing.assert_allclose(c(x, y).item(), eager(x, y).item(), rtol=tol, atol=tol)
    assert len(c.entries) == 1 and c.dynamic_failure is None
    assert c.entries[0].cap.guards.dynamic  # the batch dimension is symbolic
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=tol * 10,
                                   atol=tol * 10)


def test_static_by_default_and_dynamic_guard_still_checks_other_dims():
    def f(x):
        return (x * 2).sum(0)
    c = ember.compile(f)
    for b in (4, 5):
        c(ember.randn(b, 3))
    assert len(c.entries) == 2  # default: each shape specialised
    d = ember.compile(f, dynamic=True)
    for b in (4, 5, 9):
        np.testing.assert_allclose(d(ember.ones(b, 3)).numpy(), np.full(3, 2.0 * b))
    assert len(d.entries) == 1
    d(ember.ones(4, 6))  # a non-batch dimension changed: recompiles
    assert len(d.entries) == 2


def test_dynamic_falls_back_to_static_where_sizes_cannot_be_fitted():
    def f(x):
        n = x.shape[0]
        return x * float(n % 3)  # not affine in the size: export's fitting refuses it
    c = ember.compile(f, dynamic=True)
    for b in (4, 5, 6):
        np.testing.assert_allclose(c(ember.ones(b)).numpy(), np.full(b, float(b % 3)))
    assert c.dynamic_failure is not None and len(c.entries) == 3


def test_dropout_same_seed_same_masks_and_state_advances():
    drop = nn.Dropout(0.5)

    def f(x):
        return drop(x) * 1.0
    c = ember.compile(f)
    x = ember.ones(2000)
    ember.manual_seed(3)
    compiled = [c(x).numpy().copy() for _ in range(4)]
    ember.manual_seed(3)
    eager = [f(x).numpy().copy() for _ in range(4)]
    for a, b in zip(compiled, eager):  # the same draws, in the same order, as eager
        np.testing.assert_array_equal(a, b)
    masks = {tuple(a != 0) for a in compiled}
    assert len(masks) == 4  # every call drew new numbers
    kept = np.mean([a != 0 for a in compiled])
    assert 0.45 < kept < 0.55 and set(np.unique(compiled[0])) <= {0.0, 2.0}
    # eager and compiled calls interleaved share one stream: no mask repeats
    ember.manual_seed(4)
    mixed = [c(x).numpy() if i % 2 else f(x).numpy() for i in range(6)]
    assert len({tuple(a != 0) for a in mixed}) == 6


def test_randn_in_a_compiled_training_step_advances_the_generator():
    ember.manual_seed(5)
    lin = nn.Linear(4, 1)
    opt = ember.optim.SGD(lin.parameters(), lr=0.01)

    def step(x):
        noisy = x + 0.1 * ember.randn(x.shape)
        loss = lin(noisy).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        return noisy
    c = ember.compile(step)
    x = ember.zeros(3, 4)
    draws = [c(x).numpy().copy() for _ in range(4)]
    assert len({d.tobytes() for d in draws}) == 4
