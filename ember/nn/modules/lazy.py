"""Lazy modules: layers whose input size is read from the first input they see
(``LazyConv2d(out_channels, k)``, ``LazyBatchNorm1d()``...), as PyTorch's.

A lazy layer holds ``UninitializedParameter``/``UninitializedBuffer`` placeholders; a forward
pre-hook materializes them in place on the first call (so an optimizer built before it sees
the real parameters), runs ``reset_parameters`` and turns the layer into its ordinary class
(``cls_to_become``)."""

from __future__ import annotations

from ..parameter import UninitializedBuffer, UninitializedParameter
from .batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .instancenorm import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d

__all__ = ["LazyModuleMixin", "LazyConv1d", "LazyConv2d", "LazyConv3d", "LazyConvTranspose1d",
           "LazyConvTranspose2d", "LazyConvTranspose3d", "LazyBatchNorm1d", "LazyBatchNorm2d",
           "LazyBatchNorm3d", "LazyInstanceNorm1d", "LazyInstanceNorm2d", "LazyInstanceNorm3d"]


class LazyModuleMixin:
    """Materializes a layer's placeholders from its first input (see the module docstring).

    Subclasses define ``initialize_parameters(input)`` and ``cls_to_become``."""

    cls_to_become = None

    def _lazy_setup(self):
        self._initialize_hook = self.register_forward_pre_hook(_lazy_pre_hook)

    def has_uninitialized_params(self):
        """Whether a placeholder parameter or buffer is still waiting for an input."""
        return any(isinstance(t, (UninitializedParameter, UninitializedBuffer))
                   for t in list(self._parameters.values()) + list(self._buffers.values()))

    def initialize_parameters(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define initialize_parameters")


def _lazy_pre_hook(module, args):
    module.initialize_parameters(*args)
    if module.has_uninitialized_params():
        raise RuntimeError(f"module {module._get_name()} has not been fully initialized")
    module._initialize_hook.remove()
    del module._initialize_hook
    if module.cls_to_become is not None:
        module.__class__ = module.cls_to_become


def _channels(input, nd):
    # batched input (N, C, *spatial) or unbatched (C, *spatial)
    return input.shape[1] if input.ndim == nd + 2 else input.shape[0]


class _LazyConvXdMixin(LazyModuleMixin):
    _nd = 2

    def _lazy_conv_init(self, bias, dtype):
        self.weight = UninitializedParameter(dtype=dtype)
        if bias:
            self.bias = UninitializedParameter(dtype=dtype)
        self._lazy_setup()

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.in_channels != 0:
            super().reset_parameters()

    def initialize_parameters(self, input, *args, **kwargs):
        if not self.has_uninitialized_params():
            return
        self.in_channels = _channels(input, self._nd)
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


def _lazy_conv(name, base, nd, transposed):
    def __init__(self, out_channels, kernel_size, *args, bias=True, device=None, dtype=None,
                 **kwargs):
        # built with a placeholder of ``groups`` input channels, replaced on first use
        groups = kwargs.get("groups", args[4 if transposed else 3]
                            if len(args) > (4 if transposed else 3) else 1)
        base.__init__(self, groups, out_channels, kernel_size, *args, bias=bias,
                      device=device, dtype=dtype, **kwargs)
        self.in_channels = 0
        self._lazy_conv_init(bias, dtype)

    return type(name, (_LazyConvXdMixin, base), {
        "__init__": __init__, "cls_to_become": base, "_nd": nd,
        "__doc__": f"A {base.__name__} whose ``in_channels`` is read from the first input.",
        "__module__": __name__})


LazyConv1d = _lazy_conv("LazyConv1d", Conv1d, 1, False)
LazyConv2d = _lazy_conv("LazyConv2d", Conv2d, 2, False)
LazyConv3d = _lazy_conv("LazyConv3d", Conv3d, 3, False)
LazyConvTranspose1d = _lazy_conv("LazyConvTranspose1d", ConvTranspose1d, 1, True)
LazyConvTranspose2d = _lazy_conv("LazyConvTranspose2d", ConvTranspose2d, 2, True)
LazyConvTranspose3d = _lazy_conv("LazyConvTranspose3d", ConvTranspose3d, 3, True)


class _LazyNormBase(LazyModuleMixin):
    _nd = 2
    _always_batched = False  # batch norm's channels are dim 1 even for (N, C) input

    def reset_parameters(self):
        if not self.has_uninitialized_params() and self.num_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input, *args, **kwargs):
        if not self.has_uninitialized_params():
            return
        self.num_features = input.shape[1] if self._always_batched else \
            _channels(input, self._nd)
        for name in ("weight", "bias", "running_mean", "running_var"):
            t = getattr(self, name, None)
            if isinstance(t, (UninitializedParameter, UninitializedBuffer)):
                t.materialize((self.num_features,))
        self.reset_parameters()


def _lazy_norm(name, base, nd):
    def __init__(self, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None):
        _lazy_norm_init(self, base, eps, momentum, affine, track_running_stats, device, dtype)

    return type(name, (_LazyNormBase, base), {
        "__init__": __init__, "cls_to_become": base, "_nd": nd, "_always_batched": True,
        "__doc__": f"A {base.__name__} whose ``num_features`` is read from the first input.",
        "__module__": __name__})


LazyBatchNorm1d = _lazy_norm("LazyBatchNorm1d", BatchNorm1d, 1)
LazyBatchNorm2d = _lazy_norm("LazyBatchNorm2d", BatchNorm2d, 2)
LazyBatchNorm3d = _lazy_norm("LazyBatchNorm3d", BatchNorm3d, 3)


def _lazy_instance_norm(name, base, nd):
    def __init__(self, eps=1e-5, momentum=0.1, affine=False, track_running_stats=False,
                 device=None, dtype=None):
        _lazy_norm_init(self, base, eps, momentum, affine, track_running_stats, device, dtype)

    return type(name, (_LazyNormBase, base), {
        "__init__": __init__, "cls_to_become": base, "_nd": nd,
        "__doc__": f"A {base.__name__} whose ``num_features`` is read from the first input.",
        "__module__": __name__})


def _lazy_norm_init(self, base, eps, momentum, affine, track_running_stats, device, dtype):
    base.__init__(self, 0, eps, momentum, affine, track_running_stats, device=device,
                  dtype=dtype)
    if affine:
        self.weight = UninitializedParameter(dtype=dtype)
        self.bias = UninitializedParameter(dtype=dtype)
    if track_running_stats:
        self.running_mean = UninitializedBuffer(dtype=dtype)
        self.running_var = UninitializedBuffer(dtype=dtype)
    self._lazy_setup()


LazyInstanceNorm1d = _lazy_instance_norm("LazyInstanceNorm1d", InstanceNorm1d, 1)
LazyInstanceNorm2d = _lazy_instance_norm("LazyInstanceNorm2d", InstanceNorm2d, 2)
LazyInstanceNorm3d = _lazy_instance_norm("LazyInstanceNorm3d", InstanceNorm3d, 3)
