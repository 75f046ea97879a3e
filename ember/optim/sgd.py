"""Stochastic gradient descent, with optional momentum, dampening and Nesterov momentum."""

from __future__ import annotations

import numpy as np

from .._tensor import _bump_version, _make
from . import _update_c
from .optimizer import (Optimizer, _check_unsupported, _dense_grad, _rows_view, _sparse_rows,
                        _to_scalar)

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""SGD (optionally with momentum), as ``torch.optim.SGD``.

    Each step: ``g = ±grad + weight_decay * p``; with momentum, ``b = g`` on the first step and
    ``b = momentum * b + (1 - dampening) * g`` after, then ``g = g + momentum * b`` (Nesterov)
    or ``g = b``; finally ``p -= lr * g``.
    """

    _elem_state = ("momentum_buffer",)
    _sparse_grads = True

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None):
        if hasattr(lr, "numel") and lr.numel() != 1:
            raise ValueError("Tensor lr must be 1-element")
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        _check_unsupported("SGD", differentiable)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        foreach=foreach, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", False)

    def step(self, closure=None):
        """Perform a single optimization step (``closure`` re-evaluates the loss)."""
        return self._default_step(closure)

    def _init_state(self, p, group):
        # PyTorch keeps no state without momentum; the buffer is the first step's gradient.
        if group["momentum"] == 0:
            return None
        return {"momentum_buffer": _make(np.empty_like(p._data))}

    def _step_sparse(self, group, params):
        # PyTorch's semantics: without momentum and weight decay, the entries are added to
        # the rows they name, one by one (``p.add_(grad, alpha=-lr)``); otherwise the update
        # is the dense one (a dense momentum buffer holds what PyTorch's sparse one represents)
        if group["weight_decay"] != 0:  # PyTorch fails adding the dense decay term too
            raise RuntimeError("SGD: weight_decay is not supported with sparse gradients "
                               "(add(sparse, dense) is not supported)")
        lr = _to_scalar(group["lr"])
        for p in params:
            a, grad = p._data, p.grad
            if group["momentum"] == 0:
                idx, vals = _sparse_rows(grad, a, False)
                np.add.at(_rows_view(a, grad), idx, vals * (lr if group["maximize"] else -lr))
            else:
                first = not self.state.get(p)
                if first and group["momentum"] != 0:
                    self.state[p] = self._init_state(p, group)
                self._update(group, a, _dense_grad(grad, a), self._state_arrays(p), {}, first)
            _bump_version(p)

    def _state_arrays(self, p):
        st = self.state.get(p) or {}
        return {k: st[k]._data for k in self._elem_state if k in st}

    def _update(self, group, p, g, s, sc, first):
        _sgd(p, g, s.get("momentum_buffer"), first, lr=_to_scalar(group["lr"]),
             momentum=group["momentum"], dampening=group["dampening"],
             weight_decay=group["weight_decay"], nesterov=group["nesterov"],
             maximize=group["maximize"])

    def _flat_kernel(self, group, dtype, elem_keys):
        # ``_update_c``'s one-pass SGD, for plain Python hyperparameters (the NumPy update's
        # roundings); a subclass with its own ``_update`` keeps it
        fn = _update_c.kernel("sgd", dtype)
        lr = _to_scalar(group["lr"])
        mom, damp, wd = group["momentum"], group["dampening"], group["weight_decay"]
        if fn is None or type(self)._update is not SGD._update or \
                not _update_c.is_number(lr, mom, damp, wd) or \
                (mom != 0 and "momentum_buffer" not in elem_keys):
            return None
        flags = (1 if group["maximize"] else 0) | (2 if wd != 0 else 0) | \
            (4 if mom != 0 else 0) | (16 if damp else 0) | (32 if group["nesterov"] else 0)
        addr = _update_c.addr

        def kernel(p, g, s, sc, first):
            fn(addr(p), addr(g), addr(s.get("momentum_buffer")), p.size, lr, wd, mom,
               1 - damp, flags | (8 if first else 0))

        call = _update_c.call_address("sgd", dtype)
        if call is not None:
            fixed = [_update_c.bits(v) for v in (lr, wd, mom, 1 - damp)]

            def pack(p, g, s, n, sc, first):  # ``kernel``'s arguments as a task's block
                # (p, g and the state ``s`` as addresses; n elements)
                return [p, g, s.get("momentum_buffer", 0), n, *fixed,
                        flags | (8 if first else 0)]
            kernel.call = (call, pack)
        return kernel


def _sgd(p, g, buf, first, *, lr, momentum, dampening, weight_decay, nesterov, maximize):
    """One SGD update of the arrays ``p`` (and ``buf``) in place; ``g`` is scratch."""
    if maximize:
        np.negative(g, out=g)
    if weight_decay != 0:
        g += weight_decay * p
    if momentum != 0:
        if first or buf is None:
            buf[...] = g
        else:
            buf *= momentum
            buf += (1 - dampening) * g if dampening else g
        if nesterov:
            g += momentum * buf
        else:
            g = buf
    p -= lr * g

# PyTorch's functional form at its path (one update of lists of tensors)
from ._functional import sgd  # noqa: E402

__all__ += ["sgd"]
