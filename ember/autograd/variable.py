"""``torch.autograd.variable``: the legacy Variable at PyTorch's path."""

from . import Variable

__all__ = ["Variable"]
