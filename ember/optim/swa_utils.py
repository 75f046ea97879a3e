"""Weight averaging (``torch.optim.swa_utils``): SWA (Izmailov et al. 2018) and EMA.

``AveragedModel`` keeps a running average of a model's parameters, ``SWALR`` anneals the
learning rate to a constant SWA value, and ``update_bn`` recomputes batch-norm statistics
for the averaged weights.
"""

from __future__ import annotations

import itertools
import math
import warnings
from copy import deepcopy

from .._tensor import _bump_version
from ..autograd.grad_mode import no_grad
from ..nn.modules.module import Module
from .lr_scheduler import LRScheduler, _format_param

__all__ = ["AveragedModel", "update_bn", "SWALR", "get_ema_multi_avg_fn",
           "get_swa_multi_avg_fn", "get_ema_avg_fn", "get_swa_avg_fn"]


def _check_decay(decay):
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in "
                         "[0,1] range.")


def _inplace(dst, value):
    dst._data[...] = value
    _bump_version(dst)


def get_ema_multi_avg_fn(decay=0.999):
    """In-place exponential moving average over lists: ``ema += (1 - decay) (p - ema)``."""
    _check_decay(decay)

    def ema_update(ema_params, current_params, num_averaged):
        for e, p in zip(ema_params, current_params):
            if e._data.dtype.kind in "fc":
                e._data += (1 - decay) * (p._data - e._data)
                _bump_version(e)
            else:
                _inplace(e, e._data * decay + p._data * (1 - decay))

    return ema_update


def get_swa_multi_avg_fn():
    """In-place running mean over lists: ``avg += (p - avg) / (n + 1)``."""

    def swa_update(averaged_params, current_params, num_averaged):
        n = float(num_averaged)
        for a, p in zip(averaged_params, current_params):
            if a._data.dtype.kind in "fc":
                a._data += (p._data - a._data) * (1 / (n + 1))
                _bump_version(a)
            else:
                _inplace(a, a._data + (p._data - a._data) / (n + 1))

    return swa_update


def get_ema_avg_fn(decay=0.999):
    """Exponential moving average of one tensor: returns ``decay ema + (1 - decay) p``."""
    _check_decay(decay)

    def ema_update(ema_param, current_param, num_averaged):
        with no_grad():
            return decay * ema_param + (1 - decay) * current_param

    return ema_update


def get_swa_avg_fn():
    """Running mean of one tensor: returns ``avg + (p - avg) / (n + 1)``."""

    def swa_update(averaged_param, current_param, num_averaged):
        with no_grad():
            return averaged_param + (current_param - averaged_param) / (num_averaged + 1)

    return swa_update


class AveragedModel(Module):
    """A copy of ``model`` whose parameters (and buffers, with ``use_buffers``) hold an
    average of ``model``'s over the calls to ``update_parameters``: SWA's running mean by
    default, or what ``avg_fn`` (one tensor) / ``multi_avg_fn`` (lists, in place) compute."""

    def __init__(self, model, device=None, avg_fn=None, multi_avg_fn=None, use_buffers=False):
        super().__init__()
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        from .. import int64, tensor
        self.module = deepcopy(model)
        if device is not None:
            self.module = self.module.to(device)
        self.register_buffer("n_averaged", tensor(0, dtype=int64))
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def update_parameters(self, model):
        """Fold ``model``'s current parameters into the average."""
        if self.use_buffers:
            mine = list(itertools.chain(self.module.parameters(), self.module.buffers()))
            theirs = list(itertools.chain(model.parameters(), model.buffers()))
        else:
            mine, theirs = list(self.parameters()), list(model.parameters())
        mine = [p.detach() for p in mine]
        theirs = [p.detach() for p in theirs]
        n = int(self.n_averaged.item())
        if n == 0:
            for a, p in zip(mine, theirs):
                _inplace(a, p._data)
        else:
            if self.avg_fn is None:
                fn = self.multi_avg_fn or get_swa_multi_avg_fn()
                # the list functions expect one dtype per call, like PyTorch's grouping
                by_dtype = {}
                for a, p in zip(mine, theirs):
                    pair = by_dtype.setdefault(a._data.dtype, ([], []))
                    pair[0].append(a)
                    pair[1].append(p)
                for a_list, p_list in by_dtype.values():
                    fn(a_list, p_list, self.n_averaged)
            else:
                for a, p in zip(mine, theirs):
                    _inplace(a, self.avg_fn(a, p, self.n_averaged)._data)
        if not self.use_buffers:
            # buffers (batch-norm statistics) follow the model; update_bn recomputes them
            for b_avg, b in zip(self.module.buffers(), model.buffers()):
                _inplace(b_avg.detach(), b._data)
        self.n_averaged._data += 1
        _bump_version(self.n_averaged)


