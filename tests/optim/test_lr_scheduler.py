"""Every scheduler's lr (and momentum) sequence over 100 steps matches PyTorch's, including
after a state_dict round trip in the middle."""

import math
import warnings

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")

STEPS = 100
METRICS = [1.0 / (1 + i) if i < 30 else 0.03 + 0.001 * math.sin(i) for i in range(STEPS + 1)]


def _optimizer(lib, kind="sgd"):
    a = lib.zeros(2, requires_grad=True)
    b = lib.zeros(3, requires_grad=True)
    groups = [{"params": [a]}, {"params": [b], "lr": 0.05}]
    if kind == "adam":
        return lib.optim.Adam(groups, lr=0.1)
    return lib.optim.SGD(groups, lr=0.1, momentum=0.9)


def _half(epoch):
    return 0.5 ** (epoch // 7)


def _mult(epoch):
    return 0.97


SCHEDULERS = {
    "LambdaLR": lambda m, o: m.LambdaLR(o, _half),
    "LambdaLR-list": lambda m, o: m.LambdaLR(o, [_half, lambda e: 1 / (1 + e)]),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, _mult),
    "StepLR": lambda m, o: m.StepLR(o, step_size=9, gamma=0.5),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[10, 30, 30, 70], gamma=0.3),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=40),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.9, total_iters=60),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.97),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=80, power=2.0),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=30, eta_min=0.001),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(
        o, T_0=7, T_mult=2, eta_min=0.001),
    "CosineAnnealingWarmRestarts-1": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=13),
    "CyclicLR-triangular": lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=7,
                                                   step_size_down=11),
    "CyclicLR-triangular2": lambda m, o: m.CyclicLR(o, [0.01, 0.02], 0.1, step_size_up=9,
                                                    mode="triangular2"),
    "CyclicLR-exp_range": lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=5,
                                                  mode="exp_range", gamma=0.98,
                                                  base_momentum=0.7, max_momentum=0.95),
    "CyclicLR-custom": lambda m, o: m.CyclicLR(o, 0.01, 0.1, step_size_up=6,
                                               scale_fn=_half, scale_mode="iterations",
                                               cycle_momentum=False),
    "OneCycleLR-cos": lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 0.2], total_steps=STEPS + 1),
    "OneCycleLR-linear": lambda m, o: m.OneCycleLR(o, max_lr=0.5, epochs=11,
                                                   steps_per_epoch=10,
                                                   anneal_strategy="linear"),
    "OneCycleLR-3phase": lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS + 1,
                                                   three_phase=True, pct_start=0.25),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=10),
            m.ExponentialLR(o, gamma=0.95), m.StepLR(o, step_size=5)], milestones=[10, 60]),
    "ChainedScheduler": lambda m, o: m.ChainedScheduler(
        [m.ConstantLR(o, factor=0.5, total_iters=20), m.ExponentialLR(o, gamma=0.98)]),
    "ReduceLROnPlateau-min-rel": lambda m, o: m.ReduceLROnPlateau(o, patience=3,
                                                                  factor=0.5, cooldown=2),
    "ReduceLROnPlateau-max-abs": lambda m, o: m.ReduceLROnPlateau(
        o, mode="max", threshold_mode="abs", threshold=0.01, patience=2, min_lr=[0.02, 0.0],
        eps=1e-3),
    "ReduceLROnPlateau-min-abs": lambda m, o: m.ReduceLROnPlateau(
        o, threshold_mode="abs", patience=4, min_lr=0.004),
    "ReduceLROnPlateau-max-rel": lambda m, o: m.ReduceLROnPlateau(o, mode="max", patience=1),
}


def _read(opt):
    out = []
    for g in opt.param_groups:
        out.append(float(g["lr"]))
        if "momentum" in g:
            out.append(float(g["momentum"]))
        if "betas" in g:
            out.append(float(g["betas"][0]))
    return out


def _sequence(lib, name, kind, break_at=None):
    m = lib.optim.lr_scheduler
    opt = _optimizer(lib, kind)
    sched = SCHEDULERS[name](m, opt)
    plateau = name.startswith("ReduceLROnPlateau")
    seq = [_read(opt) + [float(v) for v in sched.get_last_lr()]]
    for i in range(STEPS):
        opt.step()
        if plateau:
            sched.step(METRICS[i])
        else:
            sched.step()
        seq.append(_read(opt) + [float(v) for v in sched.get_last_lr()])
        if i == break_at:
            opt_sd, sched_sd = opt.state_dict(), sched.state_dict()
            opt = _optimizer(lib, kind)
            sched = SCHEDULERS[name](m, opt)
            opt.load_state_dict(opt_sd)
            sched.load_state_dict(sched_sd)
    return np.array(seq)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_lr_sequence_matches_torch(name):
    kind = "adam" if name.startswith("OneCycleLR-linear") else "sgd"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = _sequence(torch, name, kind)
        got = _sequence(ember, name, kind)
        resumed = _sequence(ember, name, kind, break_at=STEPS // 2)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(resumed, want, rtol=1e-12, atol=1e-15)


def test_swalr_matches_torch():
    seqs = []
    for lib in (torch, ember):
        opt = _optimizer(lib)
        sched = lib.optim.swa_utils.SWALR(opt, swa_lr=[0.02, 0.01], anneal_epochs=15)
        seq = []
        for i in range(40):
            opt.step()
            sched.step()
            seq.append(_read(opt))
            if i == 20:
                sd = sched.state_dict()
                sched = lib.optim.swa_utils.SWALR(opt, swa_lr=0.5, anneal_epochs=3,
                                                  anneal_strategy="linear")
                sched.load_state_dict(sd)
        seqs.append(np.array(seq))
    np.testing.assert_allclose(seqs[1], seqs[0], rtol=1e-12)


def test_closed_form_epoch_argument_matches_torch():
    out = []
    for lib in (torch, ember):
        opt = _optimizer(lib)
        sched = lib.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for e in (4, 9, 2):
                opt.step()
                sched.step(e)
                out.append(_read(opt))
    np.testing.assert_allclose(out[3:], out[:3])


def test_warns_when_scheduler_steps_before_optimizer():
    opt = _optimizer(ember)
    sched = ember.optim.lr_scheduler.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()
    opt2 = _optimizer(ember)
    sched2 = ember.optim.lr_scheduler.StepLR(opt2, step_size=2)
    opt2.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched2.step()
    with pytest.warns(UserWarning, match="get_last_lr"):
        sched2.get_lr()


def test_scheduler_errors():
    m = ember.optim.lr_scheduler
    opt = _optimizer(ember)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        m.StepLR(object(), 3)
    with pytest.raises(KeyError, match="initial_lr"):
        m.StepLR(_optimizer(ember), 3, last_epoch=4)
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        m.LambdaLR(opt, [_half])
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        m.ChainedScheduler([m.ReduceLROnPlateau(opt)])
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        m.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="total_steps"):
        m.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="Tried to step 3 times"):
        s = m.OneCycleLR(opt, max_lr=0.1, total_steps=2)
        for _ in range(3):
            opt.step()
            s.step()


def test_tensor_lr_is_updated_in_place():
    a = ember.zeros(2, requires_grad=True)
    lr = ember.tensor(0.1)
    opt = ember.optim.SGD([a], lr=lr)
    sched = ember.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] is lr
    assert abs(float(lr) - 0.05) < 1e-7
