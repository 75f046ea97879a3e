"""Static quantized modules (``ember.ao.nn.quantized``), PyTorch's names, constructor
arguments, state-dict keys and ``from_float`` contract.

``from_float(mod)`` reads the weight's qparams from ``mod.qconfig.weight()`` (an observer:
called on the weight, then ``calculate_qparams()``) and the output's from
``mod.activation_post_process`` (an observer that saw calibration data), as PyTorch does.
Any object with that duck-typed protocol serves (ember.ao.quantization's observers, or
PyTorch's own).
"""

from __future__ import annotations

import numpy as np

from .... import _dtype as D
from ...._quantized import QTensor, quantize_per_channel, quantize_per_tensor
from ...._tensor import Tensor
from ....nn.modules.module import Module
from ....ops.creation import tensor as _tensor
from . import functional as QF

__all__ = ["Quantize", "DeQuantize", "Linear", "Conv1d", "Conv2d", "ReLU6", "Hardswish",
           "LayerNorm", "BatchNorm2d", "Embedding", "EmbeddingBag", "FloatFunctional",
           "FXFloatFunctional", "QFunctional", "LeakyReLU", "Sigmoid", "ELU", "Dropout",
           "LinearPackedParams", "EmbeddingPackedParams"]


# ============================================================================ helpers
def _scalar_of(v, kind):
    if isinstance(v, Tensor):
        return kind(v._data.reshape(-1)[0])
    return kind(v)


def _qparams_of(observer):
    """(scale, zero_point) of an output observer, as python numbers."""
    scale, zp = observer.calculate_qparams()
    return _scalar_of(scale, float), _scalar_of(zp, int)


def _observer_dtype(observer):
    d = getattr(observer, "dtype", D.quint8)
    return d if isinstance(d, D.dtype) else D.to_dtype(str(d).replace("torch.", ""))


def _quantize_weight(weight, observer):
    """Quantize a float weight with the qparams of ``observer`` (already run on it), as
    PyTorch's ``_quantize_weight``."""
    w = weight.detach() if isinstance(weight, Tensor) else weight
    w = _tensor(np.asarray(w._data, dtype=np.float32))
    scheme = getattr(observer, "qscheme", None)
    scheme_name = getattr(scheme, "name", None) or str(scheme).split(".")[-1]
    dtype = _observer_dtype(observer)
    scale, zp = observer.calculate_qparams()
    if scheme_name in ("per_tensor_affine", "per_tensor_symmetric"):
        return quantize_per_tensor(w, _scalar_of(scale, float), _scalar_of(zp, int), dtype)
    if scheme_name in ("per_channel_affine", "per_channel_symmetric"):
        s = _tensor(np.asarray(_arr(scale), dtype=np.float64))
        z = _tensor(np.asarray(_arr(zp), dtype=np.int64))
        return quantize_per_channel(w, s, z, int(getattr(observer, "ch_axis", 0)), dtype)
    if scheme_name == "per_channel_affine_float_qparams":
        s = _tensor(np.asarray(_arr(scale), dtype=np.float32))
        z = _tensor(np.asarray(_arr(zp), dtype=np.float32))
        return quantize_per_channel(w, s, z, int(getattr(observer, "ch_axis", 0)), dtype)
    raise ValueError(f"quantized weights with qscheme {scheme} are not supported")


def _arr(v):
    if isinstance(v, Tensor):
        return v._data
    if hasattr(v, "detach") and hasattr(v, "numpy"):  # a torch tensor from torch's observer
        return v.detach().numpy()
    return np.asarray(v)


def _weight_observer(mod):
    qconfig = getattr(mod, "qconfig", None)
    if qconfig is None:
        raise RuntimeError(f"from_float: {type(mod).__name__} has no qconfig; set "
                           "mod.qconfig (ember.ao.quantization.get_default_qconfig) first")
    obs = qconfig.weight()
    obs(mod.weight)
    return obs


def _output_observer(mod, use_precomputed_fake_quant=False):
    obs = getattr(mod, "activation_post_process", None)
    if obs is None:
        raise RuntimeError(f"from_float: {type(mod).__name__} has no activation_post_process "
                           "(was the model prepared and calibrated?)")
    return obs