def update_bn(loader, model, device=None):
    """Recompute the batch-norm running statistics of ``model`` with one pass over
    ``loader`` (cumulative averages: momentum ``None``), as after averaging weights."""
    from ..nn.modules import batchnorm
    with no_grad():
        momenta = {}
        for module in model.modules():
            if isinstance(module, batchnorm._BatchNorm):
                module.reset_running_stats()
                momenta[module] = module.momentum
        if not momenta:
            return
        was_training = model.training
        model.train()
        for module in momenta:
            module.momentum = None
        for inp in loader:
            if isinstance(inp, (list, tuple)):
                inp = inp[0]
            if device is not None:
                inp = inp.to(device)
            model(inp)
        for module, m in momenta.items():
            module.momentum = m
        model.train(was_training)


class SWALR(LRScheduler):
    """Anneal each group's lr to ``swa_lr`` over ``anneal_epochs`` (cosine or linear), then
    hold it there."""

    def __init__(self, optimizer, swa_lr, anneal_epochs=10, anneal_strategy="cos",
                 last_epoch=-1):
        for lr, group in zip(_format_param("swa_lr", optimizer, swa_lr),
                             optimizer.param_groups):
            group["swa_lr"] = lr
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError("anneal_strategy must be one of 'cos' or 'linear', instead got "
                             f"{anneal_strategy}")
        self._set_anneal_func(anneal_strategy)
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got "
                             f"{anneal_epochs}")
        self.anneal_epochs = anneal_epochs
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _linear_anneal(t):
        return t

    @staticmethod
    def _cosine_anneal(t):
        return (1 - math.cos(math.pi * t)) / 2

    @staticmethod
    def _get_initial_lr(lr, swa_lr, alpha):
        if alpha == 1:
            return swa_lr
        return (lr - alpha * swa_lr) / (1 - alpha)

    def get_lr(self):
        if not self._get_lr_called_within_step:
            warnings.warn("To get the last learning rate computed by the scheduler, please use "
                          "`get_last_lr()`.", UserWarning, stacklevel=2)
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        # recover the lr the annealing started from, then move to this step's point
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / max(1, self.anneal_epochs))))
        prev = [self._get_initial_lr(g["lr"], g["swa_lr"], prev_alpha)
                for g in self.optimizer.param_groups]
        alpha = self.anneal_func(max(0, min(1, step / max(1, self.anneal_epochs))))
        return [g["swa_lr"] * alpha + lr * (1 - alpha)
                for g, lr in zip(self.optimizer.param_groups, prev)]

    def _set_anneal_func(self, strategy):
        self._anneal_strategy = strategy
        self.anneal_func = self._cosine_anneal if strategy == "cos" else self._linear_anneal

    def state_dict(self):
        """Attributes but the optimizer and the anneal function."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "anneal_func")}

    def load_state_dict(self, state_dict):
        """Restore the attributes saved by ``state_dict``."""
        self.__dict__.update(state_dict)
        self._set_anneal_func(self._anneal_strategy)

