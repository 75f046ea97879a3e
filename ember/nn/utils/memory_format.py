"""``torch.nn.utils.memory_format``: convert the weights of every (transposed) 2-d or 3-d
convolution of a module tree to a memory format (channels_last for NHWC kernels)."""

from __future__ import annotations

__all__ = ["convert_conv2d_weight_memory_format", "convert_conv3d_weight_memory_format"]


def _convert(module, memory_format, kinds):
    from ...autograd.grad_mode import no_grad
    if isinstance(module, kinds):
        with no_grad():
            # the same values in the new layout, still the same Parameter object
            module.weight.data = module.weight.detach().clone(memory_format=memory_format)
    for child in module.children():
        _convert(child, memory_format, kinds)
    return module


def convert_conv2d_weight_memory_format(module, memory_format):
    """Every ``Conv2d``/``ConvTranspose2d`` weight under ``module`` in ``memory_format``
    (e.g. ``ember.channels_last``); returns ``module``."""
    from ..modules.conv import Conv2d, ConvTranspose2d
    return _convert(module, memory_format, (Conv2d, ConvTranspose2d))


def convert_conv3d_weight_memory_format(module, memory_format):
    """Every ``Conv3d``/``ConvTranspose3d`` weight under ``module`` in ``memory_format``
    (e.g. ``ember.channels_last_3d``); returns ``module``."""
    from ..modules.conv import Conv3d, ConvTranspose3d
    return _convert(module, memory_format, (Conv3d, ConvTranspose3d))
