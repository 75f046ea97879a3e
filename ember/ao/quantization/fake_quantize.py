"""Fake-quantize modules for quantization-aware training (QAT), as ``torch.ao``'s.

A FakeQuantize module holds an observer. In ``forward`` it (when enabled) lets the observer see
the batch, refreshes its ``scale``/``zero_point`` buffers from it, and (when enabled) returns
``fake_quantize(x)``: the float value the integer model will compute, with a straight-through
gradient so training can adapt to the rounding.
"""

from __future__ import annotations

import numpy as np

import ember
from ember import nn
from ember.ops.fake_quant import (fake_quantize_per_channel_affine,
                                  fake_quantize_per_tensor_affine)

from . import _qtypes as Q
from .observer import (FixedQParamsObserver, HistogramObserver, MovingAverageMinMaxObserver,
                       MovingAveragePerChannelMinMaxObserver, _with_args,
                       _with_callable_args, default_fixed_qparams_range_0to1_observer,
                       default_fixed_qparams_range_neg1to1_observer)

__all__ = [
    "FakeQuantizeBase", "FakeQuantize", "FixedQParamsFakeQuantize",
    "FusedMovingAvgObsFakeQuantize", "disable_fake_quant", "disable_observer",
    "enable_fake_quant", "enable_observer", "default_fake_quant", "default_weight_fake_quant",
    "default_dynamic_fake_quant", "default_fixed_qparams_range_neg1to1_fake_quant",
    "default_fixed_qparams_range_0to1_fake_quant", "default_symmetric_fixed_qparams_fake_quant",
    "default_affine_fixed_qparams_fake_quant", "default_per_channel_weight_fake_quant",
    "default_embedding_fake_quant", "default_embedding_fake_quant_4bit",
    "default_histogram_fake_quant", "default_fused_act_fake_quant",
    "default_fused_wt_fake_quant", "default_fused_per_channel_wt_fake_quant",
    "fused_wt_fake_quant_range_neg_127_to_127",
    "fused_per_channel_wt_fake_quant_range_neg_127_to_127",
]


def _set(buf, arr):
    buf._data = np.array(np.asarray(arr), dtype=buf._data.dtype, copy=True)