def _load_scale_zp(module, state_dict, prefix, missing_keys, strict):
    for key, kind in (("scale", float), ("zero_point", int)):
        if prefix + key in state_dict:
            setattr(module, key, _scalar_of(state_dict.pop(prefix + key), kind))
        elif strict:
            missing_keys.append(prefix + key)


def _save_scale_zp(module, destination, prefix):
    destination[prefix + "scale"] = _tensor(module.scale, dtype=D.float32)
    destination[prefix + "zero_point"] = _tensor(module.zero_point, dtype=D.int64)


# ============================================================================ stubs
class Quantize(Module):
    """Quantizes a float input with fixed ``scale``/``zero_point``."""

    def __init__(self, scale, zero_point, dtype, factory_kwargs=None):
        super().__init__()
        self.register_buffer("scale", _tensor([float(scale)], dtype=D.float32))
        self.register_buffer("zero_point", _tensor([int(zero_point)], dtype=D.int64))
        self.dtype = D.to_dtype(dtype) if not isinstance(dtype, D.dtype) else dtype

    def forward(self, X):
        return quantize_per_tensor(X, float(self.scale._data[0]), int(self.zero_point._data[0]),
                                   self.dtype)

    @staticmethod
    def from_float(mod, use_precomputed_fake_quant=False):
        obs = _output_observer(mod)
        scale, zp = _qparams_of(obs)
        return Quantize(scale, zp, _observer_dtype(obs))

    def extra_repr(self):
        return f"scale={self.scale!r}, zero_point={self.zero_point!r}, dtype={self.dtype!r}"


class DeQuantize(Module):
    """Dequantizes a quantized input to float32."""

    def forward(self, Xq):
        return Xq.dequantize()

    @staticmethod
    def from_float(mod, use_precomputed_fake_quant=False):
        return DeQuantize()


# ============================================================================ linear
class LinearPackedParams(Module):
    """Holds a quantized Linear's weight and bias (PyTorch's ``_packed_params``; state-dict
    keys ``dtype`` and ``_packed_params`` = (weight, bias))."""

    _version = 3

    def __init__(self, dtype=D.qint8):
        super().__init__()
        self.dtype = dtype
        self._packed = None

    def set_weight_bias(self, weight, bias):
        self._packed = QF.PackedLinearWeight(weight, bias)

    def _weight_bias(self):
        return self._packed.qweight, self._packed.bias

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination[prefix + "dtype"] = self.dtype
        destination[prefix + "_packed_params"] = self._weight_bias()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if prefix + "dtype" in state_dict:
            self.dtype = state_dict.pop(prefix + "dtype")
        if prefix + "_packed_params" in state_dict:
            w, b = state_dict.pop(prefix + "_packed_params")
            self.set_weight_bias(w, b)
        elif strict:
            missing_keys.append(prefix + "_packed_params")

    def __repr__(self):
        return repr(self._weight_bias())


def _hide_packed_params_repr(module):
    """A module's repr without its packed-params child (as PyTorch prints them)."""
    extra = module.extra_repr()
    lines = [f"  ({k}): " + repr(m).replace("\n", "\n  ")
             for k, m in module._modules.items() if not isinstance(m, LinearPackedParams)]
    if not lines:
        return f"{module._get_name()}({extra})"
    body = "\n".join(([f"  {extra}"] if extra else []) + lines)
    return f"{module._get_name()}(\n{body}\n)"


def _as_bias(b):
    if b is None:
        return None
    return _tensor(np.asarray(b._data if isinstance(b, Tensor) else b, dtype=np.float32))


