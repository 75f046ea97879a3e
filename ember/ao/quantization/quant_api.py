"""Weight-only quantization in torchao's shape: ``quantize_(model, int8_weight_only())`` and
``quantize_(model, int4_weight_only(group_size=128))`` rewrite the model's ``nn.Linear``
layers in place so that their weights are stored as integers.

* int8: symmetric, one scale per output channel (``scale = max|w_row| / 127.5``, zero point
  0, integers in [-128, 127]). Because the scale is per output row it factors out of the
  matmul: ``y = (x @ q.T) * scale + bias``, so the weight is never dequantized.
* int4: asymmetric, one (scale, zero) pair per group of ``group_size`` input columns
  (torchao's "float zero point" scheme: ``scale = (max - min) / 15``,
  ``zero = min + 8 * scale``, ``w ≈ (q - 8) * scale + zero`` with ``q`` in [0, 15]), two
  values packed per byte. The forward dequantizes blocks of output rows on the fly, so the
  float copy alive at any time is at most one block.

Weight memory, float32 → int8: 1/4 plus one float32 scale per row; → int4 (group 128): 1/8
plus two float32 per 128 weights (≈ 0.14).
"""

from __future__ import annotations

import numpy as np

import ember
from ember import nn
from ember.nn import functional as F

__all__ = ["quantize_", "int8_weight_only", "int4_weight_only", "Int8WeightOnlyConfig",
           "Int4WeightOnlyConfig", "Int8WeightOnlyLinear", "Int4WeightOnlyLinear"]

_F32 = np.float32
_EPS = float(np.finfo(np.float32).eps)


class Int8WeightOnlyConfig:
    """Config for ``quantize_``: int8 weights, one symmetric scale per output channel
    (``group_size=None``) or per group of input columns."""

    def __init__(self, group_size=None):
        self.group_size = group_size

    def __repr__(self):
        return f"Int8WeightOnlyConfig(group_size={self.group_size})"


class Int4WeightOnlyConfig:
    """Config for ``quantize_``: packed uint4 weights with a float scale and zero point per
    group of ``group_size`` input columns (32, 64, 128 or 256)."""

    def __init__(self, group_size=128):
        if group_size not in (32, 64, 128, 256):
            raise ValueError(f"int4_weight_only: group_size must be one of 32, 64, 128, 256, got "
                             f"{group_size}")
        self.group_size = group_size

    def __repr__(self):
        return f"Int4WeightOnlyConfig(group_size={self.group_size})"


def int8_weight_only(group_size=None):
    """torchao's spelling of ``Int8WeightOnlyConfig``."""
    return Int8WeightOnlyConfig(group_size)


def int4_weight_only(group_size=128):
    """torchao's spelling of ``Int4WeightOnlyConfig``."""
    return Int4WeightOnlyConfig(group_size)


class _WeightOnlyLinear(nn.Linear):
    """Base: an ``nn.Linear`` (``isinstance`` still holds) whose weight is stored quantized.
    ``weight`` reads back the dequantized float weight."""

    def __init__(self, in_features, out_features, bias):
        nn.Module.__init__(self)
        self.in_features, self.out_features = in_features, out_features
        if bias is not None:
            self.bias = nn.Parameter(bias.detach().clone())
        else:
            self.register_parameter("bias", None)

    @property
    def weight(self):
        return ember.from_numpy(self._dequantized_rows(0, self.out_features))

    def weight_nbytes(self):
        """Bytes held by the quantized weight and its qparams."""
        return sum(b.numel() * b.element_size() for n, b in self.named_buffers())

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, {self._scheme()}")


def _check_linear(mod, op):
    if mod.weight.dim() != 2:
        raise ValueError(f"{op}: expected a 2-D Linear weight, got shape "
                         f"{list(mod.weight.shape)}")
    if not mod.weight.dtype.is_floating_point:
        raise TypeError(f"{op}: expected a floating point weight, got {mod.weight.dtype}")


