"""Convolution, pooling and resampling: the kernels behind ``nn.functional``'s conv, pool,
interpolate, pad, fold/unfold, grid_sample and pixel-shuffle families.

Convolution is im2col + one GEMM per group. The columns are laid out ``(C, *kernel, N,
*out)`` so that the forward, the weight gradient and the input gradient are each one
``matmul`` per group on contiguous blocks; col2im is a loop over kernel positions of strided
adds (never over pixels). Three ops close under differentiation, so double backward works:

* ``ConvNd(x, w, b)``            the convolution;
* ``ConvInputGrad(g, w)``         its input gradient (also the transposed convolution);
* ``ConvWeightGrad(x, g)``        its weight gradient.

Pooling windows are strided views of a padded array: max pooling is a running
``np.maximum`` over kernel positions (the argmax is found only when backward or
``return_indices`` needs it); average pooling is a running sum divided by PyTorch's divisor.
Resampling, grid_sample, affine_grid, pixel shuffles and non-constant padding are composed of
ember ops (index_select, matmul, gather), so their gradients come from those ops.
"""

from __future__ import annotations

import builtins
import itertools
import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._tensor import Tensor, _make
from ..autograd.graph import Node

__all__ = [
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "max_unpool1d", "max_unpool2d",
    "max_unpool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices",
    "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d_with_indices", "lp_pool1d",
    "lp_pool2d", "lp_pool3d", "interpolate", "upsample", "upsample_nearest", "upsample_bilinear",
    "pad", "unfold", "fold", "grid_sample", "affine_grid", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle", "native_channel_shuffle",
]

_prod = math.prod


# ====================================================================== argument helpers
def _ntuple(v, n, name, op):
    """An int or a sequence of 1 or ``n`` ints -> a tuple of ``n`` ints."""
    if isinstance(v, (int, np.integer)):
        return (int(v),) * n
    v = tuple(v)
    if len(v) == 1:
        return (int(v[0]),) * n
    if len(v) != n:
        raise RuntimeError(f"{op}: {name} must either be a single int, or a tuple of {n} ints")
    return tuple(int(e) for e in v)


def _dt_name(dt):
    return {"float32": "float", "float64": "double", "float16": "c10::Half",
            "bfloat16": "c10::BFloat16"}.get(dt.name, dt.name)


def _as_compute(a):
    """Half and bfloat16 compute in float32 (NumPy's own half GEMMs are slow or inexact)."""
    if a.dtype.kind == "f" and a.dtype.itemsize >= 4:
        return a
    if a.dtype.kind in "fV" or a.dtype.name == "bfloat16":
        return a.astype(np.float32)
    return a


def _check_float(a, op):
    if not (a.dtype.kind == "f" or a.dtype.name == "bfloat16"):
        from .._dtype import _BY_NP
        from ..autograd.graph import _pt_name
        raise RuntimeError(f'"{op}" not implemented for \'{_pt_name(_BY_NP[a.dtype])}\'')


