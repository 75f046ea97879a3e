"""RMSprop (Hinton's lecture 6e), optionally centered (Graves 2013) and with momentum."""

from __future__ import annotations

import numpy as np

from .optimizer import Optimizer, _check_unsupported, _scalar_state, _to_scalar, _zeros_like

__all__ = ["RMSprop"]


class RMSprop(Optimizer):
    r"""RMSprop, as ``torch.optim.RMSprop``.

    Each step: ``g = ±grad + weight_decay * p``; ``v = alpha v + (1 - alpha) g²``; the
    denominator is ``d = sqrt(v - gavg²) + eps`` when centered (``gavg`` the running mean of
    ``g``), else ``sqrt(v) + eps``; with momentum ``b = momentum b + g / d``, ``p -= lr b``,
    otherwise ``p -= lr g / d``.
    """

    _elem_state = ("square_avg", "momentum_buffer", "grad_avg")
    _scalar_state = ("step",)

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False):
        if hasattr(lr, "numel") and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        _check_unsupported("RMSprop", differentiable, capturable)
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        st = {"step": _scalar_state(0.0), "square_avg": _zeros_like(p)}
        if group["momentum"] > 0:
            st["momentum_buffer"] = _zeros_like(p)
        if group["centered"]:
            st["grad_avg"] = _zeros_like(p)
        return st

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        lr, eps, wd = _to_scalar(group["lr"]), group["eps"], group["weight_decay"]
        alpha, momentum = group["alpha"], group["momentum"]
        v = s["square_avg"]
        if group["maximize"]:
            np.negative(g, out=g)
        if wd != 0:
            g += wd * p
        v *= alpha
        v += (1 - alpha) * (g * g)
        if group["centered"]:
            gavg = s["grad_avg"]
            gavg *= alpha
            gavg += (1 - alpha) * g
            avg = v - gavg * gavg
            np.sqrt(avg, out=avg)
        else:
            avg = np.sqrt(v)
        avg += eps
        if momentum > 0:
            buf = s["momentum_buffer"]
            buf *= momentum
            g /= avg
            buf += g
            p -= lr * buf
        else:
            g /= avg
            g *= lr
            p -= g

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import rmsprop  # noqa: E402

__all__ += ["rmsprop"]
