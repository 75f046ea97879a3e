"""``functorch``: the older spelling of ``ember.func`` that programs still import
(``from functorch import vmap, grad, make_functional``). Under the torch alias, ``functorch``
resolves to this module.

``make_functional(model)`` returns ``(fmodel, params)``, where ``fmodel(params, *args)`` runs
the model with ``params`` in place of its parameters; ``make_functional_with_buffers`` also
splits off the buffers: ``fmodel(params, buffers, *args)``.
"""

from __future__ import annotations

import copy

from .func import (grad, grad_and_value, hessian, jacfwd, jacrev, jvp, vjp, vmap,
                   functional_call)

__all__ = ["grad", "grad_and_value", "vjp", "jvp", "jacrev", "jacfwd", "hessian", "vmap",
           "make_functional", "make_functional_with_buffers", "FunctionalModule",
           "FunctionalModuleWithBuffers", "combine_state_for_ensemble"]


class FunctionalModule:
    """A stateless wrapper of a module: called with a tuple of parameters first."""

    def __init__(self, module, param_names):
        self.stateless_model = module
        self.param_names = tuple(param_names)

    def __call__(self, params, *args, **kwargs):
        if len(params) != len(self.param_names):
            raise RuntimeError(f"Expected {len(self.param_names)} parameters, got "
                               f"{len(params)}")
        return functional_call(self.stateless_model, dict(zip(self.param_names, params)),
                               args, kwargs)

    def train(self, mode=True):
        self.stateless_model.train(mode)
        return self

    def eval(self):
        return self.train(False)


class FunctionalModuleWithBuffers(FunctionalModule):
    """Like ``FunctionalModule``, called with parameters and buffers first."""

    def __init__(self, module, param_names, buffer_names):
        super().__init__(module, param_names)
        self.buffer_names = tuple(buffer_names)

    def __call__(self, params, buffers, *args, **kwargs):
        values = dict(zip(self.param_names, params))
        values.update(zip(self.buffer_names, buffers))
        return functional_call(self.stateless_model, values, args, kwargs)


def make_functional(model, disable_autograd_tracking=False):
    """``(fmodel, params)``: a stateless copy of ``model`` and its parameters (a tuple)."""
    if any(True for _ in model.buffers()):
        raise RuntimeError("make_functional(model): `model` has buffers. Please use "
                           "make_functional_with_buffers(model) instead.")
    names, params = _split(model.named_parameters(), disable_autograd_tracking)
    return FunctionalModule(copy.deepcopy(model), names), params


def make_functional_with_buffers(model, disable_autograd_tracking=False):
    """``(fmodel, params, buffers)``: as ``make_functional``, buffers split off too."""
    names, params = _split(model.named_parameters(), disable_autograd_tracking)
    bnames = [n for n, _ in model.named_buffers()]
    buffers = tuple(b for _, b in model.named_buffers())
    return FunctionalModuleWithBuffers(copy.deepcopy(model), names, bnames), params, buffers


def _split(named, detach):
    names, values = [], []
    for n, p in named:
        names.append(n)
        values.append(p.detach() if detach else p)
    return names, tuple(values)


def combine_state_for_ensemble(models):
    """``(fmodel, params, buffers)`` with each model's parameters and buffers stacked."""
    from .func import stack_module_state
    models = list(models)
    params, buffers = stack_module_state(models)
    fmodel = FunctionalModuleWithBuffers(copy.deepcopy(models[0]), list(params), list(buffers))
    return fmodel, tuple(params.values()), tuple(buffers.values())
