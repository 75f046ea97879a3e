"""PyTorch's long tail of names, built from ops ember already has: alias spellings
(``arccos_``), in-place forms (``cumsum_``), top-level spellings of functional ops with
PyTorch's native argument order (``torch.embedding(weight, input)``, ``torch.batch_norm``,
losses whose ``reduction`` is an int), legacy methods (``resize``, ``storage``) and CPU answers
for device queries (``Stream``, ``Event``).

``install`` adds each name only where ember does not define it already, so a real
implementation elsewhere always wins. Nothing here is imported at ``import ember`` beyond this
file: ``nn.functional`` and friends load when a function is first called.
"""

from __future__ import annotations

import builtins
import math

# ============================================================================ Tensor methods


def _F():
    from .nn import functional
    return functional


def _write_back(self, result):
    from ._tensor_methods import _write_back as wb
    return wb(self, result)


def _inplace_of(name):
    """``x.<name>_(...)``: the out-of-place op, written back into ``x``. The op runs on a
    copy, so that what its backward saves is not the tensor the write then changes."""
    def method(self, *args, **kwargs):
        return _write_back(self, getattr(self.clone(), name)(*args, **kwargs))
    method.__name__ = name + "_"
    method.__doc__ = f"In-place form of :meth:`Tensor.{name}`."
    return method


def _alias(target):
    def method(self, *args, **kwargs):
        return getattr(self, target)(*args, **kwargs)
    method.__name__ = target
    return method