class Linear(Module):
    """Quantized Linear: quint8 input, qint8 weight, float bias, quint8 output with
    ``scale``/``zero_point``."""

    _version = 3
    _FLOAT_MODULE = "Linear"
    _relu = False

    def __init__(self, in_features, out_features, bias_=True, dtype=D.qint8):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        if dtype is not D.qint8:
            raise RuntimeError(f"Unsupported dtype specified for quantized Linear: {dtype}")
        wq = quantize_per_tensor(_tensor(np.zeros((out_features, in_features), np.float32)),
                                 1.0, 0, D.qint8)
        bias = _tensor(np.zeros(out_features, np.float32)) if bias_ else None
        self._packed_params = LinearPackedParams(dtype)
        self._packed_params.set_weight_bias(wq, bias)
        self.scale = 1.0
        self.zero_point = 0

    def _get_name(self):
        return "QuantizedLinear" if not self._relu else "QuantizedLinearReLU"

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"scale={self.scale}, zero_point={self.zero_point}, "
                f"qscheme={self.weight().qscheme()!r}")

    def __repr__(self):
        return _hide_packed_params_repr(self)

    def forward(self, x):
        return QF.linear(x, None, None, self.scale, self.zero_point,
                         _packed=self._packed_params._packed, _relu=self._relu)

    def weight(self):
        return self._packed_params._packed.qweight

    def bias(self):
        return self._packed_params._packed.bias

    def set_weight_bias(self, w, b):
        self._packed_params.set_weight_bias(w, _as_bias(b))

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        _save_scale_zp(self, destination, prefix)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        _load_scale_zp(self, state_dict, prefix, missing_keys, strict)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, False, missing_keys,
                                      unexpected_keys, error_msgs)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        """A quantized Linear from an observed float Linear (see the module docstring)."""
        float_mod = mod[0] if _is_fused(mod) else mod
        wobs = _weight_observer(float_mod)
        if _observer_dtype(wobs) is not D.qint8:
            raise AssertionError("Weight observer must have dtype torch.qint8")
        scale, zp = _qparams_of(_output_observer(mod))
        q = cls(float_mod.in_features, float_mod.out_features,
                bias_=float_mod.bias is not None)
        q.set_weight_bias(_quantize_weight(float_mod.weight, wobs), float_mod.bias)
        q.scale, q.zero_point = scale, zp
        return q

    @classmethod
    def from_reference(cls, ref_qlinear, output_scale, output_zero_point):
        q = cls(ref_qlinear.in_features, ref_qlinear.out_features,
                bias_=ref_qlinear.bias is not None)
        q.set_weight_bias(ref_qlinear.get_quantized_weight(), ref_qlinear.bias)
        q.scale, q.zero_point = float(output_scale), int(output_zero_point)
        return q


def _is_fused(mod):
    # a fused float module (ember.ao.nn.intrinsic LinearReLU, ConvReLU2d...) is a Sequential
    name = type(mod).__name__  # LinearReLU, ConvReLU2d, ConvBnReLU2d, BNReLU2d ...
    return hasattr(mod, "__getitem__") and (name.endswith("ReLU") or name[:-2].endswith("ReLU")) \
        and hasattr(mod, "_modules") and len(mod._modules) >= 1


