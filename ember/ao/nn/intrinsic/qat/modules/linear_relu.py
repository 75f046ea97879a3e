"""QAT Linear + ReLU."""

from __future__ import annotations

from ember import nn
from ember.nn import functional as F

from ...modules import fused as nni
from ....qat.modules.linear import Linear as _QATLinear

__all__ = ["LinearReLU"]


class LinearReLU(_QATLinear):
    """QAT Linear then ReLU, from a fused ``intrinsic.LinearReLU``."""

    _FLOAT_MODULE = nni.LinearReLU

    def forward(self, input):
        return F.relu(F.linear(input, self.weight_fake_quant(self.weight), self.bias))

    def to_float(self):
        return nni.LinearReLU(_QATLinear.to_float(self), nn.ReLU())
