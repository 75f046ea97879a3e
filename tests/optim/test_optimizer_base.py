"""The Optimizer base: groups, state dicts (to and from PyTorch), hooks, zero_grad, errors."""

import warnings

import numpy as np
import pytest

import ember

from ._helpers import (assert_state_close, make_problem, run, to_numpy,
                       torch_state_to_ember)

torch = pytest.importorskip("torch")

INIT, GRADS = make_problem(seed=3, steps=20)


def _feed(lib, params, opt, grads):
    for gs in grads:
        for p, g in zip(params, gs):
            p.grad = lib.tensor(g.copy())
        opt.step()


@pytest.mark.parametrize("name,kw", [
    ("Adam", dict(lr=0.05, amsgrad=True)), ("SGD", dict(lr=0.05, momentum=0.9)),
    ("NAdam", dict(lr=0.05)), ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("ASGD", dict(lr=0.05, t0=5)), ("Rprop", dict(lr=0.05)), ("Adafactor", dict(lr=0.05)),
    ("Adagrad", dict(lr=0.05)), ("AdamW", dict(lr=0.05)), ("Adadelta", dict(lr=0.5))])
def test_torch_state_dict_loads_and_continues(name, kw):
    """10 steps in torch, state moved through NumPy into ember, 10 more steps in both."""
    tp, topt = run(torch, name, INIT, GRADS[:10], kw)
    ep = [ember.tensor(to_numpy(p).copy(), requires_grad=True) for p in tp]
    eopt = getattr(ember.optim, name)(ep, **kw)
    eopt.load_state_dict(torch_state_to_ember(topt.state_dict()))
    _feed(torch, tp, topt, GRADS[10:])
    _feed(ember, ep, eopt, GRADS[10:])
    for a, b in zip(tp, ep):
        np.testing.assert_allclose(to_numpy(b), to_numpy(a), atol=1e-6, rtol=0)
    # loading casts 0-d state other than 'step' to the parameter dtype, as torch's loading does
    assert_state_close(topt.state_dict(), eopt.state_dict(), check_dtype=False)


def test_ember_state_dict_loads_into_torch():
    ep, eopt = run(ember, "Adam", INIT, GRADS[:10], dict(lr=0.05))
    tp = [torch.tensor(to_numpy(p).copy(), requires_grad=True) for p in ep]
    topt = torch.optim.Adam(tp, lr=0.05)
    sd = eopt.state_dict()
    topt.load_state_dict({
        "state": {i: {k: torch.tensor(to_numpy(v).copy()) for k, v in st.items()}
                  for i, st in sd["state"].items()},
        "param_groups": sd["param_groups"]})
    _feed(torch, tp, topt, GRADS[10:])
    _feed(ember, ep, eopt, GRADS[10:])
    for a, b in zip(tp, ep):
        np.testing.assert_allclose(to_numpy(b), to_numpy(a), atol=1e-6, rtol=0)


def test_state_dict_round_trip_and_groups():
    a = ember.tensor(INIT[0].copy(), requires_grad=True)
    b = ember.tensor(INIT[1].copy(), requires_grad=True)
    opt = ember.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    _feed(ember, [a, b], opt, [g[:2] for g in GRADS[:3]])
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["lr"] == 0.1
    assert set(sd["state"]) == {0, 1}
    opt2 = ember.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.3, momentum=0.9)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[1]["lr"] == 0.5
    assert opt2.state[b]["momentum_buffer"] is not None


