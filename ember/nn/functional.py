"""``ember.nn.functional``: the stateless forms of the layers, losses and activations.

Most functions compose ember ops (their gradients come for free); the hot ones call the fused
kernels of ``ember/ops/nn.py``. Convolution, pooling, padding and resampling live in
``ember/ops/conv.py`` and are re-exported here.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _dtype as D
from .._random import _rng
from .._tensor import Tensor, _make
from ..autograd.grad_mode import GradMode, no_grad
from ..autograd.graph import _MODES, apply_inplace
from ..ops import elementwise as E
from ..ops import nn as K
from ..ops import random as _rand_ops
from ..ops.creation import tensor as _tensor, zeros as _zeros
from ..ops.linalg import einsum

# convolution, pooling, padding and resampling (ember/ops/conv.py)
from ..ops.conv import *  # noqa: E402,F401,F403

# embedding and attention (ember/nn/_functional_seq.py)
from ._functional_seq import *  # noqa: E402,F401,F403
from .._autocast import autocast_function


# ---------------------------------------------------------------------- helpers
def _legacy_reduction(size_average, reduce, reduction):
    """Map the deprecated ``size_average``/``reduce`` flags to a reduction string."""
    if size_average is None and reduce is None:
        return reduction
    warnings.warn("size_average and reduce args will be deprecated, please use reduction='"
                  f"{_legacy_string(size_average, reduce)}' instead.", stacklevel=3)
    return _legacy_string(size_average, reduce)


def _legacy_string(size_average, reduce):
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if size_average and reduce:
        return "mean"
    return "sum" if reduce else "none"


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _check_reduction(reduction):
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _same_size_warning(input, target, stacklevel=3):
    if target.shape != input.shape:
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input size "
                      f"({input.shape}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", stacklevel=stacklevel)


def _composed(input, inplace, fn):
    """``fn(input)``, written back into ``input`` when ``inplace``.

    When autograd records, ``fn`` runs on a copy: the ops it records save their inputs, and
    writing the result into a tensor they saved would make their backward fail.
    """
    if not inplace:
        return fn(input)
    src = input.clone() if GradMode.enabled and input.requires_grad else input
    return input.copy_(fn(src))


# ---------------------------------------------------------------------- linear
linear = K.linear


def bilinear(input1, input2, weight, bias=None):
    """``x1^T A x2 + b`` for each output feature."""
    if input1.shape[:-1] != input2.shape[:-1]:
        raise RuntimeError("bilinear(): input batch dimensions do not match: got "
                           f"{list(input1.shape[:-1])} and {list(input2.shape[:-1])}")
    if weight.ndim != 3 or weight.shape[1] != input1.shape[-1] or \
            weight.shape[2] != input2.shape[-1]:
        raise RuntimeError(f"bilinear(): weight of shape {list(weight.shape)} does not match "
                           f"inputs of sizes {input1.shape[-1]} and {input2.shape[-1]}")
    out = einsum("...i,oij,...j->...o", input1, weight, input2)
    return out if bias is None else out + bias


# ---------------------------------------------------------------------- activations
def relu(input, inplace=False):
    """max(x, 0)."""
    if input.is_quantized:  # quantized ReLU on the integers (issue 20)
        return input.relu_() if inplace else input.relu()
    return input.relu_() if inplace else E.relu(input)


def relu_(input):
    return input.relu_()


def _unary_act(cls, input, inplace, *params):
    if inplace:
        return apply_inplace(cls, input, *params)
    return cls.apply(input, *params)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """Clamp into [min_val, max_val]."""
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    if not (input.is_floating_point() or input.is_complex()):  # PyTorch truncates the bounds
        lo, hi = int(min_val), int(max_val)
        return input.clamp_(lo, hi) if inplace else input.clamp(lo, hi)
    return _unary_act(K.Hardtanh, input, inplace, min_val, max_val)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, True)


def relu6(input, inplace=False):
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0, inplace)


def elu(input, alpha=1.0, inplace=False):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return _unary_act(K.Elu, input, inplace, float(alpha), 1.0, 1.0)


def elu_(input, alpha=1.0):
    return elu(input, alpha, True)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input, inplace=False):
    """scale * elu(x, alpha) with the self-normalising constants."""
    return _unary_act(K.Elu, input, inplace, _SELU_ALPHA, _SELU_SCALE, 1.0)


def selu_(input):
    return selu(input, True)


def celu(input, alpha=1.0, inplace=False):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    if alpha == 0:
        raise RuntimeError("ZeroDivisionError")
    return _unary_act(K.Elu, input, inplace, float(alpha), 1.0, 1.0 / alpha)


def celu_(input, alpha=1.0):
    return celu(input, alpha, True)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x for x > 0, negative_slope * x otherwise."""
    return _unary_act(K.LeakyRelu, input, inplace, float(negative_slope))


def leaky_relu_(input, negative_slope=0.01):
    return leaky_relu(input, negative_slope, True)


@autocast_function("lower")
def prelu(input, weight):
    """Leaky ReLU with a learnt slope per channel (dim 1) or one shared slope."""
    if weight.numel() != 1:
        if input.ndim < 2:
            raise RuntimeError("Not allow zero-dim input tensor.") if input.ndim == 0 else \
                RuntimeError(f"Mismatch of parameter numbers and input channel size. Found "
                             f"parameter numbers = {weight.numel()} and channel size = 1.")
        if weight.numel() != input.shape[1]:
            raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found "
                               f"parameter numbers = {weight.numel()} and channel size = "
                               f"{input.shape[1]}.")
        weight = weight.reshape((-1,) + (1,) * (input.ndim - 2))
    elif weight.ndim:
        weight = weight.reshape(())
    return E.where(input > 0, input, weight * input)


