"""Muon against torch.optim.Muon: the same parameters and gradients give the same updates over
several steps (the Newton-Schulz iteration runs in bfloat16 in both, so to bf16 accuracy)."""

import numpy as np
import pytest

import ember

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("shape", [(6, 4), (3, 8)])
@pytest.mark.parametrize("kw", [{}, {"nesterov": False, "weight_decay": 0.0},
                                {"adjust_lr_fn": "match_rms_adamw", "lr": 0.01}])
def test_muon_matches_torch(shape, kw):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(shape).astype(np.float32)
    ep = ember.nn.Parameter(ember.tensor(w0))
    tp = torch.nn.Parameter(torch.tensor(w0))
    eo, to = ember.optim.Muon([ep], **kw), torch.optim.Muon([tp], **kw)
    for _ in range(3):
        g = rng.standard_normal(shape).astype(np.float32)
        ep.grad, tp.grad = ember.tensor(g), torch.tensor(g)
        eo.step()
        to.step()
        np.testing.assert_allclose(ep.detach().numpy(), tp.detach().numpy(), atol=2e-4,
                                   rtol=1e-2)
    np.testing.assert_allclose(eo.state[ep]["momentum_buffer"].numpy(),
                               to.state[tp]["momentum_buffer"].numpy(), rtol=1e-6, atol=1e-7)


def test_muon_rejects_bad_input():
    with pytest.raises(ValueError, match="2D"):
        ember.optim.Muon([ember.nn.Parameter(ember.zeros(3))])
    with pytest.raises(ValueError):
        ember.optim.Muon([ember.nn.Parameter(ember.zeros(2, 2))], lr=-1.0)
    with pytest.raises(ValueError):
        ember.optim.Muon([ember.nn.Parameter(ember.zeros(2, 2))], adjust_lr_fn="bogus")
