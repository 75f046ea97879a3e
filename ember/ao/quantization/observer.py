"""Observers: modules that watch the float values flowing through a model and turn what they
saw into quantization parameters (``scale``, ``zero_point``), as ``torch.ao.quantization``'s.

An observer is the identity in ``forward`` (it records statistics on the side) and answers
``calculate_qparams()``. The arithmetic follows PyTorch's step for step in float32, so the
same data gives the same qparams:

* affine:    ``scale = (max(max_val, 0) - min(min_val, 0)) / (quant_max - quant_min)``,
  ``zero_point = clamp(quant_min - round(min(min_val, 0) / scale), quant_min, quant_max)``
* symmetric: ``scale = max(-min(min_val, 0), max(max_val, 0)) / ((quant_max - quant_min) / 2)``,
  ``zero_point = 0`` (128 for unsigned types, or the midpoint of a customised range)
* float qparams (embeddings): ``scale = (max_val - min_val) / (quant_max - quant_min)``,
  ``zero_point = -min_val / scale`` as a float.

``scale`` is never below ``eps`` (float32's machine epsilon by default).
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np

import ember
from ember import nn

from . import _qtypes as Q

__all__ = [
    "ObserverBase", "UniformQuantizationObserverBase", "MinMaxObserver",
    "MovingAverageMinMaxObserver", "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver", "HistogramObserver", "PlaceholderObserver",
    "RecordingObserver", "NoopObserver", "FixedQParamsObserver", "ReuseInputObserver",
    "default_observer", "default_placeholder_observer", "default_debug_observer",
    "default_weight_observer", "default_histogram_observer",
    "default_per_channel_weight_observer", "default_dynamic_quant_observer",
    "default_float_qparams_observer", "default_float_qparams_observer_4bit",
    "default_fixed_qparams_range_neg1to1_observer", "default_fixed_qparams_range_0to1_observer",
    "default_symmetric_fixed_qparams_observer", "default_affine_fixed_qparams_observer",
    "default_reuse_input_observer", "weight_observer_range_neg_127_to_127",
    "per_channel_weight_observer_range_neg_127_to_127", "get_observer_state_dict",
    "load_observer_state_dict",
]

_F32 = np.float32
_EPS = float(np.finfo(np.float32).eps)


# ---------------------------------------------------------------- factories (with_args)
class _PartialWrapper:
    """A constructor with some arguments bound: each call builds a fresh instance.

    ``callable_args`` are evaluated at construction time (``with_callable_args``)."""

    def __init__(self, p):
        self.p = p
        self.callable_args = {}

    def __call__(self, *args, **keywords):
        for name, fn in self.callable_args.items():
            if name not in keywords:
                keywords = {**keywords, name: fn()}
        return self.p(*args, **keywords)

    def __repr__(self):
        return repr(self.p) + repr(self.callable_args)

    def with_args(self, **kwargs):
        return _with_args(self, **kwargs)

    def with_callable_args(self, **kwargs):
        result = _PartialWrapper(p=self.p)
        result.callable_args = {**self.callable_args, **kwargs}
        return result


def _with_args(cls_or_self, **kwargs):
    """``Cls.with_args(a=1)``: a factory that builds ``Cls(a=1)`` anew on every call."""
    return _PartialWrapper(partial(cls_or_self, **kwargs))


def _with_callable_args(cls_or_self, **kwargs):
    """``Cls.with_callable_args(a=f)``: a factory that calls ``f()`` for ``a`` on each build."""
    return _PartialWrapper(partial(cls_or_self)).with_callable_args(**kwargs)


def _bound_kwargs(factory):
    """The keyword arguments a ``with_args`` factory binds (through nested wrappers)."""
    p = getattr(factory, "p", None)
    return dict(getattr(p, "keywords", {}) or {}) if p is not None else {}


# ---------------------------------------------------------------- helpers
def _arr(t):
    """The float32 NumPy array of a tensor, detached."""
    return np.asarray(t.detach()._data)


def _set(buf, value, dtype=None):
    """Overwrite a buffer's storage in place (resize + copy), keeping the Tensor object."""
    a = np.asarray(value, dtype=dtype if dtype is not None else buf._data.dtype)
    buf._data = np.array(a, copy=True)