def rrelu(input, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    """Leaky ReLU with a random slope in [lower, upper] (training) or their mean (eval)."""
    if not training:
        return leaky_relu(input, (lower + upper) / 2, inplace)
    slope = _make(_rng(None).uniform(lower, upper, size=input.shape).astype(input._data.dtype))
    if input.is_meta:  # the slopes are drawn (the generator advances as eagerly), not kept
        slope = slope.to("meta")
    return _composed(input, inplace, lambda x: E.where(x >= 0, x, x * slope))


def rrelu_(input, lower=1.0 / 8, upper=1.0 / 3, training=False):
    return rrelu(input, lower, upper, training, True)


def gelu(input, approximate="none"):
    """x * Phi(x); ``approximate='tanh'`` uses the tanh formula."""
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    return K.Gelu.apply(input, approximate)


def silu(input, inplace=False):
    """x * sigmoid(x)."""
    return _unary_act(K.Silu, input, inplace)


def mish(input, inplace=False):
    """x * tanh(softplus(x))."""
    return _composed(input, inplace, lambda x: x * E.tanh(K.Softplus.apply(x, 1.0, 20.0)))


def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta * x)) / beta, linear above ``threshold``."""
    return K.Softplus.apply(input, float(beta), float(threshold))


def softsign(input):
    """x / (1 + |x|)."""
    return input / (1 + E.abs(input))


def hardsigmoid(input, inplace=False):
    """relu6(x + 3) / 6."""
    return _composed(input, inplace, lambda x: K.Hardtanh.apply(x + 3, 0.0, 6.0) / 6)


def hardswish(input, inplace=False):
    """x * relu6(x + 3) / 6."""
    return _composed(input, inplace, lambda x: x * (K.Hardtanh.apply(x + 3, 0.0, 6.0) / 6))


def hardshrink(input, lambd=0.5):
    """x where |x| > lambd, else 0."""
    return E.where(E.abs(input) > lambd, input, 0.0)


def softshrink(input, lambd=0.5):
    """x - lambd above lambd, x + lambd below -lambd, 0 between."""
    if lambd < 0:
        raise RuntimeError(f"lambda must be greater or equal to 0, but found to be {lambd}.")
    return E.where(input > lambd, input - lambd, E.where(input < -lambd, input + lambd, 0.0))


def tanhshrink(input):
    """x - tanh(x)."""
    return input - E.tanh(input)


def threshold(input, threshold, value, inplace=False):
    """x where x > threshold, else ``value``."""
    return _composed(input, inplace, lambda x: E.where(x > threshold, x, value))


_threshold = threshold


def threshold_(input, threshold, value):
    return _threshold(input, threshold, value, True)


def sigmoid(input):
    return E.sigmoid(input)


def tanh(input):
    return E.tanh(input)


def logsigmoid(input):
    """log(sigmoid(x)), computed stably."""
    return K.LogSigmoid.apply(input)


def _softmax_dim(ndim):
    warnings.warn("Implicit dimension choice for softmax has been deprecated. Change the call "
                  "to include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """exp(x) / sum(exp(x)) along ``dim``."""
    if dim is None:
        dim = _softmax_dim(input.ndim)
    return K.softmax(input, dim, dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """log(softmax(x)) along ``dim``, computed stably."""
    if dim is None:
        dim = _softmax_dim(input.ndim)
    return K.log_softmax(input, dim, dtype)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    """softmax(-x)."""
    if dim is None:
        dim = _softmax_dim(input.ndim)
    return K.softmax(-input if dtype is None else -input.to(dtype), dim)


def gumbel_softmax(logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
    """Samples from the Gumbel-softmax distribution; ``hard`` gives straight-through one-hots."""
    if eps != 1e-10:
        warnings.warn("`eps` parameter is deprecated and has no effect.", stacklevel=2)
    g = -np.log(_rng(None).exponential(size=logits.shape)).astype(logits._data.dtype)
    y_soft = K.softmax((logits + _make(g)) / tau, dim)
    if not hard:
        return y_soft
    idx = y_soft.argmax(dim, keepdim=True)
    y_hard = _make(np.zeros(logits.shape, dtype=logits._data.dtype))
    np.put_along_axis(y_hard._data, idx._data, 1, axis=dim)
    return y_hard - y_soft.detach() + y_soft


def glu(input, dim=-1):
    """a * sigmoid(b) for the two halves a, b of ``input`` along ``dim``."""
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    if input.shape[dim] % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim % input.ndim} is "
                           f"size {input.shape[dim]}")
    a, b = input.chunk(2, dim)
    return a * E.sigmoid(b)


# ---------------------------------------------------------------------- dropout
def _check_p(p):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def _dropout(input, p, training, inplace, mask_shape, alpha=False):
    _check_p(p)
    if not training or p == 0.0:
        return input
    dt = input._data.dtype
    if input.is_meta:  # no mask to draw: the result has the input's metadata
        return input.mul_(1.0) if inplace else input * 1.0
    if alpha:
        if p == 1.0:  # PyTorch drops everything to zero (the formula below divides by 0)
            _rng(None).random(mask_shape)  # the draw PyTorch makes all the same
            return input.mul_(0.0) if inplace else input * 0.0
        # alpha dropout keeps mean and variance for SELU nets (Klambauer et al., 2017)
        a_ = 1.7580993408473766
        a = 1.0 / math.sqrt((a_ * a_ * p + 1) * (1 - p))
        noise, shift = _rand_ops.DropoutMask.apply(tuple(mask_shape), p, dt, (a, a_))
        return _composed(input, inplace, lambda x: x * noise + shift)
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    # the mask is drawn by a dispatched random op, so a captured graph re-draws it per run
    mask = _rand_ops.DropoutMask.apply(tuple(mask_shape), p, dt, scale)
    return input.mul_(mask) if inplace else input * mask


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p)."""
    if input.is_quantized and not training:  # inference on a quantized model: the identity
        return input
    return _dropout(input, p, training, inplace, input.shape)