def _batched(input, nd, op, what="input"):
    """Accept unbatched ``(C, *spatial)`` input as PyTorch does: returns (batched, unsqueezed)."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{op}(): argument '{what}' must be Tensor, not {type(input).__name__}")
    if input.ndim == nd + 2:
        return input, False
    if input.ndim == nd + 1:
        return input.unsqueeze(0), True
    raise RuntimeError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to {op}, "
                       f"but got input of size: {list(input.shape)}")


def _unbatch(out, squeeze):
    if not squeeze:
        return out
    if isinstance(out, tuple):
        return tuple(o.squeeze(0) for o in out)
    return out.squeeze(0)


# ====================================================================== array kernels
def _pad_array(x, pads, value=0.0):
    """Pad the spatial dims of ``x`` (N, C, *S) by ``pads`` = ((lo, hi), ...), lo/hi >= 0."""
    if not any(lo or hi for lo, hi in pads):
        return x
    shape = x.shape[:2] + tuple(s + lo + hi for s, (lo, hi) in zip(x.shape[2:], pads))
    out = np.full(shape, value, dtype=x.dtype) if value else np.zeros(shape, dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(lo, lo + s)
                                           for s, (lo, _) in zip(x.shape[2:], pads))] = x
    return out


def _window_slices(k, st, dl, osz):
    """The strided slice of the padded input that kernel position ``k`` sees."""
    return (slice(None), slice(None)) + tuple(
        slice(ki * d, ki * d + (o - 1) * s + 1, s) for ki, s, d, o in zip(k, st, dl, osz))


def _im2col(xp, ks, st, dl, osz):
    """Columns ``(C, *ks, N, *osz)`` (contiguous) of the padded input ``xp``."""
    n, c = xp.shape[:2]
    ss = xp.strides[2:]
    view = as_strided(xp, (c,) + ks + (n,) + osz,
                      (xp.strides[1],) + tuple(s * d for s, d in zip(ss, dl))
                      + (xp.strides[0],) + tuple(s * t for s, t in zip(ss, st)),
                      writeable=False)
    return np.ascontiguousarray(view)


def _col2im(cols, xshape, pads, ks, st, dl, osz):
    """Adjoint of ``_im2col`` followed by cropping the padding: an array of ``xshape``."""
    n, c = xshape[:2]
    sp = tuple(builtins.max(lo + s, (o - 1) * t + d * (k - 1) + 1)
               for s, (lo, _), o, t, d, k in zip(xshape[2:], pads, osz, st, dl, ks))
    # Accumulate channel-major, as the columns are, then transpose once at the end.
    buf = np.zeros((c, n) + sp, dtype=cols.dtype)
    for k in itertools.product(*(range(k) for k in ks)):
        buf[_window_slices(k, st, dl, osz)] += cols[(slice(None),) + k]
    crop = (slice(None), slice(None)) + tuple(slice(lo, lo + s)
                                              for s, (lo, _) in zip(xshape[2:], pads))
    out = np.empty(xshape, dtype=cols.dtype)
    out[...] = buf[crop].swapaxes(0, 1)
    return out


def _channel_major(g, groups):
    """``g`` (N, O, *out) as contiguous ``(groups, O // groups, N * L)``."""
    n, o = g.shape[:2]
    return np.ascontiguousarray(g.reshape(n, o, -1).swapaxes(0, 1)).reshape(groups, o // groups, -1)


# ====================================================================== convolution ops
class ConvNd(Node):
    """``conv(x, w) + b`` with per-dim (lo, hi) zero padding."""

    saves = (0, 1)

    @staticmethod
    def forward(ctx, x, w, b, stride, pads, dilation, groups):
        _remember(ctx, stride, pads, dilation, groups)
        dt = x.dtype
        x, w = _as_compute(x), _as_compute(w)
        ks = w.shape[2:]
        n, o = x.shape[0], w.shape[0]
        xp = _pad_array(x, pads)
        osz = tuple((s - d * (k - 1) - 1) // t + 1
                    for s, k, t, d in zip(xp.shape[2:], ks, stride, dilation))
        cols = _im2col(xp, ks, stride, dilation, osz).reshape(groups, -1, n * _prod(osz))
        res = np.matmul(w.reshape(groups, o // groups, -1), cols).reshape(o, n, -1)
        out = np.empty((n, o) + osz, dtype=res.dtype)
        dst = out.reshape(n, o, -1)
        if b is None:
            dst[...] = res.swapaxes(0, 1)
        else:
            np.add(res.swapaxes(0, 1), _as_compute(b).reshape((o, 1)), out=dst)
        return out if out.dtype == dt else out.astype(dt)

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad[:3]
        st, pads, dl, groups = _recall(ctx)
        gx = ConvInputGrad.apply(g, w, tuple(x.shape), st, pads, dl, groups) if nx else None
        gw = ConvWeightGrad.apply(x, g, tuple(w.shape), st, pads, dl, groups) if nw else None
        gb = g.sum(dim=(0,) + tuple(range(2, g.ndim))) if nb else None
        return gx, gw, gb, None, None, None, None


def _remember(ctx, stride, pads, dilation, groups):
    ctx.stride, ctx.pads, ctx.dilation, ctx.groups = stride, pads, dilation, groups


def _recall(ctx):
    return ctx.stride, ctx.pads, ctx.dilation, ctx.groups


class ConvInputGrad(Node):
    """The gradient of ``conv(x, w)`` with respect to ``x`` of shape ``xshape``, for output
    gradient ``g``; with ``g`` as the input it is the transposed convolution."""

    saves = (0, 1)

    @staticmethod
    def forward(ctx, g, w, xshape, stride, pads, dilation, groups):
        _remember(ctx, stride, pads, dilation, groups)
        dt = g.dtype
        g, w = _as_compute(g), _as_compute(w)
        osz = g.shape[2:]
        o, cg = w.shape[:2]
        ks = w.shape[2:]
        wm = w.reshape(groups, o // groups, -1)
        cols = np.matmul(wm.transpose(0, 2, 1), _channel_major(g, groups))
        cols = cols.reshape((cg * groups,) + ks + (g.shape[0],) + osz)
        out = _col2im(cols, xshape, pads, ks, stride, dilation, osz)
        return out if out.dtype == dt else out.astype(dt)

    @staticmethod
    def backward(ctx, h):
        g, w = ctx.saved_tensors
        ng, nw = ctx.needs_input_grad[:2]
        st, pads, dl, groups = _recall(ctx)
        gg = ConvNd.apply(h, w, None, st, pads, dl, groups) if ng else None
        gw = ConvWeightGrad.apply(h, g, tuple(w.shape), st, pads, dl, groups) if nw else None
        return gg, gw, None, None, None, None, None


class ConvWeightGrad(Node):
    """The gradient of ``conv(x, w)`` with respect to ``w`` (of ``wshape``) for output
    gradient ``g``."""

    saves = (0, 1)

    @staticmethod
    def forward(ctx, x, g, wshape, stride, pads, dilation, groups):
        _remember(ctx, stride, pads, dilation, groups)
        dt = g.dtype
        x, g = _as_compute(x), _as_compute(g)
        ks = tuple(wshape[2:])
        osz = g.shape[2:]
        cols = _im2col(_pad_array(x, pads), ks, stride, dilation, osz)
        cols = cols.reshape(groups, -1, x.shape[0] * _prod(osz))
        gw = np.matmul(_channel_major(g, groups), cols.transpose(0, 2, 1)).reshape(wshape)
        return gw if gw.dtype == dt else gw.astype(dt)

    @staticmethod
    def backward(ctx, hw):
        x, g = ctx.saved_tensors
        nx, ng = ctx.needs_input_grad[:2]
        st, pads, dl, groups = _recall(ctx)
        gx = ConvInputGrad.apply(g, hw, tuple(x.shape), st, pads, dl, groups) if nx else None
        gg = ConvNd.apply(x, hw, None, st, pads, dl, groups) if ng else None
        return gx, gg, None, None, None, None, None


# ====================================================================== functional conv
def _conv_pads(padding, ks, stride, dilation, op):
    """PyTorch's padding argument (int, tuple, 'same', 'valid') as ((lo, hi), ...)."""
    nd = len(ks)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError("padding='same' is not supported for strided convolutions")
            pads = []
            for k, d in zip(ks, dilation):
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        raise ValueError(f"Invalid padding string '{padding}', should be one of "
                         "{'valid', 'same'}")
    p = _ntuple(padding, nd, "padding", op)
    if any(v < 0 for v in p):
        raise RuntimeError("negative padding is not supported")
    return tuple((v, v) for v in p)


def _check_conv(op, x, w, b, groups, transposed=False):
    nd = w.ndim - 2
    if w.ndim != x.ndim:
        raise RuntimeError(f"Expected {w.ndim}-dimensional input for {w.ndim}-dimensional "
                           f"weight {list(w.shape)}, but got {x.ndim}-dimensional input of size "
                           f"{list(x.shape)} instead")
    if groups <= 0:
        raise RuntimeError("non-positive groups is not supported")
    if x.dtype != w.dtype:
        raise RuntimeError(f"Input type ({_dt_name(x.dtype)}) and weight type "
                           f"({_dt_name(w.dtype)}) should be the same")
    _check_float(x, op)
    c = x.shape[1]
    if transposed:
        if c != w.shape[0]:
            raise RuntimeError(f"Given transposed=1, weight of size {list(w.shape)}, expected "
                               f"input{list(x.shape)} to have {w.shape[0]} channels, but got {c} "
                               "channels instead")
        if w.shape[0] % groups:
            raise RuntimeError("in_channels must be divisible by groups")
        nout = w.shape[1] * groups
    else:
        if c != w.shape[1] * groups:
            raise RuntimeError(f"Given groups={groups}, weight of size {list(w.shape)}, expected "
                               f"input{list(x.shape)} to have {w.shape[1] * groups} channels, but "
                               f"got {c} channels instead")
        if w.shape[0] % groups:
            raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by "
                               f"{groups} at dimension 0, but got weight of size "
                               f"{list(w.shape)} instead")
        nout = w.shape[0]
    if b is not None:
        if b.dtype != x.dtype:
            raise RuntimeError(f"Input type ({_dt_name(x.dtype)}) and bias type "
                               f"({_dt_name(b.dtype)}) should be the same")
        if b.ndim != 1 or b.shape[0] != nout:
            raise RuntimeError(f"Given weight of size {list(w.shape)}, expected bias to be "
                               f"1-dimensional with {nout} elements, but got bias of size "
                               f"{list(b.shape)} instead")
    return nd


def _convnd(nd, input, weight, bias, stride, padding, dilation, groups):
    op = f"conv{nd}d"
    x, squeeze = _batched(input, nd, op)
    w = weight._data
    _check_conv(op, x._data, w, bias._data if bias is not None else None, groups)
    ks = w.shape[2:]
    stride = _ntuple(stride, nd, "stride", op)
    dilation = _ntuple(dilation, nd, "dilation", op)
    if any(s <= 0 for s in stride):
        raise RuntimeError("non-positive stride is not supported")
    pads = _conv_pads(padding, ks, stride, dilation, op)
    spatial = x.shape[2:]
    padded = [s + lo + hi for s, (lo, hi) in zip(spatial, pads)]
    eff = [d * (k - 1) + 1 for k, d in zip(ks, dilation)]
    if any(p < e for p, e in zip(padded, eff)):
        sizes = " x ".join(map(str, padded))
        kern = " x ".join(map(str, eff))
        raise RuntimeError(f"Calculated padded input size per channel: ({sizes}). Kernel size: "
                           f"({kern}). Kernel size can't be greater than actual input size")
    out = ConvNd.apply(x, weight, bias, stride, pads, dilation, int(groups))
    return _unbatch(out, squeeze)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution over ``(N, C, L)`` input (PyTorch's ``F.conv1d``)."""
    return _convnd(1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution over ``(N, C, H, W)`` input (PyTorch's ``F.conv2d``)."""
    return _convnd(2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-d convolution over ``(N, C, D, H, W)`` input (PyTorch's ``F.conv3d``)."""
    return _convnd(3, input, weight, bias, stride, padding, dilation, groups)


def _conv_transposend(nd, input, weight, bias, stride, padding, output_padding, groups,
                      dilation):
    op = f"conv_transpose{nd}d"
    x, squeeze = _batched(input, nd, op)
    w = weight._data
    _check_conv(op, x._data, w, bias._data if bias is not None else None, groups,
                transposed=True)
    ks = w.shape[2:]
    stride = _ntuple(stride, nd, "stride", op)
    dilation = _ntuple(dilation, nd, "dilation", op)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be an int or a tuple, got '{padding}'")
    pad = _ntuple(padding, nd, "padding", op)
    opad = _ntuple(output_padding, nd, "output_padding", op)
    for op_, s, d in zip(opad, stride, dilation):
        if op_ >= s and op_ >= d:
            raise RuntimeError(f"output padding must be smaller than either stride or dilation, "
                               f"but got output_padding: {list(opad)} stride: {list(stride)} "
                               f"dilation: {list(dilation)}")
    out_sz = tuple((i - 1) * s - 2 * p + d * (k - 1) + q + 1 for i, s, p, d, k, q in
                   zip(x.shape[2:], stride, pad, dilation, ks, opad))
    if any(v <= 0 for v in out_sz):
        raise RuntimeError(f"Given input size per channel: {list(x.shape[2:])}. Calculated "
                           f"output size per channel: {list(out_sz)}. Output size is too small")
    xshape = (x.shape[0], w.shape[1] * groups) + out_sz
    out = ConvInputGrad.apply(x, weight, xshape, stride, tuple((p, p) for p in pad), dilation,
                              int(groups))
    if bias is not None:
        out = out + bias.reshape((1, -1) + (1,) * nd)
    return _unbatch(out, squeeze)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """1-d transposed convolution (the gradient of conv1d with respect to its input)."""
    return _conv_transposend(1, input, weight, bias, stride, padding, output_padding, groups,
                             dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """2-d transposed convolution (the gradient of conv2d with respect to its input)."""
    return _conv_transposend(2, input, weight, bias, stride, padding, output_padding, groups,
                             dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1):
    """3-d transposed convolution (the gradient of conv3d with respect to its input)."""
    return _conv_transposend(3, input, weight, bias, stride, padding, output_padding, groups,
                             dilation)
