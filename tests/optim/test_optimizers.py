"""Trajectory parity: every optimizer and combination of its options walks PyTorch's path."""

import itertools

import numpy as np
import pytest

import ember

from ._helpers import assert_state_close, make_problem, run, to_numpy

torch = pytest.importorskip("torch")


def _grid(**options):
    keys = list(options)
    return [dict(zip(keys, values)) for values in itertools.product(*options.values())]


def _sgd_cases():
    out = []
    for c in _grid(momentum=[0, 0.9], dampening=[0, 0.2], nesterov=[False, True],
                   weight_decay=[0, 0.1], maximize=[False, True]):
        if c["nesterov"] and (c["momentum"] == 0 or c["dampening"] != 0):
            continue
        out.append(dict(c, lr=0.05))
    return out


CASES = (
    [("SGD", c) for c in _sgd_cases()]
    + [("Adam", dict(c, lr=0.05)) for c in _grid(
        amsgrad=[False, True], weight_decay=[0, 0.1], maximize=[False, True],
        decoupled_weight_decay=[False, True])]
    + [("AdamW", dict(c, lr=0.05)) for c in _grid(
        amsgrad=[False, True], weight_decay=[0, 0.1], maximize=[False, True])]
    + [("Adamax", dict(c, lr=0.05)) for c in _grid(
        weight_decay=[0, 0.1], maximize=[False, True])]
    + [("NAdam", dict(c, lr=0.05)) for c in _grid(
        weight_decay=[0, 0.1], decoupled_weight_decay=[False, True], maximize=[False, True],
        momentum_decay=[4e-3, 2e-2])]
    + [("RAdam", dict(c, lr=0.05)) for c in _grid(
        weight_decay=[0, 0.1], decoupled_weight_decay=[False, True], maximize=[False, True])]
    + [("RMSprop", dict(c, lr=0.01)) for c in _grid(
        alpha=[0.99, 0.9], centered=[False, True], momentum=[0, 0.9], weight_decay=[0, 0.1],
        maximize=[False, True])]
    + [("Adagrad", dict(c, lr=0.1)) for c in _grid(
        lr_decay=[0, 0.01], initial_accumulator_value=[0, 0.1], weight_decay=[0, 0.1],
        maximize=[False, True])]
    + [("Adadelta", dict(c, lr=0.5)) for c in _grid(
        rho=[0.9, 0.8], weight_decay=[0, 0.1], maximize=[False, True])]
    + [("ASGD", dict(c, lr=0.05)) for c in _grid(
        t0=[1e6, 10], lambd=[1e-4, 1e-2], weight_decay=[0, 0.1], maximize=[False, True])]
    + [("Rprop", dict(c, lr=0.05)) for c in _grid(
        etas=[(0.5, 1.2), (0.3, 1.5)], step_sizes=[(1e-6, 50), (1e-3, 0.1)],
        maximize=[False, True])]
    + [("Adafactor", dict(c, lr=0.05)) for c in _grid(
        weight_decay=[0, 0.1], maximize=[False, True], eps=[(None, 1e-3), (1e-20, 1e-2)],
        d=[1.0, 1.5])]
)

INIT, GRADS = make_problem()


def _case_id(case):
    name, kw = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items() if k != "lr")


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_trajectory_matches_torch(case):
    name, kw = case
    tp, topt = run(torch, name, INIT, GRADS, kw)
    tsd = topt.state_dict()
    for foreach in (False, True):
        ep, eopt = run(ember, name, INIT, GRADS, kw, foreach=foreach)
        for a, b in zip(tp, ep):
            np.testing.assert_allclose(to_numpy(b), to_numpy(a), atol=1e-6, rtol=0)
        esd = eopt.state_dict()
        if foreach is not None:
            for g in esd["param_groups"]:
                g["foreach"] = None  # the only option that differs from torch's run
        assert_state_close(tsd, esd)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "NAdam", "ASGD", "Rprop"])
def test_flat_path_is_taken_and_matches_loop(name):
    kw = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    flat_params, flat_opt = run(ember, name, INIT, GRADS[:5], kw, foreach=True)
    loop_params, loop_opt = run(ember, name, INIT, GRADS[:5], kw, foreach=False)
    assert flat_opt._flat and not loop_opt._flat
    for a, b in zip(flat_params, loop_params):
        np.testing.assert_array_equal(a._data, b._data)


def test_float32_parameters():
    init = [a.astype(np.float32) for a in INIT]
    grads = [[g.astype(np.float32) for g in gs] for gs in GRADS]
    for name in ("Adam", "SGD", "RMSprop"):
        kw = dict(lr=0.01)
        tp, _ = run(torch, name, init, grads, kw)
        ep, _ = run(ember, name, init, grads, kw)
        for a, b in zip(tp, ep):
            assert b.dtype == ember.float32
            np.testing.assert_allclose(to_numpy(b), to_numpy(a), atol=1e-5, rtol=0)


def test_complex_parameters_follow_view_as_real():
    rng = np.random.default_rng(1)
    init = [rng.standard_normal((3,)) + 1j * rng.standard_normal((3,))]
    grads = [[rng.standard_normal((3,)) + 1j * rng.standard_normal((3,))] for _ in range(20)]
    for name in ("Adam", "SGD", "RMSprop", "Adagrad"):
        tp, _ = run(torch, name, init, grads, dict(lr=0.05))
        ep, _ = run(ember, name, init, grads, dict(lr=0.05))
        np.testing.assert_allclose(to_numpy(ep[0]), to_numpy(tp[0]), atol=1e-6, rtol=0)


def test_gradients_from_backward():
    """A real training loop: gradients come from autograd, lr is a 0-d tensor."""
    rng = np.random.default_rng(2)
    w0, x = rng.standard_normal((4, 3)), rng.standard_normal((8, 4))
    out = []
    for lib in (torch, ember):
        w = lib.tensor(w0.copy(), requires_grad=True)
        opt = lib.optim.Adam([w], lr=lib.tensor(0.01))
        xt = lib.tensor(x)
        for _ in range(20):
            opt.zero_grad()
            loss = ((xt @ w).tanh() ** 2).sum()
            loss.backward()
            opt.step()
        out.append(to_numpy(w))
    np.testing.assert_allclose(out[1], out[0], atol=1e-10)


def test_skips_params_without_grad_and_mixed_steps():
    """Params that miss gradients on some steps take fewer steps (torch's rule)."""
    tp = [torch.tensor(a.copy(), requires_grad=True) for a in INIT]
    ep = [ember.tensor(a.copy(), requires_grad=True) for a in INIT]
    topt, eopt = torch.optim.Adam(tp, lr=0.05), ember.optim.Adam(ep, lr=0.05)
    for t, gs in enumerate(GRADS[:12]):
        for i, (a, b, g) in enumerate(zip(tp, ep, gs)):
            has = (t + i) % 3 != 0
            a.grad = torch.tensor(g.copy()) if has else None
            b.grad = ember.tensor(g.copy()) if has else None
        topt.step()
        eopt.step()
    for a, b in zip(tp, ep):
        np.testing.assert_allclose(to_numpy(b), to_numpy(a), atol=1e-10)