def _feature_shape(input, batched):
    shape = list(input.shape)
    start = 2 if batched else 1
    return tuple(shape[:start] + [1] * (len(shape) - start))


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, L) or (C, L) inputs."""
    _check_p(p)
    if input.ndim not in (2, 3):
        raise RuntimeError(f"dropout1d: Expected 2D or 3D input, but received a {input.ndim}D "
                           "input. Note that dropout1d exists to provide channel-wise dropout on "
                           "inputs with 1 spatial dimension, a channel dimension, and an "
                           "optional batch dimension (i.e. 2D or 3D inputs).")
    return _dropout(input, p, training, inplace, _feature_shape(input, input.ndim == 3))


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) inputs; 3-D inputs are read as (N, C, L)."""
    _check_p(p)
    if input.ndim not in (3, 4):
        warnings.warn(f"dropout2d: Received a {input.ndim}-D input to dropout2d, which is "
                      "deprecated and will result in an error in a future release. To retain "
                      "the behavior and silence this warning, please use dropout instead. Note "
                      "that dropout2d exists to provide channel-wise dropout on inputs with 2 "
                      "spatial dimensions, a channel dimension, and an optional batch dimension "
                      "(i.e. 3D or 4D inputs).", stacklevel=2)
    if input.ndim == 3:
        warnings.warn("dropout2d: Received a 3D input to dropout2d and assuming that channel-wise "
                      "1D dropout behavior is desired - input is interpreted as shape (N, C, L), "
                      "where C is the channel dim. This behavior will change in a future release "
                      "to interpret the input as one without a batch dimension, i.e. shape "
                      "(C, H, W). To maintain the 1D channel-wise dropout behavior, please "
                      "switch to using dropout1d instead.", stacklevel=2)
    return _dropout(input, p, training, inplace, _feature_shape(input, input.ndim >= 2))


def dropout3d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, D, H, W) or (C, D, H, W) inputs."""
    _check_p(p)
    if input.ndim not in (4, 5):
        warnings.warn(f"dropout3d: Received a {input.ndim}-D input to dropout3d, which is "
                      "deprecated and will result in an error in a future release. To retain "
                      "the behavior and silence this warning, please use dropout instead. Note "
                      "that dropout3d exists to provide channel-wise dropout on inputs with 3 "
                      "spatial dimensions, a channel dimension, and an optional batch dimension "
                      "(i.e. 4D or 5D inputs).", stacklevel=2)
    return _dropout(input, p, training, inplace, _feature_shape(input, input.ndim == 5))


def alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Dropout that keeps the self-normalising property of SELU activations."""
    return _dropout(input, p, training, inplace, input.shape, alpha=True)


def feature_alpha_dropout(input, p=0.5, training=False, inplace=False):
    """Alpha dropout of whole channels."""
    return _dropout(input, p, training, inplace, _feature_shape(input, True), alpha=True)


# ---------------------------------------------------------------------- normalisation
def _channel_shape(input):
    return (1, input.shape[1]) + (1,) * (input.ndim - 2)


def _stat(t):
    """A batch statistic for ``_update_running``: its array, or under a capture mode (the
    dispatch path's ``_MODES``) the Tensor, so that the update is recorded as ops."""
    return t.detach() if _MODES else t._data