# ============================================================================ conv
class _ConvNd(Module):
    _version = 2
    _NDIM = 2
    _relu = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        if padding_mode != "zeros":
            raise NotImplementedError(f"quantized Conv: padding_mode={padding_mode!r} (only "
                                      "'zeros' is supported in ember)")
        n = self._NDIM
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = QF._pair(kernel_size, n)
        self.stride = QF._pair(stride, n)
        self.padding = QF._pair(padding, n)
        self.dilation = QF._pair(dilation, n)
        self.transposed = False
        self.output_padding = (0,) * n
        self.groups = groups
        self.padding_mode = padding_mode
        wq = quantize_per_tensor(_tensor(np.zeros((out_channels, in_channels // groups)
                                                  + self.kernel_size, np.float32)),
                                 1.0, 0, D.qint8)
        self.set_weight_bias(wq, _tensor(np.zeros(out_channels, np.float32)) if bias else None)
        self.scale = 1.0
        self.zero_point = 0

    def set_weight_bias(self, w, b):
        self._packed = QF.PackedLinearWeight(w, _as_bias(b))

    def weight(self):
        return self._packed.qweight

    def bias(self):
        return self._packed.bias

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self.weight()
        destination[prefix + "bias"] = self.bias()
        _save_scale_zp(self, destination, prefix)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if prefix + "weight" in state_dict:
            self.set_weight_bias(state_dict.pop(prefix + "weight"),
                                 state_dict.pop(prefix + "bias", None))
        elif strict:
            missing_keys.append(prefix + "weight")
        _load_scale_zp(self, state_dict, prefix, missing_keys, strict)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, False, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, scale={self.scale}, zero_point={self.zero_point}")
        if self.padding != (0,) * self._NDIM:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._NDIM:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias() is None:
            s += ", bias=False"
        return s

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        """A quantized conv from an observed float conv (see the module docstring)."""
        float_mod = mod[0] if _is_fused(mod) else mod
        wobs = _weight_observer(float_mod)
        if _observer_dtype(wobs) is not D.qint8:
            raise AssertionError("Weight observer must have dtype torch.qint8")
        scale, zp = _qparams_of(_output_observer(mod))
        q = cls(float_mod.in_channels, float_mod.out_channels, float_mod.kernel_size,
                float_mod.stride, float_mod.padding, float_mod.dilation, float_mod.groups,
                float_mod.bias is not None, float_mod.padding_mode)
        q.set_weight_bias(_quantize_weight(float_mod.weight, wobs), float_mod.bias)
        q.scale, q.zero_point = scale, zp
        return q


class Conv2d(_ConvNd):
    """Quantized 2-d convolution (quint8 NCHW input, qint8 weight, float bias)."""

    _NDIM = 2

    def _get_name(self):
        return "QuantizedConv2d" if not self._relu else "QuantizedConvReLU2d"

    def forward(self, input):
        return QF.conv2d(input, None, None, self.stride, self.padding, self.dilation,
                         self.groups, self.padding_mode, self.scale, self.zero_point,
                         _packed=self._packed, _relu=self._relu)


class Conv1d(_ConvNd):
    """Quantized 1-d convolution (quint8 NCL input, qint8 weight, float bias)."""

    _NDIM = 1

    def _get_name(self):
        return "QuantizedConv1d" if not self._relu else "QuantizedConvReLU1d"

    def forward(self, input):
        return QF.conv1d(input, None, None, self.stride, self.padding, self.dilation,
                         self.groups, self.padding_mode, self.scale, self.zero_point,
                         _packed=self._packed, _relu=self._relu)


class Conv3d(_ConvNd):
    """Quantized 3-d convolution (quint8 NCDHW input, qint8 weight, float bias)."""

    _NDIM = 3

    def _get_name(self):
        return "QuantizedConv3d" if not self._relu else "QuantizedConvReLU3d"

    def forward(self, input):
        return QF.conv3d(input, None, None, self.stride, self.padding, self.dilation,
                         self.groups, self.padding_mode, self.scale, self.zero_point,
                         _packed=self._packed, _relu=self._relu)


# ============================================================================ activations
class ReLU6(Module):
    """Quantized ReLU6 (keeps the input's qparams)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input):
        return QF.relu6(input)

    def _get_name(self):
        return "QuantizedReLU6"

    @staticmethod
    def from_float(mod, use_precomputed_fake_quant=False):
        return ReLU6(getattr(mod, "inplace", False))


class _OutQParams(Module):
    """A module whose output has its own ``scale``/``zero_point`` (saved in state dicts)."""

    def __init__(self, scale, zero_point):
        super().__init__()
        # PyTorch keeps these in float32 tensor buffers: the output scale is float32-rounded
        self.scale, self.zero_point = float(np.float32(scale)), int(zero_point)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        _save_scale_zp(self, destination, prefix)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        _load_scale_zp(self, state_dict, prefix, missing_keys, strict)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)


class Hardswish(_OutQParams):
    """Quantized hardswish with output ``scale``/``zero_point``."""

    def __init__(self, scale, zero_point, device=None, dtype=None):
        super().__init__(scale, zero_point)

    def forward(self, input):
        return QF.hardswish(input, self.scale, self.zero_point)

    def _get_name(self):
        return "QuantizedHardswish"

    @staticmethod
    def from_float(mod, use_precomputed_fake_quant=False):
        return Hardswish(*_qparams_of(_output_observer(mod)))


class LeakyReLU(_OutQParams):
    """Quantized leaky ReLU with output ``scale``/``zero_point``."""

    def __init__(self, scale, zero_point, negative_slope=0.01, inplace=False, device=None,
                 dtype=None):
        super().__init__(scale, zero_point)
        self.negative_slope = negative_slope

    def forward(self, input):
        return QF.leaky_relu(input, self.negative_slope, False, self.scale, self.zero_point)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        return cls(*_qparams_of(_output_observer(mod)), mod.negative_slope)


class ELU(_OutQParams):
    """Quantized ELU with output ``scale``/``zero_point``."""

    def __init__(self, scale, zero_point, alpha=1.0):
        super().__init__(scale, zero_point)
        self.alpha = alpha

    def forward(self, input):
        return QF.elu(input, self.scale, self.zero_point, self.alpha)

    @staticmethod
    def from_float(mod, use_precomputed_fake_quant=False):
        return ELU(*_qparams_of(_output_observer(mod)), mod.alpha)


class Sigmoid(_OutQParams):
    """Quantized sigmoid with output ``output_scale``/``output_zero_point``."""

    def __init__(self, output_scale, output_zero_point):
        super().__init__(output_scale, output_zero_point)

    def forward(self, input):
        return QF._unary_float("sigmoid", input, lambda v: 1 / (1 + np.exp(-v)), self.scale,
                               self.zero_point)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        return cls(*_qparams_of(_output_observer(mod)))


class Dropout(Module):
    """Dropout on quantized tensors: the identity (inference only)."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        self.p, self.inplace = p, inplace

    def forward(self, input):
        return input

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        return cls(mod.p, mod.inplace)


# ============================================================================ normalization
class LayerNorm(Module):
    """Quantized LayerNorm: float weight/bias, output ``scale``/``zero_point``."""

    def __init__(self, normalized_shape, weight, bias, scale, zero_point, eps=1e-5,
                 elementwise_affine=True, device=None, dtype=None):
        super().__init__()
        self.normalized_shape = tuple(QF._pair(normalized_shape, 1))
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        self.weight, self.bias = weight, bias
        self.scale, self.zero_point = float(np.float32(scale)), int(zero_point)

    def forward(self, input):
        return QF.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps,
                             self.scale, self.zero_point)

    def _get_name(self):
        return "QuantizedLayerNorm"

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        _save_scale_zp(self, destination, prefix)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        _load_scale_zp(self, state_dict, prefix, missing_keys, strict)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        scale, zp = _qparams_of(_output_observer(mod))
        return cls(mod.normalized_shape, mod.weight, mod.bias, scale, zp, mod.eps,
                   mod.elementwise_affine)


