"""Adafactor (Shazeer & Stern 2018), in PyTorch's variant (``torch.optim.Adafactor``)."""

from __future__ import annotations

import numpy as np

from .._tensor import _bump_version, _make
from .optimizer import Optimizer, _scalar_state, _to_scalar, _zeros_like
from .._dtype import np_finfo as _np_finfo

__all__ = ["Adafactor"]


class Adafactor(Optimizer):
    r"""Adafactor, as ``torch.optim.Adafactor``.

    Each step ``t``: ``beta2_t = 1 - t^beta2_decay``, ``rho_t = min(lr, 1 / sqrt(t))``,
    ``alpha = max(eps2, rms(p)) rho_t``. Matrices keep row and column means of ``g²``
    (factored second moment ``R C / mean(R)``), vectors the full ``g²`` average; the update
    ``u = g / sqrt(max(var, eps1²))`` is scaled down by ``max(1, rms(u) / d)`` and
    ``p -= alpha u`` (after ``p *= 1 - lr weight_decay``).
    """

    _scalar_state = ("step",)
    _flat_capable = False  # the update takes per-tensor norms and row/column means

    def __init__(self, params, lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0,
                 weight_decay=0.0, *, foreach=None, maximize=False):
        if hasattr(lr, "numel") and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        if eps[0] is not None and not 0.0 <= eps[0]:
            raise ValueError(f"epsilon1 should be >= 0 but is: {eps[0]}")
        if not 0.0 <= eps[1]:
            raise ValueError(f"epsilon2 should be >= 0 but is: {eps[1]}")
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        defaults = dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d,
                        weight_decay=weight_decay, foreach=foreach, maximize=maximize)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _prepare(self, group):
        for p in group["params"]:
            if p.grad is not None and p.is_complex():
                raise RuntimeError("Adafactor does not support complex parameters")

    def _init_state(self, p, group):
        st = {"step": _scalar_state(0.0)}
        shape = p._data.shape
        if len(shape) > 1:
            st["row_var"] = _make(np.zeros(shape[:-1] + (1,), p._data.dtype))
            st["col_var"] = _make(np.zeros(shape[:-2] + (1,) + shape[-1:], p._data.dtype))
        else:
            st["variance"] = _zeros_like(p)
        return st

    def _step_one(self, group, p, first):
        # the factored state is not shaped like the parameter, so it is passed here directly
        st = self.state[p]
        sc = {"step": float(st["step"]._data)}
        s = {k: st[k]._data for k in ("row_var", "col_var", "variance") if k in st}
        self._update(group, p._data, p.grad._data.copy(), s, sc, first)
        st["step"]._data[...] = sc["step"]
        _bump_version(p)

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        step = sc["step"]
        lr, wd, d = _to_scalar(group["lr"]), group["weight_decay"], group["d"]
        eps1, eps2 = group["eps"]
        if eps1 is None:
            eps1 = float(_np_finfo(p.dtype).eps)
        if group["maximize"]:
            np.negative(g, out=g)
        one_minus_beta2 = step ** group["beta2_decay"]
        rho = min(lr, 1 / step ** 0.5)
        alpha = max(eps2, float(np.sqrt(np.sum(p * p))) / p.size ** 0.5) * rho
        if wd != 0:
            p *= 1 - lr * wd
        if g.ndim > 1:
            row_var, col_var = s["row_var"], s["col_var"]
            row_mean = np.sum(g * g, axis=-1, keepdims=True) / g.shape[-1]
            row_var += one_minus_beta2 * (row_mean - row_var)
            col_mean = np.sum(g * g, axis=-2, keepdims=True) / g.shape[-2]
            col_var += one_minus_beta2 * (col_mean - col_var)
            var = row_var @ col_var
            var /= np.maximum(np.mean(row_var, axis=-2, keepdims=True), eps1)
        else:
            variance = s["variance"]
            variance += one_minus_beta2 * (g * g - variance)
            var = variance.copy()
        np.maximum(var, eps1 * eps1, out=var)
        update = g / np.sqrt(var)
        denom = max(1.0, float(np.sqrt(np.sum(update * update))) / (update.size ** 0.5 * d))
        p -= update * (alpha / denom)