def _update_running(running, stat, momentum):
    """running = (1 - momentum) * running + momentum * stat, in place (no autograd)."""
    if isinstance(stat, Tensor):  # under capture: dispatched ops, so replays write it back
        with no_grad():
            running.mul_(1.0 - momentum).add_((stat * momentum).to(running.dtype))
        return
    arr = running._data
    arr *= 1.0 - momentum
    arr += (momentum * stat).astype(arr.dtype, copy=False)
    from .._tensor import _bump_version
    _bump_version(running)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel (dim 1) by batch statistics (training) or running ones (eval)."""
    if input.ndim < 2:
        raise ValueError(f"Expected 2D or 3D input (got {input.ndim}D input)")
    c = input.shape[1]
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and t.numel() != c:
            raise RuntimeError(f"{name} should contain {c} elements not {t.numel()}")
    cshape = _channel_shape(input)
    if training:
        n = input.numel() // c
        if n <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got input "
                             f"size {input.shape}")
        axes = (0,) + tuple(range(2, input.ndim))
        w = weight.reshape(cshape) if weight is not None else None
        b = bias.reshape(cshape) if bias is not None else None
        y, mean, var = K.Normalize.apply(input, w, b, axes, float(eps))
        if running_mean is not None:
            _update_running(running_mean, _stat(mean).reshape(c), momentum)
        if running_var is not None:
            _update_running(running_var, _stat(var).reshape(c) * (n / (n - 1)), momentum)
        return y
    if running_mean is None or running_var is None:
        raise RuntimeError("running_mean and running_var must be defined in evaluation mode")
    scale = E.rsqrt(running_var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -running_mean * scale
    if bias is not None:
        shift = shift + bias
    return input * scale.reshape(cshape).to(input.dtype) + shift.reshape(cshape).to(input.dtype)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalise each channel of each sample over its spatial dims."""
    if not use_input_stats:
        return batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)
    spatial = input.shape[2:]
    if int(np.prod(spatial)) <= 1:
        raise ValueError("Expected more than 1 spatial element when training, got input size "
                         f"{input.shape}")
    cshape = _channel_shape(input)
    axes = tuple(range(2, input.ndim))
    w = weight.reshape(cshape) if weight is not None else None
    b = bias.reshape(cshape) if bias is not None else None
    y, mean, var = K.Normalize.apply(input, w, b, axes, float(eps))
    n = int(np.prod(spatial))
    c = input.shape[1]
    if running_mean is not None:
        _update_running(running_mean, _stat(mean).reshape(-1, c).mean(0), momentum)
    if running_var is not None:
        _update_running(running_var, (_stat(var) * (n / (n - 1))).reshape(-1, c).mean(0),
                        momentum)
    return y


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the trailing ``normalized_shape`` dims, then scale and shift."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(ns)
    if k == 0 or tuple(input.shape[input.ndim - k:]) != ns or input.ndim < k:
        raise RuntimeError(f"Given normalized_shape={list(ns)}, expected input with shape "
                           f"[*, {', '.join(str(s) for s in ns)}], but got input of size"
                           f"{input.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != ns:
            raise RuntimeError(f"Expected {name} to be of same shape as normalized_shape, but "
                               f"got {name} of shape {list(t.shape)} and normalized_shape = "
                               f"{list(ns)}")
    axes = tuple(range(input.ndim - k, input.ndim))
    return K.Normalize.apply(input, weight, bias, axes, float(eps))[0]


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise over groups of channels (and the spatial dims) of each sample."""
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received "
                           f"{input.ndim}")
    n, c = input.shape[0], input.shape[1]
    if c % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by "
                           f"num_groups, but got input of shape {input.shape} and num_groups="
                           f"{num_groups}")
    y = K.Normalize.apply(input.reshape(n, num_groups, -1), None, None, (2,), float(eps))[0]
    y = y.reshape(input.shape)
    cshape = _channel_shape(input)
    if weight is not None:
        y = y * weight.reshape(cshape)
    if bias is not None:
        y = y + bias.reshape(cshape)
    return y


def rms_norm(input, normalized_shape, weight=None, eps=None):
    """x / sqrt(mean(x^2) + eps) over the trailing dims, times ``weight``."""
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(ns)
    if tuple(input.shape[input.ndim - k:]) != ns:
        raise RuntimeError(f"Given normalized_shape={list(ns)}, expected input with shape "
                           f"[*, {', '.join(str(s) for s in ns)}], but got input of size"
                           f"{input.shape}")
    if eps is None:
        eps = D.finfo(input.dtype).eps
    dims = tuple(range(input.ndim - k, input.ndim))
    y = input * E.rsqrt((input * input).mean(dims, keepdim=True) + eps)
    return y * weight if weight is not None else y


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Normalise each element by the energy of ``size`` neighbouring channels."""
    if input.ndim < 3:
        raise ValueError(f"Expected 3D or higher dimensionality input (got {input.ndim} "
                         "dimensions)")
    if input.numel() == 0:
        return input
    from ..ops.shape import cat
    sq = input * input
    c = input.shape[1]
    zshape = list(input.shape)
    front, back = size // 2, (size - 1) // 2
    parts = []
    zshape[1] = front + 1  # one more leading zero so window sums are cumsum differences
    parts.append(_zeros(zshape, dtype=input.dtype, device=input.device))
    parts.append(sq)
    if back:
        zshape[1] = back
        parts.append(_zeros(zshape, dtype=input.dtype, device=input.device))
    cs = cat(parts, 1).cumsum(1)
    window = cs[:, size:size + c] - cs[:, 0:c]
    div = (window * (alpha / size) + k) ** beta
    return input / div


def normalize(input, p=2.0, dim=1, eps=1e-12, out=None):
    """Divide by the ``p``-norm along ``dim`` (at least ``eps``)."""
    denom = input.norm(p, dim, keepdim=True).clamp_min(eps).expand_as(input)
    res = input / denom
    if out is not None:
        out.copy_(res)
        return out
    return res


# ---------------------------------------------------------------------- distances
def one_hot(tensor, num_classes=-1):
    """Class indices to a one-hot int64 tensor with a trailing class dim."""
    arr = tensor._data
    if arr.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    if num_classes == -1:
        if arr.size == 0:
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(arr.max()) + 1
    if arr.size and arr.min() < 0:
        raise RuntimeError("Class values must be non-negative.")
    if arr.size and arr.max() >= num_classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    out = (arr[..., None] == np.arange(num_classes)).astype(np.int64)
    return _make(out)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """Cosine of the angle between ``x1`` and ``x2`` along ``dim``."""
    from ..ops.shape import broadcast_tensors
    x1, x2 = broadcast_tensors(x1, x2)
    n1 = x1.norm(2, dim, keepdim=True).clamp_min(eps)
    n2 = x2.norm(2, dim, keepdim=True).clamp_min(eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """``||x1 - x2 + eps||_p`` along the last dim."""
    d = max(x1.ndim, x2.ndim, 1) - 1
    diff = x1 - x2 + eps
    if diff.ndim == 0:
        diff = diff.reshape(1)
    return diff.norm(p, d, keepdim=keepdim)


def pdist(input, p=2):
    """Distances between every pair of rows (upper triangle, row-major)."""
    if input.ndim != 2:
        raise RuntimeError(f"pdist only supports 2D tensors, got: {input.ndim}D")
    n = input.shape[0]
    i, j = np.triu_indices(n, 1)
    diff = input[_make(i)] - input[_make(j)]
    return diff.norm(p, 1)


# ---------------------------------------------------------------------- losses
@autocast_function("fp32")
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean (or sum) absolute error."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _same_size_warning(input, target)
    loss = E.abs(input - target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@autocast_function("fp32")
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean (or sum) squared error."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _same_size_warning(input, target)
    d = input - target
    loss = d * d
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@autocast_function("fp32")
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log likelihood of the target classes given log-probabilities."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if input.ndim < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.ndim})")
    return K.NllLoss.apply(input, target, weight, reduction, ignore_index)


@autocast_function("fp32")
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Cross-entropy between logits and class indices or class probabilities."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: "
                           f"{label_smoothing}")
    cls_axis = 1 if input.ndim >= 2 else 0
    n_cls = input.shape[cls_axis]
    if target.is_floating_point():
        if target.shape != input.shape:
            raise RuntimeError("Expected floating point type target to have the same shape as "
                               f"input {list(input.shape)}, but got {list(target.shape)}")
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / n_cls
        prod = log_softmax(input, cls_axis) * target
        if weight is not None:
            prod = prod * weight.reshape((-1,) + (1,) * (input.ndim - cls_axis - 1))
        loss = -prod.sum(cls_axis)
        if reduction == "mean":
            return loss.sum() / (input.numel() / n_cls) if input.numel() else loss.sum() * \
                float("nan")
        return _reduce(loss, reduction)
    if label_smoothing == 0.0:
        return K.CrossEntropy.apply(input, target, weight, reduction, ignore_index)
    logp = log_softmax(input, cls_axis)
    nll = K.NllLoss.apply(logp, target, weight, reduction, ignore_index)
    ignore = target == ignore_index
    prod = logp
    if weight is not None:
        prod = prod * weight.reshape((-1,) + (1,) * (input.ndim - cls_axis - 1))
    smooth = (-prod.sum(cls_axis)).masked_fill(ignore, 0.0)
    if reduction == "mean":
        if weight is not None:
            valid = target._data[~ignore._data]
            denom = float(weight._data[valid].sum())
        else:
            denom = float((~ignore._data).sum())
        smooth = smooth.sum() / denom
    else:
        smooth = _reduce(smooth, reduction)
    return nll * (1 - label_smoothing) + smooth * (label_smoothing / n_cls)


@autocast_function("fp32")
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    """-(t log x + (1 - t) log(1 - x)), logs clamped at -100 as in PyTorch."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({target.shape}) that is different to the input "
                         f"size ({input.shape}) is deprecated. Please ensure they have the same "
                         "size.")
    x = input._data
    if x.size and ((x < 0) | (x > 1)).any():
        raise RuntimeError("all elements of input should be between 0 and 1")
    loss = -(target * E.log(input).clamp_min(-100)
             + (1 - target) * E.log(1 - input).clamp_min(-100))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@autocast_function("fp32")
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable formula; ``pos_weight`` weighs positives."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({target.shape}) must be the same as input size "
                         f"({input.shape})")
    ls = K.LogSigmoid.apply(input)
    if pos_weight is not None:
        loss = (1 - target) * input - ((pos_weight - 1) * target + 1) * ls
    else:
        loss = (1 - target) * input - ls
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@autocast_function("fp32")
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL divergence with ``input`` given as log-probabilities."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the "
                      "support size.'batchmean' divides only by the batch size, and aligns with "
                      "the KL div math definition.'mean' will be changed to behave the same as "
                      "'batchmean' in the next major release.", stacklevel=2)
    if log_target:
        loss = E.exp(target) * (target - input)
    else:
        pos = target > 0
        loss = E.where(pos, target * E.log(E.where(pos, target, 1.0)), 0.0) - target * input
    if reduction == "batchmean":
        return loss.sum() / input.shape[0] if input.ndim else loss.sum()
    return _reduce(loss, reduction)


@autocast_function("fp32")
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """Quadratic below ``beta``, linear above (scaled so the pieces meet)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _same_size_warning(input, target)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    d = E.abs(input - target)
    if beta == 0:
        return _reduce(d, reduction)
    loss = E.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)
    return _reduce(loss, reduction)


