"""``torch.autograd.variable``: the legacy Variable at PyTorch's path."""

from . import Variable

__all__ = ["Variable"]


class VariableMeta(type):
    """The metaclass of PyTorch's ``Variable``: any Tensor is an instance."""

    def __instancecheck__(cls, other):
        from .._tensor import Tensor
        return isinstance(other, Tensor)


__all__ += ["VariableMeta"]
