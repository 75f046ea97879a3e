"""``ember.ao.nn.qat``: modules for quantization-aware training (fake-quantized weights)."""

from .modules import Conv1d, Conv2d, Conv3d, Linear  # noqa: F401

__all__ = ["Linear", "Conv1d", "Conv2d", "Conv3d"]
