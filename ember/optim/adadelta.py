"""Adadelta (Zeiler 2012)."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, _check_unsupported, _scalar_state, _to_scalar, _zeros_like

__all__ = ["Adadelta"]


class Adadelta(Optimizer):
    r"""Adadelta, as ``torch.optim.Adadelta``.

    Each step: ``g = ±grad + weight_decay * p``; ``v = rho v + (1 - rho) g²``;
    ``delta = sqrt(u + eps) / sqrt(v + eps) * g``; ``u = rho u + (1 - rho) delta²``;
    ``p -= lr * delta``.
    """

    _elem_state = ("square_avg", "acc_delta")
    _scalar_state = ("step",)

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, foreach=None, *,
                 capturable=False, maximize=False, differentiable=False):
        if hasattr(lr, "numel") and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        _check_unsupported("Adadelta", differentiable, capturable)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize,
                        capturable=capturable, foreach=foreach, differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        return {"step": _scalar_state(0.0), "square_avg": _zeros_like(p),
                "acc_delta": _zeros_like(p)}

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        lr, eps, wd, rho = _to_scalar(group["lr"]), group["eps"], group["weight_decay"], \
            group["rho"]
        v, u = s["square_avg"], s["acc_delta"]
        if group["maximize"]:
            np.negative(g, out=g)
        if wd != 0:
            g += wd * p
        v *= rho
        v += (1 - rho) * (g * g)
        std = np.sqrt(v + eps)
        delta = np.sqrt(u + eps)
        delta /= std
        delta *= g
        u *= rho
        u += (1 - rho) * (delta * delta)
        delta *= lr
        p -= delta

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import adadelta  # noqa: E402

__all__ += ["adadelta"]
