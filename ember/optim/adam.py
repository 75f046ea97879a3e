"""Adam and AdamW (Kingma & Ba 2014; Loshchilov & Hutter 2019 for decoupled weight decay)."""

from __future__ import annotations

import numpy as np

from . import _update_c
from .optimizer import (Optimizer, _check_unsupported, _scalar_state, _to_scalar,
                        _zeros_like)

__all__ = ["Adam", "AdamW"]


def _check_betas(lr, eps, betas, weight_decay):
    if hasattr(lr, "numel") and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    return tuple(_to_scalar(b) for b in betas)


class Adam(Optimizer):
    r"""Adam, as ``torch.optim.Adam``.

    Each step ``t``: ``g = ±grad (+ weight_decay * p, or p *= 1 - lr * weight_decay when
    decoupled)``; ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g²`` (AMSGrad keeps
    ``vmax = max(vmax, v)`` and uses it for ``v``);
    ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """

    _elem_state = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _scalar_state = ("step",)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False):
        betas = _check_betas(lr, eps, betas, weight_decay)
        _check_unsupported(type(self).__name__, differentiable, capturable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            for k, v in (("amsgrad", False), ("maximize", False), ("foreach", None),
                         ("capturable", False), ("differentiable", False),
                         ("decoupled_weight_decay", False), ("fused", None)):
                group.setdefault(k, v)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        st = {"step": _scalar_state(0.0), "exp_avg": _zeros_like(p),
              "exp_avg_sq": _zeros_like(p)}
        if group["amsgrad"]:
            st["max_exp_avg_sq"] = _zeros_like(p)
        return st

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        beta1, beta2 = group["betas"]
        _adam(p, g, s["exp_avg"], s["exp_avg_sq"], s.get("max_exp_avg_sq"), sc["step"],
              lr=_to_scalar(group["lr"]), beta1=_to_scalar(beta1), beta2=_to_scalar(beta2),
              eps=group["eps"], weight_decay=group["weight_decay"],
              amsgrad=group["amsgrad"], maximize=group["maximize"],
              decoupled=group["decoupled_weight_decay"])

    def _flat_kernel(self, group, dtype, elem_keys):
        # ``_update_c``'s one-pass Adam, for plain Python hyperparameters (the NumPy
        # update's roundings); a subclass with its own ``_update`` keeps it
        fn = _update_c.kernel("adam", dtype)
        lr = _to_scalar(group["lr"])
        b1, b2 = (_to_scalar(b) for b in group["betas"])
        eps, wd, ams = group["eps"], group["weight_decay"], group["amsgrad"]
        if fn is None or type(self)._update is not Adam._update or \
                not _update_c.is_number(lr, b1, b2, eps, wd) or \
                (ams and "max_exp_avg_sq" not in elem_keys):
            return None
        flags = (1 if group["maximize"] else 0) | (2 if wd != 0 else 0) | \
            (4 if group["decoupled_weight_decay"] else 0) | (8 if ams else 0)
        addr = _update_c.addr

        def kernel(p, g, s, sc, first):
            sc["step"] += 1
            step = sc["step"]
            fn(addr(p), addr(g), addr(s["exp_avg"]), addr(s["exp_avg_sq"]),
               addr(s.get("max_exp_avg_sq")) if ams else 0, p.size, wd, 1 - lr * wd, b1,
               1 - b1, b2, 1 - b2, 1 / (1 - b2 ** step) ** 0.5, eps, lr / (1 - b1 ** step),
               flags)

        call = _update_c.call_address("adam", dtype)
        if call is not None:
            bits = _update_c.bits
            fixed = [bits(v) for v in (wd, 1 - lr * wd, b1, 1 - b1, b2, 1 - b2)]

            def pack(p, g, s, n, sc, first):  # ``kernel``'s arguments as a task's block
                # (p, g and the state ``s`` as addresses; n elements)
                sc["step"] += 1
                step = sc["step"]
                return [p, g, s["exp_avg"], s["exp_avg_sq"],
                        s.get("max_exp_avg_sq", 0) if ams else 0, n, *fixed,
                        bits(1 / (1 - b2 ** step) ** 0.5), bits(eps),
                        bits(lr / (1 - b1 ** step)), flags]
            kernel.call = (call, pack)
        return kernel


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (default 0.01), as ``torch.optim.AdamW``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True


def _adam(p, g, m, v, vmax, step, *, lr, beta1, beta2, eps, weight_decay, amsgrad, maximize,
          decoupled):
    """One Adam update of ``p``, ``m``, ``v`` (and ``vmax``) in place; ``g`` is scratch."""
    if maximize:
        np.negative(g, out=g)
    if weight_decay != 0:
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            g += weight_decay * p
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    np.multiply(g, g, out=g)
    g *= 1 - beta2
    v += g
    if amsgrad:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    step_size = lr / (1 - beta1 ** step)
    # g is free again: reuse it for the denominator
    np.sqrt(v, out=g)
    g *= 1 / (1 - beta2 ** step) ** 0.5
    g += eps
    np.divide(m, g, out=g)
    g *= step_size
    p -= g

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import adam  # noqa: E402

__all__ += ["adam"]