class FakeQuantizeBase(nn.Module):
    """Base of the fake-quantize modules: the two switch buffers and their toggles."""

    def __init__(self):
        super().__init__()
        # uint8 flags, as PyTorch keeps them (they are in the state dict)
        self.register_buffer("fake_quant_enabled", ember.tensor([1], dtype=ember.uint8))
        self.register_buffer("observer_enabled", ember.tensor([1], dtype=ember.uint8))

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def calculate_qparams(self, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.calculate_qparams")

    def enable_fake_quant(self, enabled=True):
        """Turn the quantize-dequantize step on (or off with ``enabled=False``)."""
        self.fake_quant_enabled._data[0] = 1 if enabled else 0

    def disable_fake_quant(self):
        self.enable_fake_quant(False)

    def enable_observer(self, enabled=True):
        """Turn statistics collection on (or off: the qparams freeze)."""
        self.observer_enabled._data[0] = 1 if enabled else 0

    def disable_observer(self):
        self.enable_observer(False)

    @classmethod
    def with_args(cls, **kwargs):
        return _with_args(cls, **kwargs)

    with_callable_args = classmethod(_with_callable_args)


class FakeQuantize(FakeQuantizeBase):
    """Simulates quantize/dequantize in training: ``observer`` (MovingAverageMinMaxObserver by
    default) tracks the range; ``quant_min``/``quant_max`` bound the integers; the remaining
    keyword arguments go to the observer."""

    def __init__(self, observer=MovingAverageMinMaxObserver, quant_min=None, quant_max=None,
                 is_dynamic=False, **observer_kwargs):
        super().__init__()
        if quant_min is not None and quant_max is not None:
            if quant_min > quant_max:
                raise AssertionError("quant_min must be less than or equal to quant_max")
            dtype = observer_kwargs.get("dtype", Q.quint8)
            if hasattr(observer, "p"):  # a with_args factory may bind the dtype
                dtype = getattr(observer.p, "keywords", {}).get("dtype", dtype)
            lo, hi = Q.qrange(dtype)
            if lo > quant_min:
                raise AssertionError("quant_min out of bound")
            if quant_max > hi:
                raise AssertionError("quant_max out of bound")
            observer_kwargs.update({"quant_min": quant_min, "quant_max": quant_max})
        observer_kwargs["is_dynamic"] = is_dynamic
        self.activation_post_process = observer(**observer_kwargs)
        app = self.activation_post_process
        self.quant_min, self.quant_max = app.quant_min, app.quant_max
        self.is_dynamic = app.is_dynamic
        zp_dtype = ember.float32 if Q.is_float_qparams(app.qscheme) else ember.int32
        self.register_buffer("scale", ember.tensor([1.0], dtype=ember.float32))
        self.register_buffer("zero_point", ember.tensor([0], dtype=zp_dtype))
        self.dtype = app.dtype
        self.qscheme = app.qscheme
        self.ch_axis = getattr(app, "ch_axis", -1)
        if not (Q.is_per_channel(self.qscheme) or Q.is_per_tensor(self.qscheme)):
            raise AssertionError("Only per channel and per tensor quantization are supported in "
                                 f"fake quantize got qscheme: {self.qscheme}")
        self.is_per_channel = Q.is_per_channel(self.qscheme)

    def calculate_qparams(self):
        return self.activation_post_process.calculate_qparams()

    def forward(self, X):
        if self.observer_enabled._data[0] == 1:
            self.activation_post_process(X.detach())
            scale, zero_point = self.calculate_qparams()
            _set_resized(self.scale, scale)
            _set_resized(self.zero_point, zero_point)
        if self.fake_quant_enabled._data[0] == 1:
            app = self.activation_post_process
            if self.is_per_channel:
                X = fake_quantize_per_channel_affine(X, self.scale, self.zero_point,
                                                     self.ch_axis, app.quant_min, app.quant_max)
            else:
                X = fake_quantize_per_tensor_affine(X, self.scale, self.zero_point,
                                                    app.quant_min, app.quant_max)
        return X

    def extra_repr(self):
        app = self.activation_post_process
        return (f"fake_quant_enabled={self.fake_quant_enabled}, "
                f"observer_enabled={self.observer_enabled}, quant_min={app.quant_min}, "
                f"quant_max={app.quant_max}, dtype={self.dtype}, qscheme={self.qscheme}, "
                f"ch_axis={self.ch_axis}, scale={self.scale}, zero_point={self.zero_point}")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # scale/zero_point take the checkpoint's shapes (per-channel qparams)
        for name in ("scale", "zero_point"):
            key = prefix + name
            if key in state_dict:
                buf = getattr(self, name)
                buf._data = np.zeros(tuple(state_dict[key].shape), buf._data.dtype)
            elif strict:
                missing_keys.append(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


def _set_resized(buf, value):
    """``buf.resize_(value.shape).copy_(value)`` on a buffer."""
    _set(buf, value.detach()._data if isinstance(value, ember.Tensor) else value)


class FixedQParamsFakeQuantize(FakeQuantize):
    """Fake quantization with fixed qparams (sigmoid, tanh, hardsigmoid outputs)."""

    def __init__(self, observer):
        super().__init__(observer=observer)
        if type(self.activation_post_process) is not FixedQParamsObserver:
            raise AssertionError(f"{type(self).__name__}'s observer must be a "
                                 "FixedQParamsObserver")
        self._observer_ctr = observer
        self.scale = self.activation_post_process.scale
        self.zero_point = self.activation_post_process.zero_point
        if not Q.is_per_tensor(self.qscheme):
            raise AssertionError("Only per tensor quantization is supported "
                                 f"FixedQParamsFakeQuantize module, got qscheme:{self.qscheme}")

    def calculate_qparams(self):
        return self.scale, self.zero_point

    def extra_repr(self):
        app = self.activation_post_process
        return (f"fake_quant_enabled={self.fake_quant_enabled}, "
                f"observer_enabled={self.observer_enabled}, scale={self.scale}, "
                f"zero_point={self.zero_point}, dtype={self.dtype}, quant_min={app.quant_min}, "
                f"quant_max={app.quant_max}, qscheme={self.qscheme}")


class FusedMovingAvgObsFakeQuantize(FakeQuantize):
    """FakeQuantize restricted to the moving-average observers (PyTorch fuses the observer
    update and the fake-quantize into one kernel; here it is the same two steps in one call).
    Its switch buffers are int64, as PyTorch's."""

    def __init__(self, observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                 **observer_kwargs):
        super().__init__(observer, quant_min, quant_max, **observer_kwargs)
        if not isinstance(self.activation_post_process,
                          (MovingAverageMinMaxObserver, MovingAveragePerChannelMinMaxObserver)):
            raise AssertionError("Fused observer+fake_quant module only works with "
                                 "MovingAverageMinMaxObserver")
        self.register_buffer("fake_quant_enabled", ember.tensor([1], dtype=ember.int64))
        self.register_buffer("observer_enabled", ember.tensor([1], dtype=ember.int64))
        self.is_symmetric_quant = Q.is_symmetric(self.activation_post_process.qscheme)

    def forward(self, X):
        app = self.activation_post_process
        if self.observer_enabled._data[0] == 1:
            app(X.detach())
            # the fused kernel picks qparams with the C++ routine, not the observer's
            scale, zp = _choose_qparams(app.min_val._data, app.max_val._data, app.quant_min,
                                        app.quant_max, self.is_symmetric_quant)
            _set(self.scale, scale)
            _set(self.zero_point, zp)
        if self.fake_quant_enabled._data[0] == 1:
            if self.is_per_channel:
                X = fake_quantize_per_channel_affine(X, self.scale, self.zero_point,
                                                     self.ch_axis, app.quant_min, app.quant_max)
            else:
                X = fake_quantize_per_tensor_affine(X, self.scale, self.zero_point,
                                                    app.quant_min, app.quant_max)
        return X

    def extra_repr(self):
        app = self.activation_post_process
        return (f"fake_quant_enabled={self.fake_quant_enabled}, "
                f"observer_enabled={self.observer_enabled}, scale={self.scale}, "
                f"zero_point={self.zero_point}, dtype={self.dtype}, quant_min={app.quant_min}, "
                f"quant_max={app.quant_max}, qscheme={self.qscheme}, "
                f"reduce_range={app.reduce_range}")


_SMALL_SCALE = np.float32(6.1e-5)


def _choose_qparams_one(lo, hi, qmin, qmax, preserve_sparsity):
    """PyTorch's C++ ``ChooseQuantizationParams`` for one range (used by its fused
    observer + fake-quant kernel): symmetric ranges keep zero exact, tiny scales are raised to
    6.1e-5, and the zero point comes from whichever end loses less precision."""
    f32 = np.float32
    lo, hi = f32(lo), f32(hi)
    if lo < 0 < hi and preserve_sparsity:
        sym_min, sym_max = -((qmax - qmin) // 2 + 1), (qmax - qmin) // 2
        max_scale = float(max(abs(lo / f32(sym_min)), abs(hi / f32(sym_max))))
        lo, hi = f32(max_scale * sym_min), f32(max_scale * sym_max)
    lo, hi = min(lo, f32(0)), max(hi, f32(0))
    scale = (float(hi) - float(lo)) / (qmax - qmin)
    if float(f32(scale)) == 0.0 or np.isinf(f32(1.0) / f32(scale)):
        scale = 0.1
    if scale < _SMALL_SCALE:
        org = scale
        scale = float(_SMALL_SCALE)
        if lo == 0:
            hi = f32(_SMALL_SCALE * (qmax - qmin))
        elif hi == 0:
            lo = f32(-_SMALL_SCALE * (qmax - qmin))
        else:
            amp = f32(_SMALL_SCALE / f32(org))
            lo, hi = f32(lo * amp), f32(hi * amp)
    zp_min = qmin - float(lo) / scale
    zp_max = qmax - float(hi) / scale
    err_min = abs(qmin) - abs(float(lo) / scale)
    err_max = abs(qmax) - abs(float(hi) / scale)
    zp = zp_min if err_min < err_max else zp_max
    if lo < 0 < hi and preserve_sparsity:
        zp = (qmin + qmax) / 2
    zp = qmin if zp < qmin else qmax if zp > qmax else int(np.rint(zp))
    return f32(scale), zp


def _choose_qparams(min_val, max_val, qmin, qmax, preserve_sparsity):
    lo, hi = np.atleast_1d(min_val), np.atleast_1d(max_val)
    pairs = [_choose_qparams_one(a, b, qmin, qmax, preserve_sparsity) for a, b in zip(lo, hi)]
    return (np.array([p[0] for p in pairs], np.float32),
            np.array([p[1] for p in pairs], np.int32))


def _is_fake_quant(mod):
    return isinstance(mod, FakeQuantizeBase)


def disable_fake_quant(mod):
    """``model.apply(disable_fake_quant)``: turn fake quantization off in every module."""
    if _is_fake_quant(mod):
        mod.disable_fake_quant()


def enable_fake_quant(mod):
    """``model.apply(enable_fake_quant)``."""
    if _is_fake_quant(mod):
        mod.enable_fake_quant()


def disable_observer(mod):
    """``model.apply(disable_observer)``: freeze every fake-quant module's qparams."""
    if _is_fake_quant(mod):
        mod.disable_observer()


def enable_observer(mod):
    """``model.apply(enable_observer)``."""
    if _is_fake_quant(mod):
        mod.enable_observer()


default_fake_quant = FakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=Q.quint8,
    qscheme=Q.per_tensor_affine, reduce_range=True)
default_weight_fake_quant = FakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=Q.qint8,
    qscheme=Q.per_tensor_symmetric, reduce_range=False)
default_dynamic_fake_quant = FakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, is_dynamic=True,
    dtype=Q.quint8, averaging_constant=1)
