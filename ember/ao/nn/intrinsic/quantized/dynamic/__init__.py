"""``ember.ao.nn.intrinsic.quantized.dynamic``: dynamically quantized fused modules."""

from __future__ import annotations

from ember.ao.nn.quantized import dynamic as nnqd

__all__ = ["LinearReLU"]


class LinearReLU(nnqd.Linear):
    """Dynamically quantized Linear then ReLU (float in, float out): the ReLU is fused
    into the dynamic linear (``_relu``)."""

    _relu = True
