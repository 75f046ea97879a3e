"""Distributions inside training loops: a REINFORCE policy gradient on a contextual bandit
(Categorical.log_prob), and a reparameterised Normal fitted by maximum likelihood."""

from __future__ import annotations

import numpy as np

import ember

D = ember.distributions


def test_reinforce_trains_a_policy():
    """Three contexts, four arms; the best arm differs per context. The policy's expected
    reward must rise from chance (0.25) to near 1."""
    ember.manual_seed(0)
    rng = np.random.default_rng(0)
    best = np.array([2, 0, 3])
    policy = ember.nn.Linear(3, 4)
    opt = ember.optim.Adam(policy.parameters(), lr=0.1)
    eye = ember.eye(3)

    def expected_reward():
        with ember.no_grad():
            probs = ember.softmax(policy(eye), -1).numpy()
        return probs[np.arange(3), best].mean()

    start = expected_reward()
    for _ in range(150):
        ctx = rng.integers(0, 3, 32)
        dist = D.Categorical(logits=policy(eye[ember.tensor(ctx)]))
        action = dist.sample()
        reward = ember.tensor((action.numpy() == best[ctx]).astype(np.float32))
        loss = -(dist.log_prob(action) * (reward - reward.mean())).mean() \
            - 0.01 * dist.entropy().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = expected_reward()
    assert start < 0.4
    assert end > 0.9


def test_fit_normal_by_maximum_likelihood_and_rsample():
    ember.manual_seed(1)
    data = D.Normal(3.0, 0.5).sample((2000,))
    loc = ember.zeros((), requires_grad=True)
    log_scale = ember.zeros((), requires_grad=True)
    opt = ember.optim.Adam([loc, log_scale], lr=0.1)
    for _ in range(200):
        nll = -D.Normal(loc, log_scale.exp()).log_prob(data).mean()
        opt.zero_grad()
        nll.backward()
        opt.step()
    assert abs(loc.item() - 3.0) < 0.05
    assert abs(log_scale.exp().item() - 0.5) < 0.05
    # a reparameterised objective: make E[(x - 1)^2] small by moving loc and shrinking scale
    q_loc = ember.zeros((), requires_grad=True)
    q_log_scale = ember.zeros((), requires_grad=True)
    opt = ember.optim.Adam([q_loc, q_log_scale], lr=0.05)
    for _ in range(200):
        x = D.Normal(q_loc, q_log_scale.exp()).rsample((64,))
        loss = ((x - 1.0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(q_loc.item() - 1.0) < 0.1 and q_log_scale.exp().item() < 0.3
