"""Adamax: Adam with the infinity norm (Kingma & Ba 2014, section 7)."""

from __future__ import annotations

import numpy as np

from .adam import _check_betas
from .optimizer import Optimizer, _check_unsupported, _scalar_state, _to_scalar, _zeros_like

__all__ = ["Adamax"]


class Adamax(Optimizer):
    r"""Adamax, as ``torch.optim.Adamax``.

    Each step ``t``: ``g = ±grad + weight_decay * p``; ``m = b1 m + (1 - b1) g``;
    ``u = max(b2 u, |g| + eps)``; ``p -= lr / (1 - b1^t) * m / u``.
    """

    _elem_state = ("exp_avg", "exp_inf")
    _scalar_state = ("step",)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False):
        betas = _check_betas(lr, eps, betas, weight_decay)
        _check_unsupported("Adamax", differentiable, capturable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        foreach=foreach, maximize=maximize, differentiable=differentiable,
                        capturable=capturable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        return {"step": _scalar_state(0.0), "exp_avg": _zeros_like(p),
                "exp_inf": _zeros_like(p)}

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        beta1, beta2 = group["betas"]
        lr, eps, wd = _to_scalar(group["lr"]), group["eps"], group["weight_decay"]
        m, u = s["exp_avg"], s["exp_inf"]
        if group["maximize"]:
            np.negative(g, out=g)
        if wd != 0:
            g += wd * p
        m *= beta1
        m += (1 - beta1) * g
        u *= beta2
        np.abs(g, out=g)
        g += eps
        np.maximum(u, g, out=u)
        clr = lr / (1 - beta1 ** sc["step"])
        np.divide(m, u, out=g)
        g *= clr
        p -= g

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import adamax  # noqa: E402

__all__ += ["adamax"]
