"""``ember.ao.nn.intrinsic.quantized.dynamic``: dynamically quantized fused modules."""

from __future__ import annotations

import ember
from ember.ao.nn.quantized import dynamic as nnqd

__all__ = ["LinearReLU"]


class LinearReLU(nnqd.Linear):
    """Dynamically quantized Linear then ReLU (float in, float out)."""

    _relu = True

    def forward(self, x):
        # the ReLU is applied here as well: quantized.functional.linear_dynamic's C fast path
        # returns before its _relu step, and max(y, 0) twice is max(y, 0) once
        return ember.relu(super().forward(x))
