"""``torch.autograd.function``: Function and its helpers at PyTorch's path."""

from .graph import Function, FunctionCtx, once_differentiable

__all__ = ["FunctionCtx", "Function", "once_differentiable", "InplaceFunction",
           "NestedIOFunction", "BackwardCFunction", "FunctionMeta"]

FunctionMeta = type(Function)
BackwardCFunction = FunctionCtx


class InplaceFunction(Function):
    """A Function with an ``inplace`` flag (legacy PyTorch base class)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace


class NestedIOFunction(Function):
    """PyTorch's legacy nested-input Function; ember does not support it."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("ember.autograd.function.NestedIOFunction (a legacy API) is "
                                  "not supported; write an ember.autograd.Function")
