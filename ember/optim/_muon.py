"""Muon: momentum whose update is orthogonalised by a Newton-Schulz iteration (2-d parameters).

As ``torch.optim.Muon``: ``B = lerp(B, g, 1 - momentum)``; the update is ``lerp(g, B,
momentum)`` (Nesterov) or ``B``, orthogonalised by ``ns_steps`` quintic Newton-Schulz steps
``X <- a X + (b A + c A A) X`` with ``A = X X^T``, computed in bfloat16 as PyTorch does; then
decoupled weight decay and ``p -= adjusted_lr * update``, the learning rate scaled by the
parameter's shape (``"original"``: ``sqrt(max(1, rows / cols))``; ``"match_rms_adamw"``:
``0.2 sqrt(max(rows, cols))``).
"""

from __future__ import annotations

import math

from .. import _dtype as D
from ..autograd.grad_mode import no_grad
from .optimizer import Optimizer, _to_scalar

__all__ = ["Muon"]

EPS = 1e-7
DEFAULT_A, DEFAULT_B, DEFAULT_C = 3.4445, -4.7750, 2.0315
DEFAULT_NS_STEPS = 5


def _zeropower_via_newtonschulz(grad, ns_coefficients, ns_steps, eps):
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if grad.ndim != 2:
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    from ..ops.linalg import addmm
    a, b, c = ns_coefficients
    x = grad.to(D.bfloat16)
    tall = grad.shape[0] > grad.shape[1]
    if tall:  # iterate on the wide orientation: the Gram matrix is the smaller one
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        poly = addmm(gram, gram, gram, beta=b, alpha=c)
        x = addmm(x, poly, x, beta=a)
    return x.T if tall else x


def _adjust_lr(lr, adjust_lr_fn, shape):
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return lr * math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr


class Muon(Optimizer):
    """Muon for 2-d parameters (hidden layers' weights); optimise biases and embeddings with
    another optimizer, as PyTorch's documentation advises."""

    _flat_capable = False

    def __init__(self, params, lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                 ns_coefficients=(DEFAULT_A, DEFAULT_B, DEFAULT_C), eps=EPS,
                 ns_steps=DEFAULT_NS_STEPS, adjust_lr_fn=None):
        if hasattr(lr, "numel") and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if not 0.0 <= lr:
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ("original", "match_rms_adamw"):
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                        ns_coefficients=ns_coefficients, eps=eps, ns_steps=ns_steps,
                        adjust_lr_fn=adjust_lr_fn)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError("Muon only supports 2D parameters whereas we found a "
                                     f"parameter with size: {p.size()}")

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        loss = None
        if closure is not None:
            from ..autograd.grad_mode import enable_grad
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                lr = _to_scalar(group["lr"])
                momentum = group["momentum"]
                for p in group["params"]:
                    g = p.grad
                    if g is None:
                        continue
                    if p.is_complex():
                        raise RuntimeError("Muon does not support complex parameters")
                    if g.is_sparse:
                        raise RuntimeError("Muon does not support sparse gradients")
                    if g.ndim != 2:
                        raise ValueError("Param gradient must be a 2D matrix")
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        from ..ops.creation import zeros_like
                        state["momentum_buffer"] = zeros_like(g)
                    buf = state["momentum_buffer"]
                    buf.lerp_(g, 1 - momentum)
                    update = g.lerp(buf, momentum) if group["nesterov"] else buf
                    update = _zeropower_via_newtonschulz(update, group["ns_coefficients"],
                                                         group["ns_steps"], group["eps"])
                    p.mul_(1 - lr * group["weight_decay"])
                    p.add_(update.to(p.dtype), alpha=-_adjust_lr(lr, group["adjust_lr_fn"],
                                                                 p.shape))
        return loss
