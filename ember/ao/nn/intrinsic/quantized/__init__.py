"""``ember.ao.nn.intrinsic.quantized``: int8 versions of the fused modules. The ReLU is fused
into the requantization (outputs below the zero point clamp to it), as PyTorch's
``quantized::conv2d_relu`` / ``linear_relu`` do."""

from __future__ import annotations

import importlib as _importlib

from ember.ao.nn import quantized as nnq

__all__ = ["ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "LinearReLU", "BNReLU2d", "BNReLU3d"]


class _FromFused:
    """``from_float`` for a fused float container (``intrinsic.ConvReLU2d`` ...): quantize
    its first module with the container's qconfig and output observer (the observer saw the
    output after the ReLU)."""

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        from ember.ao.nn.intrinsic import _FusedModule
        if isinstance(mod, _FusedModule):
            inner = mod[0]
            if getattr(inner, "qconfig", None) is None:
                inner.qconfig = mod.qconfig
            inner.activation_post_process = mod.activation_post_process
            mod = inner
        return super().from_float(mod, use_precomputed_fake_quant=use_precomputed_fake_quant)


class LinearReLU(_FromFused, nnq.Linear):
    """Quantized Linear then ReLU (from a fused ``LinearReLU`` or its QAT version)."""

    _relu = True


class ConvReLU1d(_FromFused, nnq.Conv1d):
    """Quantized Conv1d then ReLU."""

    _relu = True


class ConvReLU2d(_FromFused, nnq.Conv2d):
    """Quantized Conv2d then ReLU."""

    _relu = True


class ConvReLU3d(_FromFused, nnq.Conv3d):
    """Quantized Conv3d then ReLU."""

    _relu = True


class BNReLU3d(_FromFused, nnq.BatchNorm3d):
    """Quantized BatchNorm3d then ReLU."""

    def forward(self, input):
        return super().forward(input).relu()

    def _get_name(self):
        return "QuantizedBNReLU3d"


class BNReLU2d(_FromFused, nnq.BatchNorm2d):
    """Quantized BatchNorm2d then ReLU."""

    def forward(self, input):
        return super().forward(input).relu()

    def _get_name(self):
        return "QuantizedBNReLU2d"


def __getattr__(name):
    if name == "dynamic":
        return _importlib.import_module(".dynamic", __name__)
    raise AttributeError(f"module 'ember.ao.nn.intrinsic.quantized' has no attribute '{name}'")