@autocast_function("fp32")
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """Quadratic below ``delta``, ``delta``-linear above."""
    _same_size_warning(input, target)
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    d = E.abs(input - target)
    loss = E.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


@autocast_function("fp32")
def soft_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """log(1 + exp(-y x))."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _same_size_warning(input, target)
    return _reduce(-K.LogSigmoid.apply(input * target), reduction)


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None,
                                reduction="mean"):
    """Per-class logistic loss averaged over classes."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    loss = -(target * K.LogSigmoid.apply(input) + (1 - target) * K.LogSigmoid.apply(-input))
    if weight is not None:
        loss = loss * weight
    cdim = input.ndim - 1
    loss = loss.sum(cdim) / input.shape[cdim]
    return _reduce(loss, reduction)


@autocast_function("fp32")
def multilabel_margin_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Hinge loss between each target class and each non-target class (targets end at -1)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if input.ndim > 2 or target.shape != input.shape:
        raise RuntimeError(f"inconsistent target size: {list(target.shape)} for input of size: "
                           f"{list(input.shape)}")
    x = input if input.ndim == 2 else input.reshape(1, -1)
    t = target._data.reshape(x.shape)
    n, c = x.shape
    counts = np.zeros((n, c), dtype=x._data.dtype)  # how often class j is listed as a target
    is_target = np.zeros((n, c), dtype=bool)
    if input.is_meta:  # which classes are targets changes values only: no loop over them
        t = np.zeros((n, 0), np.int64)
    for r in range(n):
        for idx in t[r]:
            if idx < 0:
                break
            if idx >= c:
                raise RuntimeError(f"argument #2 'target' is out of range: {idx}")
            counts[r, idx] += 1
            is_target[r, idx] = True
    pair = counts[:, :, None] * (~is_target)[:, None, :]
    hinge = E.relu(1 - x.unsqueeze(2) + x.unsqueeze(1))
    loss = (hinge * _make(pair).to(input.device)).sum((1, 2)) / c
    if input.ndim < 2:
        loss = loss.reshape(())
    return _reduce(loss, reduction)


