"""NAdam: Adam with Nesterov momentum (Dozat 2016), optionally with decoupled weight decay."""

from __future__ import annotations

import numpy as np

from .adam import _check_betas
from .optimizer import (Optimizer, _check_unsupported, _scalar_dtype, _scalar_state,
                        _to_scalar, _zeros_like)

__all__ = ["NAdam"]


class NAdam(Optimizer):
    r"""NAdam, as ``torch.optim.NAdam``.

    Each step ``t``: ``mu_t = b1 (1 - 0.5 * 0.96^(t psi))`` with ``psi = momentum_decay``;
    ``prod *= mu_t``; ``m``, ``v`` as in Adam; with ``d = sqrt(v / (1 - b2^t)) + eps``:
    ``p -= lr (1 - mu_t) / (1 - prod) * g / d + lr mu_{t+1} / (1 - prod mu_{t+1}) * m / d``.
    """

    _elem_state = ("exp_avg", "exp_avg_sq")
    _scalar_state = ("step", "mu_product")

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False):
        betas = _check_betas(lr, eps, betas, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        _check_unsupported("NAdam", differentiable, capturable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        return {"step": _scalar_state(0.0), "mu_product": _scalar_state(1.0),
                "exp_avg": _zeros_like(p), "exp_avg_sq": _zeros_like(p)}

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        step = sc["step"]
        beta1, beta2 = group["betas"]
        lr, eps, wd = _to_scalar(group["lr"]), group["eps"], group["weight_decay"]
        psi = group["momentum_decay"]
        m, v = s["exp_avg"], s["exp_avg_sq"]
        if group["maximize"]:
            np.negative(g, out=g)
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p *= 1 - lr * wd
            else:
                g += wd * p
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * psi))
        # the 0-d state is stored in its own dtype (float32 by default), as PyTorch does
        dt = _scalar_dtype().np.type
        mu_product = float(dt(sc["mu_product"]) * dt(mu))
        sc["mu_product"] = mu_product
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * (g * g)
        denom = v / (1 - beta2 ** step)
        np.sqrt(denom, out=denom)
        denom += eps
        g *= -lr * (1.0 - mu) / (1.0 - mu_product)
        g += m * (-lr * mu_next / (1.0 - mu_product * mu_next))
        g /= denom
        p += g

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import nadam  # noqa: E402

__all__ += ["nadam"]
