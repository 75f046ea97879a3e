"""``ember.autograd``: the engine's public face (backward, grad, Function, grad modes,
gradcheck, anomaly detection, functional transforms)."""

from .engine import backward, grad
from .grad_mode import (enable_grad, enforce_grad_layout_policy, inference_mode,
                        is_grad_enabled, no_grad, set_grad_enabled, set_multithreading_enabled)
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


# the legacy module first: the function below then shadows it as ``autograd.variable``, as
# in PyTorch (``from ember.autograd.variable import Variable`` still works)
from . import variable as _variable_module  # noqa: E402,F401


def variable(*args, **kwargs):
    """Deprecated in PyTorch, which raises the same error."""
    raise RuntimeError("torch.autograd.variable(...) is deprecated, use torch.tensor(...) "
                       "instead")


variable.Variable = Variable  # PyTorch's path ``autograd.variable.Variable`` for FX code


class NestedIOFunction(Function):
    """PyTorch's legacy non-static autograd Function (``forward_extended`` /
    ``backward_extended`` on an instance). PyTorch itself can no longer run it (instances of
    Functions are deprecated and its ``_do_forward`` is gone); ember keeps the name and
    raises the same way, pointing to static ``forward``/``backward``."""

    @classmethod
    def apply(cls, *args, **kwargs):
        raise RuntimeError(f"{cls.__name__}: legacy non-static autograd Functions "
                           "(NestedIOFunction) are not supported, as in PyTorch; write a "
                           "Function with static forward(ctx, ...) and backward(ctx, ...)")

    def __call__(self, *args, **kwargs):
        return type(self).apply(*args, **kwargs)

    def forward_extended(self, *inputs):
        raise NotImplementedError

    def backward_extended(self, *grad_outputs):
        raise NotImplementedError


class _FunctionNamespace:
    once_differentiable = staticmethod(once_differentiable)


function = _FunctionNamespace()
function.Function = Function
function.FunctionCtx = FunctionCtx

__all__ = ["backward", "grad", "Function", "Variable", "no_grad", "enable_grad",
           "set_grad_enabled", "inference_mode", "is_grad_enabled", "detect_anomaly",
           "set_detect_anomaly", "gradcheck", "gradgradcheck", "functional", "Node",
           "once_differentiable", "NestedIOFunction", "set_multithreading_enabled",
           "enforce_grad_layout_policy", "variable"]


def __getattr__(name):
    # ``ember.autograd.profiler`` loads on first use (it pulls in ``ember.profiler``)
    if name == "profiler":
        import importlib
        return importlib.import_module(".profiler", __name__)
    raise AttributeError(f"module 'ember.autograd' has no attribute '{name}'")
