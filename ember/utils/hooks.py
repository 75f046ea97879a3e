"""``ember.utils.hooks``: PyTorch's ``torch.utils.hooks`` names (the handle lives in layer 1,
``ember/_hooks.py``, so that autograd and nn share one class)."""

from .._hooks import RemovableHandle

__all__ = ["RemovableHandle"]
