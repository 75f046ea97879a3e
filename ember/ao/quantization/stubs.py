"""QuantStub / DeQuantStub / QuantWrapper: where the eager flow enters and leaves int8."""

from __future__ import annotations

from ember import nn

__all__ = ["QuantStub", "DeQuantStub", "QuantWrapper"]


class QuantStub(nn.Module):
    """The identity until ``convert``, which swaps it for a ``Quantize`` module (its observer,
    added by ``prepare``, supplies the scale and zero point)."""

    def __init__(self, qconfig=None):
        super().__init__()
        if qconfig:
            self.qconfig = qconfig

    def forward(self, x):
        return x


class DeQuantStub(nn.Module):
    """The identity until ``convert``, which swaps it for a ``DeQuantize`` module."""

    def __init__(self, qconfig=None):
        super().__init__()
        if qconfig:
            self.qconfig = qconfig

    def forward(self, x):
        return x


class QuantWrapper(nn.Module):
    """Wraps ``module`` as ``dequant(module(quant(x)))`` so that the whole of it quantizes."""

    def __init__(self, module):
        super().__init__()
        qconfig = getattr(module, "qconfig", None)
        self.add_module("quant", QuantStub(qconfig))
        self.add_module("dequant", DeQuantStub(qconfig))
        self.add_module("module", module)
        self.train(module.training)

    def forward(self, X):
        return self.dequant(self.module(self.quant(X)))
