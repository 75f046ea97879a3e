"""Adagrad (Duchi et al. 2011)."""

from __future__ import annotations

import numpy as np

from .._tensor import _bump_version
from .optimizer import (Optimizer, _check_unsupported, _rows_view, _scalar_state, _sparse_rows,
                        _to_scalar, _zeros_like)

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    r"""Adagrad, as ``torch.optim.Adagrad``.

    Each step ``t``: ``g = ±grad + weight_decay * p``; ``clr = lr / (1 + (t - 1) lr_decay)``;
    ``sum += g²``; ``p -= clr * g / (sqrt(sum) + eps)``.
    """

    _elem_state = ("sum",)
    _scalar_state = ("step",)
    _sparse_grads = True

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, foreach=None, *, maximize=False, differentiable=False, fused=None):
        if hasattr(lr, "numel") and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: "
                             f"{initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        _check_unsupported("Adagrad", differentiable)
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        # PyTorch creates Adagrad's state eagerly, in the constructor.
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p] = self._init_state(p, group)

    def share_memory(self):
        """No-op: ember state lives in ordinary process memory."""

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        init = group["initial_accumulator_value"]
        if p.is_complex():
            init = complex(init, init)
        return {"step": _scalar_state(0.0), "sum": _zeros_like(p, init)}

    def _step_sparse(self, group, params):
        # PyTorch's sparse Adagrad: the gradient coalesced, the sum and the parameter
        # updated at its rows only
        if group["weight_decay"] != 0:
            raise RuntimeError("weight_decay option is not compatible with sparse gradients")
        lr, eps = _to_scalar(group["lr"]), group["eps"]
        for p in params:
            st = self.state.get(p) or self.state.setdefault(p, self._init_state(p, group))
            step = float(st["step"]._data) + 1
            st["step"]._data[...] = step
            clr = lr / (1 + (step - 1) * group["lr_decay"])
            a, grad = p._data, p.grad
            idx, vals = _sparse_rows(grad, a, True)
            if group["maximize"]:
                vals = -vals
            acc = _rows_view(st["sum"]._data, grad)
            acc[idx] += vals * vals
            std = np.sqrt(acc[idx])
            std += eps
            rows = _rows_view(a, grad)
            rows[idx] += (vals / std) * -clr
            _bump_version(p)

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        lr, eps, wd = _to_scalar(group["lr"]), group["eps"], group["weight_decay"]
        acc = s["sum"]
        if group["maximize"]:
            np.negative(g, out=g)
        if wd != 0:
            g += wd * p
        clr = lr / (1 + (sc["step"] - 1) * group["lr_decay"])
        acc += g * g
        std = np.sqrt(acc)
        std += eps
        g /= std
        g *= clr
        p -= g

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import adagrad  # noqa: E402

__all__ += ["adagrad"]
