"""GradScaler against torch.amp.GradScaler("cpu"): the same scale trajectory, skipped steps
and parameters on a run with injected infs and NaNs."""

import numpy as np
import pytest

import ember

pytestmark = pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")

torch = pytest.importorskip("torch")


def train(lib, bad_steps, steps=14, **kw):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((3, 4))
    xs = rng.standard_normal((steps, 5, 4))
    w = lib.tensor(w0, dtype=lib.float32, requires_grad=True)
    opt = lib.optim.SGD([w], lr=0.1)
    scaler = lib.amp.GradScaler("cpu", **kw)
    scales, trackers, results = [], [], []
    for i in range(steps):
        opt.zero_grad()
        loss = (lib.tensor(xs[i], dtype=lib.float32) @ w.t()).pow(2).mean()
        if i in bad_steps:
            loss = loss * bad_steps[i]
        scaler.scale(loss).backward()
        results.append(scaler.step(opt))
        scaler.update()
        scales.append(scaler.get_scale())
        trackers.append(scaler.state_dict()["_growth_tracker"])
    return scales, trackers, w.detach().numpy()


@pytest.mark.parametrize("kw", [
    {"init_scale": 2.0 ** 8, "growth_interval": 3},
    {"init_scale": 1024.0, "growth_factor": 4.0, "backoff_factor": 0.25, "growth_interval": 2},
    {},
])
def test_scale_trajectory_matches_pytorch(kw):
    bad = {2: float("inf"), 3: float("nan"), 7: float("inf")}
    s_e, t_e, w_e = train(ember, bad, **kw)
    s_t, t_t, w_t = train(torch, bad, **kw)
    assert s_e == s_t
    assert t_e == t_t
    np.testing.assert_allclose(w_e, w_t, rtol=1e-5, atol=1e-6)


def test_skipped_step_leaves_parameters():
    w = ember.ones(2, requires_grad=True)
    opt = ember.optim.SGD([w], lr=1.0)
    scaler = ember.amp.GradScaler("cpu", init_scale=4.0)
    (scaler.scale(w.sum()) * float("inf")).backward()
    assert scaler.step(opt) is None
    assert ember.equal(w.detach(), ember.ones(2))
    scaler.update()
    assert scaler.get_scale() == 2.0


def test_unscale_then_clip_and_errors():
    w = ember.ones(2, requires_grad=True)
    opt = ember.optim.SGD([w], lr=1.0)
    scaler = ember.amp.GradScaler("cpu", init_scale=8.0)
    scaler.scale((w * 3).sum()).backward()
    assert w.grad.tolist() == [24.0, 24.0]
    scaler.unscale_(opt)
    assert w.grad.tolist() == [3.0, 3.0]
    with pytest.raises(RuntimeError, match="unscale_\\(\\) has already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        scaler.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        scaler.unscale_(opt)
    scaler.update()
    with pytest.raises(RuntimeError, match="Closure"):
        scaler.step(opt, closure=lambda: 0)
    fresh = ember.amp.GradScaler("cpu")
    with pytest.raises(AssertionError, match="_scale is None"):
        fresh.update()


def test_state_dict_roundtrip_and_disabled():
    a = ember.amp.GradScaler("cpu", init_scale=32.0, growth_interval=5)
    t = torch.amp.GradScaler("cpu", init_scale=32.0, growth_interval=5)
    assert a.state_dict() == t.state_dict()
    b = ember.amp.GradScaler("cpu")
    b.load_state_dict(a.state_dict())
    assert b.get_scale() == 32.0 and b.get_growth_interval() == 5
    off = ember.amp.GradScaler("cpu", enabled=False)
    assert off.state_dict() == {} and off.get_scale() == 1.0
    x = ember.ones(1)
    assert off.scale(x) is x
    with pytest.raises(RuntimeError, match="empty"):
        b.load_state_dict({})


def test_scale_keeps_output_dtype_and_nesting():
    s = ember.amp.GradScaler("cpu", init_scale=2.0)
    out = s.scale([ember.ones(2, dtype=ember.bfloat16), (ember.ones(1),)])
    assert out[0].dtype is ember.bfloat16 and out[0].tolist() == [2.0, 2.0]
    assert out[1][0].tolist() == [2.0]