def test_load_state_dict_mismatch_errors_name_group_and_sizes():
    a = ember.tensor(INIT[0].copy(), requires_grad=True)
    b = ember.tensor(INIT[1].copy(), requires_grad=True)
    opt = ember.optim.Adam([a, b])
    _feed(ember, [a, b], opt, [g[:2] for g in GRADS[:1]])
    sd = opt.state_dict()
    with pytest.raises(ValueError, match="group 0 has 1 parameters in the optimizer but 2"):
        ember.optim.Adam([a]).load_state_dict(sd)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        ember.optim.Adam([{"params": [a]}, {"params": [b]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match=r"'exp_avg' of parameter 0 in group 0 has shape "
                                         r"\(3, 4\) but the parameter has shape \(5,\)"):
        ember.optim.Adam([b, a]).load_state_dict(sd)


def test_add_param_group_and_errors():
    a = ember.tensor(INIT[0].copy(), requires_grad=True)
    b = ember.tensor(INIT[1].copy(), requires_grad=True)
    opt = ember.optim.Adam([a], lr=0.1)
    opt.add_param_group({"params": b, "lr": 0.2})
    assert opt.param_groups[1]["lr"] == 0.2 and opt.param_groups[1]["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(TypeError, match="iterable of Tensors"):
        ember.optim.SGD(a)
    with pytest.raises(ValueError, match="empty parameter list"):
        ember.optim.SGD([])
    with pytest.raises(TypeError, match="ordered collections"):
        ember.optim.SGD([{"params": {a}}])
    with pytest.raises(ValueError, match="non-leaf"):
        ember.optim.SGD([a * 2])
    with pytest.raises(ValueError, match="Invalid learning rate"):
        ember.optim.Adam([a], lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        ember.optim.SGD([a], momentum=0, nesterov=True)
    with pytest.raises(ValueError, match="Invalid epsilon"):
        ember.optim.SparseAdam([a], eps=0.0)
    with pytest.raises(NotImplementedError, match="differentiable"):
        ember.optim.Adam([a], differentiable=True)
    with pytest.raises(RuntimeError, match="cannot be `True` together"):
        ember.optim.Adam([a], fused=True, foreach=True)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        ember.optim.SGD([a, a], lr=0.1)
    named = ember.optim.SGD([("w", a), ("b", b)], lr=0.1)
    assert named.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


def test_zero_grad():
    a = ember.tensor([1.0, 2.0], requires_grad=True)
    opt = ember.optim.SGD([a], lr=0.1)
    (a * a).sum().backward()
    opt.zero_grad(set_to_none=False)
    assert a.grad is not None and to_numpy(a.grad).tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert a.grad is None


def test_step_hooks_and_state_dict_hooks():
    a = ember.tensor([1.0, 2.0], requires_grad=True)
    opt = ember.optim.SGD([a], lr=0.1)
    calls = []
    h1 = opt.register_step_pre_hook(lambda o, args, kw: calls.append("pre"))
    h2 = opt.register_step_post_hook(lambda o, args, kw: calls.append("post"))
    glob = ember.optim.optimizer.register_optimizer_step_pre_hook(
        lambda o, args, kw: calls.append("global"))
    a.grad = ember.tensor([1.0, 1.0])
    opt.step()
    assert calls == ["global", "pre", "post"]
    h1.remove()
    h2.remove()
    glob.remove()
    opt.step()
    assert calls == ["global", "pre", "post"]
    opt.register_state_dict_post_hook(lambda o, sd: dict(sd, extra=1))
    assert opt.state_dict()["extra"] == 1
    seen = []
    opt.register_load_state_dict_pre_hook(lambda o, sd: seen.append("pre"))
    opt.register_load_state_dict_post_hook(lambda o: seen.append("post"), prepend=True)
    opt.load_state_dict(opt.state_dict())
    assert seen == ["pre", "post"]


def test_closure_and_subclass_super_step_run_hooks_once():
    a = ember.tensor([1.0, 2.0], requires_grad=True)

    class MySGD(ember.optim.SGD):
        def step(self, closure=None):
            return super().step(closure)

    opt = MySGD([a], lr=0.1)
    calls = []
    opt.register_step_post_hook(lambda o, args, kw: calls.append(1))

    def closure():
        opt.zero_grad()
        loss = (a * a).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss) == 5.0 and calls == [1]
    np.testing.assert_allclose(to_numpy(a), [0.8, 1.6])


def test_flat_path_keeps_shared_memory_and_sees_replaced_data():
    """A parameter whose array is visible elsewhere is never moved into the flat buffer;
    replacing ``p.data`` between steps is picked up."""
    arr = np.ones(3)
    shared = ember.from_numpy(arr).requires_grad_()
    own = ember.tensor(np.ones(4), requires_grad=True)
    opt = ember.optim.SGD([shared, own], lr=0.5)
    for _ in range(2):
        shared.grad = ember.ones(3, dtype=ember.float64)
        own.grad = ember.ones(4, dtype=ember.float64)
        opt.step()
    np.testing.assert_allclose(arr, 0.0)  # still the user's memory
    np.testing.assert_allclose(to_numpy(own), 0.0)
    own.data = ember.tensor(np.full(4, 10.0))
    own.grad = ember.ones(4, dtype=ember.float64)
    shared.grad = ember.ones(3, dtype=ember.float64)
    opt.step()
    np.testing.assert_allclose(to_numpy(own), 9.5)
    v0 = own._version
    own.grad = ember.ones(4, dtype=ember.float64)
    shared.grad = ember.ones(3, dtype=ember.float64)
    opt.step()
    assert own._version > v0


def test_scheduler_lr_tensor_and_repr():
    a = ember.tensor([1.0], requires_grad=True)
    opt = ember.optim.SGD([a], lr=ember.tensor(0.5))
    a.grad = ember.tensor([1.0])
    opt.step()
    np.testing.assert_allclose(to_numpy(a), [0.5])
    assert "Parameter Group 0" in repr(opt) and "momentum: 0" in repr(opt)


def _rosenbrock(lib, x):
    return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2


@pytest.mark.parametrize("kw", [
    dict(lr=0.1, max_iter=5),
    dict(lr=1, max_iter=10, line_search_fn="strong_wolfe"),
    dict(lr=1, max_iter=4, history_size=3, line_search_fn="strong_wolfe"),
    dict(lr=0.05, max_iter=3, history_size=2)])
def test_lbfgs_rosenbrock_matches_torch(kw):
    iterates = []
    for lib in (torch, ember):
        x = lib.tensor([-1.5, 2.0], dtype=lib.float64, requires_grad=True)
        opt = lib.optim.LBFGS([x], **kw)
        path = []

        def closure():
            opt.zero_grad()
            loss = _rosenbrock(lib, x)
            loss.backward()
            return loss

        for _ in range(8):
            opt.step(closure)
            path.append(to_numpy(x).copy())
        iterates.append(np.array(path))
        if lib is torch:
            t_state = opt.state[x]
        else:
            e_state = opt.state[x]
    np.testing.assert_allclose(iterates[1], iterates[0], atol=1e-6, rtol=0)
    assert e_state["func_evals"] == t_state["func_evals"]
    assert e_state["n_iter"] == t_state["n_iter"]


def test_lbfgs_several_parameters():
    out = []
    rng = np.random.default_rng(4)
    a0, b0, t = rng.standard_normal(3), rng.standard_normal((2, 2)), rng.standard_normal(3)
    for lib in (torch, ember):
        a = lib.tensor(a0.copy(), requires_grad=True)
        b = lib.tensor(b0.copy(), requires_grad=True)
        target = lib.tensor(t)
        opt = lib.optim.LBFGS([a, b], lr=1, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = ((a - target) ** 4).sum() + (b.sum() - 1) ** 2 + (a.sum() * b[0, 0]) ** 2
            loss.backward()
            return loss

        for _ in range(3):
            opt.step(closure)
        out.append((to_numpy(a).copy(), to_numpy(b).copy()))
    for x, y in zip(out[0], out[1]):
        np.testing.assert_allclose(y, x, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="per-parameter options"):
        ember.optim.LBFGS([{"params": [ember.zeros(1, requires_grad=True)]},
                           {"params": [ember.zeros(1, requires_grad=True)]}])


def test_no_warning_on_plain_step():
    a = ember.tensor([1.0], requires_grad=True)
    opt = ember.optim.Adam([a])
    a.grad = ember.tensor([1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()


def test_new_optimizer_on_trained_params_keeps_the_flat_path():
    params, first = run(ember, "SGD", INIT, GRADS[:2], dict(lr=0.1, momentum=0.9))
    second = ember.optim.Adam(params, lr=0.1)
    _feed(ember, params, second, GRADS[2:4])
    assert second._flat
    tp, _ = run(torch, "SGD", INIT, GRADS[:2], dict(lr=0.1, momentum=0.9))
    tsecond = torch.optim.Adam(tp, lr=0.1)
    _feed(torch, tp, tsecond, GRADS[2:4])
    for a, b in zip(tp, params):
        np.testing.assert_allclose(to_numpy(b), to_numpy(a), atol=1e-12)


def test_python_number_step_in_loaded_state_is_converted():
    ep, eopt = run(ember, "Adam", INIT, GRADS[:3], dict(lr=0.05))
    sd = eopt.state_dict()
    for st in sd["state"].values():
        st["step"] = 3
    other = ember.optim.Adam([ember.tensor(to_numpy(p).copy(), requires_grad=True)
                              for p in ep], lr=0.05)
    other.load_state_dict(sd)
    assert all(isinstance(st["step"], ember.Tensor) for st in other.state.values())
    assert float(next(iter(other.state.values()))["step"]) == 3.0