def calculate_qmin_qmax(quant_min, quant_max, has_customized_qrange, dtype, reduce_range):
    """The actual ``(quant_min, quant_max)`` from the observer's dtype, custom range and
    ``reduce_range`` (which drops one bit, for backends whose accumulators would overflow)."""
    if has_customized_qrange:
        if dtype in (Q.qint32, Q.int32):
            lo0, hi0 = 0, 2 ** 32 - 1
        else:
            lo0, hi0 = 0, 255
        if quant_min is not None and quant_max is not None:
            lo0, hi0 = quant_min, quant_max
        n = hi0 - lo0 + 1
        if dtype in (Q.qint8, Q.int8) and not 0 < n <= 256:
            raise AssertionError("quantization range should be positive and not exceed the "
                                 "maximum bit range (=256).")
        if dtype in (Q.qint32, Q.int32) and not 0 < n <= 2 ** 32:
            raise AssertionError("quantization range should be positive and not exceed the "
                                 "maximum bit range (=4294967296).")
        if reduce_range:
            quant_min, quant_max = quant_min // 2, quant_max // 2
        return quant_min, quant_max
    if dtype in (Q.qint8, Q.int8):
        return (-64, 63) if reduce_range else (-128, 127)
    if dtype in (Q.quint8, Q.uint8):
        return (0, 127) if reduce_range else (0, 255)
    if dtype in (Q.qint32, Q.int32):
        return -(2 ** 31), 2 ** 31 - 1
    if dtype is Q.uint16:
        return 0, 2 ** 16 - 1
    if dtype is Q.int16:
        return -(2 ** 15), 2 ** 15 - 1
    return 0, 15


def _check_min_max_valid(min_val, max_val):
    """False (with PyTorch's warning) when nothing was observed yet; raises if min > max."""
    if min_val.size == 0 or max_val.size == 0:
        warnings.warn("must run observer before calling calculate_qparams. Returning default "
                      "values.", stacklevel=3)
        return False
    if min_val.ndim == 0 or max_val.ndim == 0:
        if min_val == np.inf and max_val == -np.inf:
            warnings.warn("must run observer before calling calculate_qparams. Returning "
                          "default values.", stacklevel=3)
            return False
        if min_val > max_val:
            raise AssertionError(f"min {min_val} should be less than max {max_val}")
    elif np.any(min_val > max_val):
        raise AssertionError(f"min {min_val} should be less than max {max_val}")
    return True


