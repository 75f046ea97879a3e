"""PyTorch's functional optimizers at their paths (``torch.optim.adam.adam(params, grads,
exp_avgs, ...)``): three updates of two parameters from the same gradients and initial state,
parameters, every state tensor and the step counts against PyTorch, float32 and float64."""

import importlib

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

# name: (state lists after params/grads, hyperparameters)
CASES = {
    "adam": (["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
             dict(amsgrad=True, beta1=0.9, beta2=0.99, lr=0.01, weight_decay=0.1, eps=1e-8,
                  maximize=False)),
    "adamw": (["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
              dict(amsgrad=False, beta1=0.8, beta2=0.99, lr=0.01, weight_decay=0.1, eps=1e-8,
                   maximize=True)),
    "adadelta": (["square_avg", "acc_delta"],
                 dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.01, maximize=False)),
    "adagrad": (["sum"], dict(lr=0.1, weight_decay=0.01, lr_decay=0.01, eps=1e-10,
                              maximize=False)),
    "adamax": (["exp_avg", "exp_inf"],
               dict(eps=1e-8, beta1=0.9, beta2=0.999, lr=0.01, weight_decay=0.01)),
    "asgd": (["ax", "mu", "eta"],
             dict(lambd=1e-4, lr=0.01, t0=1, alpha=0.75, weight_decay=0.01)),
    "nadam": (["exp_avg", "exp_avg_sq", "mu_product"],
              dict(beta1=0.9, beta2=0.999, lr=0.01, weight_decay=0.01, momentum_decay=4e-3,
                   eps=1e-8)),
    "radam": (["exp_avg", "exp_avg_sq"],
              dict(beta1=0.9, beta2=0.999, lr=0.01, weight_decay=0.01, eps=1e-8)),
    "rmsprop": (["square_avg", "grad_avg", "momentum_buffer"],
                dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.01, momentum=0.9,
                     centered=True)),
    "rprop": (["prev", "step_size"],
              dict(step_size_min=1e-6, step_size_max=50, etaminus=0.5, etaplus=1.2)),
    "sgd": (["momentum_buffer"], dict(weight_decay=0.01, momentum=0.9, lr=0.1, dampening=0.0,
                                     nesterov=True, maximize=False)),
}


def _initial(T, name, key, p):
    """The state a PyTorch optimizer class creates before its first step."""
    if name == "sgd":
        return None  # created by the first step and stored back into the list
    if name == "asgd" and key != "ax":
        return T.ones((), dtype=p.dtype) if key == "mu" else T.tensor(0.01, dtype=p.dtype)
    if name == "nadam" and key == "mu_product":
        return T.ones((), dtype=p.dtype)
    if name == "rprop" and key == "step_size":
        return T.full_like(p, 0.01)
    return T.zeros_like(p)


def _run(T, fn, name, params, grads, dtype):
    keys, hyper = CASES[name]
    ps = [T.tensor(p, dtype=dtype) for p in params]
    lists = [[_initial(T, name, k, p) for p in ps] for k in keys]
    steps = [T.tensor(0.0, dtype=dtype) for _ in ps]
    for g in grads:
        gs = [T.tensor(x, dtype=dtype) for x in g]
        fn(ps, gs, *lists, *([] if name == "sgd" else [steps]), **hyper)
    return ps, [x for lst in lists for x in lst], steps


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_functional_optimizer_matches_torch(name, dtype):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    grads = [[rng.standard_normal(p.shape) for p in params] for _ in range(3)]
    fe = getattr(importlib.import_module("ember.optim." + name), name)
    ft = getattr(importlib.import_module("torch.optim." + name), name)
    pe, se, ke = _run(ember, fe, name, params, grads, getattr(ember, dtype))
    pt, st, kt = _run(torch, ft, name, params, grads, getattr(torch, dtype))
    tol = 1e-5 if dtype == "float32" else 1e-8  # NAdam: PyTorch keeps mu_t products at 1e-9
    for a, b in zip(pe + se, pt + st):
        assert a.dtype == getattr(ember, dtype)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol, atol=tol)
    assert [float(s) for s in ke] == [float(s) for s in kt] == ([3.0, 3.0] if name != "sgd"
                                                                 else [0.0, 0.0])


def test_functional_optimizer_errors():
    from ember.optim.adam import adam
    p = [ember.zeros(2)]
    with pytest.raises(ValueError, match="gradients"):
        adam(p, [], [ember.zeros(2)], [ember.zeros(2)], [], [ember.tensor(0.0)],
             amsgrad=False, beta1=0.9, beta2=0.99, lr=0.1, weight_decay=0, eps=1e-8,
             maximize=False)
    with pytest.raises(NotImplementedError, match="grad_scale"):
        adam(p, [ember.ones(2)], [ember.zeros(2)], [ember.zeros(2)], [], [ember.tensor(0.0)],
             grad_scale=ember.tensor(1.0), amsgrad=False, beta1=0.9, beta2=0.99, lr=0.1,
             weight_decay=0, eps=1e-8, maximize=False)
    assert p[0].grad is None  # the caller's .grad is left as it was
