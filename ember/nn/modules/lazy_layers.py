"""The lazy convolution and normalisation layers (``LazyConv2d``, ``LazyBatchNorm1d``, ...):
their input size is read from the first input (see ``lazy.LazyModuleMixin``)."""

from __future__ import annotations

import warnings

from ..parameter import UninitializedBuffer, UninitializedParameter
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from .conv import (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d,
                   ConvTranspose3d)
from .instancenorm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d
from .lazy import LazyModuleMixin

__all__ = ["LazyModuleMixin", "LazyConv1d", "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d",
           "LazyConvTranspose2d", "LazyConvTranspose3d", "LazyBatchNorm1d", "LazyBatchNorm2d",
           "LazyBatchNorm3d", "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d"]


def _quietly(build):
    # the eager layer is built with 0 input channels: initialising its empty weight warns
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build()


# ---------------------------------------------------------------------- convolutions
class _LazyConvMixin(LazyModuleMixin):
    _spatial = 0

    def _make_lazy(self, dtype):
        # into the dicts directly: the entries keep their order (state_dict keys as PyTorch's)
        self._parameters["weight"] = UninitializedParameter(dtype=dtype)
        if self.bias is not None:
            self._parameters["bias"] = UninitializedParameter(dtype=dtype)
        self._lazy_setup()

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.in_channels != 0:
            super().reset_parameters()

    def _in_channels(self, input):
        n = self._spatial
        if input.ndim not in (n + 1, n + 2):
            raise RuntimeError(f"Expected {n + 1}D (unbatched) or {n + 2}D (batched) input to "
                               f"{type(self).__name__}, but got input of size: "
                               f"{list(input.shape)}")
        return input.shape[1] if input.ndim == n + 2 else input.shape[0]

    def initialize_parameters(self, input, *args, **kwargs):
        if not self.has_uninitialized_params():
            return
        self.in_channels = self._in_channels(input)
        if self.in_channels % self.groups != 0:
            raise ValueError("in_channels must be divisible by groups")
        k = tuple(self.kernel_size)
        if self.transposed:
            shape = (self.in_channels, self.out_channels // self.groups) + k
        else:
            shape = (self.out_channels, self.in_channels // self.groups) + k
        self.weight.materialize(shape)
        if self.bias is not None:
            self.bias.materialize((self.out_channels,))
        self.reset_parameters()


def _lazy_conv(name, base, spatial, transposed):
    def __init__(self, out_channels, kernel_size, stride=1, padding=0, *rest, device=None,
                 dtype=None, **kw):
        _quietly(lambda: base.__init__(self, 0, out_channels, kernel_size, stride, padding,
                                       *rest, device=device, dtype=dtype, **kw))
        self.in_channels = 0
        self._make_lazy(dtype)

    doc = (f"A ``{base.__name__}`` whose ``in_channels`` is read from the first input "
           f"(becomes a ``{base.__name__}``).")
    return type(name, (_LazyConvMixin, base), {"__init__": __init__, "cls_to_become": base,
                                               "_spatial": spatial, "__doc__": doc})


LazyConv1d = _lazy_conv("LazyConv1d", Conv1d, 1, False)
LazyConv2d = _lazy_conv("LazyConv2d", Conv2d, 2, False)
LazyConv3d = _lazy_conv("LazyConv3d", Conv3d, 3, False)
LazyConvTranspose1d = _lazy_conv("LazyConvTranspose1d", ConvTranspose1d, 1, True)
LazyConvTranspose2d = _lazy_conv("LazyConvTranspose2d", ConvTranspose2d, 2, True)
LazyConvTranspose3d = _lazy_conv("LazyConvTranspose3d", ConvTranspose3d, 3, True)


# ---------------------------------------------------------------------- normalisation
class _LazyNormMixin(LazyModuleMixin):
    def _make_lazy(self, dtype):
        if self.affine:
            self._parameters["weight"] = UninitializedParameter(dtype=dtype)
            if self.bias is not None:
                self._parameters["bias"] = UninitializedParameter(dtype=dtype)
        if self.track_running_stats:
            self._buffers["running_mean"] = UninitializedBuffer(dtype=dtype)
            self._buffers["running_var"] = UninitializedBuffer(dtype=dtype)
        self._lazy_setup()

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.num_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input, *args, **kwargs):
        if not self.has_uninitialized_params():
            return
        self.num_features = input.shape[1]  # PyTorch reads dim 1, batched or not
        c = (self.num_features,)
        if self.affine:
            self.weight.materialize(c)
            if self.bias is not None:
                self.bias.materialize(c)
        if self.track_running_stats:
            self.running_mean.materialize(c)
            self.running_var.materialize(c)
        self.reset_parameters()


def _lazy_norm(name, base, affine_default, track_default):
    # (PyTorch's lazy instance norms default to affine=True, track_running_stats=True too,
    # unlike the eager ones)
    def __init__(self, eps=1e-5, momentum=0.1, affine=affine_default,
                 track_running_stats=track_default, device=None, dtype=None):
        _quietly(lambda: base.__init__(self, 0, eps, momentum, affine, track_running_stats,
                                       device=device, dtype=dtype))
        self._make_lazy(dtype)

    doc = (f"A ``{base.__name__}`` whose ``num_features`` is read from the first input "
           f"(becomes a ``{base.__name__}``).")
    return type(name, (_LazyNormMixin, base), {"__init__": __init__, "cls_to_become": base,
                                               "__doc__": doc})


LazyBatchNorm1d = _lazy_norm("LazyBatchNorm1d", BatchNorm1d, True, True)
LazyBatchNorm2d = _lazy_norm("LazyBatchNorm2d", BatchNorm2d, True, True)
LazyBatchNorm3d = _lazy_norm("LazyBatchNorm3d", BatchNorm3d, True, True)
LazyInstanceNorm1d = _lazy_norm("LazyInstanceNorm1d", InstanceNorm1d, True, True)
LazyInstanceNorm2d = _lazy_norm("LazyInstanceNorm2d", InstanceNorm2d, True, True)
LazyInstanceNorm3d = _lazy_norm("LazyInstanceNorm3d", InstanceNorm3d, True, True)

for _cls in (LazyConv1d, LazyConv2d, LazyConv3d, LazyConvTranspose1d, LazyConvTranspose2d,
             LazyConvTranspose3d, LazyBatchNorm1d, LazyBatchNorm2d, LazyBatchNorm3d,
             LazyInstanceNorm1d, LazyInstanceNorm2d, LazyInstanceNorm3d):
    _cls.__module__ = __name__
del _cls