# ---------------------------------------------------------------- bases
class ObserverBase(nn.Module):
    """Base of every observer: ``forward`` records statistics, ``calculate_qparams`` answers.

    ``dtype`` is the quantized dtype the observed tensor will become; ``is_dynamic`` marks an
    observer whose qparams are computed at run time (dynamic quantization)."""

    def __init__(self, dtype, is_dynamic=False):
        super().__init__()
        self.dtype = dtype
        self.is_dynamic = is_dynamic

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def calculate_qparams(self, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.calculate_qparams")

    with_args = classmethod(_with_args)
    with_callable_args = classmethod(_with_callable_args)


_ALLOWED_DTYPES_NAMES = ("qint8", "quint8", "quint4x2", "qint32", "int8", "uint8", "int16",
                         "int32", "float8_e5m2", "float8_e4m3fn", "uint16")


class UniformQuantizationObserverBase(ObserverBase):
    """Common base of the observers that compute uniform (affine/symmetric) qparams.

    Args: ``dtype`` (quint8), ``qscheme`` (per_tensor_affine), ``reduce_range`` (drop one bit),
    ``quant_min``/``quant_max`` (a custom integer range), ``eps`` (the smallest scale)."""

    _version = 3

    def __init__(self, dtype=None, qscheme=None, reduce_range=False, quant_min=None,
                 quant_max=None, factory_kwargs=None, eps=_EPS, is_dynamic=False, **kwargs):
        dtype = Q.quint8 if dtype is None else dtype
        qscheme = Q.per_tensor_affine if qscheme is None else qscheme
        super().__init__(dtype=dtype, is_dynamic=is_dynamic, **kwargs)
        self.qscheme = qscheme
        if reduce_range:
            warnings.warn("Please use quant_min and quant_max to specify the range for "
                          "observers. reduce_range will be deprecated in a future release of "
                          "PyTorch.", stacklevel=2)
        self.reduce_range = reduce_range
        self.register_buffer("eps", ember.tensor([eps], dtype=ember.float32))
        if qscheme not in Q.PER_TENSOR + Q.PER_CHANNEL:
            raise AssertionError("Default Observer only works for per_tensor_affine, "
                                 "per_tensor_symmetric, per_channel_affine, per_channel_symmetric"
                                 f" and per_channel_float_qparams quantization scheme, got "
                                 f"{qscheme}")
        if getattr(dtype, "name", None) not in _ALLOWED_DTYPES_NAMES:
            raise AssertionError("Default Observer only works for qint8, quint8, quint4x2, "
                                 "qint32, int8, uint8, int16, int32, uint16 and float8 data "
                                 f"types, got {dtype}")
        self.has_customized_qrange = quant_min is not None and quant_max is not None
        if self.has_customized_qrange:
            self._validate_qmin_qmax(quant_min, quant_max)
        self.quant_min, self.quant_max = calculate_qmin_qmax(
            quant_min, quant_max, self.has_customized_qrange, dtype, reduce_range)

    @staticmethod
    def _validate_qmin_qmax(quant_min, quant_max):
        if not quant_min <= 0 <= quant_max:
            raise AssertionError("Used-specified quantization range must include 0.")
        if quant_min >= quant_max:
            raise AssertionError("qmin must be strictly less than qmax for user-specified "
                                 "quantization range.")

    def _calculate_qparams(self, min_val, max_val):
        """``(scale, zero_point)`` tensors for the observed range (arrays or tensors)."""
        min_val = _arr(min_val) if isinstance(min_val, ember.Tensor) else np.asarray(min_val)
        max_val = _arr(max_val) if isinstance(max_val, ember.Tensor) else np.asarray(max_val)
        if not _check_min_max_valid(min_val, max_val):
            return ember.tensor([1.0]), ember.tensor([0])
        min_val = min_val.astype(_F32, copy=False)
        max_val = max_val.astype(_F32, copy=False)
        qmin, qmax = self.quant_min, self.quant_max
        eps = _arr(self.eps).astype(_F32)
        min_neg = np.minimum(min_val, _F32(0))
        max_pos = np.maximum(max_val, _F32(0))
        zp_dtype = np.int64
        if self.qscheme in Q.SYMMETRIC:
            max_pos = np.maximum(-min_neg, max_pos)
            scale = np.maximum(max_pos / _F32((qmax - qmin) / 2), eps).astype(_F32)
            zp = np.zeros(min_neg.shape, np.int64)
            if self.dtype in (Q.quint8, Q.uint8):
                zp[...] = (qmin + qmax) // 2 if self.has_customized_qrange else 128
            elif self.dtype is Q.uint16:
                zp[...] = 2 ** 15
        elif self.qscheme is Q.per_channel_affine_float_qparams:
            scale = ((max_val - min_val) / _F32(qmax - qmin)).astype(_F32)
            scale = np.where(scale > eps, scale, _F32(1)).astype(_F32)
            # x_q = round(x / scale + zero_point) with zero_point = -min / scale gives
            # round((x - min) / scale): the float zero point of embedding tables
            zp = (_F32(-1) * min_val / scale).astype(_F32)
            zp_dtype = np.float32
        else:
            scale = np.maximum((max_pos - min_neg) / _F32(qmax - qmin), eps).astype(_F32)
            zp = qmin - np.round(min_neg / scale).astype(np.int32)
            zp = np.clip(zp, qmin, qmax).astype(np.int32)
            zp_dtype = np.int32
        scale = np.atleast_1d(scale)
        zp = np.atleast_1d(zp).astype(zp_dtype)
        return (ember.from_numpy(np.ascontiguousarray(scale)),
                ember.from_numpy(np.ascontiguousarray(zp)))

    def reset_min_max_vals(self):
        raise NotImplementedError("Cannot reset min/max values in the given observer.")


_ObserverBase = UniformQuantizationObserverBase


# ---------------------------------------------------------------- min/max observers
class MinMaxObserver(UniformQuantizationObserverBase):
    """Tracks the running minimum and maximum of every tensor it sees (per tensor)."""

    def __init__(self, dtype=None, qscheme=None, reduce_range=False, quant_min=None,
                 quant_max=None, factory_kwargs=None, eps=_EPS, is_dynamic=False, **kwargs):
        qscheme = Q.per_tensor_affine if qscheme is None else qscheme
        if not Q.is_per_tensor(qscheme):
            raise NotImplementedError("MinMaxObserver's qscheme only support "
                                      "torch.per_tensor_symmetric and torch.per_tensor_affine.")
        super().__init__(dtype=dtype, qscheme=qscheme, reduce_range=reduce_range,
                         quant_min=quant_min, quant_max=quant_max,
                         factory_kwargs=factory_kwargs, eps=eps, is_dynamic=is_dynamic, **kwargs)
        self.register_buffer("min_val", ember.tensor(float("inf")))
        self.register_buffer("max_val", ember.tensor(float("-inf")))
        if self.qscheme is Q.per_tensor_symmetric and self.reduce_range and \
                self.dtype is Q.quint8:
            raise NotImplementedError("Cannot reduce range for symmetric quantization for "
                                      "quint8")

    def forward(self, x_orig):
        """Record ``min(x)``/``max(x)`` into the running range; return ``x`` unchanged."""
        if x_orig.numel() == 0:
            return x_orig
        x = _arr(x_orig).astype(_F32, copy=False)
        _set(self.min_val, np.minimum(x.min(), _arr(self.min_val)))
        _set(self.max_val, np.maximum(x.max(), _arr(self.max_val)))
        return x_orig

    def calculate_qparams(self):
        """``(scale, zero_point)`` for the range seen so far."""
        return self._calculate_qparams(self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}"

    def reset_min_max_vals(self):
        """Forget the observed range."""
        _set(self.min_val, np.float32(np.inf))
        _set(self.max_val, np.float32(-np.inf))


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Like MinMaxObserver, but the range is an exponential moving average:
    ``min_val += averaging_constant * (min(x) - min_val)`` (the first batch sets it)."""

    def __init__(self, averaging_constant=0.01, dtype=None, qscheme=None, reduce_range=False,
                 quant_min=None, quant_max=None, eps=_EPS, is_dynamic=False, **kwargs):
        qscheme = Q.per_tensor_affine if qscheme is None else qscheme
        if not Q.is_per_tensor(qscheme):
            raise NotImplementedError("MovingAverageMinMaxObserver's qscheme only support "
                                      "torch.per_tensor_symmetric and torch.per_tensor_affine. "
                                      f"but got: {qscheme}")
        self.averaging_constant = averaging_constant
        if is_dynamic and averaging_constant != 1:
            raise NotImplementedError("MovingAverageMinMaxObserver doesn't support dynamic "
                                      "quantization for averaging constant of "
                                      f"{averaging_constant}")
        super().__init__(dtype=dtype, qscheme=qscheme, reduce_range=reduce_range,
                         quant_min=quant_min, quant_max=quant_max, eps=eps,
                         is_dynamic=is_dynamic, **kwargs)

    def forward(self, x_orig):
        if x_orig.numel() == 0:
            return x_orig
        x = _arr(x_orig).astype(_F32, copy=False)
        lo, hi = _arr(self.min_val), _arr(self.max_val)
        if lo == np.inf and hi == -np.inf:
            lo, hi = x.min(), x.max()
        else:
            c = _F32(self.averaging_constant)
            lo = lo + c * (x.min() - lo)
            hi = hi + c * (x.max() - hi)
        _set(self.min_val, lo)
        _set(self.max_val, hi)
        return x_orig


def _per_channel_minmax(x, ch_axis):
    """Per-channel (min, max) of ``x`` along ``ch_axis`` (float32)."""
    y = np.swapaxes(x, ch_axis, 0) if x.ndim else x.reshape(1)
    y = y.astype(_F32, copy=False).reshape(y.shape[0], -1)
    return y.min(axis=1), y.max(axis=1)


class PerChannelMinMaxObserver(UniformQuantizationObserverBase):
    """Tracks the running min/max of each slice along ``ch_axis`` (weights: output channels)."""

    def __init__(self, ch_axis=0, dtype=None, qscheme=None, reduce_range=False,
                 quant_min=None, quant_max=None, factory_kwargs=None, eps=_EPS,
                 is_dynamic=False, **kwargs):
        qscheme = Q.per_channel_affine if qscheme is None else qscheme
        if not Q.is_per_channel(qscheme):
            raise NotImplementedError("PerChannelMinMaxObserver's qscheme only support "
                                      "torch.per_channel_symmetric, torch.per_channel_affine and "
                                      "torch.per_channel_affine_float_qparams.")
        if is_dynamic:
            raise NotImplementedError("PerChannelMinMaxObserver doesn't support dynamic "
                                      "quantization")
        super().__init__(dtype=dtype, qscheme=qscheme, reduce_range=reduce_range,
                         quant_min=quant_min, quant_max=quant_max,
                         factory_kwargs=factory_kwargs, eps=eps, is_dynamic=is_dynamic, **kwargs)
        self.ch_axis = ch_axis
        self.register_buffer("min_val", ember.tensor([]))
        self.register_buffer("max_val", ember.tensor([]))
        if self.qscheme is Q.per_channel_symmetric and self.reduce_range and \
                self.dtype is Q.quint8:
            raise NotImplementedError("Cannot reduce range for symmetric quantization for "
                                      "quint8")

    def forward(self, x_orig):
        return self._forward(x_orig)

    def _forward(self, x_orig):
        if x_orig.numel() == 0:
            return x_orig
        x = _arr(x_orig)
        if not -x.ndim <= self.ch_axis < max(x.ndim, 1):
            raise IndexError(f"PerChannelMinMaxObserver: ch_axis {self.ch_axis} is out of range "
                             f"for an input of shape {list(x.shape)}")
        lo, hi = _per_channel_minmax(x, self.ch_axis)
        old_lo, old_hi = _arr(self.min_val), _arr(self.max_val)
        if old_lo.size and old_hi.size:
            if old_lo.shape != lo.shape:
                raise RuntimeError(f"{type(self).__name__}: the input has {lo.shape[0]} channels "
                                   f"along axis {self.ch_axis}, the observer saw "
                                   f"{old_lo.shape[0]} before")
            lo, hi = self._update(old_lo, old_hi, lo, hi)
        _set(self.min_val, lo)
        _set(self.max_val, hi)
        return x_orig

    @staticmethod
    def _update(old_lo, old_hi, lo, hi):
        return np.minimum(lo, old_lo), np.maximum(hi, old_hi)

    def calculate_qparams(self):
        """Per-channel ``(scales, zero_points)`` for the ranges seen so far."""
        return self._calculate_qparams(self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}"

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # the buffers' shapes follow the checkpoint (they start empty)
        version = local_metadata.get("version")
        names = ("min_vals", "max_vals") if version is not None and version < 3 else \
            ("min_val", "max_val")
        for name, buf in zip(names, (self.min_val, self.max_val)):
            key = prefix + name
            if key in state_dict:
                buf._data = np.zeros(tuple(state_dict[key].shape), np.float32)
            elif strict:
                missing_keys.append(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, False, missing_keys,
                                      unexpected_keys, error_msgs)

    def reset_min_max_vals(self):
        """Forget the observed ranges."""
        _set(self.min_val, np.zeros(0, np.float32))
        _set(self.max_val, np.zeros(0, np.float32))


class MovingAveragePerChannelMinMaxObserver(PerChannelMinMaxObserver):
    """Per-channel ranges kept as exponential moving averages (see MovingAverageMinMax)."""

    def __init__(self, averaging_constant=0.01, ch_axis=0, dtype=None, qscheme=None,
                 reduce_range=False, quant_min=None, quant_max=None, eps=_EPS,
                 is_dynamic=False, **kwargs):
        qscheme = Q.per_channel_affine if qscheme is None else qscheme
        if not Q.is_per_channel(qscheme):
            raise NotImplementedError("MovingAveragePerChannelMinMaxObserver's qscheme only "
                                      "support torch.per_channel_symmetric, "
                                      "torch.per_channel_affine and "
                                      "torch.per_channel_affine_float_qparams.")
        if is_dynamic:
            raise NotImplementedError("MovingAveragePerChannelMinMaxObserver doesn't support "
                                      "dynamic quantization")
        super().__init__(ch_axis=ch_axis, dtype=dtype, qscheme=qscheme,
                         reduce_range=reduce_range, quant_min=quant_min, quant_max=quant_max,
                         eps=eps, is_dynamic=is_dynamic, **kwargs)
        self.averaging_constant = averaging_constant

    def _update(self, old_lo, old_hi, lo, hi):
        c = _F32(self.averaging_constant)
        return old_lo + c * (lo - old_lo), old_hi + c * (hi - old_hi)


# ---------------------------------------------------------------- histogram observer
def _histc(x, bins, lo, hi):
    """``torch.histc`` on float32 values: ``bins`` equal bins over ``[lo, hi]``; values
    outside are dropped, ``hi`` itself falls in the last bin."""
    lo, hi = _F32(lo), _F32(hi)
    if lo == hi:
        lo, hi = lo - _F32(1), hi + _F32(1)
    x = x[(x >= lo) & (x <= hi)]
    pos = ((x - lo) * _F32(bins) / (hi - lo)).astype(np.int64)
    pos = np.minimum(pos, bins - 1)
    return np.bincount(pos, minlength=bins).astype(np.float32)


def _linspace32(start, end, steps):
    """float32 ``torch.linspace``: the first half steps up from ``start``, the second half
    down from ``end`` (so both ends are exact)."""
    start, end = _F32(start), _F32(end)
    if steps == 1:
        return np.array([start], np.float32)
    step = (end - start) / _F32(steps - 1)
    i = np.arange(steps)
    half = steps // 2
    return np.where(i < half, start + step * i.astype(np.float32),
                    end - step * (steps - 1 - i).astype(np.float32)).astype(np.float32)


class HistogramObserver(UniformQuantizationObserverBase):
    """Keeps a running histogram (``bins`` bins between the running min and max) and picks
    the range that minimises the L2 quantization error (PyTorch's non-linear search, after
    caffe2's NormMinimization): bins are dropped from whichever tail holds less mass until
    the error stops falling. Per-tensor qschemes only."""

    def __init__(self, bins=2048, dtype=None, qscheme=None, reduce_range=False,
                 quant_min=None, quant_max=None, factory_kwargs=None, eps=_EPS,
                 is_dynamic=False, **kwargs):
        qscheme = Q.per_tensor_affine if qscheme is None else qscheme
        if not Q.is_per_tensor(qscheme):
            raise NotImplementedError("HistogramObserver's qscheme only support "
                                      "torch.per_tensor_symmetric and torch.per_tensor_affine.")
        if is_dynamic:
            raise NotImplementedError("HistogramObserver doesn't support dynamic quantization")
        super().__init__(dtype=dtype, qscheme=qscheme, reduce_range=reduce_range,
                         quant_min=quant_min, quant_max=quant_max,
                         factory_kwargs=factory_kwargs, eps=eps, is_dynamic=is_dynamic, **kwargs)
        self.bins = bins
        self.register_buffer("histogram", ember.zeros(bins))
        self.register_buffer("min_val", ember.tensor(float("inf")))
        self.register_buffer("max_val", ember.tensor(float("-inf")))
        self.dst_nbins = 2 ** Q.bits(self.dtype)
        self.upsample_rate = 16  # finer bins while re-binning an old histogram into a new range

    @staticmethod
    def _get_norm(delta_begin, delta_end, density):
        """L2 norm of values spread uniformly over [delta_begin, delta_end]:
        ``density * (end^3 - begin^3) / 3``."""
        return density * ((delta_end * delta_end * delta_end
                           - delta_begin * delta_begin * delta_begin) / _F32(3))

    def _compute_quantization_error(self, next_start_bin, next_end_bin):
        """The L2 error of quantizing the histogram with bins ``[start, end]`` as the range."""
        hist = _arr(self.histogram)
        bin_width = (float(_arr(self.max_val)) - float(_arr(self.min_val))) / self.bins
        dst_bin_width = bin_width * (next_end_bin - next_start_bin + 1) / self.dst_nbins
        if dst_bin_width == 0.0:
            return 0.0
        bw, dw = _F32(bin_width), _F32(dst_bin_width)
        src_begin = (np.arange(self.bins) - next_start_bin).astype(np.float32) * bw
        src_end = src_begin + bw
        dst_of_begin = np.clip(np.floor(src_begin / dw), 0, self.dst_nbins - 1).astype(np.float32)
        dst_of_begin_center = (dst_of_begin + _F32(0.5)) * dw
        dst_of_end = np.clip(np.floor(src_end / dw), 0, self.dst_nbins - 1).astype(np.float32)
        density = hist / bw
        half = _F32(dst_bin_width / 2)
        norm = self._get_norm(src_begin - dst_of_begin_center, half, density)
        norm = norm + (dst_of_end - dst_of_begin - _F32(1)) * self._get_norm(-half, half, density)
        dst_of_end_center = dst_of_end * dw + half
        norm = norm + self._get_norm(-half, src_end - dst_of_end_center, density)
        return float(norm.astype(np.float32).sum(dtype=np.float32))

    def _non_linear_param_search(self):
        """The (min, max) that minimise the quantization error, moving inward bin by bin."""
        hist = _arr(self.histogram)
        if hist.shape[0] != self.bins:
            raise AssertionError("bins mismatch")
        lo, hi = _arr(self.min_val), _arr(self.max_val)
        bin_width = (hi - lo) / _F32(self.bins)
        total = float(hist.sum(dtype=np.float32))
        csum = np.cumsum(hist, dtype=np.float32).tolist()
        stepsize = 1e-5
        alpha, beta = 0.0, 1.0
        start_bin, end_bin = 0, self.bins - 1
        norm_min = float("inf")
        while alpha < beta:
            next_alpha, next_beta = alpha + stepsize, beta - stepsize
            a_lim, b_lim = float(_F32(next_alpha * total)), float(_F32(next_beta * total))
            left, right = start_bin, end_bin
            while left < end_bin and csum[left] < a_lim:
                left += 1
            while right > start_bin and csum[right] > b_lim:
                right -= 1
            next_start, next_end = start_bin, end_bin
            # drop bins from the tail that loses less mass
            if (left - start_bin) > (end_bin - right):
                next_start, alpha = left, next_alpha
            else:
                next_end, beta = right, next_beta
            if next_start == start_bin and next_end == end_bin:
                continue
            norm = self._compute_quantization_error(next_start, next_end)
            if norm > norm_min:
                break
            norm_min = norm
            start_bin, end_bin = next_start, next_end
        new_min = lo + bin_width * _F32(start_bin)
        new_max = lo + bin_width * _F32(end_bin + 1)
        return new_min.astype(np.float32), new_max.astype(np.float32)

    def _upscale_histogram(self, hist, orig_min, orig_max, update_min, update_max):
        """Re-bin ``hist`` (over the old range) into ``bins`` bins over the new range."""
        r = self.upsample_rate
        hist = np.repeat(hist, r) / _F32(r)
        bin_size = (orig_max - orig_min) / _F32(self.bins * r)
        mids = _linspace32(orig_min, orig_max, self.bins * r + 1)[:-1] + _F32(0.5) * bin_size
        edges = _linspace32(update_min, update_max, self.bins + 1)
        idx = np.searchsorted(edges, mids, side="right") - 1
        idx = np.clip(idx, 0, self.bins - 1)
        return np.bincount(idx, weights=hist, minlength=self.bins).astype(np.float32)

    def _combine_histograms(self, orig_hist, orig_min, orig_max, update_hist, update_min,
                            update_max):
        if update_min == orig_min and update_max == orig_max:
            return orig_hist + update_hist
        if orig_min == orig_max:
            moved = _histc(np.array([orig_min], np.float32), self.bins, update_min, update_max)
            return moved * _F32(orig_hist.sum(dtype=np.float32)) + update_hist
        if update_min > orig_min or update_max < orig_max:
            raise AssertionError("the new histogram range must cover the old one")
        return update_hist + self._upscale_histogram(orig_hist, orig_min, orig_max, update_min,
                                                     update_max)

    def reset_histogram(self, x, min_val, max_val):
        _set(self.min_val, min_val)
        _set(self.max_val, max_val)
        _set(self.histogram, _histc(x, self.bins, min_val, max_val))

    def forward(self, x_orig):
        """Fold ``x`` into the running histogram (widening its range when needed)."""
        if x_orig.numel() == 0:
            return x_orig
        x = _arr(x_orig).astype(_F32, copy=False).ravel()
        x_min, x_max = x.min(), x.max()
        if x_min == -np.inf or x_max == np.inf:
            warnings.warn("torch.inf detected in input tensor, ignoring input", stacklevel=2)
            x = x[np.abs(x) != np.inf]
            if x.size == 0:
                return x_orig
            x_min, x_max = x.min(), x.max()
        cur_min, cur_max = _arr(self.min_val), _arr(self.max_val)
        if cur_min == np.inf or cur_max == -np.inf:
            self.reset_histogram(x, x_min, x_max)
            return x_orig
        new_min, new_max = np.minimum(cur_min, x_min), np.maximum(cur_max, x_max)
        update = _histc(x, self.bins, new_min, new_max)
        hist = _arr(self.histogram)
        if new_min == cur_min and new_max == cur_max:
            _set(self.histogram, hist + update)
        else:
            _set(self.histogram, self._combine_histograms(hist, cur_min, cur_max, update,
                                                          new_min, new_max))
            _set(self.min_val, new_min)
            _set(self.max_val, new_max)
        return x_orig

    def calculate_qparams(self):
        """``(scale, zero_point)`` of the error-minimising range."""
        if _arr(self.min_val) == np.inf and _arr(self.max_val) == -np.inf:
            warnings.warn("must run observer before calling calculate_qparams. Returning "
                          "default scale and zero point ", stacklevel=2)
            return ember.tensor([1.0]), ember.tensor([0])
        if self.bins != _arr(self.histogram).shape[0]:
            raise AssertionError("The number of bins in histogram should be equal to the number "
                                 "of bins supplied while making this observer")
        new_min, new_max = self._non_linear_param_search()
        return self._calculate_qparams(new_min, new_max)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}"


# ---------------------------------------------------------------- pass-through observers
class FixedQParamsObserver(ObserverBase):
    """Fixed qparams (for ops with a known output range: sigmoid, tanh ...)."""

    def __init__(self, scale, zero_point, dtype=None, qscheme=None, quant_min=0,
                 quant_max=255, is_dynamic=False, **kwargs):
        if is_dynamic:
            raise NotImplementedError("FixedQParamsObserver doesn't support dynamic "
                                      "quantization")
        super().__init__(dtype=Q.quint8 if dtype is None else dtype, is_dynamic=is_dynamic,
                         **kwargs)
        self.quant_min, self.quant_max = quant_min, quant_max
        self.register_buffer("scale", ember.tensor([scale], dtype=ember.float32))
        self.register_buffer("zero_point", ember.tensor([zero_point], dtype=ember.int32))
        self.qscheme = Q.per_tensor_affine if qscheme is None else qscheme

    def forward(self, X):
        return X

    def calculate_qparams(self):
        return self.scale, self.zero_point


class PlaceholderObserver(ObserverBase):
    """Observes nothing; carries ``dtype`` (and the dynamic flag) to ``from_float``.
    Used for float16 and for the activations of dynamic quantization."""

    def __init__(self, dtype=None, custom_op_name="", compute_dtype=None, quant_min=None,
                 quant_max=None, qscheme=None, eps=None, is_dynamic=False):
        super().__init__(dtype=ember.float32 if dtype is None else dtype,
                         is_dynamic=is_dynamic)
        if qscheme is None:
            qscheme = Q.per_tensor_affine
        if eps is None:
            eps = _EPS
        self.quant_min, self.quant_max = quant_min, quant_max
        self.qscheme, self.eps = qscheme, eps
        self.custom_op = custom_op_name
        if compute_dtype:  # the deprecated spelling of is_dynamic
            self.is_dynamic = True

    def forward(self, x):
        return x

    def extra_repr(self):
        return f"dtype={self.dtype}, is_dynamic={self.is_dynamic}"

    def calculate_qparams(self):
        raise Exception("calculate_qparams should not be called for PlaceholderObserver")  # noqa: TRY002


class RecordingObserver(ObserverBase):
    """Debugging: keeps every tensor it sees in ``tensor_val``."""

    __annotations__ = {"tensor_val": list}

    def __init__(self, dtype=None):
        super().__init__(dtype=Q.quint8 if dtype is None else dtype, is_dynamic=False)
        self.tensor_val = []

    def forward(self, x):
        self.tensor_val.append(x.clone())
        return x

    def calculate_qparams(self):
        raise Exception("calculate_qparams should not be called for RecordingObserver")  # noqa: TRY002

    def get_tensor_value(self):
        return self.tensor_val


class NoopObserver(ObserverBase):
    """Does nothing; carries ``dtype`` (float16 etc.) to ``from_float``."""

    def __init__(self, dtype=None, custom_op_name=""):
        super().__init__(dtype=ember.float16 if dtype is None else dtype, is_dynamic=False)
        self.custom_op = custom_op_name

    def forward(self, x):
        return x

    def calculate_qparams(self):
        raise Exception("calculate_qparams should not be called for NoopObserver")  # noqa: TRY002


class ReuseInputObserver(ObserverBase):
    """Marks an op whose output reuses its input's observer (reshape and friends; FX only)."""

    def __init__(self):
        super().__init__(Q.quint8, is_dynamic=False)

    def forward(self, x):
        return x

    def calculate_qparams(self):
        raise Exception("calculate_qparams should not be called for ReuseInputObserver")  # noqa: TRY002


# ---------------------------------------------------------------- state dicts
def _is_activation_post_process(module):
    from .fake_quantize import FakeQuantizeBase
    return isinstance(module, (ObserverBase, FakeQuantizeBase))


def get_observer_state_dict(mod):
    """The observer entries (``observer``/``activation_post_process`` keys) of a state dict."""
    from collections import OrderedDict
    od = OrderedDict()
    for k, v in mod.state_dict().items():
        if "observer" in k or "activation_post_process" in k:
            od[k] = v
    return od


def load_observer_state_dict(mod, obs_dict):
    """Load observer state saved by ``get_observer_state_dict`` into a prepared model."""
    missing, unexpected = [], []
    for name, module in mod.named_modules():
        prefix = name + "." if name else ""
        if _is_activation_post_process(module):
            module._load_from_state_dict(obs_dict, prefix, {}, False, missing, unexpected, [])
    for k in missing:
        if "observer" in k or "activation_post_process" in k:
            raise Exception(f"Missing keys for observer {k} in state_dict")  # noqa: TRY002
    for k in unexpected:
        if "observer" in k or "activation_post_process" in k:
            raise Exception(f"Unexpected keys for observer {k} in state_dict")  # noqa: TRY002


# ---------------------------------------------------------------- defaults (PyTorch's)
default_observer = MinMaxObserver.with_args(quant_min=0, quant_max=127)
default_placeholder_observer = PlaceholderObserver
default_debug_observer = RecordingObserver
default_weight_observer = MinMaxObserver.with_args(dtype=Q.qint8,
                                                   qscheme=Q.per_tensor_symmetric)
weight_observer_range_neg_127_to_127 = MinMaxObserver.with_args(
    dtype=Q.qint8, qscheme=Q.per_tensor_symmetric, quant_min=-127, quant_max=127,
    eps=2 ** -12)
default_histogram_observer = HistogramObserver.with_args(quant_min=0, quant_max=127)
default_per_channel_weight_observer = PerChannelMinMaxObserver.with_args(
    dtype=Q.qint8, qscheme=Q.per_channel_symmetric)
per_channel_weight_observer_range_neg_127_to_127 = PerChannelMinMaxObserver.with_args(
    dtype=Q.qint8, qscheme=Q.per_channel_symmetric, quant_min=-127, quant_max=127,
    eps=2 ** -12)
default_dynamic_quant_observer = PlaceholderObserver.with_args(
    dtype=Q.quint8, quant_min=0, quant_max=255, is_dynamic=True)
default_float_qparams_observer = PerChannelMinMaxObserver.with_args(
    dtype=Q.quint8, qscheme=Q.per_channel_affine_float_qparams, ch_axis=0)
default_float_qparams_observer_4bit = PerChannelMinMaxObserver.with_args(
    dtype=Q.quint4x2, qscheme=Q.per_channel_affine_float_qparams, ch_axis=0)
default_fixed_qparams_range_neg1to1_observer = FixedQParamsObserver.with_args(
    scale=2.0 / 256.0, zero_point=128, dtype=Q.quint8, quant_min=0, quant_max=255)
default_fixed_qparams_range_0to1_observer = FixedQParamsObserver.with_args(
    scale=1.0 / 256.0, zero_point=0, dtype=Q.quint8, quant_min=0, quant_max=255)
default_symmetric_fixed_qparams_observer = default_fixed_qparams_range_neg1to1_observer
default_affine_fixed_qparams_observer = default_fixed_qparams_range_0to1_observer
default_reuse_input_observer = ReuseInputObserver
