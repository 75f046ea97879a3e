"""``ember.ao.nn.quantized.reference``: reference quantized modules (issue 20).

A reference module keeps a float weight and, in ``forward``, quantizes and dequantizes it with
its weight qparams before the ordinary float op: it states a quantized model's numerics in
float ops (what ``convert(..., is_reference=True)`` and ``convert_fx(..., is_reference=True)``
produce, with ``quantize_per_tensor → dequantize`` pairs around it for the activations), for a
backend to lower, as PyTorch's ``torch.ao.nn.quantized.reference``. Same state-dict keys as
PyTorch's (``weight``, ``bias``, ``weight_qscheme``, ``weight_dtype``, ``weight_scale``,
``weight_zero_point``, ``weight_axis``).
"""

from __future__ import annotations

import numpy as np

from ember import _dtype as D
from ember._quantized import (per_channel_affine, per_channel_affine_float_qparams,
                            per_tensor_affine, quantize_per_channel, quantize_per_tensor)
from ember._tensor import Tensor
from ember.nn import functional as F
from ember.nn import modules as _nnm
from ember.nn.parameter import Parameter
from ember.ops.creation import tensor as _tensor

__all__ = ["Linear", "Conv1d", "Conv2d", "Conv3d", "ReferenceQuantizedModule"]


def _as_tensor(v, dtype):
    if isinstance(v, Tensor):
        return v.detach().clone()
    return _tensor(np.asarray(v, dtype=dtype))


class ReferenceQuantizedModule:
    """The weight-qparams part of a reference module (a mixin over a float module)."""

    _IS_REFERENCE = True

    def _init_weight_qparams(self, weight_qparams):
        if weight_qparams is None:
            weight_qparams = {"qscheme": per_tensor_affine, "dtype": D.quint8, "scale": 1.0,
                              "zero_point": 0}
        self.weight_qscheme = weight_qparams["qscheme"]
        self.weight_dtype = weight_qparams["dtype"]
        if self.weight_qscheme not in (None, per_tensor_affine, per_channel_affine,
                                       per_channel_affine_float_qparams):
            raise AssertionError(f"qscheme: {self.weight_qscheme} is not supported in "
                                 f"reference quantized {self._get_name()}")
        if self.weight_dtype in (D.quint8, D.qint8, D.quint4x2, D.qint32):
            zp = weight_qparams["zero_point"]
            zp_dtype = np.float32 if isinstance(zp, Tensor) and zp.is_floating_point() \
                else np.int32
            self.register_buffer("weight_scale", _as_tensor(weight_qparams["scale"],
                                                            np.float32))
            self.register_buffer("weight_zero_point", _as_tensor(zp, zp_dtype))
            axis = weight_qparams.get("axis", 0) if self.weight_qscheme in (
                per_channel_affine, per_channel_affine_float_qparams) else 0
            self.register_buffer("weight_axis", _as_tensor(axis, np.int32))
        else:
            self.register_buffer("weight_scale", _tensor(np.float32(1.0)))
            self.register_buffer("weight_zero_point", _tensor(np.int32(0)))
            self.register_buffer("weight_axis", _tensor(np.int32(0)))
        self.is_decomposed = bool(weight_qparams.get("is_decomposed", False))
        self.weight_axis_int = int(self.weight_axis.item())
        self.weight_quant_min = weight_qparams.get("quant_min")
        self.weight_quant_max = weight_qparams.get("quant_max")

    def get_quantized_weight(self):
        """The weight quantized with the weight qparams (a quantized tensor)."""
        w = self.weight.detach()
        if self.weight_dtype is D.float16:
            return w.to(D.float16)
        if self.weight_qscheme is per_tensor_affine and self.weight_dtype in (
                D.quint8, D.qint8, D.qint32):
            return quantize_per_tensor(w, float(self.weight_scale.reshape(-1)[0].item()),
                                       int(self.weight_zero_point.reshape(-1)[0].item()),
                                       self.weight_dtype)
        if self.weight_qscheme in (per_channel_affine, per_channel_affine_float_qparams) and \
                self.weight_dtype in (D.quint8, D.qint8, D.quint4x2, D.qint32):
            return quantize_per_channel(w, self.weight_scale, self.weight_zero_point,
                                        self.weight_axis_int, self.weight_dtype)
        raise ValueError(f"Unsupported dtype and qscheme: {self.weight_dtype}, "
                         f"{self.weight_qscheme}")

    def get_weight(self):
        """The weight quantized and dequantized (float): the quantized model's numerics."""
        if self.weight_qscheme is None:
            return self.weight
        q = self.get_quantized_weight()
        return q if q.dtype is D.float16 else q.dequantize()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight_qscheme"] = self.weight_qscheme
        destination[prefix + "weight_dtype"] = self.weight_dtype
        if self.weight_qscheme is not None:
            destination[prefix + "weight_scale"] = self.weight_scale
            destination[prefix + "weight_zero_point"] = self.weight_zero_point
            if self.weight_qscheme is per_channel_affine:
                destination[prefix + "weight_axis"] = self.weight_axis

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        keys = ["weight_qscheme", "weight_dtype"]
        if state_dict.get(prefix + "weight_qscheme") is not None:
            keys += ["weight_scale", "weight_zero_point"]
        if prefix + "weight_axis" in state_dict:
            keys.append("weight_axis")
        for key in keys:
            if prefix + key in state_dict:
                setattr(self, key, state_dict.pop(prefix + key))
        self.weight_axis_int = int(self.weight_axis.item())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, False, missing_keys,
                                      unexpected_keys, error_msgs)


