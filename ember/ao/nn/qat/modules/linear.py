"""QAT Linear: an nn.Linear whose weight passes through a fake-quantize module."""

from __future__ import annotations

from ember import nn
from ember.nn import functional as F

__all__ = ["Linear"]


class Linear(nn.Linear):
    """``nn.Linear`` with ``weight_fake_quant`` (built from ``qconfig.weight``) applied to the
    weight in every forward. Built from a float module by ``from_float``."""

    _FLOAT_MODULE = nn.Linear

    def __init__(self, in_features, out_features, bias=True, qconfig=None, device=None,
                 dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        if not qconfig:
            raise AssertionError("qconfig must be provided for QAT module")
        self.qconfig = qconfig
        self.weight_fake_quant = qconfig.weight()

    def forward(self, input):
        return F.linear(input, self.weight_fake_quant(self.weight), self.bias)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        """The QAT module for a float ``nn.Linear`` (or fused ``LinearReLU``'s linear) that
        carries a ``qconfig``; it shares the float module's parameters."""
        from ember.ao.nn.intrinsic import LinearReLU
        if type(mod) is not cls._FLOAT_MODULE:
            raise AssertionError(f"qat.{cls.__name__}.from_float only works for "
                                 f"{cls._FLOAT_MODULE.__name__}, got {type(mod).__name__}")
        if not getattr(mod, "qconfig", None):
            raise AssertionError("Input float module must have qconfig defined")
        qconfig = mod.qconfig
        if isinstance(mod, LinearReLU):
            mod = mod[0]
        qat = cls(mod.in_features, mod.out_features, bias=mod.bias is not None,
                  qconfig=qconfig)
        qat.weight = mod.weight
        qat.bias = mod.bias
        return qat

    def to_float(self):
        """The plain ``nn.Linear`` with this module's (float) parameters."""
        lin = nn.Linear(self.in_features, self.out_features, self.bias is not None)
        lin.weight = nn.Parameter(self.weight.detach())
        if self.bias is not None:
            lin.bias = nn.Parameter(self.bias.detach())
        lin.train(self.training)
        return lin