def _resize(self, *sizes):
    """``Tensor.resize`` (legacy, autograd-safe): a new shape with the same element count."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    n = math.prod(sizes)
    if n != self.numel():
        raise RuntimeError(f"requested resize to {'x'.join(map(str, sizes))} ({n} elements in "
                           f"total), but the given tensor has a size of "
                           f"{'x'.join(map(str, self.shape))} ({self.numel()} elements). "
                           f"autograd's resize can only change the shape of a given tensor, "
                           f"while preserving the number of elements.")
    return self.contiguous().view(*sizes)


def _as_subclass(self, cls):
    """The same data and autograd history, seen as an instance of ``cls``."""
    from ._tensor import Tensor
    if not (isinstance(cls, type) and issubclass(cls, Tensor)):
        raise TypeError(f"as_subclass: cls must be a subclass of Tensor, got {cls!r}")
    out = self.view(self.shape)
    out.__class__ = cls
    return out


def _is_same_size(self, other):
    return tuple(self.shape) == tuple(other.shape)


def _storage(self):
    from ._storage import typed_storage
    return typed_storage(self)


def _storage_type(self):
    from ._storage import _TYPED_NAMES, typed_storage_classes
    return typed_storage_classes()[_TYPED_NAMES[self.dtype.name]]


def _multinomial(self, num_samples, replacement=False, *, generator=None):
    import ember
    return ember.multinomial(self, num_samples, replacement, generator=generator)


def _bernoulli(self, p=None, *, generator=None):
    import ember
    if p is None:
        return ember.bernoulli(self, generator=generator)
    return ember.empty_like(self).bernoulli_(p, generator=generator)


def _const_data_ptr(self):
    return self.data_ptr()


def _removed(name, replacement):
    def method(self, *args, **kwargs):
        raise RuntimeError(f"This function was deprecated since version 1.9 and is now removed. "
                           f"Please use the `{replacement}` function instead.")
    method.__name__ = name
    return method


def _nonzero_static(self, *, size, fill_value=-1):
    """The indices of non-zero elements, padded with ``fill_value`` (or cut) to ``size`` rows."""
    import ember
    nz = self.nonzero()
    if nz.shape[0] >= size:
        return nz[:size]
    pad = ember.full((size - nz.shape[0], self.ndim), fill_value, dtype=ember.int64)
    return ember.cat([nz, pad])


TENSOR_METHODS = {
    "arccos_": _alias("acos_"), "arccosh_": _alias("acosh_"), "arcsin_": _alias("asin_"),
    "arcsinh_": _alias("asinh_"), "arctan_": _alias("atan_"), "arctanh_": _alias("atanh_"),
    "arctan2_": _alias("atan2_"), "greater_": _alias("gt_"), "greater_equal_": _alias("ge_"),
    "less_": _alias("lt_"), "less_equal_": _alias("le_"), "not_equal_": _alias("ne_"),
    "cumsum_": _inplace_of("cumsum"), "cumprod_": _inplace_of("cumprod"),
    "igamma_": _inplace_of("igamma"), "igammac_": _inplace_of("igammac"),
    "mvlgamma_": _inplace_of("mvlgamma"),
    "bitwise_left_shift_": _inplace_of("bitwise_left_shift"),
    "bitwise_right_shift_": _inplace_of("bitwise_right_shift"),
    "is_conj": lambda self: False, "is_neg": lambda self: False,
    "is_nonzero": lambda self: __import__("ember").is_nonzero(self),
    "is_same_size": _is_same_size, "resize": _resize,
    "resize_as": lambda self, other: _resize(self, *other.shape),
    "unsafe_chunk": _alias("chunk"), "unsafe_split": _alias("split"),
    "unsafe_split_with_sizes": _alias("split_with_sizes"),
    "prelu": lambda self, weight: _F().prelu(self, weight),
    "hardshrink": lambda self, lambd=0.5: _F().hardshrink(self, lambd),
    "as_subclass": _as_subclass, "const_data_ptr": _const_data_ptr,
    "storage": _storage, "storage_type": _storage_type,
    "multinomial": _multinomial, "bernoulli": _bernoulli,
    "chalf": lambda self, memory_format=None: self.to(__import__("ember").complex32),
    "is_distributed": lambda self: False, "record_stream": lambda self, stream: None,
    "is_set_to": lambda self, other: (self.data_ptr() == other.data_ptr()
                                      and self.shape == other.shape
                                      and self.stride() == other.stride()),
    "nonzero_static": _nonzero_static,
    "eig": _removed("eig", "torch.linalg.eig"), "symeig": _removed("symeig", "torch.linalg.eigh"),
    "lstsq": _removed("lstsq", "torch.linalg.lstsq"),
    "solve": _removed("solve", "torch.linalg.solve"),
}

TENSOR_PROPERTIES = {
    "is_cpu": lambda self: True,
    "volatile": lambda self: False,  # legacy Variable flag: always False, as in PyTorch
    "name": lambda self: None,  # a graph input's name in TorchScript; None in eager code
    "is_sparse_csr": lambda self: False,
}


# ============================================================================ top level

# PyTorch's native losses take ``reduction`` as an int (at::Reduction): 0 none, 1 mean, 2 sum
_REDUCTION = {0: "none", 1: "mean", 2: "sum"}


def _reduction(r):
    if isinstance(r, str):
        return r
    try:
        return _REDUCTION[r]
    except KeyError:
        raise ValueError(f"reduction must be 0 (none), 1 (mean) or 2 (sum), got {r!r}") from None


def _method_call(name):
    def fn(input, *args, **kwargs):
        return getattr(input, name)(*args, **kwargs)
    fn.__name__ = name
    fn.__doc__ = f"``torch.{name}(input, ...)``: ``input.{name}(...)``."
    return fn


def _functional_call(name, inplace=False):
    def fn(*args, **kwargs):
        if inplace:
            kwargs["inplace"] = True
        return getattr(_F(), name)(*args, **kwargs)
    fn.__name__ = name + ("_" if inplace else "")
    fn.__doc__ = f"``nn.functional.{name}``{' in place' if inplace else ''}."
    return fn


def dropout(input, p, train):
    """``torch.dropout(input, p, train)``."""
    return _F().dropout(input, p, train)


def dropout_(input, p, train):
    return _F().dropout(input, p, train, inplace=True)


def alpha_dropout(input, p, train):
    return _F().alpha_dropout(input, p, train)


def alpha_dropout_(input, p, train):
    return _F().alpha_dropout(input, p, train, inplace=True)


def feature_alpha_dropout(input, p, train):
    return _F().feature_alpha_dropout(input, p, train)


def feature_alpha_dropout_(input, p, train):
    return _F().feature_alpha_dropout(input, p, train, inplace=True)


def _feature_mask_dropout(input, p, train):
    # channel-wise dropout for any rank >= 2: one draw per (sample, channel)
    import ember
    if not train or p == 0:
        return input
    if p == 1:
        return input * 0
    shape = tuple(input.shape[:2]) + (1,) * (input.ndim - 2)
    mask = ember.empty(shape, dtype=input.dtype).bernoulli_(1 - p) / (1 - p)
    return input * mask


def feature_dropout(input, p, train):
    """``torch.feature_dropout``: whole channels zeroed with probability ``p``."""
    return _feature_mask_dropout(input, p, train)


def feature_dropout_(input, p, train):
    return _write_back(input, _feature_mask_dropout(input, p, train))


def embedding(weight, indices, padding_idx=-1, scale_grad_by_freq=False, sparse=False):
    """``torch.embedding(weight, indices, ...)`` (weight first, as ATen orders them)."""
    return _F().embedding(indices, weight, None if padding_idx < 0 else padding_idx,
                          scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)


def batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps,
               cudnn_enabled=True):
    """``torch.batch_norm`` with ATen's argument order."""
    return _F().batch_norm(input, running_mean, running_var, weight, bias, training, momentum,
                           eps)