default_fixed_qparams_range_neg1to1_fake_quant = FixedQParamsFakeQuantize.with_args(
    observer=default_fixed_qparams_range_neg1to1_observer)
default_fixed_qparams_range_0to1_fake_quant = FixedQParamsFakeQuantize.with_args(
    observer=default_fixed_qparams_range_0to1_observer)
default_symmetric_fixed_qparams_fake_quant = default_fixed_qparams_range_neg1to1_fake_quant
default_affine_fixed_qparams_fake_quant = default_fixed_qparams_range_0to1_fake_quant
default_per_channel_weight_fake_quant = FakeQuantize.with_args(
    observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
    dtype=Q.qint8, qscheme=Q.per_channel_symmetric, reduce_range=False, ch_axis=0)
default_embedding_fake_quant = FakeQuantize.with_args(
    observer=MovingAveragePerChannelMinMaxObserver, qscheme=Q.per_channel_affine_float_qparams,
    dtype=Q.quint8, quant_min=0, quant_max=255, ch_axis=0, averaging_constant=1)
default_embedding_fake_quant_4bit = FakeQuantize.with_args(
    observer=MovingAveragePerChannelMinMaxObserver, qscheme=Q.per_channel_affine_float_qparams,
    ch_axis=0, dtype=Q.quint4x2, averaging_constant=1)
default_histogram_fake_quant = FakeQuantize.with_args(
    observer=HistogramObserver, quant_min=0, quant_max=255, dtype=Q.quint8,
    qscheme=Q.per_tensor_affine, reduce_range=True)
default_fused_act_fake_quant = FusedMovingAvgObsFakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=Q.quint8)
default_fused_wt_fake_quant = FusedMovingAvgObsFakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=Q.qint8,
    qscheme=Q.per_tensor_symmetric)
default_fused_per_channel_wt_fake_quant = FusedMovingAvgObsFakeQuantize.with_args(
    observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
    dtype=Q.qint8, qscheme=Q.per_channel_symmetric)
fused_wt_fake_quant_range_neg_127_to_127 = FusedMovingAvgObsFakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver, quant_min=-127, quant_max=127, dtype=Q.qint8,
    qscheme=Q.per_tensor_symmetric, eps=2 ** -12)
fused_per_channel_wt_fake_quant_range_neg_127_to_127 = FusedMovingAvgObsFakeQuantize.with_args(
    observer=MovingAveragePerChannelMinMaxObserver, quant_min=-127, quant_max=127,
    dtype=Q.qint8, qscheme=Q.per_channel_symmetric, eps=2 ** -12)
