"""Muon: momentum, then the update orthogonalized by a Newton-Schulz iteration, for 2-d
parameters (Keller Jordan's Muon, as ``torch.optim.Muon``)."""

from __future__ import annotations

import math

import numpy as np

from .optimizer import Optimizer, _check_unsupported, _to_scalar, _zeros_like

__all__ = ["Muon"]

EPS = 1e-7
DEFAULT_A, DEFAULT_B, DEFAULT_C = 3.4445, -4.7750, 2.0315
DEFAULT_NS_STEPS = 5


def _bf16(a):
    # PyTorch iterates in bfloat16 with float32 accumulation: compute each product in float32,
    # round the result to bfloat16
    import ml_dtypes
    return a.astype(ml_dtypes.bfloat16).astype(np.float32)


def _zeropower_via_newtonschulz(g, coefficients, steps, eps):
    """The quintic Newton-Schulz iteration ``X <- a X + (b A + c A^2) X`` with ``A = X X^T``,
    from ``X = G / ||G||``: an approximate ``U V^T`` of ``G``'s SVD (singular values pushed
    towards 1)."""
    if steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if g.ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = coefficients
    x = _bf16(g.astype(np.float32))
    tall = g.shape[0] > g.shape[1]
    if tall:
        x = x.T
    x = _bf16(x / _bf16(np.float32(max(np.linalg.norm(x), eps))))
    for _ in range(steps):
        gram = _bf16(x @ x.T)
        update = _bf16(b * gram + c * _bf16(gram @ gram))
        x = _bf16(a * x + _bf16(update @ x))
    return x.T if tall else x


def _adjust_lr(lr, adjust_lr_fn, shape):
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


class Muon(Optimizer):
    r"""Muon, as ``torch.optim.Muon`` (2-d parameters only).

    Each step: ``p *= 1 - lr * weight_decay``; ``buf = lerp(buf, g, 1 - momentum)``;
    ``u = lerp(g, buf, momentum)`` with ``nesterov`` (else ``buf``); ``u = NS(u)`` (five
    Newton-Schulz steps in bfloat16); ``p -= lr * sqrt(max(1, rows / cols)) * u`` (the
    ``adjust_lr_fn="match_rms_adamw"`` scale is ``0.2 * sqrt(max(rows, cols))``).
    """

    _elem_state = ("momentum_buffer",)
    _scalar_state = ()
    _flat_capable = False  # the update is per matrix: never one flat vector of all params

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(DEFAULT_A, DEFAULT_B, DEFAULT_C), eps=EPS,
                 ns_steps=DEFAULT_NS_STEPS, adjust_lr_fn=None):
        if not 0.0 <= _to_scalar(lr):
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ("original", "match_rms_adamw"):
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        _check_unsupported("Muon", False, False)
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                        nesterov=nesterov, ns_coefficients=ns_coefficients, eps=eps,
                        ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only supports 2D parameters whereas we found a "
                                     f"parameter with size: {tuple(p.shape)}")

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        return {"momentum_buffer": _zeros_like(p)}

    def _update(self, group, p, g, s, sc, first):
        if np.iscomplexobj(p):
            raise ValueError("Complex parameters are not supported")
        lr, mom = _to_scalar(group["lr"]), group["momentum"]
        buf = s["momentum_buffer"]
        buf += (1 - mom) * (g - buf)
        update = g + mom * (buf - g) if group["nesterov"] else buf
        update = _zeropower_via_newtonschulz(update, group["ns_coefficients"],
                                             group["ns_steps"], group["eps"])
        p *= 1 - lr * group["weight_decay"]
        p -= (_adjust_lr(lr, group["adjust_lr_fn"], p.shape) * update).astype(p.dtype)