def instance_norm(input, weight, bias, running_mean, running_var, use_input_stats, momentum,
                  eps, cudnn_enabled=True):
    return _F().instance_norm(input, running_mean, running_var, weight, bias, use_input_stats,
                              momentum, eps)


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    return _F().layer_norm(input, normalized_shape, weight, bias, eps)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    return _F().group_norm(input, num_groups, weight, bias, eps)


def rms_norm(input, normalized_shape, weight=None, eps=None):
    return _F().rms_norm(input, normalized_shape, weight, eps)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    return _F().cosine_similarity(x1, x2, dim, eps)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    return _F().pairwise_distance(x1, x2, p, eps, keepdim)


def pdist(input, p=2.0):
    return _F().pdist(input, p)


def bilinear(input1, input2, weight, bias=None):
    return _F().bilinear(input1, input2, weight, bias)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction=1,
             zero_infinity=False):
    return _F().ctc_loss(log_probs, targets, input_lengths, target_lengths, blank,
                         _reduction(reduction), zero_infinity)


def binary_cross_entropy_with_logits(input, target, weight=None, pos_weight=None,
                                     reduction=1):
    return _F().binary_cross_entropy_with_logits(input, target, weight,
                                                 reduction=_reduction(reduction),
                                                 pos_weight=pos_weight)


def kl_div(input, target, reduction=1, log_target=False):
    return _F().kl_div(input, target, reduction=_reduction(reduction), log_target=log_target)


def cosine_embedding_loss(input1, input2, target, margin=0.0, reduction=1):
    return _F().cosine_embedding_loss(input1, input2, target, margin,
                                      reduction=_reduction(reduction))


def hinge_embedding_loss(input, target, margin=1.0, reduction=1):
    return _F().hinge_embedding_loss(input, target, margin, reduction=_reduction(reduction))


def margin_ranking_loss(input1, input2, target, margin=0.0, reduction=1):
    return _F().margin_ranking_loss(input1, input2, target, margin,
                                    reduction=_reduction(reduction))


def poisson_nll_loss(input, target, log_input, full, eps, reduction):
    return _F().poisson_nll_loss(input, target, log_input, full, eps=eps,
                                 reduction=_reduction(reduction))


def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2.0, eps=1e-6, swap=False,
                        reduction=1):
    return _F().triplet_margin_loss(anchor, positive, negative, margin, p, eps, swap,
                                    reduction=_reduction(reduction))


def celu(input, alpha=1.0):
    return _F().celu(input, alpha)


def selu(input):
    return _F().selu(input)


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, generator=None):
    return _F().rrelu(input, lower, upper, training)


def threshold(input, threshold, value):
    return _F().threshold(input, threshold, value)


def hardshrink(input, lambd=0.5):
    return _F().hardshrink(input, lambd)


def prelu(input, weight):
    return _F().prelu(input, weight)


def convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
                groups):
    """``torch.convolution``: the convolution (or transposed convolution) of the input's
    spatial rank, with every argument explicit."""
    n = input.ndim - 2
    if n not in (1, 2, 3):
        raise ValueError(f"convolution: expected a 3-D, 4-D or 5-D input, got "
                         f"{input.ndim}-D (shape {tuple(input.shape)})")
    F = _F()
    if transposed:
        return getattr(F, f"conv_transpose{n}d")(input, weight, bias, stride, padding,
                                                 output_padding, groups, dilation)
    return getattr(F, f"conv{n}d")(input, weight, bias, stride, padding, dilation, groups)


_GRID_MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
_GRID_PADDING = {0: "zeros", 1: "border", 2: "reflection"}


def grid_sampler(input, grid, interpolation_mode, padding_mode, align_corners):
    """``torch.grid_sampler`` (ATen's integer modes)."""
    return _F().grid_sample(input, grid, _GRID_MODES[interpolation_mode],
                            _GRID_PADDING[padding_mode], align_corners)


def is_same_size(input, other):
    return _is_same_size(input, other)


def is_conj(input):
    return False


def is_neg(input):
    return False


def is_signed(input):
    return input.is_signed()


def is_inference(input):
    return input.is_inference()


def is_storage(obj):
    from ._storage import TypedStorage, UntypedStorage
    return isinstance(obj, (TypedStorage, UntypedStorage))


def is_distributed(input):
    return False


def get_device(input):
    return -1


def typename(obj):
    """A type's name as PyTorch spells it: ``torch.FloatTensor`` for a float32 tensor."""
    from ._tensor import Tensor
    if isinstance(obj, Tensor):
        return obj.type()
    module = getattr(obj, "__module__", "") or ""
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    if module in ("", "builtins"):
        return qualname
    return f"{module}.{qualname}"


def resolve_conj(input):
    return input


def resolve_neg(input):
    return input


def unsafe_split_with_sizes(input, split_sizes, dim=0):
    return input.split_with_sizes(split_sizes, dim)


def select_copy(input, dim, index):
    return input.select(dim, index).clone()


def slice_copy(input, dim=0, start=None, end=None, step=1):
    idx = [builtins.slice(None)] * input.ndim
    idx[dim] = builtins.slice(start, end, step)
    return input[tuple(idx)].clone()


def frobenius_norm(input, dim=(), keepdim=False):
    dim = tuple(dim) if dim else tuple(range(input.ndim))
    return (input * input).sum(dim, keepdim=keepdim).sqrt()


def nuclear_norm(input, dim=None, keepdim=False):
    import ember
    if dim is None or isinstance(dim, bool):
        keepdim = dim if isinstance(dim, bool) else keepdim
        dim = (-2, -1)
    return ember.linalg.matrix_norm(input, "nuc", dim=dim, keepdim=keepdim)


def cond(pred, true_fn, false_fn, operands=()):
    """``torch.cond`` run eagerly: ``true_fn(*operands)`` if ``pred`` else ``false_fn``."""
    from ._tensor import Tensor
    if isinstance(pred, Tensor):
        if pred.numel() != 1:
            raise RuntimeError(f"cond: expected pred to be a bool or a one-element tensor, got "
                               f"shape {tuple(pred.shape)}")
        pred = bool(pred.item())
    return (true_fn if pred else false_fn)(*operands)


def native_layer_norm(input, normalized_shape, weight, bias, eps):
    """``(output, mean, rstd)`` of layer norm over the last ``len(normalized_shape)`` dims."""
    dims = tuple(range(input.ndim - len(normalized_shape), input.ndim))
    mean = input.mean(dims, keepdim=True)
    rstd = (input.var(dims, unbiased=False, keepdim=True) + eps).rsqrt()
    out = (input - mean) * rstd
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out, mean, rstd


def native_dropout(input, p, train):
    """``(output, mask)``: dropout with its boolean keep-mask (all kept when not training)."""
    import ember
    if not train or p == 0:
        return input.clone(), ember.ones_like(input, dtype=ember.bool)
    mask = ember.empty_like(input).bernoulli_(1 - p).bool()
    return input * mask / (1 - p), mask