class Linear(ReferenceQuantizedModule, _nnm.Linear):
    """Reference quantized Linear: ``F.linear(x, dequantize(quantize(weight)), bias)``."""

    def __init__(self, in_features, out_features, bias_=True, device=None, dtype=None,
                 weight_qparams=None):
        _nnm.Linear.__init__(self, in_features, out_features, bias_, device=device,
                             dtype=dtype)
        self._init_weight_qparams(weight_qparams)

    def _get_name(self):
        return "QuantizedLinear(Reference)"

    def forward(self, x):
        return F.linear(x, self.get_weight(), self.bias)

    @classmethod
    def from_float(cls, float_linear, weight_qparams):
        """A reference Linear with ``float_linear``'s weight and bias and ``weight_qparams``
        (``ember.ao.quantization.utils.get_qparam_dict`` of a weight observer)."""
        ref = cls(float_linear.in_features, float_linear.out_features,
                  float_linear.bias is not None, weight_qparams=weight_qparams)
        ref.weight = Parameter(float_linear.weight.detach())
        if float_linear.bias is not None:
            ref.bias = Parameter(float_linear.bias.detach())
        return ref


class _ConvNd(ReferenceQuantizedModule):
    _FLOAT = None

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None, weight_qparams=None):
        self._FLOAT.__init__(self, in_channels, out_channels, kernel_size, stride, padding,
                             dilation, groups, bias, padding_mode, device=device, dtype=dtype)
        self._init_weight_qparams(weight_qparams)

    def _get_name(self):
        return f"QuantizedConv{self._nd}d(Reference)"

    def forward(self, x):
        return self._conv_forward(x, self.get_weight(), self.bias)

    @classmethod
    def from_float(cls, float_conv, weight_qparams):
        """A reference convolution with ``float_conv``'s weight, bias and geometry."""
        ref = cls(float_conv.in_channels, float_conv.out_channels, float_conv.kernel_size,
                  float_conv.stride, float_conv.padding, float_conv.dilation,
                  float_conv.groups, float_conv.bias is not None, float_conv.padding_mode,
                  weight_qparams=weight_qparams)
        ref.weight = Parameter(float_conv.weight.detach())
        if float_conv.bias is not None:
            ref.bias = Parameter(float_conv.bias.detach())
        return ref


class Conv1d(_ConvNd, _nnm.Conv1d):
    """Reference quantized Conv1d."""

    _FLOAT = _nnm.Conv1d


class Conv2d(_ConvNd, _nnm.Conv2d):
    """Reference quantized Conv2d."""

    _FLOAT = _nnm.Conv2d


class Conv3d(_ConvNd, _nnm.Conv3d):
    """Reference quantized Conv3d."""

    _FLOAT = _nnm.Conv3d