@autocast_function("fp32")
def multi_margin_loss(input, target, p=1, margin=1.0, weight=None, size_average=None,
                      reduce=None, reduction="mean"):
    """Multi-class hinge loss: sum over wrong classes of max(0, margin - x[y] + x[i])^p / C."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")
    x = input if input.ndim == 2 else input.reshape(1, -1)
    t = target.reshape(-1, 1)
    c = x.shape[1]
    xy = x.gather(1, t)
    h = E.relu(margin - xy + x)
    if p == 2:
        h = h * h
    if weight is not None:
        h = h * weight[target.reshape(-1)].reshape(-1, 1)
    others = _make(np.arange(c)[None, :] != t._data)
    loss = (h * others).sum(1) / c
    if input.ndim < 2:
        loss = loss.reshape(())
    return _reduce(loss, reduction)


@autocast_function("fp32")
def cosine_embedding_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None,
                          reduction="mean"):
    """1 - cos(x1, x2) for y = 1, max(0, cos(x1, x2) - margin) for y = -1."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    d = input1.ndim - 1
    eps = 1e-12
    prod = (input1 * input2).sum(d)
    m1 = (input1 * input1).sum(d) + eps
    m2 = (input2 * input2).sum(d) + eps
    cos = prod / E.sqrt(m1 * m2)
    loss = E.where(target == 1, 1 - cos, 0.0) + E.where(target == -1,
                                                        (cos - margin).clamp_min(0), 0.0)
    return _reduce(loss, reduction)


@autocast_function("fp32")
def margin_ranking_loss(input1, input2, target, margin=0.0, size_average=None, reduce=None,
                        reduction="mean"):
    """max(0, -y (x1 - x2) + margin)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if input1.ndim != input2.ndim or input1.ndim != target.ndim:
        raise RuntimeError(f"margin_ranking_loss : All input tensors should have same dimension "
                           f"but got sizes: input1: {input1.shape}, input2: {input2.shape}, "
                           f"target: {target.shape} ")
    return _reduce((-target * (input1 - input2) + margin).clamp_min(0), reduction)


@autocast_function("fp32")
def hinge_embedding_loss(input, target, margin=1.0, size_average=None, reduce=None,
                         reduction="mean"):
    """x for y = 1, max(0, margin - x) for y = -1."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    loss = E.where(target != 1, (margin - input).clamp_min(0), 0.0) + \
        E.where(target != -1, input, 0.0)
    return _reduce(loss, reduction)