class BatchNorm2d(Module):
    """Quantized BatchNorm2d (inference): running statistics, output ``scale``/``zero_point``.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, device=None, dtype=None):
        super().__init__()
        from ....nn.parameter import Parameter
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine = self.track_running_stats = True
        self.weight = Parameter(_tensor(np.ones(num_features, np.float32)))
        self.bias = Parameter(_tensor(np.zeros(num_features, np.float32)))
        self.register_buffer("running_mean", _tensor(np.zeros(num_features, np.float32)))
        self.register_buffer("running_var", _tensor(np.ones(num_features, np.float32)))
        self.register_buffer("num_batches_tracked", _tensor(0, dtype=D.int64))
        self.scale, self.zero_point = 1.0, 0

    def forward(self, input):
        return QF.batch_norm(input, self.weight, self.bias, self.running_mean,
                             self.running_var, self.eps, self.scale, self.zero_point)

    def _get_name(self):
        return "QuantizedBatchNorm2d"

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        _save_scale_zp(self, destination, prefix)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        _load_scale_zp(self, state_dict, prefix, missing_keys, strict)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        float_mod = mod[0] if _is_fused(mod) else mod
        q = cls(float_mod.num_features, float_mod.eps)
        q.weight, q.bias = float_mod.weight, float_mod.bias
        q.running_mean = float_mod.running_mean
        q.running_var = float_mod.running_var
        scale, q.zero_point = _qparams_of(_output_observer(mod))
        q.scale = float(np.float32(scale))
        return q


class BatchNorm3d(BatchNorm2d):
    """Quantized BatchNorm3d (inference) over (N, C, D, H, W) inputs."""

    def forward(self, input):
        if input.ndim != 5:
            raise ValueError("Input shape must be `(N, C, D, H, W)`!")
        return super().forward(input)

    def _get_name(self):
        return "QuantizedBatchNorm3d"


# ============================================================================ embeddings
class EmbeddingPackedParams(Module):
    """Holds a quantized embedding table (state-dict keys ``dtype``, ``_packed_weight``)."""

    _version = 1

    def __init__(self, num_embeddings, embedding_dim, dtype=D.quint8):
        super().__init__()
        self.dtype = dtype
        self.weight = None

    def set_weight(self, weight):
        if (not isinstance(weight, QTensor) or weight.dtype not in (D.quint8, D.quint4x2)
                or weight.qscheme().name != "per_channel_affine_float_qparams"):
            raise NotImplementedError(
                "quantized Embedding: ember supports quint8 and quint4x2 weights quantized "
                "per row with float qparams (per_channel_affine_float_qparams); got "
                f"{getattr(weight, 'dtype', type(weight))}")
        self.weight = weight
        # The rows as float32, looked up per call. fbgemm's packed rows keep a scale and a
        # bias = -(zero_point * scale) and compute fma(q, scale, bias): one rounding. Its
        # 4-bit rows keep both as float16 (the 8-bit ones as float32).
        sc = np.asarray(weight._scales, dtype=np.float32)[:, None]
        bias = (-(np.asarray(weight._zps, dtype=np.float32)[:, None] * sc)).astype(np.float32)
        if weight.dtype is D.quint4x2:
            sc = sc.astype(np.float16).astype(np.float32)
            bias = bias.astype(np.float16).astype(np.float32)
        self._table = (weight._q.astype(np.float64) * sc + bias).astype(np.float32)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination[prefix + "dtype"] = self.dtype
        destination[prefix + "_packed_weight"] = self.weight

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        if prefix + "dtype" in state_dict:
            self.dtype = state_dict.pop(prefix + "dtype")
        if prefix + "_packed_weight" in state_dict:
            self.set_weight(state_dict.pop(prefix + "_packed_weight"))
        elif strict:
            missing_keys.append(prefix + "_packed_weight")


def _embedding_weight_from_float(mod):
    wobs = _weight_observer(mod)
    if _observer_dtype(wobs) not in (D.quint8, D.quint4x2):
        raise NotImplementedError("quantized Embedding: ember supports quint8 and quint4x2 "
                                  f"weights, the observer has {_observer_dtype(wobs)}")
    return _quantize_weight(mod.weight, wobs)


class Embedding(Module):
    """Quantized Embedding: quint8 or quint4x2 rows with float per-row qparams; returns
    float32."""

    _version = 1

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=2.0, scale_grad_by_freq=False, sparse=False, _weight=None,
                 dtype=D.quint8):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.dtype = dtype
        if _weight is None:
            s = _tensor(np.ones(num_embeddings, np.float32))
            z = _tensor(np.zeros(num_embeddings, np.float32))
            _weight = quantize_per_channel(
                _tensor(np.zeros((num_embeddings, embedding_dim), np.float32)), s, z, 0,
                dtype)
        self._packed_params = EmbeddingPackedParams(num_embeddings, embedding_dim, dtype)
        self._packed_params.set_weight(_weight)

    def forward(self, indices):
        idx = indices._data if isinstance(indices, Tensor) else np.asarray(indices)
        if idx.dtype.kind not in "iu":
            raise RuntimeError(f"quantized Embedding: indices must be integers, got {idx.dtype}")
        return _tensor(self._packed_params._table[idx])

    def weight(self):
        return self._packed_params.weight

    def set_weight(self, w):
        self._packed_params.set_weight(w)

    def _get_name(self):
        return "QuantizedEmbedding"

    def extra_repr(self):
        return (f"num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, "
                f"dtype={self.dtype!r}, qscheme={self.weight().qscheme()!r}")

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        w = _embedding_weight_from_float(mod)
        return cls(mod.num_embeddings, mod.embedding_dim, _weight=w, dtype=w.dtype)


class EmbeddingBag(Embedding):
    """Quantized EmbeddingBag (sum/mean/max over bags of quint8 or quint4x2 rows); returns
    float32."""

    def __init__(self, num_embeddings, embedding_dim, max_norm=None, norm_type=2.0,
                 scale_grad_by_freq=False, mode="sum", sparse=False, _weight=None,
                 include_last_offset=False, dtype=D.quint8):
        super().__init__(num_embeddings, embedding_dim, _weight=_weight, dtype=dtype)
        self.mode = mode
        self.include_last_offset = include_last_offset

    def forward(self, indices, offsets=None, per_sample_weights=None,
                compressed_indices_mapping=None):
        from ....nn import functional as F
        table = _tensor(self._packed_params._table)
        return F.embedding_bag(indices, table, offsets, mode=self.mode,
                               per_sample_weights=per_sample_weights,
                               include_last_offset=self.include_last_offset)

    def _get_name(self):
        return "QuantizedEmbeddingBag"

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        w = _embedding_weight_from_float(mod)
        return cls(mod.num_embeddings, mod.embedding_dim, mode=mod.mode, _weight=w,
                   include_last_offset=mod.include_last_offset, dtype=w.dtype)


# ============================================================================ functional wrappers
class FloatFunctional(Module):
    """Float ops with an observer slot (``activation_post_process``) for eager-mode
    quantization; ``convert`` swaps it for :class:`QFunctional`."""

    def __init__(self):
        super().__init__()
        from ....nn.modules.linear import Identity
        self.activation_post_process = Identity()

    def forward(self, x):
        raise RuntimeError("FloatFunctional is not intended to use the 'forward'. Please use "
                           "the underlying operation")

    def add(self, x, y):
        return self.activation_post_process(x + y)

    def add_scalar(self, x, y):
        return x + y  # not observed: the quantized op needs no output qparams

    def mul(self, x, y):
        return self.activation_post_process(x * y)

    def mul_scalar(self, x, y):
        return x * y

    def cat(self, x, dim=0):
        from .... import cat
        return self.activation_post_process(cat(x, dim=dim))

    def add_relu(self, x, y):
        from ....nn import functional as F
        return self.activation_post_process(F.relu(x + y))

    def matmul(self, x, y):
        return self.activation_post_process(x @ y)


class FXFloatFunctional(FloatFunctional):
    """FloatFunctional without an observer (the FX flow inserts its own)."""

    def __init__(self):
        Module.__init__(self)

    def add(self, x, y):
        return x + y

    def mul(self, x, y):
        return x * y

    def cat(self, x, dim=0):
        from .... import cat
        return cat(x, dim=dim)

    def add_relu(self, x, y):
        from ....nn import functional as F
        return F.relu(x + y)

    def matmul(self, x, y):
        return x @ y


class QFunctional(Module):
    """Quantized ops with output ``scale``/``zero_point`` (what FloatFunctional becomes)."""

    def __init__(self):
        super().__init__()
        from ....nn.modules.linear import Identity
        self.scale, self.zero_point = 1.0, 0
        self.activation_post_process = Identity()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        _save_scale_zp(self, destination, prefix)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        _load_scale_zp(self, state_dict, prefix, missing_keys, strict)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _get_name(self):
        return "QFunctional"

    def extra_repr(self):
        return f"scale={self.scale}, zero_point={self.zero_point}"

    def forward(self, x):
        raise RuntimeError("Functional is not intended to use the 'forward'. Please use the "
                           "underlying operation")

    def add(self, x, y):
        return self.activation_post_process(QF.add(x, y, self.scale, self.zero_point))

    def add_scalar(self, x, y):
        return QF.add_scalar(x, y)

    def mul(self, x, y):
        return self.activation_post_process(QF.mul(x, y, self.scale, self.zero_point))

    def mul_scalar(self, x, y):
        return QF.mul_scalar(x, y)

    def cat(self, x, dim=0):
        return self.activation_post_process(QF.cat(x, dim, self.scale, self.zero_point))

    def add_relu(self, x, y):
        return self.activation_post_process(QF.add_relu(x, y, self.scale, self.zero_point))

    def matmul(self, x, y):
        raise NotImplementedError("QFunctional.matmul: quantized matmul is not supported in "
                                  "ember")

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant=False):
        q = cls()
        q.scale, q.zero_point = _qparams_of(_output_observer(mod))
        return q
