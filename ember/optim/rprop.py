"""Resilient backpropagation (Riedmiller & Braun 1993)."""

from __future__ import annotations

import numpy as np

from .._tensor import _make
from .optimizer import Optimizer, _check_unsupported, _scalar_state, _to_scalar, _zeros_like

__all__ = ["Rprop"]


class Rprop(Optimizer):
    r"""Rprop, as ``torch.optim.Rprop``.

    Each step: ``s = sign(g * prev)``; every element's step size is multiplied by
    ``etaplus`` where ``s > 0``, ``etaminus`` where ``s < 0`` (and the gradient is zeroed
    there), then clamped to ``step_sizes``; ``p -= sign(g) * step_size``; ``prev = g``.
    """

    _elem_state = ("prev", "step_size")
    _scalar_state = ("step",)

    def __init__(self, params, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50), *,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        if hasattr(lr, "numel") and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        _check_unsupported("Rprop", differentiable, capturable)
        defaults = dict(lr=lr, etas=etas, step_sizes=step_sizes, foreach=foreach,
                        maximize=maximize, differentiable=differentiable,
                        capturable=capturable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        lr = _to_scalar(group["lr"])
        if p.is_complex():
            lr = complex(lr, lr)  # real and imaginary parts step independently
        return {"step": _scalar_state(0.0), "prev": _zeros_like(p),
                "step_size": _make(np.full(p._data.shape, lr, dtype=p._data.dtype))}

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        etaminus, etaplus = group["etas"]
        lo, hi = group["step_sizes"]
        prev, step_size = s["prev"], s["step_size"]
        if group["maximize"]:
            np.negative(g, out=g)
        sign = np.sign(g * prev)
        factor = np.where(sign > 0, etaplus, np.where(sign < 0, etaminus, 1.0))
        step_size *= factor.astype(step_size.dtype, copy=False)
        np.clip(step_size, lo, hi, out=step_size)
        g[sign < 0] = 0
        p -= np.sign(g) * step_size
        prev[...] = g

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import rprop  # noqa: E402

__all__ += ["rprop"]
