"""QAT convolutions: nn.ConvNd whose weight passes through a fake-quantize module."""

from __future__ import annotations

from ember import nn

__all__ = ["Conv1d", "Conv2d", "Conv3d"]


class _ConvNd:
    """Mixin: ``weight_fake_quant`` on the weight; ``from_float`` / ``to_float``."""

    def _init_qat(self, qconfig):
        if not qconfig:
            raise AssertionError("qconfig must be provided for QAT module")
        self.qconfig = qconfig
        self.weight_fake_quant = qconfig.weight()

    def forward(self, input):
        return self._conv_forward(input, self.weight_fake_quant(self.weight), self.bias)

    @staticmethod
    def _conv_args(conv):
        return dict(in_channels=conv.in_channels, out_channels=conv.out_channels,
                    kernel_size=conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                    padding_mode=conv.padding_mode)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        """The QAT conv for a float conv (or the conv of a fused ConvReLU) with a qconfig;
        it shares the float module's parameters."""
        if type(mod) is not cls._FLOAT_MODULE:
            raise AssertionError(f"qat.{cls.__name__}.from_float only works for "
                                 f"{cls._FLOAT_MODULE.__name__}, got {type(mod).__name__}")
        if not getattr(mod, "qconfig", None):
            raise AssertionError("Input float module must have qconfig defined")
        qconfig = mod.qconfig
        if isinstance(mod, nn.Sequential):  # a fused ConvReLU: take its conv
            mod = mod[0]
        qat = cls(**_ConvNd._conv_args(mod), qconfig=qconfig)
        qat.weight = mod.weight
        qat.bias = mod.bias
        return qat

    def to_float(self):
        conv = self._FLOAT_MODULE(**_ConvNd._conv_args(self))
        conv.weight = nn.Parameter(self.weight.detach())
        if self.bias is not None:
            conv.bias = nn.Parameter(self.bias.detach())
        conv.train(self.training)
        return conv


def _qat_conv(name, base):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", qconfig=None, device=None,
                 dtype=None):
        base.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                      padding=padding, dilation=dilation, groups=groups, bias=bias,
                      padding_mode=padding_mode, device=device, dtype=dtype)
        self._init_qat(qconfig)
    doc = f"``nn.{base.__name__}`` with ``weight_fake_quant`` applied to the weight."
    return type(name, (_ConvNd, base), {"__init__": __init__, "_FLOAT_MODULE": base,
                                        "__doc__": doc, "__module__": __name__})


Conv1d = _qat_conv("Conv1d", nn.Conv1d)
Conv2d = _qat_conv("Conv2d", nn.Conv2d)
Conv3d = _qat_conv("Conv3d", nn.Conv3d)