class Int8WeightOnlyLinear(_WeightOnlyLinear):
    """Linear with int8 weights and per-channel (or per-group) float32 scales."""

    def __init__(self, mod, group_size=None):
        _check_linear(mod, "int8_weight_only")
        super().__init__(mod.in_features, mod.out_features, mod.bias)
        w = mod.weight.detach().numpy().astype(_F32)
        out, k = w.shape
        g = k if group_size is None else group_size
        if k % g:
            raise ValueError(f"int8_weight_only: in_features ({k}) is not a multiple of "
                             f"group_size ({g})")
        wg = w.reshape(out, k // g, g)
        scale = np.maximum(np.abs(wg).max(axis=2) / _F32(127.5), _F32(_EPS)).astype(_F32)
        # x * (1 / scale), rounded half to even: PyTorch's quantize arithmetic, bit for bit
        inv = (_F32(1) / scale)[:, :, None]
        q = np.clip(np.rint(wg * inv), -128, 127).astype(np.int8)
        self.group_size = g
        self.register_buffer("weight_int8", ember.from_numpy(q.reshape(out, k)))
        self.register_buffer("weight_scale", ember.from_numpy(scale))

    def _scheme(self):
        return f"int8 weight, group_size={self.group_size}"

    def _dequantized_rows(self, lo, hi):
        q = self.weight_int8._data[lo:hi]
        s = self.weight_scale._data[lo:hi]
        g = self.group_size
        return (q.reshape(q.shape[0], -1, g).astype(_F32) * s[:, :, None]).reshape(q.shape)

    def forward(self, x):
        if self.group_size == self.in_features:
            # the per-row scale factors out of the matmul: no dequantized weight at all
            q = ember.from_numpy(self.weight_int8._data.astype(x.dtype.np))
            y = F.linear(x, q) * ember.from_numpy(self.weight_scale._data[:, 0].astype(
                x.dtype.np))
            return y + self.bias if self.bias is not None else y
        return F.linear(x, ember.from_numpy(self._dequantized_rows(0, self.out_features)
                                            .astype(x.dtype.np)), self.bias)


_BLOCK_ROWS = 1024  # rows of the int4 weight dequantized at a time


class Int4WeightOnlyLinear(_WeightOnlyLinear):
    """Linear with packed uint4 weights (two per byte) and a float32 scale and zero point per
    group of ``group_size`` input columns."""

    def __init__(self, mod, group_size=128):
        _check_linear(mod, "int4_weight_only")
        super().__init__(mod.in_features, mod.out_features, mod.bias)
        w = mod.weight.detach().numpy().astype(_F32)
        out, k = w.shape
        if k % group_size:
            raise ValueError(f"int4_weight_only: in_features ({k}) is not a multiple of "
                             f"group_size ({group_size})")
        wg = w.reshape(out, k // group_size, group_size)
        lo, hi = wg.min(axis=2), wg.max(axis=2)
        scale = np.maximum((hi - lo) / _F32(15), _F32(1e-6)).astype(_F32)
        zero = (lo + scale * _F32(8)).astype(_F32)
        q = np.clip(np.rint((wg - zero[:, :, None]) / scale[:, :, None] + 8), 0, 15)
        q = q.astype(np.uint8).reshape(out, k)
        packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)  # low nibble first
        self.group_size = group_size
        self.register_buffer("weight_int4x2", ember.from_numpy(packed))
        self.register_buffer("weight_scale", ember.from_numpy(scale))
        self.register_buffer("weight_zero", ember.from_numpy(zero))

    def _scheme(self):
        return f"int4 weight, group_size={self.group_size}"

    def _dequantized_rows(self, lo, hi):
        p = self.weight_int4x2._data[lo:hi]
        q = np.empty((p.shape[0], self.in_features), np.int8)
        q[:, 0::2] = p & 0x0F
        q[:, 1::2] = p >> 4
        g = self.group_size
        s = self.weight_scale._data[lo:hi, :, None]
        z = self.weight_zero._data[lo:hi, :, None]
        w = (q.reshape(q.shape[0], -1, g) - np.int8(8)).astype(_F32) * s + z
        return w.reshape(q.shape[0], self.in_features)

    def forward(self, x):
        parts = []
        for lo in range(0, self.out_features, _BLOCK_ROWS):
            hi = min(lo + _BLOCK_ROWS, self.out_features)
            w = ember.from_numpy(self._dequantized_rows(lo, hi).astype(x.dtype.np))
            parts.append(F.linear(x, w))
        y = parts[0] if len(parts) == 1 else ember.cat(parts, dim=-1)
        return y + self.bias if self.bias is not None else y


def _is_linear(mod, fqn=""):
    return isinstance(mod, nn.Linear) and not isinstance(mod, _WeightOnlyLinear)


def _replace(module, config, filter_fn, prefix):
    for name, child in list(module.named_children()):
        fqn = f"{prefix}.{name}" if prefix else name
        if filter_fn(child, fqn):
            if isinstance(config, Int8WeightOnlyConfig):
                new = Int8WeightOnlyLinear(child, config.group_size)
            else:
                new = Int4WeightOnlyLinear(child, config.group_size)
            new.train(child.training)
            setattr(module, name, new)
        else:
            _replace(child, config, filter_fn, fqn)


def quantize_(model, config, filter_fn=None, device=None):
    """Quantize the weights of ``model``'s Linear layers in place (torchao's ``quantize_``).

    ``config`` is ``int8_weight_only()`` or ``int4_weight_only(group_size=128)``;
    ``filter_fn(module, fqn)`` picks the modules (default: every ``nn.Linear``). Activations
    stay in float. Returns None, as torchao's does."""
    if not isinstance(config, (Int8WeightOnlyConfig, Int4WeightOnlyConfig)):
        raise NotImplementedError(f"quantize_: config {config!r} is not supported; ember has "
                                  "int8_weight_only() and int4_weight_only(group_size)")
    filter_fn = filter_fn or _is_linear
    if filter_fn(model, ""):
        raise ValueError("quantize_: the model itself is a Linear; wrap it in a module first")
    _replace(model, config, filter_fn, "")
