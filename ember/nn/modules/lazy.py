"""Lazy modules: layers whose input size is read from their first input.

A lazy layer holds ``UninitializedParameter``/``UninitializedBuffer`` placeholders until its
first call; a forward pre-hook then sizes and initialises them (the layer's own
``reset_parameters``) and turns the object into its ordinary class (``cls_to_become``), so
that after one batch ``type(m) is nn.Conv2d``.
"""

from __future__ import annotations

from ..parameter import is_lazy

__all__ = ["LazyModuleMixin"]


class LazyModuleMixin:
    """Mixed into a layer: sizes its parameters from the first input (PyTorch's mixin).
    Subclasses write ``initialize_parameters(*inputs)``."""

    cls_to_become = None

    def _lazy_setup(self):
        self._initialize_hook = self.register_forward_pre_hook(_infer_parameters)

    def has_uninitialized_params(self):
        """Whether a parameter or buffer of this module (not its children) is still lazy."""
        return any(is_lazy(p) for p in list(self._parameters.values()) +
                   list(self._buffers.values()) if p is not None)

    def initialize_parameters(self, *args, **kwargs):
        raise NotImplementedError(f"initialize_parameters is not implemented for "
                                  f"{type(self).__name__}")


def _infer_parameters(module, args):
    module.initialize_parameters(*args)
    if module.has_uninitialized_params():
        raise RuntimeError(f"module {type(module).__name__} has not been fully initialized")
    module._initialize_hook.remove()
    del module._initialize_hook
    if module.cls_to_become is not None:
        module.__class__ = module.cls_to_become
