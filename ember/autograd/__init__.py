"""``ember.autograd``: the engine's public face (backward, grad, Function, grad modes,
gradcheck, anomaly detection, functional transforms)."""

from .engine import backward, grad
from .grad_mode import (enable_grad, inference_mode, is_grad_enabled, no_grad,
                        set_grad_enabled)
from .graph import Function, FunctionCtx, Node, once_differentiable
from .anomaly import detect_anomaly, set_detect_anomaly
from .gradcheck import gradcheck, gradgradcheck
from . import functional


def Variable(data, requires_grad=False, volatile=False):
    """Legacy wrapper: returns a tensor (as PyTorch's ``Variable`` does today)."""
    t = data.detach() if data._rg else data
    if requires_grad:
        t.requires_grad_(True)
    return t


class _FunctionNamespace:
    once_differentiable = staticmethod(once_differentiable)


function = _FunctionNamespace()
function.Function = Function
function.FunctionCtx = FunctionCtx

__all__ = ["backward", "grad", "Function", "Variable", "no_grad", "enable_grad",
           "set_grad_enabled", "inference_mode", "is_grad_enabled", "detect_anomaly",
           "set_detect_anomaly", "gradcheck", "gradgradcheck", "functional", "Node",
           "once_differentiable"]


def __getattr__(name):
    # ``ember.autograd.profiler`` loads on first use (it pulls in ``ember.profiler``)
    if name == "profiler":
        import importlib
        return importlib.import_module(".profiler", __name__)
    raise AttributeError(f"module 'ember.autograd' has no attribute '{name}'")
