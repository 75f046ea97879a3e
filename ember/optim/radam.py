"""RAdam: Adam with a rectified adaptive learning rate (Liu et al. 2019)."""

from __future__ import annotations

import numpy as np

from .adam import _check_betas
from .optimizer import Optimizer, _check_unsupported, _scalar_state, _to_scalar, _zeros_like

__all__ = ["RAdam"]


class RAdam(Optimizer):
    r"""RAdam, as ``torch.optim.RAdam``.

    Each step ``t``: ``m``, ``v`` as in Adam; ``rho_inf = 2 / (1 - b2) - 1``,
    ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)``. When ``rho_t > 5`` the step is Adam's scaled
    by the rectification ``r_t = sqrt((rho_t-4)(rho_t-2) rho_inf / ((rho_inf-4)(rho_inf-2)
    rho_t))``; otherwise it is SGD with momentum: ``p -= lr * m / (1 - b1^t)``.
    """

    _elem_state = ("exp_avg", "exp_avg_sq")
    _scalar_state = ("step",)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False,
                 capturable=False, differentiable=False):
        betas = _check_betas(lr, eps, betas, weight_decay)
        _check_unsupported("RAdam", differentiable, capturable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        maximize=maximize, foreach=foreach, capturable=capturable,
                        decoupled_weight_decay=decoupled_weight_decay,
                        differentiable=differentiable)
        super().__init__(params, defaults)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        return {"step": _scalar_state(0.0), "exp_avg": _zeros_like(p),
                "exp_avg_sq": _zeros_like(p)}

    def _update(self, group, p, g, s, sc, first):
        sc["step"] += 1
        step = sc["step"]
        beta1, beta2 = group["betas"]
        lr, eps, wd = _to_scalar(group["lr"]), group["eps"], group["weight_decay"]
        m, v = s["exp_avg"], s["exp_avg_sq"]
        if group["maximize"]:
            np.negative(g, out=g)
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p *= 1 - lr * wd
            else:
                g += wd * p
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        np.multiply(g, g, out=g)
        g *= 1 - beta2
        v += g
        bc1 = 1 - beta1 ** step
        bc2 = 1 - beta2 ** step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2 ** step) / bc2
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf
                    / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            np.sqrt(v, out=g)
            g += eps
            np.divide(m, g, out=g)
            g *= lr / bc1 * bc2 ** 0.5 * rect
            p -= g
        else:
            p -= m * (lr / bc1)

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import radam  # noqa: E402

__all__ += ["radam"]
