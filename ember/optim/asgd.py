"""Averaged SGD (Polyak & Juditsky 1992)."""

from __future__ import annotations

import numpy as np

from .optimizer import (Optimizer, _check_unsupported, _scalar_dtype, _scalar_state,
                        _to_scalar, _zeros_like)

__all__ = ["ASGD"]


class ASGD(Optimizer):
    r"""Averaged SGD, as ``torch.optim.ASGD``.

    Each step ``t``: ``g = ±grad + weight_decay * p``; ``p = p (1 - lambd eta) - eta g``; the
    average ``ax += mu (p - ax)`` (``ax = p`` while ``mu == 1``); then
    ``eta = lr / (1 + lambd lr t)^alpha`` and ``mu = 1 / max(1, t - t0)``.
    """

    _elem_state = ("ax",)
    _scalar_state = ("step", "eta", "mu")

    def __init__(self, params, lr=1e-2, lambd=1e-4, alpha=0.75, t0=1e6, weight_decay=0,
                 foreach=None, maximize=False, differentiable=False, capturable=False):
        if hasattr(lr, "numel") and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        _check_unsupported("ASGD", differentiable, capturable)
        defaults = dict(lr=lr, lambd=lambd, alpha=alpha, t0=t0, weight_decay=weight_decay,
                        foreach=foreach, maximize=maximize, differentiable=differentiable,
                        capturable=capturable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        return {"step": _scalar_state(0.0), "eta": _scalar_state(_to_scalar(group["lr"])),
                "mu": _scalar_state(1.0), "ax": _zeros_like(p)}

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        step = sc["step"]
        lr, wd = _to_scalar(group["lr"]), group["weight_decay"]
        lambd, alpha, t0 = group["lambd"], group["alpha"], group["t0"]
        eta, mu = sc["eta"], sc["mu"]
        ax = s["ax"]
        if group["maximize"]:
            np.negative(g, out=g)
        if wd != 0:
            g += wd * p
        p *= 1 - lambd * eta
        g *= eta
        p -= g
        if mu != 1:
            ax += (p - ax) * mu
        else:
            ax[...] = p
        # eta and mu are stored in the 0-d state dtype, so round as PyTorch's copy_ does
        dt = _scalar_dtype().np
        sc["eta"] = float(dt.type(lr / ((1 + lambd * lr * step) ** alpha)))
        sc["mu"] = float(dt.type(1 / max(1, step - t0)))

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import asgd  # noqa: E402

__all__ += ["asgd"]