def view_as_real_copy(input):
    import ember
    return ember.view_as_real(input).clone()


def view_as_complex_copy(input):
    import ember
    return ember.view_as_complex(input).clone()


def vmap(func, in_dims=0, out_dims=0, randomness="error", *, chunk_size=None):
    """``torch.vmap``: ``ember.func.vmap``."""
    from . import func as func_module
    if not hasattr(func_module, "vmap"):
        raise NotImplementedError("ember.vmap: ember.func has no vmap in this build")
    return func_module.vmap(func, in_dims, out_dims, randomness, chunk_size=chunk_size)


# ------------------------------------------------------------------ process-wide settings
_settings = {"float32_matmul_precision": "highest", "warn_always": False,
             "deterministic_debug_mode": 0, "interop_threads": 1}


def set_float32_matmul_precision(precision):
    """Recorded and reported back; NumPy's float32 matmul has one precision."""
    if precision not in ("highest", "high", "medium"):
        raise RuntimeError(f"Invalid precision {precision!r}: expected 'highest', 'high' or "
                           f"'medium'")
    _settings["float32_matmul_precision"] = precision


def get_float32_matmul_precision():
    return _settings["float32_matmul_precision"]


def set_warn_always(b):
    _settings["warn_always"] = bool(b)


def is_warn_always_enabled():
    return _settings["warn_always"]


def set_deterministic_debug_mode(debug_mode):
    modes = {"default": 0, "warn": 1, "error": 2}
    _settings["deterministic_debug_mode"] = modes.get(debug_mode, debug_mode)


def get_deterministic_debug_mode():
    return _settings["deterministic_debug_mode"]


def is_deterministic_algorithms_warn_only_enabled():
    return False


def set_num_interop_threads(n):
    _settings["interop_threads"] = int(n)


def get_num_interop_threads():
    return _settings["interop_threads"]


def init_num_threads():
    pass


def set_flush_denormal(mode):
    """False: NumPy gives no control over flushing denormals (PyTorch answers False where
    the CPU cannot either)."""
    return False


def set_default_tensor_type(t):
    """Legacy: sets the default dtype from a tensor type (``torch.DoubleTensor`` or its
    name); ember has only CPU tensor types."""
    import ember
    name = t if isinstance(t, str) else getattr(t, "__name__", str(t))
    name = name.rsplit(".", 1)[-1]
    table = {"FloatTensor": ember.float32, "DoubleTensor": ember.float64,
             "HalfTensor": ember.float16, "BFloat16Tensor": ember.bfloat16}
    if name not in table:
        raise TypeError(f"set_default_tensor_type: only floating-point CPU tensor types are "
                        f"supported, got {t!r}")
    ember.set_default_dtype(table[name])


def is_anomaly_check_nan_enabled():
    from .autograd.anomaly import is_anomaly_check_nan_enabled as enabled
    return enabled()


def cudnn_is_acceptable(input):
    return False


def is_vulkan_available():
    return False


def get_device_module(device=None):
    """The device module of a device type (``ember.cuda`` for 'cuda'; ``ember.cpu``-like
    answers for 'cpu')."""
    import ember
    kind = getattr(device, "type", device) or "cpu"
    kind = str(kind).split(":")[0]
    if kind == "cuda":
        return ember.cuda
    if kind == "cpu":
        return _cpu_module()
    raise RuntimeError(f"get_device_module: unknown device type {kind!r}")


def _cpu_module():
    import types
    m = types.ModuleType("ember.cpu")
    m.is_available = lambda: True
    m.device_count = lambda: 1
    m.current_device = lambda: "cpu"
    m.synchronize = lambda device=None: None
    m.Stream = Stream
    m.Event = Event
    m.current_stream = lambda device=None: Stream()
    return m


class OutOfMemoryError(RuntimeError):
    """Raised when an allocation fails (``torch.OutOfMemoryError``)."""


class AcceleratorError(RuntimeError):
    """An error reported by an accelerator (``torch.AcceleratorError``); never raised on CPU."""


