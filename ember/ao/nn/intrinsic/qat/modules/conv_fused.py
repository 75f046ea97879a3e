"""QAT fused convolutions: Conv(+BN)(+ReLU) trained with fake-quantized weights.

ConvBn simulates the folded conv of inference while BN still trains (PyTorch's approximate
path, from "Quantizing deep convolutional networks for efficient inference", Krishnamoorthi
2018, sec. 3.2.2): the weight is scaled by ``gamma / sqrt(running_var + eps)`` before fake
quantization, the conv's output is divided back by that factor, the conv bias added, and
the result goes through the real BatchNorm (which updates its statistics in training).
"""

from __future__ import annotations

import math

import ember
from ember import nn
from ember.nn import functional as F
from ember.nn import init

from ...modules import fused as nni
from ....qat.modules.conv import _ConvNd as _QATConvNd

__all__ = ["ConvBn1d", "ConvBn2d", "ConvBn3d", "ConvBnReLU1d", "ConvBnReLU2d", "ConvBnReLU3d",
           "ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "freeze_bn_stats", "update_bn_stats"]

_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class _ConvBnNd:
    """Mixin over an ``nn.ConvNd``: owns ``bn`` and ``weight_fake_quant``."""

    _version = 2
    _with_relu = False

    def _init_convbn(self, out_channels, bias, eps, momentum, freeze_bn, qconfig, dim):
        if not qconfig:
            raise AssertionError("qconfig must be provided for QAT module")
        self.qconfig = qconfig
        self.freeze_bn = freeze_bn if self.training else True
        self.bn = _BN[dim](out_channels, eps, momentum, True, True)
        self.weight_fake_quant = qconfig.weight()
        if bias:
            self.bias = nn.Parameter(ember.empty(out_channels))
        else:
            self.register_parameter("bias", None)
        self.reset_bn_parameters()
        if self.training and not freeze_bn:
            self.update_bn_stats()
        else:
            self.freeze_bn_stats()

    def reset_running_stats(self):
        self.bn.reset_running_stats()

    def reset_bn_parameters(self):
        self.bn.reset_running_stats()
        init.uniform_(self.bn.weight)
        init.zeros_(self.bn.bias)
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def update_bn_stats(self):
        """Let BN update its running statistics again."""
        self.freeze_bn = False
        self.bn.training = True
        return self

    def freeze_bn_stats(self):
        """Stop BN's running statistics (usual late in QAT)."""
        self.freeze_bn = True
        self.bn.training = False
        return self

    def _forward(self, input):
        running_std = ember.sqrt(self.bn.running_var + self.bn.eps)
        scale_factor = self.bn.weight / running_std
        w_shape = [1] * self.weight.dim()
        w_shape[0] = -1
        b_shape = [1] * self.weight.dim()
        b_shape[1] = -1
        scaled_weight = self.weight_fake_quant(self.weight * scale_factor.reshape(w_shape))
        zero_bias = ember.zeros(self.out_channels, dtype=input.dtype)
        conv = self._conv_forward(input, scaled_weight, zero_bias)
        conv_orig = conv / scale_factor.reshape(b_shape)
        if self.bias is not None:
            conv_orig = conv_orig + self.bias.reshape(b_shape)
        return self.bn(conv_orig)

    def forward(self, input):
        out = self._forward(input)
        return F.relu(out) if self._with_relu else out

    def train(self, mode=True):
        # with frozen BN the BN module stays in eval whatever the parent's mode
        self.training = mode
        if not self.freeze_bn:
            for m in self.children():
                m.train(mode)
        return self

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        """The QAT module for a fused ``ConvBn``/``ConvBnReLU`` carrying a ``qconfig``."""
        if type(mod) is not cls._FLOAT_MODULE:
            raise AssertionError(f"qat.{cls.__name__}.from_float only works for "
                                 f"{cls._FLOAT_MODULE.__name__}, got {type(mod).__name__}")
        if not getattr(mod, "qconfig", None):
            raise AssertionError("Input float module must have qconfig defined")
        conv, bn = mod[0], mod[1]
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                conv.padding_mode, bn.eps, bn.momentum, False, mod.qconfig)
        q.weight = conv.weight
        q.bias = conv.bias
        q.bn.weight, q.bn.bias = bn.weight, bn.bias
        q.bn.running_mean, q.bn.running_var = bn.running_mean, bn.running_var
        q.bn.num_batches_tracked = bn.num_batches_tracked
        return q

    def to_float(self):
        """The float conv (BN folded in with its running statistics), plus ReLU if fused."""
        conv = _CONV[self._dim](**_QATConvNd._conv_args(self))
        conv.weight = nn.Parameter(self.weight.detach())
        if self.bias is not None:
            conv.bias = nn.Parameter(self.bias.detach())
        conv = nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), self.bn.eval())
        if self._with_relu:
            return nni.__dict__[f"ConvReLU{self._dim}d"](conv, nn.ReLU())
        return conv

    def folded_weight_bias(self):
        """(weight, bias) of the conv with BN folded in, as ``convert`` quantizes them."""
        w, b = nn.utils.fusion.fuse_conv_bn_weights(
            self.weight, self.bias, self.bn.running_mean, self.bn.running_var, self.bn.eps,
            self.bn.weight, self.bn.bias)
        return w, b


