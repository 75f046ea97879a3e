"""Muon and swap_in_optimizer_params_and_state against PyTorch."""

import copy

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("adjust", [None, "match_rms_adamw"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 7)])
def test_muon_trajectory_matches_pytorch(nesterov, adjust, shape):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(shape).astype(np.float32)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(5)]
    pe, pt = ember.tensor(w0.copy(), requires_grad=True), torch.tensor(w0.copy(),
                                                                      requires_grad=True)
    oe = ember.optim.Muon([pe], lr=0.02, nesterov=nesterov, adjust_lr_fn=adjust)
    ot = torch.optim.Muon([pt], lr=0.02, nesterov=nesterov, adjust_lr_fn=adjust)
    for g in grads:
        pe.grad, pt.grad = ember.tensor(g), torch.tensor(g)
        oe.step()
        ot.step()
        # the Newton-Schulz steps run in bfloat16 in both: a few bf16 roundings apart
        np.testing.assert_allclose(pe.detach().numpy(), pt.detach().numpy(), atol=2e-3)
    np.testing.assert_allclose(oe.state[pe]["momentum_buffer"].numpy(),
                               ot.state[pt]["momentum_buffer"].numpy(), rtol=1e-6, atol=1e-7)


def test_muon_rejects_what_pytorch_rejects():
    with pytest.raises(ValueError, match="2D parameters"):
        ember.optim.Muon([ember.zeros(3, requires_grad=True)])
    with pytest.raises(ValueError, match="not supported"):
        ember.optim.Muon([ember.zeros(2, 2, requires_grad=True)], adjust_lr_fn="nope")


def test_swap_in_optimizer_params_and_state_steps_other_tensors_and_restores():
    p = ember.tensor([1.0, 2.0], requires_grad=True)
    opt = ember.optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = ember.tensor([1.0, 1.0])
    opt.step()
    live_buf = opt.state[p]["momentum_buffer"].clone()
    q = ember.tensor([10.0, 20.0], requires_grad=True)
    q.grad = ember.tensor([2.0, 2.0])
    osd = copy.deepcopy(opt.state_dict())  # state_dict() shares the live state dicts
    osd["param_groups"][0]["lr"] = 1.0
    osd["state"][0]["momentum_buffer"] = ember.tensor([0.0, 0.0])
    with ember.optim.swap_in_optimizer_params_and_state(opt, {"w": q}, osd):
        opt.step()
    np.testing.assert_allclose(q.detach().numpy(), [8.0, 18.0])
    np.testing.assert_allclose(osd["state"][0]["momentum_buffer"].numpy(), [2.0, 2.0])
    assert opt.param_groups[0]["params"][0] is p and opt.param_groups[0]["lr"] == 0.1
    np.testing.assert_array_equal(opt.state[p]["momentum_buffer"].numpy(), live_buf.numpy())
    with pytest.raises(RuntimeError, match="ordering"):
        with ember.optim.swap_in_optimizer_params_and_state(opt, {}, opt.state_dict()):
            pass
