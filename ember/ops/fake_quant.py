"""Fake quantization: round to the integer grid and back, staying in float.

``fake_quantize_per_tensor_affine(x, scale, zero_point, quant_min, quant_max)`` computes
``(clamp(round(x / scale) + zero_point, quant_min, quant_max) - zero_point) * scale`` the way
PyTorch's kernel does (``x * (1 / scale)`` in float32, ``round`` half to even). Its gradient is
the straight-through estimator: the incoming gradient passes where the rounded value fell inside
``[quant_min, quant_max]`` and is zero where it was clamped.
"""

from __future__ import annotations

import numpy as np

from .._tensor import Tensor, _make
from ..autograd.graph import Node

__all__ = ["fake_quantize_per_tensor_affine", "fake_quantize_per_channel_affine"]

_F32 = np.float32


def _check_range(op, quant_min, quant_max):
    if quant_min > quant_max:
        raise RuntimeError(f"{op}: `quant_min` should be less than or equal to `quant_max`, "
                           f"got quant_min={quant_min}, quant_max={quant_max}.")


def _fq(x, inv_scale, scale, zero_point, quant_min, quant_max, float_zp=False,
        f32_product=True):
    """Arrays in, (output, in-range mask) out. ``scale``/``zero_point`` broadcast against x."""
    if float_zp:  # embedding tables: a float zero point added before rounding
        q = np.rint(x * inv_scale + zero_point)
    else:
        q = np.rint(x * inv_scale) + zero_point
    mask = (q >= quant_min) & (q <= quant_max)
    q = np.clip(q, quant_min, quant_max) - zero_point
    # PyTorch's per-tensor kernel multiplies by the float32 scale in float32 whatever x's
    # dtype; its per-channel kernel multiplies in x's dtype
    out = q.astype(_F32) * scale if f32_product else q * scale.astype(x.dtype)
    return out.astype(x.dtype, copy=False), mask


class FakeQuantizePerTensorAffine(Node):
    differentiable = True

    @staticmethod
    def forward(ctx, x, scale, zero_point, quant_min, quant_max):
        if x.dtype.kind != "f":
            raise RuntimeError(f"fake_quantize_per_tensor_affine: expected a floating point "
                               f"input, got {x.dtype}")
        _check_range("fake_quantize_per_tensor_affine", quant_min, quant_max)
        sc = _F32(np.asarray(scale).reshape(-1)[0])
        zp = int(np.asarray(zero_point).reshape(-1)[0])
        if not quant_min <= zp <= quant_max:
            raise RuntimeError("fake_quantize_per_tensor_affine: `zero_point` must be between "
                               f"`quant_min` and `quant_max`, got zero_point={zp}, "
                               f"range [{quant_min}, {quant_max}].")
        inv = _F32(1.0) / sc
        out, mask = _fq(x, inv.astype(x.dtype) if x.dtype != _F32 else inv, sc,
                        np.asarray(zp, x.dtype), quant_min, quant_max)
        ctx.mask = mask
        return out

    @staticmethod
    def backward(ctx, g):
        # straight-through: gradient 1 inside the representable range, 0 where clamped
        return g * _make(ctx.mask.astype(g.dtype.np)), None, None, None, None


class FakeQuantizePerChannelAffine(Node):
    differentiable = True

    @staticmethod
    def forward(ctx, x, scale, zero_point, axis, quant_min, quant_max):
        op = "fake_quantize_per_channel_affine"
        if x.dtype.kind != "f":
            raise RuntimeError(f"{op}: expected a floating point input, got {x.dtype}")
        _check_range(op, quant_min, quant_max)
        scale, zero_point = np.asarray(scale), np.asarray(zero_point)
        if not 0 <= axis < x.ndim:  # PyTorch takes no negative axis here
            raise RuntimeError(f"{op}: `axis` must be between 0 and number of dimensions of "
                               f"input, got axis={axis} for an input of {x.ndim} dimensions")
        if scale.ndim != 1 or zero_point.ndim != 1 or scale.shape[0] != x.shape[axis] or \
                zero_point.shape[0] != x.shape[axis]:
            raise RuntimeError(f"{op}: dimensions of scale and zero-point are not consistent "
                               f"with input tensor: scale {list(scale.shape)}, zero_point "
                               f"{list(zero_point.shape)}, input {list(x.shape)}, axis {axis}")
        float_zp = zero_point.dtype.kind == "f"
        if not float_zp and (zero_point.min() < quant_min or zero_point.max() > quant_max):
            raise RuntimeError(f"{op}: `zero_point` must be between `quant_min` and "
                               f"`quant_max`.")
        shape = [1] * x.ndim
        shape[axis] = -1
        sc = scale.astype(_F32).reshape(shape)
        inv = (_F32(1.0) / sc)
        zp = zero_point.astype(_F32 if float_zp else x.dtype).reshape(shape)
        out, mask = _fq(x, inv if x.dtype == _F32 else inv.astype(x.dtype), sc, zp,
                        quant_min, quant_max, float_zp, f32_product=False)
        ctx.mask = mask
        return out

    @staticmethod
    def backward(ctx, g):
        return g * _make(ctx.mask.astype(g.dtype.np)), None, None, None, None, None


def _plain(v):
    """A scale/zero point given as a Tensor is read as its array (it takes no gradient)."""
    return v.detach()._data if isinstance(v, Tensor) else v


def fake_quantize_per_tensor_affine(input, scale, zero_point, quant_min, quant_max):
    """Quantize and dequantize ``input`` with one ``scale``/``zero_point`` (floats or
    one-element tensors); the gradient passes straight through inside the range."""
    return FakeQuantizePerTensorAffine.apply(input, _plain(scale), _plain(zero_point),
                                             int(quant_min), int(quant_max))


def fake_quantize_per_channel_affine(input, scale, zero_point, axis, quant_min, quant_max):
    """Quantize and dequantize ``input`` with one scale/zero point per slice along ``axis``."""
    if not isinstance(scale, Tensor) or not isinstance(zero_point, Tensor):
        raise TypeError("fake_quantize_per_channel_affine(): scale and zero_point must be "
                        f"Tensors, got {type(scale).__name__} and {type(zero_point).__name__}")
    return FakeQuantizePerChannelAffine.apply(input, _plain(scale), _plain(zero_point),
                                              int(axis), int(quant_min), int(quant_max))