def _convbn(name, dim, relu, float_module):
    base = _CONV[dim]

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=None, padding_mode="zeros", eps=1e-05, momentum=0.1,
                 freeze_bn=False, qconfig=None):
        base.__init__(self, in_channels, out_channels, kernel_size, stride=stride,
                      padding=padding, dilation=dilation, groups=groups, bias=False,
                      padding_mode=padding_mode)
        self._init_convbn(out_channels, bias, eps, momentum, freeze_bn, qconfig, dim)
    doc = (f"QAT {'Conv, BatchNorm, ReLU' if relu else 'Conv then BatchNorm'} ({dim}d) with a "
           "fake-quantized, BN-scaled weight.")
    return type(name, (_ConvBnNd, base), {"__init__": __init__, "_FLOAT_MODULE": float_module,
                                          "_FLOAT_CONV_MODULE": base, "_with_relu": relu,
                                          "_dim": dim, "__doc__": doc, "__module__": __name__})


ConvBn1d = _convbn("ConvBn1d", 1, False, nni.ConvBn1d)
ConvBn2d = _convbn("ConvBn2d", 2, False, nni.ConvBn2d)
ConvBn3d = _convbn("ConvBn3d", 3, False, nni.ConvBn3d)
ConvBnReLU1d = _convbn("ConvBnReLU1d", 1, True, nni.ConvBnReLU1d)
ConvBnReLU2d = _convbn("ConvBnReLU2d", 2, True, nni.ConvBnReLU2d)
ConvBnReLU3d = _convbn("ConvBnReLU3d", 3, True, nni.ConvBnReLU3d)


def _convrelu(name, dim, float_module):
    from ....qat.modules import conv as qat_conv
    base = getattr(qat_conv, f"Conv{dim}d")

    def forward(self, input):
        return F.relu(self._conv_forward(input, self.weight_fake_quant(self.weight), self.bias))

    def to_float(self):
        return float_module(base.to_float(self), nn.ReLU())
    return type(name, (base,), {"forward": forward, "to_float": to_float,
                                "_FLOAT_MODULE": float_module, "__module__": __name__,
                                "__doc__": f"QAT Conv{dim}d then ReLU (fake-quantized weight)."})


ConvReLU1d = _convrelu("ConvReLU1d", 1, nni.ConvReLU1d)
ConvReLU2d = _convrelu("ConvReLU2d", 2, nni.ConvReLU2d)
ConvReLU3d = _convrelu("ConvReLU3d", 3, nni.ConvReLU3d)


def update_bn_stats(mod):
    """``model.apply(update_bn_stats)``: BN statistics update again in every QAT ConvBn."""
    if isinstance(mod, _ConvBnNd):
        mod.update_bn_stats()


def freeze_bn_stats(mod):
    """``model.apply(freeze_bn_stats)``: freeze BN statistics in every QAT ConvBn."""
    if isinstance(mod, _ConvBnNd):
        mod.freeze_bn_stats()