@autocast_function("fp32")
def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False,
                        size_average=None, reduce=None, reduction="mean"):
    """max(0, margin + d(a, p) - d(a, n)) with the p-norm distance."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    a, pos, neg = anchor.ndim, positive.ndim, negative.ndim
    if not (a == pos == neg):
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have the "
                           f"same number of dimensions, but got: anchor {a}D, positive {pos}D, "
                           f"and negative {neg}D inputs")
    d_pos = pairwise_distance(anchor, positive, p, eps)
    d_neg = pairwise_distance(anchor, negative, p, eps)
    if swap:
        d_neg = E.minimum(d_neg, pairwise_distance(positive, negative, p, eps))
    return _reduce((margin + d_pos - d_neg).clamp_min(0), reduction)


def triplet_margin_with_distance_loss(anchor, positive, negative, *, distance_function=None,
                                      margin=1.0, swap=False, reduction="mean"):
    """Triplet loss with any distance function (default: pairwise_distance)."""
    if margin <= 0:
        raise ValueError(f"triplet_margin_with_distance_loss: expected margin to be greater "
                         f"than 0, got {margin} instead")
    dist = distance_function if distance_function is not None else pairwise_distance
    d_pos = dist(anchor, positive)
    d_neg = dist(anchor, negative)
    if swap:
        d_neg = E.minimum(d_neg, dist(positive, negative))
    return _reduce((margin + d_pos - d_neg).clamp_min(0), reduction)


@autocast_function("fp32")
def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8,
                     reduce=None, reduction="mean"):
    """Negative log likelihood of a Poisson target with rate exp(input) (or input)."""
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if log_input:
        loss = E.exp(input) - target * input
    else:
        loss = input - target * E.log(input + eps)
    if full:
        t = target
        safe = E.where(t > 1, t, 2.0)
        stirling = safe * E.log(safe) - safe + 0.5 * E.log(2 * math.pi * safe)
        loss = loss + E.where(t > 1, stirling, 0.0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """Negative log likelihood of ``target`` under N(input, var)."""
    if not isinstance(var, Tensor):
        var = _tensor(float(var), dtype=input.dtype).expand_as(input)
    if var.shape != input.shape:
        if input.shape[:-1] == var.shape:
            var = var.unsqueeze(-1)
        elif not (input.shape[:-1] == var.shape[:-1] and var.shape[-1] == 1):
            raise ValueError("var is of incorrect size")
    _check_reduction(reduction)
    if (var._data < 0).any():
        raise ValueError("var has negative entry/entries")
    var = var.clone()
    with no_grad():
        var.clamp_(min=eps)
    loss = 0.5 * (E.log(var) + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


@autocast_function("fp32")
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean",
             zero_infinity=False):
    """Connectionist temporal classification loss of ``log_probs`` ``(T, N, C)`` (or
    ``(T, C)``) against ``targets`` (``(N, S)`` padded, or the targets of all samples
    concatenated), with per-sample input and target lengths."""
    from ..ops.nn import CTCLoss
    _check_reduction(reduction)
    batched = log_probs.ndim == 3
    if log_probs.ndim not in (2, 3):
        raise RuntimeError(f"ctc_loss: expected log_probs to be 2-D or 3-D, got "
                           f"{log_probs.ndim}-D")
    lp = log_probs if batched else log_probs.unsqueeze(1)
    T, N, C = lp.shape

    def lengths(v, what):
        a = np.asarray(v._data if isinstance(v, Tensor) else v, dtype=np.int64).reshape(-1)
        if a.shape[0] != N:
            raise RuntimeError(f"ctc_loss: expected {what} to have size {N}, but got "
                               f"{a.shape[0]}")
        return a
    in_lens = lengths(input_lengths, "input_lengths")
    tgt_lens = lengths(target_lengths, "target_lengths")
    if (in_lens > T).any() or (in_lens < 0).any():
        raise RuntimeError(f"ctc_loss: expected input_lengths in [0, {T}], got "
                           f"{in_lens.tolist()}")
    if not 0 <= blank < C:
        raise RuntimeError("blank must be in label range")
    t = targets._data if isinstance(targets, Tensor) else np.asarray(targets)
    t = t.astype(np.int64)
    S = int(tgt_lens.max()) if N else 0
    padded = np.full((N, S), blank, dtype=np.int64)
    if t.ndim == 1 or not batched:  # concatenated (or one unbatched sequence)
        flat = t.reshape(-1)
        if flat.shape[0] < tgt_lens.sum():
            raise RuntimeError("ctc_loss: targets hold fewer labels than target_lengths sum")
        start = 0
        for b, n in enumerate(tgt_lens):
            padded[b, :n] = flat[start:start + n]
            start += n
    else:
        if t.shape[1] < S:
            raise RuntimeError(f"Expected tensor to have size at least {S} at dimension 1, but "
                               f"got size {t.shape[1]} for argument #2 'targets'")
        for b, n in enumerate(tgt_lens):
            padded[b, :n] = t[b, :n]
    if ((padded < 0) | (padded >= C)).any():
        raise RuntimeError("ctc_loss: targets must be in [0, num_classes)")
    loss = CTCLoss.apply(lp, padded, in_lens, tgt_lens, int(blank), bool(zero_infinity))
    if reduction == "none":
        return loss if batched else loss.squeeze(0)
    if reduction == "sum":
        return loss.sum()
    denom = _make(np.maximum(tgt_lens, 1).astype(loss._data.dtype))
    return (loss / denom).mean()


def _fractional_intervals(sample, in_size, out_size, k):
    """PyTorch's pseudo-random window starts: ``floor((i + u) a) - floor(u a)`` with
    ``a = (in - k) / (out - 1)``, and the last window flush with the end."""
    starts = np.empty(sample.shape + (out_size,), dtype=np.int64)
    if out_size > 1:
        alpha = (in_size - k) / (out_size - 1)
        i = np.arange(out_size - 1)
        starts[..., :-1] = (np.floor((i + sample[..., None]) * alpha)
                            - np.floor(sample[..., None] * alpha)).astype(np.int64)
    starts[..., -1] = in_size - k
    return starts


def _fractional_max_pool(nd, input, kernel_size, output_size, output_ratio, return_indices,
                         _random_samples):
    from .._random import _rng
    name = f"fractional_max_pool{nd}d"
    batched = input.ndim == nd + 2
    if input.ndim not in (nd + 1, nd + 2):
        raise RuntimeError(f"{name}: expected {nd + 1}D or {nd + 2}D input, got {input.ndim}D")
    x = input if batched else input.unsqueeze(0)
    n, c = x.shape[:2]
    spatial = tuple(x.shape[2:])
    ks = (kernel_size,) * nd if isinstance(kernel_size, int) else tuple(kernel_size)
    if output_size is None:
        if output_ratio is None:
            raise ValueError(f"{name} requires specifying either an output_size or an "
                             "output_ratio")
        ratio = (output_ratio,) * nd if isinstance(output_ratio, (int, float)) else \
            tuple(output_ratio)
        output_size = tuple(int(s * r) for s, r in zip(spatial, ratio))
    osz = (output_size,) * nd if isinstance(output_size, int) else tuple(output_size)
    for s, o, k in zip(spatial, osz, ks):
        if o + k - 1 > s:
            raise RuntimeError(f"{name}(): pool height/width ({k}) too large relative to input "
                               f"size ({s}) for output size {o}")
    if _random_samples is None:
        samples = _rng().random((n, c, nd)).astype(x._data.dtype)
    else:
        samples = np.asarray(_random_samples._data if isinstance(_random_samples, Tensor)
                             else _random_samples, dtype=np.float64)
    # as in PyTorch: in 2-d samples[..., 0] drives the width (last) dim, in 3-d the first
    order = [1, 0] if nd == 2 else list(range(nd))
    starts = [_fractional_intervals(samples[..., order[d]].astype(np.float64), spatial[d],
                                    osz[d], ks[d]) for d in range(nd)]
    xa = x._data
    plane = xa.reshape(n, c, -1)
    strides = [int(np.prod(spatial[d + 1:])) for d in range(nd)]
    best_idx = None
    best_val = None
    for offs in np.ndindex(*ks):
        flat = np.zeros((n, c) + osz, dtype=np.int64)
        for d in range(nd):
            shape = [n, c] + [1] * nd
            shape[2 + d] = osz[d]
            flat = flat + ((starts[d] + offs[d]) * strides[d]).reshape(shape)
        vals = np.take_along_axis(plane, flat.reshape(n, c, -1), 2).reshape(flat.shape)
        if best_val is None:
            best_val, best_idx = vals, flat
        else:
            take = (vals > best_val) | (np.isnan(vals) & ~np.isnan(best_val))
            best_val = np.where(take, vals, best_val)
            best_idx = np.where(take, flat, best_idx)
    idx = _make(best_idx)
    out = x.flatten(2).gather(2, idx.reshape(n, c, -1)).reshape((n, c) + osz)
    if not batched:
        out, idx = out.squeeze(0), idx.squeeze(0)
    return (out, idx) if return_indices else out


def fractional_max_pool2d(input, kernel_size, output_size=None, output_ratio=None,
                          return_indices=False, _random_samples=None):
    """Max pooling over pseudo-randomly placed 2-d windows (Graham's fractional pooling)."""
    return _fractional_max_pool(2, input, kernel_size, output_size, output_ratio,
                                return_indices, _random_samples)


def fractional_max_pool3d(input, kernel_size, output_size=None, output_ratio=None,
                          return_indices=False, _random_samples=None):
    """Max pooling over pseudo-randomly placed 3-d windows."""
    return _fractional_max_pool(3, input, kernel_size, output_size, output_ratio,
                                return_indices, _random_samples)


def fractional_max_pool2d_with_indices(input, kernel_size, output_size=None, output_ratio=None,
                                       return_indices=False, _random_samples=None):
    return fractional_max_pool2d(input, kernel_size, output_size, output_ratio, True,
                                 _random_samples)


def fractional_max_pool3d_with_indices(input, kernel_size, output_size=None, output_ratio=None,
                                       return_indices=False, _random_samples=None):
    return fractional_max_pool3d(input, kernel_size, output_size, output_ratio, True,
                                 _random_samples)


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None,
                         reduction="mean", ignore_index=None, label_smoothing=0.0,
                         options=None):
    """``cross_entropy(linear(input, linear_weight, linear_bias), target, ...)``.

    ``input`` is ``(N, in)`` or ``(in,)``; ``linear_weight`` is ``(C, in)``, or
    ``(C, d1, .., dK, in)`` for a K-dimensional loss (logits ``(N, C, d1, .., dK)``).
    ``options`` selects PyTorch's chunked kernels, which compute the same values; it is
    accepted and the plain formulation runs."""
    if input.ndim not in (1, 2):
        raise RuntimeError(f"expected input with dimensionality 1 or 2, got {input.ndim}")
    if linear_weight.ndim < 2:
        raise RuntimeError(f"expected linear_weight with dimensionality at least 2, got "
                           f"{linear_weight.ndim}")
    batch = tuple(input.shape[:-1])
    in_features = input.shape[-1]
    if in_features != linear_weight.shape[-1]:
        raise RuntimeError(f"expected equal input and linear_weight last dimensions "
                           f"(in_features), got {in_features} and {linear_weight.shape[-1]}, "
                           f"respectively")
    classes = linear_weight.shape[0]
    extra = tuple(linear_weight.shape[1:-1])
    if linear_bias is not None and tuple(linear_bias.shape) != (classes,) + extra:
        raise RuntimeError(f"expected linear_bias shape {(classes,) + extra}, got "
                           f"{tuple(linear_bias.shape)}")
    if extra and not batch:
        raise RuntimeError(f"K-dimensional loss defined by linear_weight shape "
                           f"{tuple(linear_weight.shape)} requires batched input")
    logits_shape = batch + (classes,) + extra
    if tuple(target.shape) == logits_shape and ignore_index is not None:
        raise RuntimeError("ignore_index cannot be specified when target contains "
                           "probabilities")
    rows = int(np.prod((classes,) + extra))
    w = linear_weight.reshape(rows, in_features) if extra else linear_weight
    b = linear_bias.reshape(rows) if (extra and linear_bias is not None) else linear_bias
    logits = linear(input, w, b).reshape(logits_shape)
    return cross_entropy(logits, target, weight=weight, reduction=reduction,
                         ignore_index=-100 if ignore_index is None else ignore_index,
                         label_smoothing=label_smoothing)


# issue 23: TorchScript-era helpers, tables and conv_tbc at nn.functional's path
from ._functional_compat import *  # noqa: E402,F401,F403
# issue 23: grouped and scaled matrix products (MoE layers, float8)
from ._grouped_mm import (ScalingType, SwizzleType, grouped_mm, scaled_grouped_mm,  # noqa: E402,F401
                          scaled_mm)