# ------------------------------------------------------------------ streams and events
class Stream:
    """``torch.Stream`` on the CPU: work runs in order as it is issued, so a stream has
    nothing to wait for; ``query`` is always True."""

    def __init__(self, device=None, *, priority=0, **kwargs):
        from ._device import device as _device
        self.device = _device(device if device is not None else "cpu")
        if self.device.type != "cpu":
            raise RuntimeError(f"ember.Stream: no {self.device.type} backend here; only 'cpu'")
        self.priority = priority
        self.stream_id = 0
        self.device_index = -1
        self.device_type = 0

    def query(self):
        return True

    def synchronize(self):
        pass

    def wait_event(self, event):
        pass

    def wait_stream(self, stream):
        pass

    def record_event(self, event=None):
        event = Event() if event is None else event
        event.record(self)
        return event

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, Stream) and other.device == self.device

    def __hash__(self):
        return hash(("ember.Stream", str(self.device)))

    def __repr__(self):
        return f"ember.Stream(device={self.device})"


class Event:
    """``torch.Event`` on the CPU: recording notes the wall-clock time (when
    ``enable_timing``), so ``elapsed_time`` measures host time between two records."""

    def __init__(self, device=None, *, enable_timing=False, blocking=False, interprocess=False):
        from ._device import device as _device
        self.device = _device(device if device is not None else "cpu")
        self.enable_timing = enable_timing
        self._time = None

    def record(self, stream=None):
        import time
        self._time = time.perf_counter()

    def query(self):
        return True

    def synchronize(self):
        pass

    def wait(self, stream=None):
        pass

    def elapsed_time(self, end_event):
        if not (self.enable_timing and end_event.enable_timing):
            raise RuntimeError("Both events must be created with argument 'enable_timing=True'")
        if self._time is None or end_event._time is None:
            raise RuntimeError("Both events must be recorded before calculating elapsed time")
        return (end_event._time - self._time) * 1000.0

    def __repr__(self):
        return f"ember.Event(device={self.device})"


# in-place top-level spellings: ``torch.abs_(x)`` is ``x.abs_()``
_INPLACE_METHODS = (
    "abs_", "acos_", "acosh_", "addmv_", "arccos_", "arccosh_", "arcsin_", "arcsinh_",
    "arctan_", "arctanh_", "asin_", "asinh_", "atan_", "atanh_", "ceil_", "clamp_",
    "clamp_max_", "clamp_min_", "clip_", "conj_physical_", "cos_", "cosh_", "deg2rad_",
    "detach_", "erf_", "erfc_", "exp2_", "exp_", "expm1_", "fill_", "fix_", "floor_", "frac_",
    "gcd_", "i0_", "index_put_", "lcm_", "ldexp_", "log10_", "log1p_", "log2_", "log_",
    "logit_", "nan_to_num_", "neg_", "negative_", "rad2deg_", "reciprocal_", "relu_",
    "round_", "rsqrt_", "sigmoid_", "sin_", "sinc_", "sinh_", "sqrt_", "square_", "tan_",
    "tanh_", "trunc_", "xlogy_", "zero_")

_FUNCTIONAL_INPLACE = ("celu", "selu", "rrelu", "threshold")


# ============================================================================ more top-level
# PyTorch's native-argument spellings of recurrent cells, normalisations and samplers, the
# sparse accessors' copying forms, and a few aliases: each composed of ember ops (so gradients
# come from those ops).
def _ember():
    import ember
    return ember


