"""SparseAdam: Adam restricted to the rows a sparse gradient names."""

from __future__ import annotations

import math

import numpy as np

from .._tensor import Tensor, _bump_version
from .optimizer import Optimizer, _rows_view, _sparse_rows, _to_scalar, _zeros_like

__all__ = ["SparseAdam"]


class SparseAdam(Optimizer):
    r"""Adam for sparse gradients (``nn.Embedding(sparse=True)``), as ``torch.optim.SparseAdam``.

    Each step, with the gradient coalesced to rows ``r`` and values ``g``: the moments move
    at those rows only, ``m[r] += (1 - beta1) (g - m[r])``, ``v[r] += (1 - beta2) (g² -
    v[r])``, and ``p[r] -= lr sqrt(1 - beta2^t) / (1 - beta1^t) * m[r] / (sqrt(v[r]) +
    eps)``, where ``t`` counts the steps this parameter took. Rows absent from the gradient
    keep their moments and values. Dense gradients raise (use Adam).
    """

    _elem_state = ("exp_avg", "exp_avg_sq")
    _flat_capable = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False):
        if isinstance(lr, Tensor) and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 < lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 < eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, b in enumerate(betas):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, maximize=maximize))
        sparse, complex_ = [], []
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p.is_sparse:
                    sparse.append([gi, pi])
                if p.is_complex():
                    complex_.append([gi, pi])
        if sparse:
            raise ValueError(f"Sparse params at indices {sparse}: SparseAdam requires dense "
                             f"parameter tensors")
        if complex_:
            raise ValueError(f"Complex params at indices {complex_}: SparseAdam does not "
                             f"support complex parameters")

    def _init_state(self, p, group):
        # ``step`` is a plain int here, as in PyTorch's SparseAdam
        return {"step": 0, "exp_avg": _zeros_like(p), "exp_avg_sq": _zeros_like(p)}

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _step_group(self, gi, group):
        params = [p for p in group["params"] if p.grad is not None]
        for p in params:
            if not p.grad.is_sparse:
                raise RuntimeError("SparseAdam does not support dense gradients, please "
                                   "consider Adam instead")
        for p in params:
            st = self.state.get(p) or self.state.setdefault(p, self._init_state(p, group))
            st["step"] += 1
            self._update_rows(group, p, st)

    def _update_rows(self, group, p, st):
        beta1, beta2 = group["betas"]
        a, grad = p._data, p.grad
        idx, g = _sparse_rows(grad, a, True)
        if not g.size:  # an empty gradient: nothing moves
            return
        if group["maximize"]:
            g = -g
        m = _rows_view(st["exp_avg"]._data, grad)
        v = _rows_view(st["exp_avg_sq"]._data, grad)
        m_old, v_old = m[idx], v[idx]
        dm = (g - m_old) * (1 - beta1)
        dv = (g * g - v_old) * (1 - beta2)
        m[idx] = m_old + dm
        v[idx] = v_old + dv
        numer = dm + m_old
        denom = np.sqrt(dv + v_old)
        denom += group["eps"]
        t = st["step"]
        size = _to_scalar(group["lr"]) * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
        rows = _rows_view(a, grad)
        rows[idx] += -size * (numer / denom)
        _bump_version(p)