def lstm_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step: ``(h, c)`` from ``hx = (h0, c0)`` (PyTorch's gate order i, f, g, o)."""
    h, c = hx
    gates = _F().linear(input, w_ih, b_ih) + _F().linear(h, w_hh, b_hh)
    i, f, g, o = gates.chunk(4, -1)
    c = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return o.sigmoid() * c.tanh(), c


def gru_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step (gate order r, z, n; the reset gate scales the hidden part of n)."""
    gi = _F().linear(input, w_ih, b_ih).chunk(3, -1)
    gh = _F().linear(hx, w_hh, b_hh).chunk(3, -1)
    r = (gi[0] + gh[0]).sigmoid()
    z = (gi[1] + gh[1]).sigmoid()
    n = (gi[2] + r * gh[2]).tanh()
    return (1 - z) * n + z * hx


def rnn_tanh_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return (_F().linear(input, w_ih, b_ih) + _F().linear(hx, w_hh, b_hh)).tanh()


def rnn_relu_cell(input, hx, w_ih, w_hh, b_ih=None, b_hh=None):
    return (_F().linear(input, w_ih, b_ih) + _F().linear(hx, w_hh, b_hh)).relu()


def native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum,
                      eps):
    """``(output, save_mean, save_invstd)``: the batch statistics in training (empty tensors
    in evaluation, as PyTorch's CPU kernel returns)."""
    em = _ember()
    out = _F().batch_norm(input, running_mean, running_var, weight, bias, training, momentum,
                          eps)
    if not training:
        empty = em.empty(0, dtype=input.dtype)
        return out, empty, empty
    dims = [0] + list(range(2, input.dim()))
    with em.no_grad():
        mean = input.mean(dims)
        invstd = (input.var(dims, unbiased=False) + eps).rsqrt()
    return out, mean, invstd


def native_group_norm(input, weight, bias, N, C, HxW, group, eps):
    """``(output, mean, rstd)`` with statistics of shape ``(N, group)``."""
    em = _ember()
    out = _F().group_norm(input, group, weight, bias, eps)
    with em.no_grad():
        flat = input.reshape(N, group, -1)
        mean = flat.mean(-1)
        rstd = (flat.var(-1, unbiased=False) + eps).rsqrt()
    return out, mean, rstd


def norm_except_dim(v, pow=2, dim=0):
    """The ``pow``-norm of ``v`` over every dim but ``dim`` (kept as size-1 dims), as weight
    norm uses it; ``dim=-1`` is the norm of everything."""
    if dim == -1:
        return v.norm(pow)
    dims = [d for d in range(v.dim()) if d != dim]
    return v.norm(pow, dim=dims, keepdim=True)


def binomial(count, prob, generator=None):
    """Draws of Binomial(``count``, ``prob``), elementwise, in ``count``'s dtype."""
    em = _ember()
    from ._random import _rng
    rng = _rng(generator) if generator is not None else _rng(None)
    c, p = em.broadcast_tensors(count, prob)
    draws = rng.binomial(c.detach().numpy().astype("int64"), p.detach().numpy())
    return em.tensor(draws, dtype=count.dtype)


def embedding_renorm_(weight, indices, max_norm, norm_type):
    """Rescale in place the rows of ``weight`` named by ``indices`` whose ``norm_type``-norm
    exceeds ``max_norm`` to norm ``max_norm`` (PyTorch's factor ``max_norm / (norm + 1e-7)``)."""
    em = _ember()
    with em.no_grad():
        rows = indices.reshape(-1).unique()
        sel = weight[rows]
        norms = sel.norm(norm_type, dim=1, keepdim=True)
        scale = em.where(norms > max_norm, max_norm / (norms + 1e-7), em.ones_like(norms))
        weight[rows] = sel * scale
    return weight


def grid_sampler_2d(input, grid, interpolation_mode, padding_mode, align_corners):
    """``grid_sample`` with PyTorch's integer modes (0 bilinear, 1 nearest, 2 bicubic;
    padding 0 zeros, 1 border, 2 reflection)."""
    return _F().grid_sample(input, grid, ("bilinear", "nearest", "bicubic")[interpolation_mode],
                            ("zeros", "border", "reflection")[padding_mode], align_corners)


def affine_grid_generator(theta, size, align_corners):
    return _F().affine_grid(theta, list(size), align_corners)


def as_strided_(input, size, stride, storage_offset=None):
    """Restride ``input`` itself over its storage (a view of the same memory)."""
    view = input.as_strided(size, stride, storage_offset)
    input._data = view._data
    return input


def as_strided_scatter(input, src, size, stride, storage_offset=None):
    """A copy of ``input`` with ``src`` written into its ``as_strided`` view."""
    out = input.clone()
    out.as_strided(size, stride, storage_offset).copy_(src)
    return out


def smm(input, mat2):
    """Sparse ``input`` times dense ``mat2``, as a sparse (COO) result, as PyTorch's."""
    return _ember().sparse.mm(input, mat2).to_sparse()


def _copy_of(name):
    def fn(input):
        return getattr(input, name)().clone()
    fn.__name__ = name + "_copy"
    fn.__doc__ = f"A copy of ``input.{name}()``."
    return fn


def _top_level():
    names = {n: _method_call(n) for n in _INPLACE_METHODS}
    names.update({n + "_": _functional_call(n, inplace=True) for n in _FUNCTIONAL_INPLACE})
    for n in ("dropout", "dropout_", "alpha_dropout", "alpha_dropout_", "feature_alpha_dropout",
              "feature_alpha_dropout_", "feature_dropout", "feature_dropout_", "embedding",
              "batch_norm", "instance_norm", "layer_norm", "group_norm", "rms_norm",
              "cosine_similarity", "pairwise_distance", "pdist", "bilinear", "ctc_loss",
              "binary_cross_entropy_with_logits", "kl_div", "cosine_embedding_loss",
              "hinge_embedding_loss", "margin_ranking_loss", "poisson_nll_loss",
              "triplet_margin_loss", "celu", "selu", "rrelu", "threshold", "hardshrink",
              "prelu", "convolution", "grid_sampler", "is_same_size", "is_conj", "is_neg",
              "is_signed", "is_inference", "is_storage", "is_distributed", "get_device",
              "typename", "resolve_conj", "resolve_neg", "unsafe_split_with_sizes",
              "select_copy", "slice_copy", "frobenius_norm", "nuclear_norm", "vmap", "cond",
              "native_layer_norm", "native_dropout", "view_as_real_copy",
              "view_as_complex_copy",
              "set_float32_matmul_precision", "get_float32_matmul_precision",
              "set_warn_always", "is_warn_always_enabled", "set_deterministic_debug_mode",
              "get_deterministic_debug_mode", "is_deterministic_algorithms_warn_only_enabled",
              "set_num_interop_threads", "get_num_interop_threads", "init_num_threads",
              "set_flush_denormal", "set_default_tensor_type", "is_anomaly_check_nan_enabled",
              "cudnn_is_acceptable", "is_vulkan_available", "get_device_module",
              "OutOfMemoryError", "AcceleratorError", "Stream", "Event",
              "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "native_batch_norm",
              "native_group_norm", "norm_except_dim", "binomial", "embedding_renorm_",
              "grid_sampler_2d", "affine_grid_generator", "as_strided_", "as_strided_scatter",
              "smm"):
        names[n] = globals()[n]
    for n in ("values", "indices", "crow_indices", "col_indices", "ccol_indices", "row_indices"):
        names[n + "_copy"] = _copy_of(n)
    from .futures import Future
    names["Future"] = Future
    names.update({"unsafe_chunk": _method_call("chunk"), "unsafe_split": _method_call("split"),
                  "e": math.e, "pi": math.pi, "inf": math.inf, "nan": math.nan,
                  "newaxis": None, "has_lapack": True, "has_mkl": False, "has_openmp": False,
                  "has_spectral": True})
    return names


def install(namespace):
    """Add the long-tail names to ``Tensor`` and to the ``ember`` namespace, leaving every
    name ember already defines as it is."""
    from ._tensor import Tensor
    for name, fn in TENSOR_METHODS.items():
        if not hasattr(Tensor, name):
            setattr(Tensor, name, fn)
    for name, fn in TENSOR_PROPERTIES.items():
        if not hasattr(Tensor, name):
            setattr(Tensor, name, property(fn))
    for name, value in _top_level().items():
        namespace.setdefault(name, value)
    from . import _namespaces
    for name in ("sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc"):
        namespace.setdefault(name, getattr(_namespaces, name))
    from ._storage import TypedStorage, UntypedStorage, typed_storage_classes
    namespace.setdefault("TypedStorage", TypedStorage)
    namespace.setdefault("UntypedStorage", UntypedStorage)
    for name, cls in typed_storage_classes().items():
        namespace.setdefault(name, cls)
