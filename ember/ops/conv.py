"""Convolution, pooling and resampling: the kernels behind ``nn.functional``'s conv, pool,
interpolate, pad, fold/unfold, grid_sample and pixel-shuffle families.

Convolution is im2col + one GEMM per group. The columns are laid out ``(C, *kernel, N,
*out)`` so that the forward, the weight gradient and the input gradient are each one
``matmul`` per group on contiguous blocks; col2im is a loop over kernel positions of strided
adds (never over pixels). 3x3 stride-1 convolutions with >= 16 channels use Winograd's
F(2x2, 3x3) instead (2.25x fewer multiplies). The forward's columns (or Winograd tiles) are
kept for the weight gradient (up to a size cap), and a stride-1 input gradient with
out_channels <= in_channels runs as a "full" convolution with the flipped kernel instead of
col2im. Three ops close under differentiation, so double backward works:

* ``ConvNd(x, w, b)``            the convolution;
* ``ConvInputGrad(g, w)``         its input gradient (also the transposed convolution);
* ``ConvWeightGrad(x, g)``        its weight gradient.

The work around the GEMMs runs as small C kernels where a C compiler works
(``ember/ops/_conv_c.py``: Winograd's tile transforms, 2-d max pooling and its scatter,
split by channels over the thread pool), and im2col/col2im copies are cut by channels over
the same pool; the NumPy formulations below remain the fallback (``EMBER_CONV_C=0``).
2-d convolutions with few taps per output (C * KH * KW <= 160: LeNet's, a network's first
layer) skip im2col and GEMM: direct C kernels (``ember/ops/_conv_small_c.py``, the batch
split over the pool; ``EMBER_CONV_DIRECT=0`` turns them off) compute the forward, the
stride-1 weight gradient and the stride-1 input gradient as a full convolution; 2x2/2 max
pooling has a vectorised kernel there too (see ``_direct``).
Where NumPy's BLAS is an OpenBLAS, Winograd convolutions (forward, input gradient and
weight gradient) instead run fused by cache-sized blocks of tiles, transforms and BLAS
GEMMs together, one hand-off to the thread pool per convolution (``ember/ops/_wino_c.py``;
``EMBER_WINO_FUSED=0`` for the passes over whole arrays).

A 1x1 convolution without padding skips im2col: one product per sample on the NCHW data
(forward and input gradient; ``_conv1x1``). A stride-1 input gradient over tiny planes
(<= 16 positions) takes GEMM + col2im rather than the full convolution, whose flipped copy
of a wide weight costs more there (``_FULL_MIN_PLANE``). At two threads or more a stride-1
layer's input and weight gradients run side by side, one core each (``_pair_ok``;
``EMBER_CONV_PAIRS=0`` turns it off).

Pooling windows are strided views of a padded array: max pooling is a running
``np.maximum`` over kernel positions; its backward finds each window's first argmax with
branch-free mask arithmetic and scatter-adds the gradient in one ``np.add.at``. Average
pooling is a running sum divided by PyTorch's divisor.
Resampling, grid_sample, affine_grid, pixel shuffles and non-constant padding are composed of
ember ops (index_select, matmul, gather), so their gradients come from those ops.
"""

from __future__ import annotations

import builtins
import itertools
import math
import os
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import _allocator, _memory_format as _mf, _parallel
from .._threads import get_num_threads
from .._meta import MetaArray
from . import _conv_c, _conv_small_c, _wino_c
from .._tensor import Tensor, _make
from ..autograd import graph as _graph
from ..autograd.graph import Node, _ScratchCtx, named
from .. import _autocast
from .._autocast import autocast_function
from ..autograd import forward_ad as _fad

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


def _check_float(a, op, ints=""):
    """PyTorch's dtype dispatch error for kernels without a float implementation (or one for
    the integer kinds in ``ints``: "i" signed, "u" unsigned)."""
    if a.dtype.kind == "f" or a.dtype.name == "bfloat16" or a.dtype.kind in ints:
        return
    from .._dtype import _BY_NP
    from ..autograd.graph import _pt_name
    raise NotImplementedError(f'"{op}" not implemented for \'{_pt_name(_BY_NP[a.dtype])}\'')


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
_SCRATCH = threading.local()


def _scratch(name, shape, dtype):
    """A buffer for one kernel temporary (never handed to a caller).

    Fresh multi-megabyte arrays cost page faults on first touch that can exceed the
    arithmetic done in them (measured: Winograd's tile transform 7.0 ms fresh vs 2.4 ms in
    reused memory). Where ember's allocator settings are in effect (``ember/_allocator.py``)
    freed memory is reused without faults, so a plain fresh array serves and nothing stays
    allocated between calls (CIFAR benchmark: 25 MiB less held); elsewhere the big
    temporaries live in per-thread buffers, one per role."""
    if _allocator.applied:
        return np.empty(shape, dtype)
    dtype = np.dtype(dtype)
    pool = getattr(_SCRATCH, "pool", None)
    if pool is None:
        pool = _SCRATCH.pool = {}
    size = _prod(shape)
    buf = pool.get((name, dtype))
    if buf is None or buf.size < size:
        buf = pool[(name, dtype)] = np.empty(size, dtype=dtype)
    return buf[:size].reshape(shape)


def _pad_array(x, pads, value=0.0, scratch=None):
    """Pad the spatial dims of ``x`` (N, C, *S) by ``pads`` = ((lo, hi), ...), lo/hi >= 0.

    With ``scratch`` (a role name) the result lives in a reused buffer: the caller must not
    let it escape."""
    if not any(lo or hi for lo, hi in pads):
        return x
    shape = x.shape[:2] + tuple(s + lo + hi for s, (lo, hi) in zip(x.shape[2:], pads))
    if scratch is not None:
        out = _scratch(scratch, shape, x.dtype)
        out.fill(value)
    else:
        out = np.full(shape, value, dtype=x.dtype) if value else np.zeros(shape, dtype=x.dtype)
    out[(slice(None), slice(None)) + tuple(slice(lo, lo + s)
                                           for s, (lo, _) in zip(x.shape[2:], pads))] = x
    return out


def _window_slices(k, st, dl, osz):
    """The strided slice of the padded input that kernel position ``k`` sees."""
    return (slice(None), slice(None)) + tuple(
        slice(ki * d, ki * d + (o - 1) * s + 1, s) for ki, s, d, o in zip(k, st, dl, osz))


# Relayout copies and col2im's adds move this many elements or more: cut them by channels
# over the thread pool (NumPy releases the GIL in its copy loops; every channel's part is
# independent, so the result does not depend on the thread count).
_SPLIT_MIN = 1 << 17


def _by_channels(fn, c, size):
    """``fn(c0, c1)`` over channel ranges covering ``range(c)``, on the thread pool when
    ``size`` elements are worth it."""
    k = builtins.min(get_num_threads(), c) if size >= _SPLIT_MIN else 1
    if k <= 1:
        fn(0, c)
    else:
        _parallel.run_split(fn, _parallel._bounds(c, k))


def _im2col(xp, ks, st, dl, osz, scratch=None):
    """Columns ``(C, *ks, N, *osz)`` (contiguous) of the padded input ``xp`` (in a reused
    buffer when ``scratch`` names one)."""
    n, c = xp.shape[:2]
    ss = xp.strides[2:]
    view = as_strided(xp, (c,) + ks + (n,) + osz,
                      (xp.strides[1],) + tuple(s * d for s, d in zip(ss, dl))
                      + (xp.strides[0],) + tuple(s * t for s, t in zip(ss, st)),
                      writeable=False)
    out = np.empty(view.shape, xp.dtype) if scratch is None else \
        _scratch(scratch, view.shape, xp.dtype)
    _copy_rows(out, view, ks[0])
    return out


def _copy_rows(out, view, kh):
    """``out[...] = view`` for (C, kh, ...) arrays, split over the thread pool by rows
    ``(c, k)``: channels alone cut unevenly when they are few (3 colour channels, LeNet's
    one). Every part is a few slice copies."""
    rows = out.shape[0] * kh
    k = builtins.min(get_num_threads(), rows) if out.size >= _SPLIT_MIN else 1
    if k <= 1:
        out[...] = view
        return

    def part(r0, r1):
        c0, k0 = divmod(r0, kh)
        c1, k1 = divmod(r1, kh)
        if c0 == c1:
            out[c0, k0:k1] = view[c0, k0:k1]
            return
        if k0:
            out[c0, k0:] = view[c0, k0:]
            c0 += 1
        if c1 > c0:
            out[c0:c1] = view[c0:c1]
        if k1:
            out[c1, :k1] = view[c1, :k1]
    _parallel.run_split(part, _parallel._bounds(rows, k))


def _batch_last(osz, n):
    """Whether im2col/col2im should put the batch innermost: when output rows are shorter
    than the batch, every strided copy or add then moves runs of N values, not a row's few
    (measured: LeNet's second conv forward 1.1 -> 0.6 ms, its input gradient 2.0 -> 0.9 ms;
    CIFAR's first conv, rows of 32 and a batch of 32, is faster the usual way)."""
    return osz[-1] < n


def _im2col_batch_last(x, pads, ks, st, dl, osz):
    """Columns ``(C, *ks, *osz, N)`` (contiguous) of ``x`` zero-padded by ``pads``."""
    n, c = x.shape[:2]
    sp = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape[2:], pads))
    xt = np.empty((c,) + sp + (n,), x.dtype)
    padded = any(lo or hi for lo, hi in pads)
    inner = tuple(slice(lo, lo + s) for s, (lo, _) in zip(x.shape[2:], pads))
    xm = np.moveaxis(x, 0, -1)
    ss = xt.strides[1:-1]
    view = as_strided(xt, (c,) + tuple(ks) + tuple(osz) + (n,),
                      (xt.strides[0],) + tuple(s * d for s, d in zip(ss, dl))
                      + tuple(s * t for s, t in zip(ss, st)) + (xt.strides[-1],),
                      writeable=False)
    out = np.empty(view.shape, x.dtype)

    def part(c0, c1):
        if padded:
            xt[c0:c1].fill(0)
        xt[c0:c1][(slice(None),) + inner] = xm[c0:c1]
        out[c0:c1] = view[c0:c1]
    if c >= get_num_threads():
        _by_channels(part, c, out.size)
    else:  # few channels: the batch-last input whole (small), then the copy by rows
        if padded:
            xt.fill(0)
        xt[(slice(None),) + inner] = xm
        _copy_rows(out, view, ks[0])
    return out


def _col2im(cols, xshape, pads, ks, st, dl, osz):
    """Adjoint of ``_im2col`` followed by cropping the padding: an array of ``xshape``."""
    n, c = xshape[:2]
    sp = tuple(builtins.max(lo + s, (o - 1) * t + d * (k - 1) + 1)
               for s, (lo, _), o, t, d, k in zip(xshape[2:], pads, osz, st, dl, ks))
    # Accumulate channel-major, as the columns are, then transpose once at the end.
    buf = _scratch("col2im", (c, n) + sp, cols.dtype)
    crop = (slice(None), slice(None)) + tuple(slice(lo, lo + s)
                                              for s, (lo, _) in zip(xshape[2:], pads))
    out = np.empty(xshape, dtype=cols.dtype)

    def part(c0, c1):
        b = buf[c0:c1]
        b.fill(0)
        for k in itertools.product(*(range(k) for k in ks)):
            b[_window_slices(k, st, dl, osz)] += cols[(slice(c0, c1),) + k]
        out[:, c0:c1] = b[crop].swapaxes(0, 1)
    _by_channels(part, c, cols.size)
    return out


def _col2im_batch_last(cols, xshape, pads, ks, st, dl, osz):
    """``_col2im`` for columns laid out ``(C, *ks, *osz, N)``."""
    n, c = xshape[:2]
    sp = tuple(builtins.max(lo + s, (o - 1) * t + d * (k - 1) + 1)
               for s, (lo, _), o, t, d, k in zip(xshape[2:], pads, osz, st, dl, ks))
    buf = np.empty((c,) + sp + (n,), dtype=cols.dtype)
    crop = (slice(None),) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(xshape[2:], pads))
    out = np.empty(xshape, dtype=cols.dtype)

    def part(c0, c1):
        b = buf[c0:c1]
        b.fill(0)
        for k in itertools.product(*(range(k) for k in ks)):
            win = _window_slices(k, st, dl, osz)[1:] + (slice(None),)  # (C, *window, N)
            b[win] += cols[(slice(c0, c1),) + k]
        out[:, c0:c1] = np.moveaxis(b[crop], -1, 0)
    _by_channels(part, c, cols.size)
    return out


def _relayout(dst, src, b, nsp):
    """``dst[...] = src (+ b per channel)``, for (N, O, ...) arrays, split by channels."""
    bias = None if b is None else _as_compute(b).reshape((-1,) + (1,) * nsp)

    def part(c0, c1):
        if bias is None:
            dst[:, c0:c1] = src[:, c0:c1]
        else:
            np.add(src[:, c0:c1], bias[c0:c1], out=dst[:, c0:c1])
    _by_channels(part, dst.shape[1], dst.size)


def _channel_major(g, groups):
    """``g`` (N, O, *out) as contiguous ``(groups, O // groups, N * L)`` (a scratch buffer)."""
    n, o = g.shape[:2]
    out = _scratch("channel_major", (o, n, _prod(g.shape[2:])), g.dtype)
    src = g.reshape(n, o, -1).swapaxes(0, 1)

    def part(c0, c1):
        out[c0:c1] = src[c0:c1]
    _by_channels(part, o, out.size)
    return out.reshape(groups, o // groups, -1)


# ====================================================================== convolution ops
class ConvNd(Node):
    """``conv(x, w) + b`` with per-dim (lo, hi) zero padding."""

    saves = (0, 1)

    @staticmethod
    def meta(ctx, x, w, b, stride, pads, dilation, groups):
        _remember(ctx, stride, pads, dilation, groups)
        osz = tuple((s + lo + hi - d * (k - 1) - 1) // t + 1 for s, (lo, hi), k, t, d in
                    zip(x.shape[2:], pads, w.shape[2:], stride, dilation))
        return MetaArray((x.shape[0], w.shape[0]) + osz, x.dtype)

    @staticmethod
    def forward(ctx, x, w, b, stride, pads, dilation, groups):
        _remember(ctx, stride, pads, dilation, groups)
        keep = ctx.needs_input_grad[1:2] == (True,)
        out, cols = _conv_array(x, w, b, stride, pads, dilation, groups, keep)
        if keep and cols is not None and cols[1].nbytes <= _COLS_CACHE_BYTES:
            ctx.cols = cols  # the weight gradient reuses them (dropped after backward)
        return out

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad[:3]
        st, pads, dl, groups = _recall(ctx)
        cols = ctx.__dict__.pop("cols", None)
        capturing = _capturing_backward()
        if capturing:  # a recorded op gets no forward-time array: recompute
            cols = None
        pre = (None, None)
        if nx and nw and not capturing and _pair_ok(x._data, w._data, g._data, st, dl,
                                                    groups):
            # the two gradients side by side, one core each (``_PAIR_MIN_WORK``)
            xs, ws, ga, xa, wa = tuple(x.shape), tuple(w.shape), g._data, x._data, w._data
            pre = _parallel.pair(
                lambda: ConvInputGrad.forward(_ScratchCtx(), ga, wa, xs, st, pads, dl, groups),
                lambda: ConvWeightGrad.forward(_ScratchCtx(), xa, ga, ws, st, pads, dl, groups,
                                               cols))
            cols = ("result", pre[1])
        gx = None
        if nx:  # (the precomputed result only where there is one: a capture records 7 args)
            gx = ConvInputGrad.apply(g, w, tuple(x.shape), st, pads, dl, groups) \
                if pre[0] is None else \
                ConvInputGrad.apply(g, w, tuple(x.shape), st, pads, dl, groups, pre[0])
        gw = ConvWeightGrad.apply(x, g, tuple(w.shape), st, pads, dl, groups, cols) if nw \
            else None
        gb = None
        if nb:
            if g.ndim >= 3 and g._data.size >= _SPLIT_MIN and type(g._data) is np.ndarray \
                    and not _capturing_backward() and get_num_threads() > 1:
                gb = ConvBiasGrad.apply(g)
            else:  # batch first, then positions: NumPy's one reduction over (0, 2, 3) is 3x
                # slower
                gb = g.sum(0).flatten(1).sum(1)
        return gx, gw, gb, None, None, None, None

    @staticmethod
    def jvp(ctx, tx, tw, tb, *_):
        # convolution is linear in x and in w separately; the bias adds per channel
        x, w, b, *geom = ctx.inputs
        out = None
        if tx is not None:
            out = ConvNd.apply(tx, w, None, *geom)
        if tw is not None:
            out = _fad.add_tangents(out, ConvNd.apply(x, tw, None, *geom))
        if tb is not None:
            tb = tb.reshape((1, -1) + (1,) * (ctx.output.dim() - 2))
            out = _fad.add_tangents(out, tb)
        return out


class ConvBiasGrad(Node):
    """A convolution's bias gradient: ``g`` (N, O, *out) summed to (O,), channels split over
    the thread pool; each channel is summed as ``g.sum(0).flatten(1).sum(1)`` sums it (batch
    first, then positions), so the values do not depend on the thread count."""

    @staticmethod
    def meta(ctx, g):
        ctx.shape = g.shape
        return MetaArray((g.shape[1],), g.dtype)

    @staticmethod
    def forward(ctx, g):
        ctx.shape = g.shape
        n, o = g.shape[:2]
        g3 = g.reshape(n, o, -1)
        out = np.empty(o, g.dtype)

        def part(c0, c1):
            out[c0:c1] = g3[:, c0:c1].sum(0).sum(1)
        _by_channels(part, o, g.size)
        return out

    @staticmethod
    def backward(ctx, h):
        shape = ctx.shape
        return h.reshape((1, -1) + (1,) * (len(shape) - 2)).expand(shape)


# A stride-1 convolution's backward computes its input and weight gradients side by side,
# one core each (``_parallel.pair``: each as at one thread), from this many multiply-adds
# per gradient (at two threads or more; ``EMBER_CONV_PAIRS=0`` turns it off, read at
# import): each op cut over the threads in turn pays its hand-offs and joins and runs its
# serial stretches (the weight's transform, reshapes, relayout copies) with the other core
# idle; side by side those overlap. Only where the two cost about the same: stride 1 (both
# Winograd, or both one GEMM of the same multiply-adds; one-thread timeit minimums at
# ResNet-18's shapes, input / weight gradient: 64ch 16x16 2.32 / 2.45 ms, 128ch 8x8 2.33 /
# 2.67, 256ch 4x4 3.81 / 3.36, 512ch 2x2 4.86 / 3.92); not strided layers (64 -> 128, 3x3/2:
# 2.80 / 1.90; 1x1/2: 0.63 / 0.34: col2im's adds against kept columns), nor the direct
# kernels' (few taps: already one even hand-off per op; LeNet's second layer 0.64 / 0.54,
# and its step's main-thread CPU rose 5.3 -> 6.0 ms paired). ResNet-18 training step at 2
# threads, separate processes alternated (2-core VM, lightly loaded): wall medians 145.5 ->
# 132.2 and 136.9 -> 128.5 ms, process CPU 272 -> 250 and 259 -> 243 ms; the CIFAR CNN step
# within noise (15.7 / 19.6 / 16.2 -> 19.7 / 15.6 / 15.4 ms).
_PAIR_MIN_WORK = 1 << 21
_PAIRS = os.environ.get("EMBER_CONV_PAIRS", "1") != "0"


def _pair_ok(x, w, g, stride, dilation, groups):
    """Whether ``ConvNd.backward`` computes both gradients side by side (never under an
    active mode, autocast or the profiler: they see each op's call as it is)."""
    if not (_PAIRS and not _graph._MODES and get_num_threads() > 1
            and all(t == 1 for t in stride) and type(x) is np.ndarray
            and type(g) is np.ndarray and type(w) is np.ndarray
            and g.size * _prod(w.shape[1:]) >= _PAIR_MIN_WORK and _parallel.gemm_split_ok()):
        return False
    # a layer Winograd takes stays on Winograd; else few taps take the direct kernels
    return _use_winograd(w.shape, stride, dilation, groups, g.shape[0], g.shape[2:]) or \
        not _direct(x, w.shape, stride, groups)


# Direct convolution (``ember/ops/_conv_small_c.py``) for 2-d convolutions with few taps per
# output value (C * KH * KW): there im2col's GEMM has a short inner dimension and streams a
# column matrix KH * KW times the input's size for a few output rows, with the batch moved
# innermost and back around it. The direct kernels split the batch over the threads in one
# hand-off per op. Measured at one thread (timeit minimum, loaded 2-core VM), im2col + GEMM
# -> direct: LeNet's conv 1 -> 6, 5x5, pad 2, batch 64: 965 -> 375 us; 6 -> 16, 5x5: 659 ->
# 605 us; its input gradient as a full convolution (16 -> 6 channels, 400 taps) 1270 -> 790
# us; CIFAR's first conv (3 -> 32, 3x3, batch 32) 4.7 -> 1.6 ms. The stride-1 weight
# gradient (dot products over shifted runs of the padded input) wins clearly for few taps
# (LeNet's first: 890 -> 350-420 us) and about evens with im2col + GEMM at 150 (LeNet's
# second, whole training step in-process A/B at 2 threads: process CPU 12.2 -> 11.0 ms,
# main thread 9.1 -> 8.3 ms, medians of 40). Winograd's shapes keep Winograd (checked first).
_DIRECT_MAX_TAPS = 160
_DIRECT_MAX_BLOCK_TAPS = 256  # taps x (16-column blocks / output columns): LeNet's 150 x 16/10
_DIRECT_WGRAD_MAX_TAPS = 160
_DIRECT_IGRAD_MAX_TAPS = 400


def _direct(x, wshape, stride, groups, max_taps=_DIRECT_MAX_TAPS, ow=None):
    """Whether the direct C kernels serve a convolution of ``x`` by weights of ``wshape``
    (with ``ow`` output columns: the forward kernel's blocks of 16 columns then cost as many
    taps as they have, output rows shorter than a block or two waste part of each: 1x1, 128
    channels, 8 columns measured 4.8 ms with im2col + GEMM, 5.1-8.6 ms direct)."""
    taps = _prod(wshape[1:])
    return (groups == 1 and len(stride) == 2 and type(x) is np.ndarray and x.ndim == 4
            and x.dtype.kind == "f" and taps <= max_taps
            and (ow is None or taps * (-(-ow // 16) * 16) < _DIRECT_MAX_BLOCK_TAPS * ow)
            and _conv_small_c.available(x.dtype))


def _conv_array(x, w, b, stride, pads, dilation, groups, keep=False):
    """The convolution on arrays: (output, what the weight gradient can reuse, or None
    unless ``keep``)."""
    dt = x.dtype
    x, w = _as_compute(x), _as_compute(w)
    if x.size == 0 or w.size == 0:  # an empty batch (or no channels): nothing to multiply
        osz = _out_size(x.shape[2:], pads, w.shape[2:], stride, dilation)
        out = np.zeros((x.shape[0], w.shape[0]) + osz, x.dtype)
        if b is not None:
            out += _as_compute(b).reshape((-1,) + (1,) * len(osz))
        return (out if out.dtype == dt else out.astype(dt)), None
    if _nhwc(x, groups) and len(stride) == 2:
        out, cols = _conv_nhwc(x, w, b, stride, pads, dilation, keep)
        return (out if out.dtype == dt else out.astype(dt)), cols
    if _pointwise_ok(x, w.shape, pads, groups):
        out = _conv1x1(x, w, b, stride)
        return (out if out.dtype == dt else out.astype(dt)), None
    if x.dtype.kind == "f" and _use_winograd(w.shape, stride, dilation, groups, x.shape[0],
                                             _out_size(x.shape[2:], pads, w.shape[2:],
                                                       stride, dilation)):
        out, v = _winograd_conv(x, w, b, pads, keep)
        return (out if out.dtype == dt else out.astype(dt)), \
            ("winograd", v) if keep and v is not None else None
    if _direct(x, w.shape, stride, groups,
               ow=_out_size(x.shape[2:], pads, w.shape[2:], stride, dilation)[-1]) and \
            (not keep or all(t == 1 for t in stride)):
        # (a strided convolution whose weight gradient is wanted keeps im2col: its columns
        # serve the weight gradient, which has no direct kernel; ResNet's 7x7/2 stem measured
        # no better direct, and then its columns would be built twice)
        out = _conv_small_c.conv2d(x, w, b, pads, stride, dilation)
        return (out if out.dtype == dt else out.astype(dt)), None
    ks = w.shape[2:]
    n, o = x.shape[0], w.shape[0]
    osz = tuple((s + lo + hi - d * (k - 1) - 1) // t + 1
                for s, (lo, hi), k, t, d in zip(x.shape[2:], pads, ks, stride, dilation))
    if _batch_last(osz, n):
        cols = _im2col_batch_last(x, pads, ks, stride, dilation, osz)
        cols = cols.reshape(groups, -1, n * _prod(osz))
        res = _parallel.gemm(w.reshape(groups, o // groups, -1), cols).reshape((o,) + osz + (n,))
        out = np.empty((n, o) + osz, dtype=res.dtype)
        _relayout(out, np.moveaxis(res, -1, 0), b, len(osz))
        return (out if out.dtype == dt else out.astype(dt)), \
            ("im2col_batch_last", cols) if keep else None
    xp = _pad_array(x, pads, scratch="pad")
    cols = _im2col(xp, ks, stride, dilation, osz, None if keep else "cols")
    cols = cols.reshape(groups, -1, n * _prod(osz))
    res = _parallel.gemm(w.reshape(groups, o // groups, -1), cols).reshape(o, n, -1)
    out = np.empty((n, o) + osz, dtype=res.dtype)
    _relayout(out.reshape(n, o, -1), res.swapaxes(0, 1), b, 1)
    return (out if out.dtype == dt else out.astype(dt)), ("im2col", cols) if keep else None


# ---------------------------------------------------------------------- channels-last (NHWC)
# A 4-d input laid out channels-last (``memory_format=ember.channels_last``) is an NHWC array
# in memory. Its columns are then rows of the GEMM directly: ``(N*OH*OW, KH*KW*C)`` with each
# kernel position's C values contiguous, and the GEMM's ``(N*OH*OW, O)`` result *is* the NHWC
# output, so neither side needs a relayout copy (a 1x1 stride-1 convolution needs no columns
# at all: the input is its own column matrix). The result stays channels-last, as PyTorch's.
def _nhwc(x, groups):
    """Whether the convolution of ``x`` takes the channels-last path."""
    return groups == 1 and x.ndim == 4 and x.dtype.kind == "f" and _mf.is_channels_last(x)


def _out_size(spatial, pads, ks, stride, dilation):
    return tuple((s + lo + hi - d * (k - 1) - 1) // t + 1
                 for s, (lo, hi), k, t, d in zip(spatial, pads, ks, stride, dilation))


def _pointwise(ks, stride, pads):
    return tuple(ks) == (1, 1) and tuple(stride) == (1, 1) and all(
        lo == 0 and hi == 0 for lo, hi in pads)


# ---------------------------------------------------------------------- 1x1 (NCHW)
# A 1x1 convolution without padding is one product per sample, ``W (O, C) @ x[n] (C, H*W)``,
# straight on the NCHW data: no column matrix, no relayout of the result (a stride first
# gathers the strided positions of each sample, a small copy). Its input gradient likewise:
# ``W^T @ g[n]``, scattered back to the strided positions. The samples are cut over the
# thread pool. Measured at one thread (timeit minimums, loaded VM), im2col + GEMM -> per
# sample, ResNet-18's 1x1/2 layers at batch 16: 64 -> 128 at 16x16 forward 0.61 -> 0.20 ms,
# input gradient 0.78 -> 0.21; 128 -> 256 at 8x8 0.38 -> 0.19, 0.38 -> 0.22; 256 -> 512 at
# 4x4 0.29 -> 0.20, 0.30 -> 0.32. The weight gradient keeps im2col + one GEMM over N * L.
def _pointwise_ok(x, wshape, pads, groups):
    """Whether a 2-d convolution of ``x`` by a 1x1 kernel takes the per-sample products."""
    return (groups == 1 and len(wshape) == 4 and tuple(wshape[2:]) == (1, 1)
            and type(x) is np.ndarray and x.ndim == 4 and x.dtype.kind == "f"
            and all(lo == 0 and hi == 0 for lo, hi in pads))


def _by_samples(fn, n, work):
    """``fn(n0, n1)`` over sample ranges covering ``range(n)``, cut over the thread pool
    (BLAS single-threaded meanwhile) when ``work`` multiply-adds are worth it."""
    how = _parallel.gemm_split_kind(work)
    if how == 0:
        fn(0, n)
    elif how == 1 or n < 2:
        _parallel.run_split_gemm(fn, [(0, n)])
    else:
        _parallel.run_split_gemm(fn, _parallel._bounds(n, builtins.min(get_num_threads(), n)))


def _conv1x1(x, w, b, stride):
    """``conv2d(x, w, b, stride)`` for a 1x1 ``w`` (O, C, 1, 1), no padding."""
    n, c, h, wd = x.shape
    o = w.shape[0]
    s0, s1 = stride
    oh, ow = (h - 1) // s0 + 1, (wd - 1) // s1 + 1
    wm = np.ascontiguousarray(w.reshape(o, c))
    bias = None if b is None else _as_compute(b).reshape(o, 1)
    out = np.empty((n, o, oh * ow), x.dtype)
    strided = (s0, s1) != (1, 1)
    xs = np.empty((n, c, oh * ow), x.dtype) if strided else np.ascontiguousarray(x).reshape(
        n, c, -1)

    def part(n0, n1):
        if strided:
            xs[n0:n1].reshape(n1 - n0, c, oh, ow)[...] = x[n0:n1, :, ::s0, ::s1]
        np.matmul(wm, xs[n0:n1], out=out[n0:n1])
        if bias is not None:
            out[n0:n1] += bias
    _by_samples(part, n, n * o * c * oh * ow)
    return out.reshape(n, o, oh, ow)


def _conv1x1_input_grad(g, w, xshape, stride):
    """The input gradient (of shape ``xshape``) of a 1x1 convolution, no padding."""
    n, o, oh, ow = g.shape
    c = w.shape[1]
    s0, s1 = stride
    wt = np.ascontiguousarray(w.reshape(o, c).T)
    g3 = np.ascontiguousarray(g).reshape(n, o, -1)
    strided = (s0, s1) != (1, 1) or tuple(xshape[2:]) != (oh, ow)
    out = np.zeros(xshape, g.dtype) if strided else np.empty(xshape, g.dtype)
    o3 = out.reshape(n, c, -1)
    tmp = np.empty((n, c, oh * ow), g.dtype) if strided else None
    rows, cols = slice(0, (oh - 1) * s0 + 1, s0), slice(0, (ow - 1) * s1 + 1, s1)

    def part(n0, n1):
        if strided:
            np.matmul(wt, g3[n0:n1], out=tmp[n0:n1])
            out[n0:n1, :, rows, cols] = tmp[n0:n1].reshape(n1 - n0, c, oh, ow)
        else:
            np.matmul(wt, g3[n0:n1], out=o3[n0:n1])
    _by_samples(part, n, n * o * c * oh * ow)
    return out


def _im2col_nhwc(xh, pads, ks, st, dl, osz):
    """Columns ``(N*OH*OW, KH*KW*C)`` of the NHWC array ``xh`` zero-padded by ``pads``."""
    n, h, w, c = xh.shape
    if _pointwise(ks, st, pads):
        return xh.reshape(n * h * w, c)
    (pt, pb), (pl, pr) = pads
    if pt or pb or pl or pr:
        xp = np.zeros((n, h + pt + pb, w + pl + pr, c), xh.dtype)
        xp[:, pt:pt + h, pl:pl + w] = xh
    else:
        xp = xh
    sn, sh, sw, sc = xp.strides
    view = as_strided(xp, (n,) + tuple(osz) + tuple(ks) + (c,),
                      (sn, sh * st[0], sw * st[1], sh * dl[0], sw * dl[1], sc), writeable=False)
    return np.ascontiguousarray(view).reshape(n * osz[0] * osz[1], -1)


def _w_rows(w):
    """Weight ``(O, C, KH, KW)`` as ``(O, KH*KW*C)``, the columns' order."""
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(w.shape[0], -1)


def _conv_nhwc(x, w, b, stride, pads, dilation, keep):
    """Convolution of a channels-last ``x``: (channels-last output, columns or None)."""
    xh = x.transpose(0, 2, 3, 1)
    n, o = x.shape[0], w.shape[0]
    osz = _out_size(x.shape[2:], pads, w.shape[2:], stride, dilation)
    cols = _im2col_nhwc(xh, pads, w.shape[2:], stride, dilation, osz)
    res = _parallel.gemm(cols, _w_rows(w).T)  # (N*OH*OW, O): the NHWC output
    if b is not None:
        res += _as_compute(b)
    out = res.reshape((n,) + osz + (o,)).transpose(0, 3, 1, 2)
    return out, (("nhwc", cols) if keep else None)


def _nhwc_rows(a):
    """``(N, C, H, W)`` as NHWC rows ``(N*H*W, C)`` (a view when ``a`` is channels-last)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).reshape(-1, a.shape[1])


def _conv_input_grad_nhwc(g, w, xshape, stride, pads, dilation):
    """The input gradient of a channels-last convolution, channels-last."""
    n, c, h, wd = xshape
    kh, kw = w.shape[2:]
    osz = g.shape[2:]
    gcols = _parallel.gemm(_nhwc_rows(g), _w_rows(w))  # (N*OH*OW, KH*KW*C)
    if _pointwise((kh, kw), stride, pads):
        return gcols.reshape(n, h, wd, c).transpose(0, 3, 1, 2)
    (pt, pb), (pl, pr) = pads
    hp = max(h + pt, (osz[0] - 1) * stride[0] + dilation[0] * (kh - 1) + 1)
    wp = max(wd + pl, (osz[1] - 1) * stride[1] + dilation[1] * (kw - 1) + 1)
    buf = np.zeros((n, hp, wp, c), gcols.dtype)
    gc = gcols.reshape(n, osz[0], osz[1], kh, kw, c)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dilation[0], j * dilation[1]
            buf[:, r0:r0 + (osz[0] - 1) * stride[0] + 1:stride[0],
                c0:c0 + (osz[1] - 1) * stride[1] + 1:stride[1]] += gc[:, :, :, i, j]
    out = np.ascontiguousarray(buf[:, pt:pt + h, pl:pl + wd])
    return out.transpose(0, 3, 1, 2)


def _conv_weight_grad_nhwc(x, g, wshape, stride, pads, dilation, cols):
    """The weight gradient of a channels-last convolution, in ``wshape`` (C order)."""
    if cols is None:
        osz = g.shape[2:]
        cols = _im2col_nhwc(x.transpose(0, 2, 3, 1), pads, wshape[2:], stride, dilation, osz)
    gw = _parallel.gemm(_nhwc_rows(g).T, cols)  # (O, KH*KW*C)
    o, c, kh, kw = wshape
    return np.ascontiguousarray(gw.reshape(o, kh, kw, c).transpose(0, 3, 1, 2))


# ---------------------------------------------------------------------- Winograd F(2x2, 3x3)
# For 3x3 stride-1 convolutions (the common case in modern CNNs) Winograd's minimal filtering
# (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015) computes each 2x2
# output tile from a 4x4 input tile with 16 multiplies instead of 36: the GEMM, which
# dominates, shrinks 2.25x; the tile transforms are small GEMMs with 16x16 / 4x16 matrices.
_WINO_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_WINO_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
_WINO_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
_WINO_MATS = {}
# Below this many channels the transforms cost more than the multiplies they save.
_WINOGRAD_MIN_CHANNELS = 16
# A convolution's input gradient runs as a Winograd "full" convolution (rather than GEMM +
# col2im) when both channel counts reach this.
_WINOGRAD_FULL_MIN_CHANNELS = 64


# ... and below this many 2x2 output tiles (over the whole batch) the weight transform, 16
# values per (O, C) pair, outweighs the multiplies saved (measured, ResNet-18 at 64x64, batch
# 16: 4x4 outputs (64 tiles) at 256 channels fwd+bwd 22.7 ms by Winograd, 15.1 by im2col;
# 8x8 (256 tiles) at 128 channels 12.7 by Winograd, 18.7 by im2col).
_WINOGRAD_MIN_TILES = 128


def _use_winograd(wshape, stride, dilation, groups, n=None, osz=None):
    """Whether a convolution with weight ``wshape`` (and, when given, batch ``n`` and output
    size ``osz``) runs by Winograd F(2x2, 3x3)."""
    return (tuple(wshape[2:]) == (3, 3) and tuple(stride) == (1, 1)
            and tuple(dilation) == (1, 1) and groups == 1
            and builtins.min(wshape[:2]) >= _WINOGRAD_MIN_CHANNELS
            and (osz is None or n * _prod(-(-o // 2) for o in osz) >= _WINOGRAD_MIN_TILES))


def _wino_mats(dtype):
    """(B^T (x) B^T, G (x) G, A^T (x) A^T) in ``dtype``: the 2-d transforms as matrices."""
    m = _WINO_MATS.get(dtype)
    if m is None:
        m = _WINO_MATS[dtype] = tuple(np.kron(a, a).astype(dtype)
                                      for a in (_WINO_BT, _WINO_G, _WINO_AT))
    return m


def _wino_tiles(x, pads, osz, keep=True):
    """V (16, C, N * th * tw): ``B^T d B`` for every 4x4 tile (stride 2) of the padded input,
    padded further with zeros so that whole 2x2 output tiles cover ``osz``. V is a fresh
    array when ``keep``, else a scratch buffer."""
    th, tw = (-(-o // 2) for o in osz)
    extra = [builtins.max(0, 2 * t + 2 - (s + lo + hi))
             for t, s, (lo, hi) in zip((th, tw), x.shape[2:], pads)]
    xp = _pad_array(x, tuple((lo, hi + e) for (lo, hi), e in zip(pads, extra)), scratch="pad")
    n, c = xp.shape[:2]
    sn, sc, sh, sw = xp.strides
    d = as_strided(xp, (4, 4, c, n, th, tw), (sh, sw, sc, sn, 2 * sh, 2 * sw), writeable=False)
    tiles = _scratch("wino_d", d.shape, xp.dtype)
    tiles[...] = d
    bb = _wino_mats(xp.dtype)[0]
    v = np.empty((16, c * n * th * tw), xp.dtype) if keep else \
        _scratch("wino_v", (16, c * n * th * tw), xp.dtype)
    np.matmul(bb, tiles.reshape(16, -1), out=v)
    return v.reshape(16, c, -1)


def _winograd_conv(x, w, b, pads, keep=True, flipped=False):
    """3x3 stride-1 convolution by Winograd F(2x2, 3x3): (output, the transformed tiles, in
    scratch memory unless ``keep``). With ``flipped`` the kernel is ``w`` (O, C, 3, 3)
    flipped and transposed to (C, O, 3, 3), a convolution's input gradient, without
    materialising that weight: reversing its 9 taps reverses G (x) G's columns, and the
    transposition is a transposed GEMM operand (the strided flip copy cost ResNet-18 a
    fifth of a training step's serial time)."""
    n = x.shape[0]
    o, c = w.shape[:2]
    oh, ow = (s + lo + hi - 2 for s, (lo, hi) in zip(x.shape[2:], pads))
    th, tw = -(-oh // 2), -(-ow // 2)
    _, gg, aa = _wino_mats(x.dtype)
    u = _parallel.gemm(gg[:, ::-1] if flipped else gg, w.reshape(o * c, 9).T).reshape(16, o, c)
    if _wino_c.available(x.dtype):
        # blocks of tiles transformed, multiplied and transformed back in cache, one hand-off
        # to the thread pool for the whole convolution (ember/ops/_wino_c.py)
        keep = keep and not _wino_wgrad_fused(x.dtype, c, o, n * th * tw)
        return _wino_c.wino_fused(x, pads[0][0], pads[1][0], th, tw, u, flipped,
                                  None if b is None else _as_compute(b), oh, ow, keep)
    if flipped:
        u, o, c = u.transpose(0, 2, 1), c, o
    if _conv_c.available(x.dtype):
        # C transforms (ember/ops/_conv_c.py), split over channels on the thread pool; the
        # GEMM (O, C) @ (C, tiles) leaves M in the layout the output transform streams
        v = _conv_c.wino_in(x, pads[0][0], pads[1][0], th, tw)
        m = _parallel.gemm(u, v, out=_scratch("wino_m", (16, o, v.shape[2]), x.dtype))
        return _conv_c.wino_out(m, n, th, tw, oh, ow, None if b is None else _as_compute(b)), v
    v = _wino_tiles(x, pads, (oh, ow), keep)
    # (tiles, C) @ (C, O) per tile element: OpenBLAS runs this tall orientation faster than
    # (O, C) @ (C, tiles) (measured 3.7 -> 3.0 ms for the whole op at 32x32x16x16 -> 64)
    m = np.matmul(v.transpose(0, 2, 1), u.transpose(0, 2, 1),
                  out=_scratch("wino_m", (16, v.shape[2], o), x.dtype))
    if b is not None:
        # A^T's column 1 is all ones, so element (1, 1) of every tile reaches all 4 outputs
        m[5] += _as_compute(b)
    y = np.matmul(aa, m.reshape(16, -1), out=_scratch("wino_y", (4, m.size // 16), x.dtype))
    y = y.reshape(2, 2, n, th, tw, o)
    full = np.empty((n, o, 2 * th, 2 * tw), dtype=x.dtype)
    f6 = full.reshape(n, o, th, 2, tw, 2)
    for i in range(2):  # one copy per tile position: 3x faster than one 6-d transposed copy
        for j in range(2):
            f6[:, :, :, i, :, j] = y[i, j].transpose(0, 3, 1, 2)
    if (2 * th, 2 * tw) != (oh, ow):
        full = np.ascontiguousarray(full[:, :, :oh, :ow])
    return full, v


def _wino_wgrad_fused(dtype, c, o, tiles):
    """Whether the weight gradient of a Winograd convolution of ``c`` -> ``o`` channels
    over ``tiles`` output tiles runs fused from the input (``_wino_c.wino_wgrad``): then the
    forward keeps no transformed tiles for it, since transforming the input again block by
    block in cache costs less than writing V to memory and reading it back (and holds no
    memory between forward and backward). Not where its partial sums would be too few to
    share over the threads (very wide layers): there the stacked GEMMs split better."""
    return _wino_c.available(dtype) and (get_num_threads() == 1 or
                                         _wino_c.wgrad_groups(c, o, tiles) > 1)


def _winograd_weight_grad(g, v, wshape):
    """The weight gradient of a Winograd convolution from its transformed tiles ``v``."""
    n, o, oh, ow = g.shape
    th, tw = -(-oh // 2), -(-ow // 2)
    _, gg, aa = _wino_mats(g.dtype)
    if _conv_c.available(g.dtype):
        dm = _conv_c.wino_grad(g, th, tw)
        du = _parallel.gemm(dm, v.transpose(0, 2, 1))  # (16, O, C)
        return _wino_weight_from(du, gg, wshape)
    if (2 * th, 2 * tw) != (oh, ow):
        g = _pad_array(g, ((0, 2 * th - oh), (0, 2 * tw - ow)))
    gt = _scratch("wino_y", (2, 2, o, n, th, tw), g.dtype)
    gt.transpose(3, 2, 4, 0, 5, 1)[...] = g.reshape(n, o, th, 2, tw, 2)
    dm = np.matmul(aa.T, gt.reshape(4, -1), out=_scratch("wino_m", (16, gt.size // 4),
                                                          g.dtype)).reshape(16, o, -1)
    du = np.matmul(dm, v.transpose(0, 2, 1))  # (16, O, C)
    return _wino_weight_from(du, gg, wshape)


def _wino_weight_from(du, gg, wshape):
    """``G^T du`` per (O, C) pair, straight into a fresh (O, C, 3, 3) array: the engine
    keeps an owned contiguous gradient as it is, where a transposed view costs a copy."""
    return _parallel.gemm(du.reshape(16, -1).T, gg).reshape(wshape)


def _flipped_transposed(w, groups):
    """``w`` (O, C/g, *k) -> (C, O/g, *k) per group with the kernel flipped: the weight of
    the convolution that computes a stride-1 convolution's input gradient."""
    o, cg = w.shape[:2]
    ks = w.shape[2:]
    wt = w.reshape((groups, o // groups, cg) + ks).swapaxes(1, 2).reshape((groups * cg,
                                                                          o // groups) + ks)
    return np.ascontiguousarray(wt[(slice(None), slice(None)) + (slice(None, None, -1),) *
                                   len(ks)])


# The forward's im2col columns (or Winograd tiles) are kept for the weight gradient up to this
# size; larger ones are recomputed in backward rather than held between forward and backward.
_COLS_CACHE_BYTES = 64 << 20


# A stride-1 input gradient whose output planes have at most this many positions (ResNet's
# last stages: 4x4, 2x2) runs as GEMM + col2im even where O <= C, unless Winograd or the
# direct kernels serve its full convolution: there the full convolution by im2col must
# first copy the weight flipped and transposed (element by element, on one core), which
# costs more than col2im's few strided adds over tiny planes. Measured at one thread (timeit
# minimums), full -> col2im: 512 channels at 2x2, batch 16 6.50 -> 4.78 ms (the copy alone
# 2.46 ms); 256 at 4x4, batch 16 4.52 -> 4.09; 256 at 2x2 1.28 -> 1.00; 128 at 8x8, batch 1
# 0.39 -> 0.38 (so larger planes keep the full convolution; 64 at 16x16, batch 4 0.63 ->
# 1.75).
_FULL_MIN_PLANE = 16


def _remember(ctx, stride, pads, dilation, groups):
    ctx.stride, ctx.pads, ctx.dilation, ctx.groups = stride, pads, dilation, groups


def _recall(ctx):
    return ctx.stride, ctx.pads, ctx.dilation, ctx.groups


class ConvInputGrad(Node):
    """The gradient of ``conv(x, w)`` with respect to ``x`` of shape ``xshape``, for output
    gradient ``g``; with ``g`` as the input it is the transposed convolution."""

    saves = (0, 1)

    @staticmethod
    def meta(ctx, g, w, xshape, stride, pads, dilation, groups, pre=None):
        _remember(ctx, stride, pads, dilation, groups)
        return MetaArray(xshape, g.dtype)

    @staticmethod
    def forward(ctx, g, w, xshape, stride, pads, dilation, groups, pre=None):
        _remember(ctx, stride, pads, dilation, groups)
        if pre is not None:  # computed already, beside the weight gradient (ConvNd.backward)
            return pre
        osz = g.shape[2:]
        o, cg = w.shape[:2]
        ks = w.shape[2:]
        if g.size == 0 or w.size == 0:
            return np.zeros(xshape, g.dtype)
        if _nhwc(g, groups):
            dt = g.dtype
            out = _conv_input_grad_nhwc(_as_compute(g), _as_compute(w), xshape, stride, pads,
                                        dilation)
            return out if out.dtype == dt else out.astype(dt)
        if _pointwise_ok(g, w.shape, pads, groups):
            dt = g.dtype
            out = _conv1x1_input_grad(_as_compute(g), _as_compute(w), xshape, stride)
            return out if out.dtype == dt else out.astype(dt)
        direct = _direct(g, (cg * groups, o) + ks, stride, groups, _DIRECT_IGRAD_MAX_TAPS)
        wino = _use_winograd((cg, o) + ks, stride, dilation, groups, xshape[0], xshape[2:])
        if all(t == 1 for t in stride) and (
                (o <= cg * groups and (_prod(osz) > _FULL_MIN_PLANE or direct or wino))
                or direct or (
                    (min(o, cg) >= _WINOGRAD_FULL_MIN_CHANNELS or _conv_c.available(g.dtype))
                    and wino)):
            # Stride 1: the input gradient is a "full" convolution of g with the flipped,
            # transposed kernel. Its im2col copies O * k values per pixel where col2im makes
            # k strided read-modify-write passes over C values, so it wins when O <= C; by
            # Winograd it also wins for wide layers (NumPy transforms: measured 3.8 -> 3.2 ms
            # at 64 -> 128 channels, 8x8, batch 32; 4.2 -> 5.1 ms, a loss, at 32 -> 64; with
            # the C transforms it wins at every Winograd shape: 8.6 -> 5.5 ms at 32 -> 64,
            # 16x16, batch 32, one thread). Not on tiny planes by im2col: there the flipped,
            # transposed copy of a wide layer's weight costs more than col2im's adds (see
            # ``_FULL_MIN_PLANE``).
            full = []
            for s, so, (lo, _), d, k in zip(xshape[2:], osz, pads, dilation, ks):
                plo = d * (k - 1) - lo
                full.append((plo, s - so - plo + d * (k - 1)))
            if all(lo >= 0 and hi >= 0 for lo, hi in full):
                if groups == 1 and g.dtype.kind == "f" and _use_winograd(
                        (cg, o) + ks, stride, dilation, groups, g.shape[0], xshape[2:]):
                    dt = g.dtype
                    out = _winograd_conv(_as_compute(g), _as_compute(w), None, tuple(full),
                                         keep=False, flipped=True)[0]
                    return out if out.dtype == dt else out.astype(dt)
                if direct:
                    return _conv_small_c.conv2d(g, _flipped_transposed(w, groups), None,
                                                tuple(full), stride, dilation)
                return _conv_array(g, _flipped_transposed(w, groups), None, stride,
                                   tuple(full), dilation, groups)[0]
        dt = g.dtype
        g, w = _as_compute(g), _as_compute(w)
        wm = w.reshape(groups, o // groups, -1)
        n = g.shape[0]
        if _batch_last(osz, n):
            gl = np.empty((o,) + osz + (n,), g.dtype)
            gl[...] = np.moveaxis(g, 0, -1)
            cols = _parallel.gemm(wm.transpose(0, 2, 1), gl.reshape(groups, o // groups, -1))
            cols = cols.reshape((cg * groups,) + ks + osz + (n,))
            out = _col2im_batch_last(cols, xshape, pads, ks, stride, dilation, osz)
        else:
            cols = _parallel.gemm(wm.transpose(0, 2, 1), _channel_major(g, groups))
            cols = cols.reshape((cg * groups,) + ks + (n,) + osz)
            out = _col2im(cols, xshape, pads, ks, stride, dilation, osz)
        return out if out.dtype == dt else out.astype(dt)

    @staticmethod
    def backward(ctx, h):
        g, w = ctx.saved_tensors
        ng, nw = ctx.needs_input_grad[:2]
        st, pads, dl, groups = _recall(ctx)
        gg = _conv_cropped(h, w, g.shape, st, pads, dl, groups) if ng else None
        gw = ConvWeightGrad.apply(h, g, tuple(w.shape), st, pads, dl, groups) if nw else None
        return gg, gw, None, None, None, None, None


def _conv_cropped(x, w, gshape, st, pads, dl, groups):
    """``conv(x, w)`` cut to ``gshape``: with an output_padding of at least the stride (allowed
    below the dilation) the input has rows that produced no output of the original op."""
    out = ConvNd.apply(x, w, None, st, pads, dl, groups)
    if tuple(out.shape[2:]) != tuple(gshape[2:]):
        out = out[(slice(None), slice(None)) + tuple(slice(0, s) for s in gshape[2:])]
    return out


class ConvWeightGrad(Node):
    """The gradient of ``conv(x, w)`` with respect to ``w`` (of ``wshape``) for output
    gradient ``g``."""

    saves = (0, 1)

    @staticmethod
    def meta(ctx, x, g, wshape, stride, pads, dilation, groups, cols=None):
        _remember(ctx, stride, pads, dilation, groups)
        return MetaArray(wshape, g.dtype)

    @staticmethod
    def forward(ctx, x, g, wshape, stride, pads, dilation, groups, cols=None):
        _remember(ctx, stride, pads, dilation, groups)
        if cols is not None and cols[0] == "result":  # computed already (ConvNd.backward)
            return cols[1]
        dt = g.dtype
        x, g = _as_compute(x), _as_compute(g)
        ks = tuple(wshape[2:])
        osz = g.shape[2:]
        n = x.shape[0]
        if x.size == 0 or g.size == 0:
            return np.zeros(wshape, dt)
        if (cols is not None and cols[0] == "nhwc") or (cols is None and _nhwc(x, groups)):
            gw = _conv_weight_grad_nhwc(x, g, tuple(wshape), stride, pads, dilation,
                                        None if cols is None else cols[1])
            return gw if gw.dtype == dt else gw.astype(dt)
        wino = cols is None and _use_winograd(wshape, stride, dilation, groups, n, osz)
        if cols is None and not wino and all(t == 1 for t in stride) and \
                _direct(x, wshape, stride, groups, _DIRECT_WGRAD_MAX_TAPS):
            # (as in the forward, a layer Winograd takes stays on Winograd)
            gw = _conv_small_c.conv2d_weight_grad(x, g, tuple(wshape), pads, dilation)
            return gw if gw.dtype == dt else gw.astype(dt)
        if cols is None:
            if wino:
                th, tw = -(-osz[0] // 2), -(-osz[1] // 2)
                if _wino_wgrad_fused(x.dtype, wshape[1], wshape[0], n * th * tw):
                    du = _wino_c.wino_wgrad(x, g, pads[0][0], pads[1][0], th, tw)
                    gw = _wino_weight_from(du, _wino_mats(x.dtype)[1], wshape)
                    return gw if gw.dtype == dt else gw.astype(dt)
                if _conv_c.available(x.dtype):
                    v = _conv_c.wino_in(x, pads[0][0], pads[1][0], th, tw)
                else:
                    v = _wino_tiles(x, pads, osz, keep=False)
                cols = ("winograd", v)
            elif _batch_last(osz, n):
                c = _im2col_batch_last(x, pads, ks, stride, dilation, osz)
                cols = ("im2col_batch_last", c.reshape(groups, -1, n * _prod(osz)))
            else:
                c = _im2col(_pad_array(x, pads, scratch="pad"), ks, stride, dilation, osz, "cols")
                cols = ("im2col", c.reshape(groups, -1, n * _prod(osz)))
        kind, data = cols
        if kind == "winograd":
            gw = _winograd_weight_grad(g, data, wshape)
        else:
            if kind == "im2col_batch_last":
                o = g.shape[1]
                gm = np.empty((o,) + tuple(osz) + (n,), g.dtype)
                gm[...] = np.moveaxis(g, 0, -1)
                gm = gm.reshape(groups, o // groups, -1)
            else:
                gm = _channel_major(g, groups)
            if gm.shape[1] < 32 or (data.shape[2] >= 8192 and data.shape[1] <= 256):
                # (cols @ g^T)^T: OpenBLAS runs this orientation of the long-K product about
                # 2x faster than g @ cols^T for few output channels (measured at LeNet's
                # shapes), and ~10% faster for a long K over few columns (ResNet's 7x7/2
                # stem, 64 x 147 over 16384: 4.84 -> 4.34 ms, timeit minimums, one thread);
                # the transposed result is small, copied once into owned memory
                gw = _parallel.gemm(data, gm.transpose(0, 2, 1))
                gw = np.ascontiguousarray(gw.transpose(0, 2, 1)).reshape(wshape)
            else:  # g @ cols^T straight into (O, C*k): no transposed copy of a big result
                gw = _parallel.gemm(gm, data.transpose(0, 2, 1)).reshape(wshape)
        return gw if gw.dtype == dt else gw.astype(dt)

    @staticmethod
    def backward(ctx, hw):
        x, g = ctx.saved_tensors
        nx, ng = ctx.needs_input_grad[:2]
        st, pads, dl, groups = _recall(ctx)
        gx = ConvInputGrad.apply(g, hw, tuple(x.shape), st, pads, dl, groups) if nx else None
        gg = _conv_cropped(x, hw, g.shape, st, pads, dl, groups) if ng else None
        return gx, gg, None, None, None, None, None, None


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
    # under autocast the op casts mixed floating inputs itself (PyTorch's autocast runs before
    # the convolution's checks)
    mixed_ok = _autocast.ACTIVE[0] is not None and x.dtype.kind in "fV" and w.dtype.kind in "fV"
    if x.dtype != w.dtype and not mixed_ok:
        raise RuntimeError(f"Input type ({_dt_name(x.dtype)}) and weight type "
                           f"({_dt_name(w.dtype)}) should be the same")
    _check_float(x, op, ints="iu")
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
        if b.dtype != x.dtype and not (mixed_ok and b.dtype.kind in "fV"):
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


# ====================================================================== pooling geometry
def _pool_out(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling output length (windows starting in the right padding are dropped)."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_args(nd, op, x, kernel_size, stride, padding, dilation, ceil_mode, max_pool):
    ks = _ntuple(kernel_size, nd, "kernel_size", op)
    st = ks if stride is None or (not isinstance(stride, int) and len(stride) == 0) else \
        _ntuple(stride, nd, "stride", op)
    pd = _ntuple(padding, nd, "padding", op)
    dl = _ntuple(dilation, nd, "dilation", op)
    if any(k <= 0 for k in ks):
        raise RuntimeError(f"{op}: kernel_size must be greater than zero, but got {list(ks)}")
    if any(s <= 0 for s in st):
        raise RuntimeError(f"{op}: stride must be greater than zero, but got {list(st)}")
    if any(d <= 0 for d in dl):
        raise RuntimeError(f"{op}: dilation must be greater than zero, but got {list(dl)}")
    for p, k, d in zip(pd, ks, dl):
        if p < 0 or p > (d * (k - 1) + 1 if max_pool else k) // 2:
            what = "effective kernel size" if max_pool else "kernel size"
            raise RuntimeError(f"pad should be at most half of {what}, but got pad={p}, "
                               f"kernel_size={k} and dilation={d}" if max_pool else
                               f"pad should be at most half of {what}, but got pad={p} and "
                               f"kernel_size={k}")
    osz = tuple(_pool_out(s, k, t, p, d, ceil_mode)
                for s, k, t, p, d in zip(x.shape[2:], ks, st, pd, dl))
    if any(o <= 0 for o in osz):
        raise RuntimeError(f"Given input size: ({'x'.join(map(str, x.shape[1:]))}). Calculated "
                           f"output size: ({'x'.join(map(str, (x.shape[1],) + osz))}). Output "
                           "size is too small")
    # pads as (lo, hi): hi covers the last window, which ceil_mode may push past the padding
    pads = tuple((p, builtins.max(0, (o - 1) * t + d * (k - 1) + 1 - s - p))
                 for s, k, t, p, d, o in zip(x.shape[2:], ks, st, pd, dl, osz))
    return ks, st, pd, dl, pads, osz


def _pool_geometry(spatial, ks, st, dl, pads, osz):
    """Pooling's ``(pads, osz)`` for an input of ``spatial`` sizes. The pooling ops take the
    output size as numbers, or as the rule that gives it ("floor", or "ceil" for PyTorch's
    ceil_mode) with ``pads`` the symmetric ``(p, p)`` padding: then they follow whatever
    size the input has (captured graphs stay valid at other sizes)."""
    if not isinstance(osz, str):
        return pads, osz
    ceil = osz == "ceil"
    out = tuple(_pool_out(n, k, t, lo, d, ceil)
                for n, k, t, (lo, _), d in zip(spatial, ks, st, pads, dl))
    if any(o <= 0 for o in out):
        raise RuntimeError(f"pooling: input size {tuple(spatial)} gives output size {out}: "
                           "output size is too small")
    pads = tuple((lo, builtins.max(0, (o - 1) * t + d * (k - 1) + 1 - n - lo))
                 for n, k, t, (lo, _), d, o in zip(spatial, ks, st, pads, dl, out))
    return pads, out


def _lowest(dtype):
    """The padding value of max pooling: below every value of ``dtype``."""
    return np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf


def _flat_indices(arg, ks, st, dl, pads, osz, spatial):
    """Kernel-position argmax -> PyTorch's flat index into each input plane (int64)."""
    kpos = np.unravel_index(arg, ks)
    flat = np.zeros(arg.shape, dtype=np.int64)
    nd = len(ks)
    for i in range(nd):
        shape = [1] * (2 + nd)
        shape[2 + i] = osz[i]
        o = np.arange(osz[i], dtype=np.int64).reshape(shape)
        coord = o * st[i] - pads[i][0] + kpos[i] * dl[i]
        flat = flat * spatial[i] + coord
    return flat


def _window_argmax(xp, out, ks, st, dl, osz):
    """PyTorch's argmax of each window as a kernel position (row-major): the first position
    that holds the window's max, or the last NaN (in PyTorch's loop a larger value or any
    NaN takes over).

    Branch-free: a running "already found" mask keeps the first hit, which is much faster
    than masked writes (``putmask``/``copyto(where=)``) on random masks. A window holding a
    NaN has a NaN max, which no position equals, so its NaNs are written over it in order."""
    kk = _prod(ks)
    arg = np.zeros(out.shape, dtype=np.int16 if kk > 127 else np.int8)
    taken = np.zeros(out.shape, dtype=bool)
    first = np.empty(out.shape, dtype=bool)
    nan = out.dtype.kind == "f" and np.isnan(out).any()
    for i, pos in enumerate(itertools.product(*(range(k) for k in ks))):
        v = xp[_window_slices(pos, st, dl, osz)]
        hit = v == out
        np.greater(hit, taken, out=first)
        taken |= hit
        if i:
            arg += first * arg.dtype.type(i)
        if nan:
            np.copyto(arg, arg.dtype.type(i), where=np.isnan(v))
    return arg


# ====================================================================== max pooling ops
class MaxPoolNd(Node):
    """Max over windows; with ``return_indices`` also PyTorch's flat indices (int64)."""

    saves = (0,)

    @staticmethod
    def meta(ctx, x, ks, st, dl, pads, osz, return_indices):
        pads, osz = _pool_geometry(x.shape[2:], ks, st, dl, pads, osz)
        ctx.geom = (ks, st, dl, pads, osz)
        out = MetaArray(x.shape[:2] + tuple(osz), x.dtype)
        if isinstance(ctx, Node):
            ctx.out = out
        return (out, MetaArray(out.shape, np.int64)) if return_indices else out

    @staticmethod
    def forward(ctx, x, ks, st, dl, pads, osz, return_indices):
        pads, osz = _pool_geometry(x.shape[2:], ks, st, dl, pads, osz)
        ctx.geom = (ks, st, dl, pads, osz)
        recording = isinstance(ctx, Node)
        if x.ndim == 4 and _conv_c.available(x.dtype) and not _mf.is_channels_last(x):
            # one C pass (ember/ops/_conv_c.py) gives the maxima and, when a gradient or
            # the indices are wanted, each window's argmax: backward is then a scatter.
            # The usual 2x2/2 pooling has its own vectorised kernel (_conv_small_c.py:
            # LeNet's first pooling, 64x6x28x28 float32, 0.45 -> 0.11 ms at one thread)
            if ks == st == (2, 2) and dl == (1, 1) and pads == ((0, 0), (0, 0)) and \
                    _conv_small_c.available(x.dtype):
                out, flat = _conv_small_c.maxpool2x2(x, recording or return_indices)
            else:
                out, flat = _conv_c.maxpool2d(x, ks, st, tuple(lo for lo, _ in pads), dl,
                                              osz, recording or return_indices)
            if recording:
                ctx.out, ctx.flat = None, flat
            return (out, flat) if return_indices else out
        xp = _pad_array(x, pads, _lowest(x.dtype), scratch="pad")
        positions = itertools.product(*(range(k) for k in ks))
        first = xp[_window_slices(next(positions), st, dl, osz)]
        # a channels-last input gives a channels-last output, as PyTorch's
        out = _mf.copy_as(first, _mf.channels_last) if _mf.is_channels_last(x) and \
            first.ndim == 4 else first.copy()
        for k in positions:
            np.maximum(out, xp[_window_slices(k, st, dl, osz)], out=out)
        if isinstance(ctx, Node):  # recording: a copy survives in-place edits of the output
            ctx.out = out.copy()
        if not return_indices:
            return out
        arg = _window_argmax(xp, out, ks, st, dl, osz)
        return out, _flat_indices(arg, ks, st, dl, pads, osz, x.shape[2:])

    @staticmethod
    def backward(ctx, g, *_):
        (x,) = ctx.saved_tensors
        # a capturing mode (ember.compile of a training step) gets no forward-time array in
        # the recorded op: MaxPoolGrad then recomputes the window maxima from x
        capturing = _capturing_backward()
        flat = ctx.__dict__.get("flat")
        if flat is not None and not capturing:
            return (ScatterPlanes.apply(g, flat, tuple(x.shape), True),) + (None,) * 6
        out = None if capturing else ctx.out
        return (MaxPoolGrad.apply(g, x._data, out, ctx.geom),) + (None,) * 6


def _capturing_backward():
    from ..autograd.graph import capturing_backward
    return capturing_backward()


class MaxPoolGrad(Node):
    """Max pooling's input gradient: ``g`` added at each window's argmax."""

    @staticmethod
    def meta(ctx, g, x, out, geom):
        return MetaArray(x.shape, g.dtype)

    @staticmethod
    def forward(ctx, g, x, out, geom):
        ks, st, dl, pads, osz = geom
        xp = _pad_array(x, pads, _lowest(x.dtype), scratch="pad")
        if out is None:  # recompute the maxima (see MaxPoolNd.backward)
            positions = itertools.product(*(range(k) for k in ks))
            out = xp[_window_slices(next(positions), st, dl, osz)].copy()
            for k in positions:
                np.maximum(out, xp[_window_slices(k, st, dl, osz)], out=out)
        if not isinstance(ctx, Node) and all(t >= d * (k - 1) + 1
                                             for k, t, d in zip(ks, st, dl)) and \
                not (out.dtype.kind == "f" and np.isnan(out).any()):  # NaN: the last wins
            return _max_pool_grad_disjoint(g, xp, out, x.shape, pads, ks, st, dl, osz)
        # Flat index of every window's argmax into the padded array: a per-window base
        # plus the offset of the winning kernel position, then one scatter-add.
        nd = len(ks)
        pstride = [_prod(xp.shape[2 + i + 1:]) for i in range(nd)]
        arg = _window_argmax(xp, out, ks, st, dl, osz)
        kpos = np.unravel_index(arg, ks)
        idx = kpos[0] * np.intp(dl[0] * pstride[0])
        for i in range(1, nd):
            idx += kpos[i] * np.intp(dl[i] * pstride[i])
        base = (np.arange(xp.shape[0] * xp.shape[1], dtype=np.intp)
                * _prod(xp.shape[2:])).reshape(xp.shape[:2] + (1,) * nd)
        for i in range(nd):
            shape = [1] * (2 + nd)
            shape[2 + i] = osz[i]
            base = base + (np.arange(osz[i], dtype=np.intp) * (st[i] * pstride[i])).reshape(shape)
        idx += base
        gxp = np.zeros(xp.size, dtype=g.dtype)
        np.add.at(gxp, idx.reshape(-1), g.reshape(-1))
        if isinstance(ctx, Node):  # recording: keep the indices for double backward
            ctx.flat = _flat_indices(arg, ks, st, dl, pads, osz, x.shape[2:])
        return gxp.reshape(xp.shape)[(slice(None), slice(None)) + tuple(
            slice(lo, lo + s) for s, (lo, _) in zip(x.shape[2:], pads))]

    @staticmethod
    def backward(ctx, h):
        return _gather_planes(h, ctx.flat), None, None, None


def _max_pool_grad_disjoint(g, xp, out, xshape, pads, ks, st, dl, osz):
    """Max pooling's input gradient when no two windows overlap (stride >= window extent,
    the usual 2x2/2 case) and no window holds a NaN: every input position belongs to at
    most one window, so each kernel position writes ``g`` where it holds its window's first
    max; no scatter-add."""
    covered = all(d == 1 and t == k and o * k == s
                  for k, t, d, o, s in zip(ks, st, dl, osz, xp.shape[2:]))
    # windows that tile the input write every position: nothing to zero first
    gxp = (np.empty if covered else np.zeros)(xp.shape, dtype=g.dtype)
    taken = np.zeros(out.shape, dtype=bool)
    first = np.empty(out.shape, dtype=bool)
    hit = np.empty(out.shape, dtype=bool)
    for pos in itertools.product(*(range(k) for k in ks)):
        win = _window_slices(pos, st, dl, osz)
        np.equal(xp[win], out, out=hit)
        np.greater(hit, taken, out=first)
        taken |= hit
        np.multiply(g, first, out=gxp[win])
    return gxp[(slice(None), slice(None)) + tuple(slice(lo, lo + s)
                                                  for s, (lo, _) in zip(xshape[2:], pads))]


def _gather_planes(h, flat):
    """``h`` (N, C, *S) read at per-plane flat indices ``flat`` (N, C, *O), with autograd."""
    n, c = flat.shape[:2]
    idx = _make(flat.reshape(n, c, -1))
    return h.reshape(n, c, -1).gather(2, idx).reshape(flat.shape)


class ScatterPlanes(Node):
    """``g`` (N, C, *O) added into zeros of ``shape`` at per-plane flat indices (unpool, and
    the gradient of adaptive max pooling)."""

    @staticmethod
    def meta(ctx, g, flat, shape, accumulate):
        ctx.flat = flat
        return MetaArray(shape, g.dtype)

    @staticmethod
    def forward(ctx, g, flat, shape, accumulate):
        ctx.flat = flat
        if accumulate and _conv_c.available(g.dtype):
            return _conv_c.scatter_planes(g, flat, shape)
        n, c = shape[:2]
        out = np.zeros((n * c, _prod(shape[2:])), dtype=g.dtype)
        rows = np.arange(n * c).reshape(n * c, 1)
        idx = flat.reshape(n * c, -1)
        if accumulate:
            np.add.at(out, (rows, idx), g.reshape(n * c, -1))
        else:
            out[rows, idx] = g.reshape(n * c, -1)
        return out.reshape(shape)

    @staticmethod
    def backward(ctx, h):
        return _gather_planes(h, ctx.flat), None, None, None


def _max_poolnd(nd, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    op = f"max_pool{nd}d"
    x, squeeze = _batched(input, nd, op)
    _check_float(x._data, op, ints="iu")
    ks, st, pd, dl, _, _ = _pool_args(nd, op, x, kernel_size, stride, padding, dilation,
                                      ceil_mode, True)
    # the output size as its rule: the op follows the input's size (see _pool_geometry)
    out = MaxPoolNd.apply(x, ks, st, dl, tuple((p, p) for p in pd),
                          "ceil" if ceil_mode else "floor", bool(return_indices))
    return _unbatch(out, squeeze)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """1-d max pooling; ``return_indices=True`` also returns the argmax positions."""
    return _max_poolnd(1, input, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-d max pooling; ``return_indices=True`` also returns the argmax positions."""
    if input.is_quantized:  # pooled on the integers (ember.ao.nn.quantized.functional)
        return input._qop("max_pool2d", kernel_size, stride, padding, dilation, ceil_mode,
                          return_indices)
    return _max_poolnd(2, input, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices)


@autocast_function("fp32")
def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """3-d max pooling; ``return_indices=True`` also returns the argmax positions."""
    return _max_poolnd(3, input, kernel_size, stride, padding, dilation, ceil_mode,
                       return_indices)


def max_pool1d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False, return_indices=True):
    """``max_pool1d`` returning ``(output, indices)``."""
    return max_pool1d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool2d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False, return_indices=True):
    """``max_pool2d`` returning ``(output, indices)``."""
    return max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def max_pool3d_with_indices(input, kernel_size, stride=None, padding=0, dilation=1,
                            ceil_mode=False, return_indices=True):
    """``max_pool3d`` returning ``(output, indices)``."""
    return max_pool3d(input, kernel_size, stride, padding, dilation, ceil_mode, True)


def _max_unpoolnd(nd, input, indices, kernel_size, stride, padding, output_size):
    op = f"max_unpool{nd}d"
    x, squeeze = _batched(input, nd, op)
    idx = indices.unsqueeze(0) if squeeze else indices
    ks = _ntuple(kernel_size, nd, "kernel_size", op)
    st = ks if stride is None else _ntuple(stride, nd, "stride", op)
    pd = _ntuple(padding, nd, "padding", op)
    default = [(s - 1) * t + k - 2 * p for s, t, k, p in zip(x.shape[2:], st, ks, pd)]
    if output_size is None:
        size = default
    else:
        size = list(output_size)
        if len(size) == nd + 2:
            size = size[2:]
        if len(size) != nd:
            raise ValueError(f"output_size should be a sequence containing {nd} or {nd + 2} "
                             f"elements, but it has a length of '{len(size)}'")
        for i in range(nd):
            lo, hi = default[i] - st[i], default[i] + st[i]
            if not lo < size[i] < hi:
                raise ValueError(f'invalid output_size "{list(output_size)}" (dim {i} must be '
                                 f"between {lo} and {hi})")
    if tuple(idx.shape) != tuple(x.shape):
        raise RuntimeError(f"Expected shape of indices to be same as that of the input tensor "
                           f"({list(x.shape)}) but got indices tensor with shape: "
                           f"{list(idx.shape)}")
    flat = idx._data
    plane = _prod(size)
    if flat.size and (flat.min() < 0 or flat.max() >= plane):
        bad = int(flat.max() if flat.max() >= plane else flat.min())
        raise RuntimeError(f"Found an invalid max index: {bad} (output volumes are of size "
                           f"{'x'.join(map(str, size))}")
    out = ScatterPlanes.apply(x, flat, tuple(x.shape[:2]) + tuple(size), False)
    return _unbatch(out, squeeze)


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of ``max_pool1d``: values placed at ``indices``, zeros elsewhere."""
    return _max_unpoolnd(1, input, indices, kernel_size, stride, padding, output_size)


@autocast_function("fp32")
def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of ``max_pool2d``: values placed at ``indices``, zeros elsewhere."""
    return _max_unpoolnd(2, input, indices, kernel_size, stride, padding, output_size)


@autocast_function("fp32")
def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of ``max_pool3d``: values placed at ``indices``, zeros elsewhere."""
    return _max_unpoolnd(3, input, indices, kernel_size, stride, padding, output_size)


# ====================================================================== average pooling
def _avg_divisor(spatial, ks, st, pd, osz, count_include_pad, divisor_override, dtype):
    """PyTorch's per-window divisor, as an array broadcastable over (N, C, *osz)."""
    if divisor_override is not None:
        if divisor_override == 0:
            raise RuntimeError("divisor must be not zero")
        return dtype.type(divisor_override)
    div = np.ones((1, 1) + osz, dtype=dtype)
    nd = len(ks)
    for i, (s, k, t, p, o) in enumerate(zip(spatial, ks, st, pd, osz)):
        start = np.arange(o) * t - p
        end = np.minimum(start + k, s + p)
        if count_include_pad:
            length = end - start
        else:
            length = np.minimum(end, s) - np.maximum(start, 0)
        shape = [1] * (2 + nd)
        shape[2 + i] = o
        div = div * length.reshape(shape).astype(dtype)
    return div


def _tiles(shape, ks, st, pads, osz):
    """For windows that tile the input exactly (stride == kernel, no padding, no remainder):
    (the slice of the input they cover, its shape split into (out, kernel) pairs, the kernel
    axes), else None."""
    if st != ks or any(lo or hi for lo, hi in pads):
        return None
    if any(o * k != s for o, k, s in zip(osz, ks, shape[2:])):
        return None  # a remainder (or ceil_mode windows past the edge): the general path
    crop = (slice(None), slice(None)) + tuple(slice(0, o * k) for o, k in zip(osz, ks))
    split = tuple(shape[:2]) + tuple(d for o, k in zip(osz, ks) for d in (o, k))
    return crop, split, tuple(3 + 2 * i for i in range(len(ks)))


def _avg_geometry(x, ks, st, pads, osz, div):
    """``AvgPoolNd``'s ``(pads, osz, div)`` for the input ``x``: the output size may be its
    rule (see ``_pool_geometry``) and the divisor "include_pad"/"exclude_pad" (PyTorch's
    count_include_pad, computed for this size)."""
    pads, osz = _pool_geometry(x.shape[2:], ks, st, (1,) * len(ks), pads, osz)
    if isinstance(div, str):
        div = _avg_divisor(x.shape[2:], ks, st, tuple(lo for lo, _ in pads), osz,
                           div == "include_pad", None, x.dtype)
    return pads, osz, div


class AvgPoolNd(Node):
    """Window sums divided by PyTorch's divisor; its adjoint is ``AvgPoolGrad``."""

    @staticmethod
    def meta(ctx, x, ks, st, pads, osz, div):
        pads, osz, div = _avg_geometry(x, ks, st, pads, osz, div)
        ctx.args = (x.shape, ks, st, pads, osz, div)
        return MetaArray(x.shape[:2] + tuple(osz), x.dtype)

    @staticmethod
    def forward(ctx, x, ks, st, pads, osz, div):
        pads, osz, div = _avg_geometry(x, ks, st, pads, osz, div)
        ctx.args = (x.shape, ks, st, pads, osz, div)
        tiles = _tiles(x.shape, ks, st, pads, osz)
        if tiles is not None and x.dtype.kind == "f":  # disjoint windows: one reduction
            acc = x[tiles[0]].reshape(tiles[1]).sum(axis=tiles[2])
            acc /= div
            return acc
        xp = _pad_array(x, pads)
        positions = itertools.product(*(range(k) for k in ks))
        ones = (1,) * len(ks)
        acc = xp[_window_slices(next(positions), st, ones, osz)].copy()
        for k in positions:
            acc += xp[_window_slices(k, st, ones, osz)]
        if acc.dtype.kind in "iu":  # integer average: C-style division, toward zero
            return np.trunc(acc / div).astype(acc.dtype)
        acc /= div
        return acc

    @staticmethod
    def backward(ctx, g):
        return (AvgPoolGrad.apply(g, *ctx.args),) + (None,) * 5

    jvp = staticmethod(_fad.first_arg_linear_jvp)


class AvgPoolGrad(Node):
    """The adjoint of ``AvgPoolNd``: ``g / divisor`` spread back over each window."""

    @staticmethod
    def meta(ctx, g, shape, ks, st, pads, osz, div):
        ctx.args = (ks, st, pads, osz, div)
        return MetaArray(shape, g.dtype)

    @staticmethod
    def forward(ctx, g, shape, ks, st, pads, osz, div):
        ctx.args = (ks, st, pads, osz, div)
        gd = g / div
        tiles = _tiles(shape, ks, st, pads, osz)
        if tiles is not None:  # disjoint windows tiling the input: a broadcast write
            gx = np.zeros(shape, dtype=gd.dtype)
            wide = tuple(d for o in osz for d in (o, 1))
            gx[tiles[0]].reshape(tiles[1])[...] = gd.reshape(gd.shape[:2] + wide)
            return gx
        sp = tuple(s + lo + hi for s, (lo, hi) in zip(shape[2:], pads))
        gxp = np.zeros(tuple(shape[:2]) + sp, dtype=g.dtype)
        ones = (1,) * len(ks)
        for k in itertools.product(*(range(k) for k in ks)):
            gxp[_window_slices(k, st, ones, osz)] += gd
        return gxp[(slice(None), slice(None)) + tuple(slice(lo, lo + s) for s, (lo, _) in
                                                      zip(shape[2:], pads))]

    @staticmethod
    def backward(ctx, h):
        return (AvgPoolNd.apply(h, *ctx.args),) + (None,) * 6


def _avg_poolnd(nd, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                divisor_override):
    op = f"avg_pool{nd}d"
    x, squeeze = _batched(input, nd, op)
    _check_float(x._data, op, ints="i")
    ks, st, pd, _, pads, osz = _pool_args(nd, op, x, kernel_size, stride, padding, 1,
                                          ceil_mode, False)
    if divisor_override is not None:
        div = _avg_divisor(x.shape[2:], ks, st, pd, osz, count_include_pad, divisor_override,
                           x._data.dtype)
    else:  # computed by the op for the input's size, as the output size is
        div = "include_pad" if count_include_pad else "exclude_pad"
    out = AvgPoolNd.apply(x, ks, st, tuple((p, p) for p in pd),
                          "ceil" if ceil_mode else "floor", div)
    return _unbatch(out, squeeze)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """1-d average pooling."""
    return _avg_poolnd(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                       None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """2-d average pooling (``divisor_override`` replaces the window size)."""
    if input.is_quantized:  # the integers' rounded mean (ember.ao.nn.quantized.functional)
        return input._qop("avg_pool2d", kernel_size, stride, padding, ceil_mode,
                          count_include_pad, divisor_override)
    return _avg_poolnd(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                       divisor_override)


@autocast_function("fp32")
def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """3-d average pooling (``divisor_override`` replaces the window size)."""
    return _avg_poolnd(3, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                       divisor_override)


def _lp_poolnd(nd, input, norm_type, kernel_size, stride, ceil_mode):
    op = f"lp_pool{nd}d"
    ks = _ntuple(kernel_size, nd, "kernel_size", op)
    maxp = _max_poolnd
    if norm_type == float("inf"):
        return maxp(nd, input.abs(), ks, stride, 0, 1, ceil_mode, False)
    if norm_type == -float("inf"):
        return -maxp(nd, -input.abs(), ks, stride, 0, 1, ceil_mode, False)
    out = _avg_poolnd(nd, input.pow(norm_type), ks, stride, 0, ceil_mode, True, None)
    return (out.sign() * out.abs().relu()).mul(_prod(ks)).pow(1.0 / norm_type)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """1-d power-average pooling: ``(sum over window of x ** p) ** (1 / p)``."""
    return _lp_poolnd(1, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """2-d power-average pooling: ``(sum over window of x ** p) ** (1 / p)``."""
    return _lp_poolnd(2, input, norm_type, kernel_size, stride, ceil_mode)


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False):
    """3-d power-average pooling: ``(sum over window of x ** p) ** (1 / p)``."""
    return _lp_poolnd(3, input, norm_type, kernel_size, stride, ceil_mode)


# ====================================================================== adaptive pooling
def _adaptive_size(x, output_size, nd, op):
    osz = _ntuple(output_size, nd, "output_size", op) if not (
        isinstance(output_size, (tuple, list)) and any(o is None for o in output_size)) else \
        tuple(s if o is None else int(o) for s, o in zip(x.shape[2:], output_size))
    if len(osz) != nd:
        raise RuntimeError(f"{op}: output_size must be {nd}")
    if any(o < 0 for o in osz):
        raise RuntimeError(f"{op}: elements of output_size must be greater than or equal to 0 "
                           f"but received {list(osz)}")
    for i, s in enumerate(x.shape[2:]):
        if s == 0:
            raise RuntimeError(f"{op}(): Expected input to have non-zero size for non-batch "
                               f"dimensions, but input has sizes {list(x.shape)} with dimension "
                               f"{i + 2} being empty")
    return osz


def _adaptive_bounds(s, o):
    """Window [start, end) of each of ``o`` outputs over ``s`` inputs (PyTorch's rule)."""
    i = np.arange(o)
    return (i * s) // o, -((-(i + 1) * s) // o)


def _adaptive_avg(nd, input, output_size):
    op = f"adaptive_avg_pool{nd}d"
    x, squeeze = _batched(input, nd, op)
    _check_float(x._data, op)
    osz = _adaptive_size(x, output_size, nd, op)
    spatial = x.shape[2:]
    if all(o == 1 for o in osz):  # global pooling: a mean, at any input size
        return _unbatch(x.mean(tuple(range(2, 2 + nd)), keepdim=True), squeeze)
    if all(s % o == 0 for s, o in zip(spatial, osz)):  # regular windows: plain avg pooling
        ks = tuple(s // o for s, o in zip(spatial, osz))
        div = np.asarray(_prod(ks), dtype=x._data.dtype)
        out = AvgPoolNd.apply(x, ks, ks, ((0, 0),) * nd, tuple(osz), div)
        return _unbatch(out, squeeze)
    # Averaging over a box is separable: one averaging matrix (out, in) per spatial dim.
    out = x
    for i in range(nd):
        s, o = spatial[i], osz[i]
        start, end = _adaptive_bounds(s, o)
        m = np.zeros((o, s), dtype=x._data.dtype)
        for r in range(o):
            m[r, start[r]:end[r]] = 1.0 / (end[r] - start[r])
        out = _along_dim(out, 2 + i, _make(m))
    return _unbatch(out, squeeze)


def _along_dim(x, dim, m):
    """Apply the matrix ``m`` (out, in) along ``dim`` of ``x`` (ember ops, differentiable)."""
    if x.is_meta:  # the constant matrix goes where the input is
        m = m.to("meta")
    if dim == x.ndim - 1:
        return x.matmul(m.t())
    shape = tuple(x.shape)
    lead, rest = _prod(shape[:dim]), _prod(shape[dim + 1:])
    y = m.matmul(x.reshape(lead, shape[dim], rest))
    return y.reshape(shape[:dim] + (m.shape[0],) + shape[dim + 1:])


def adaptive_avg_pool1d(input, output_size):
    """1-d average pooling to a given output length."""
    return _adaptive_avg(1, input, output_size)


def adaptive_avg_pool2d(input, output_size):
    """2-d average pooling to a given output size (``None`` keeps an input size)."""
    if input.is_quantized:  # pooled on the integers (ember.ao.nn.quantized.functional)
        return input._qop("adaptive_avg_pool2d", output_size)
    return _adaptive_avg(2, input, output_size)


@autocast_function("fp32")
def adaptive_avg_pool3d(input, output_size):
    """3-d average pooling to a given output size (``None`` keeps an input size)."""
    return _adaptive_avg(3, input, output_size)


class AdaptiveMaxPool(Node):
    """Max over PyTorch's adaptive windows; returns (values, flat indices)."""

    @staticmethod
    def meta(ctx, x, osz):
        shape = x.shape[:2] + tuple(osz)
        ctx.flat, ctx.shape = MetaArray(shape, np.int64), x.shape
        return MetaArray(shape, x.dtype), ctx.flat

    @staticmethod
    def forward(ctx, x, osz):
        nd = len(osz)
        spatial = x.shape[2:]
        index, lengths = [], []
        for i, (s, o) in enumerate(zip(spatial, osz)):
            start, end = _adaptive_bounds(s, o)
            kl = int((end - start).max())
            # windows shorter than the longest repeat their last element (harmless for max)
            idx = np.minimum(start[:, None] + np.arange(kl), end[:, None] - 1)
            shape = [1] * (2 * nd)
            shape[2 * i], shape[2 * i + 1] = o, kl
            index.append(idx.reshape(shape))
            lengths.append(kl)
        win = x[(slice(None), slice(None)) + tuple(index)]  # (N, C, o1, k1, o2, k2, ...)
        order = (0, 1) + tuple(range(2, 2 + 2 * nd, 2)) + tuple(range(3, 3 + 2 * nd, 2))
        win = win.transpose(order).reshape(x.shape[:2] + tuple(osz) + (-1,))
        arg = win.argmax(-1)
        out = np.take_along_axis(win, arg[..., None], -1)[..., 0]
        kpos = np.unravel_index(arg, lengths)
        flat = np.zeros(arg.shape, dtype=np.int64)
        for i in range(nd):
            shape = [1] * (2 + nd)
            shape[2 + i] = osz[i]
            o = np.arange(osz[i]).reshape(shape)
            flat = flat * spatial[i] + index[i].reshape(osz[i], lengths[i])[o, kpos[i]]
        ctx.flat, ctx.shape = flat, x.shape
        return out, flat

    @staticmethod
    def backward(ctx, g, _):
        return ScatterPlanes.apply(g, ctx.flat, ctx.shape, True), None


def _adaptive_max(nd, input, output_size, return_indices):
    op = f"adaptive_max_pool{nd}d"
    x, squeeze = _batched(input, nd, op)
    _check_float(x._data, op)
    osz = _adaptive_size(x, output_size, nd, op)
    spatial = x.shape[2:]
    if all(s % o == 0 for s, o in zip(spatial, osz)):  # regular windows: plain max pooling
        ks = tuple(s // o for s, o in zip(spatial, osz))
        out = MaxPoolNd.apply(x, ks, ks, (1,) * nd, ((0, 0),) * nd, tuple(osz),
                              bool(return_indices))
    else:
        out = AdaptiveMaxPool.apply(x, tuple(osz))
        if not return_indices:
            out = out[0]
    return _unbatch(out, squeeze)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """1-d max pooling to a given output length."""
    return _adaptive_max(1, input, output_size, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """2-d max pooling to a given output size (``None`` keeps an input size)."""
    return _adaptive_max(2, input, output_size, return_indices)


@autocast_function("fp32")
def adaptive_max_pool3d(input, output_size, return_indices=False):
    """3-d max pooling to a given output size (``None`` keeps an input size)."""
    return _adaptive_max(3, input, output_size, return_indices)


def adaptive_max_pool1d_with_indices(input, output_size, return_indices=True):
    """``adaptive_max_pool1d`` returning ``(output, indices)``."""
    return _adaptive_max(1, input, output_size, True)


def adaptive_max_pool2d_with_indices(input, output_size, return_indices=True):
    """``adaptive_max_pool2d`` returning ``(output, indices)``."""
    return _adaptive_max(2, input, output_size, True)


def adaptive_max_pool3d_with_indices(input, output_size, return_indices=True):
    """``adaptive_max_pool3d`` returning ``(output, indices)``."""
    return _adaptive_max(3, input, output_size, True)


# ====================================================================== padding
class ConstantPad(Node):
    """Constant padding by non-negative ``pads`` ((lo, hi) per dim, from the first dim)."""

    @staticmethod
    def meta(ctx, x, pads, value):
        ctx.crop = tuple(slice(lo, lo + s) for s, (lo, _) in zip(x.shape, pads))
        return MetaArray(tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, pads)), x.dtype)

    @staticmethod
    def forward(ctx, x, pads, value):
        ctx.crop = tuple(slice(lo, lo + s) for s, (lo, _) in zip(x.shape, pads))
        shape = tuple(s + lo + hi for s, (lo, hi) in zip(x.shape, pads))
        out = np.full(shape, value, dtype=x.dtype)
        out[ctx.crop] = x
        return out

    @staticmethod
    def backward(ctx, g):
        return g[ctx.crop], None, None

    @staticmethod
    def jvp(ctx, t, *_):
        # affine in x: the padding value is a constant, so the tangent pads with zeros
        return ConstantPad.apply(t, ctx.inputs[1], 0.0)


def _pad_index(size, lo, hi, mode):
    """Source index of each output position along one dim for the non-constant modes."""
    if mode == "circular":  # negative pads crop first; the wrap reads the cropped range
        start, stop = builtins.max(-lo, 0), size - builtins.max(-hi, 0)
        span = stop - start
        return start + np.arange(-builtins.max(lo, 0), span + builtins.max(hi, 0)) % span
    i = np.arange(-lo, size + hi)
    if mode == "reflect":
        i = np.abs(i)
        return np.where(i >= size, 2 * (size - 1) - i, i)
    return np.clip(i, 0, size - 1)


def _pad_policy(args, kwargs):
    # PyTorch's CPU autocast runs reflection padding of 1-2 dims and replication padding of
    # 1-3 dims in float32; constant and circular padding keep the input's dtype
    mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
    dims = len(kwargs.get("pad", args[1] if len(args) > 1 else ())) // 2
    if (mode == "reflect" and dims in (1, 2)) or (mode == "replicate" and dims in (1, 2, 3)):
        return "fp32"
    return "none"


@autocast_function(_pad_policy)
def pad(input, pad, mode="constant", value=None):
    """Pad the last ``len(pad) // 2`` dims: ``pad = (last_lo, last_hi, prev_lo, prev_hi, ...)``.

    Modes: ``constant`` (``value``, negative pads crop), ``reflect``, ``replicate``,
    ``circular``."""
    if not isinstance(input, Tensor):
        raise TypeError(f"pad(): argument 'input' must be Tensor, not {type(input).__name__}")
    pad = [int(p) for p in pad]
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    npd = len(pad) // 2
    nd = input.ndim
    if npd > nd:
        raise RuntimeError("Padding length should be less than or equal to two times the input "
                           f"dimension but got padding length {len(pad)} and input of dimension "
                           f"{nd}")
    pairs = [(pad[2 * i], pad[2 * i + 1]) for i in range(npd)][::-1]  # first padded dim first
    first = nd - npd
    if mode == "constant":
        if value is None:
            value = 0.0
        out = input
        if any(lo < 0 or hi < 0 for lo, hi in pairs):
            crop = (slice(None),) * first + tuple(
                slice(builtins.max(-lo, 0), s - builtins.max(-hi, 0))
                for s, (lo, hi) in zip(input.shape[first:], pairs))
            out = out[crop]
        pos = ((0, 0),) * first + tuple((builtins.max(lo, 0), builtins.max(hi, 0))
                                        for lo, hi in pairs)
        for s, (lo, hi) in zip(out.shape, pos):
            if s + lo + hi < 0:
                raise RuntimeError(f"The input size {s}, plus negative padding {lo} and {hi} "
                                   "resulted in a negative output size, which is invalid. Check "
                                   "dimension of your input.")
        if any(lo or hi for lo, hi in pos):
            out = ConstantPad.apply(out, pos, value)
        elif out is input:
            out = input.clone()
        return out
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if value is not None and value != 0:
        raise RuntimeError(f"Padding mode \"{mode}\" doesn't take in value argument")
    if npd > 3 or nd not in (npd + 1, npd + 2):
        raise NotImplementedError(
            f"Padding size {len(pad)} is not supported for {nd}D input tensor.\nSupported "
            "combinations for non-constant padding:\n  - 2D or 3D input: padding size = 2 "
            "(pads last dimension)\n  - 3D or 4D input: padding size = 4 (pads last 2 "
            "dimensions)\n  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)")
    out = input
    for i, (lo, hi) in enumerate(pairs):
        dim = first + i
        size = input.shape[dim]
        if mode == "reflect" and (lo >= size or hi >= size):
            raise RuntimeError(f"Argument #4: Padding size should be less than the corresponding "
                               f"input dimension, but got: padding ({lo}, {hi}) at dimension "
                               f"{dim} of input {list(input.shape)}")
        if mode == "circular" and (lo > size or hi > size):
            raise RuntimeError("Padding value causes wrapping around more than once.")
        if mode == "replicate" and size == 0:
            raise RuntimeError(f"padding size is expected to be non-zero at dimension {dim}")
        if lo or hi:
            out = out.index_select(dim, _make(_pad_index(size, lo, hi, mode)))
    return out


# ====================================================================== unfold / fold
class Unfold(Node):
    """Sliding blocks ``(N, C, H, W)`` -> ``(N, C * kh * kw, L)`` (im2col)."""

    @staticmethod
    def meta(ctx, x, ks, dl, pads, st):
        osz = tuple((s + lo + hi - d * (k - 1) - 1) // t + 1
                    for s, (lo, hi), k, t, d in zip(x.shape[2:], pads, ks, st, dl))
        ctx.args = (x.shape[2:], ks, dl, pads, st, osz)
        return MetaArray((x.shape[0], x.shape[1] * _prod(ks), _prod(osz)), x.dtype)

    @staticmethod
    def forward(ctx, x, ks, dl, pads, st):
        xp = _pad_array(x, pads)
        osz = tuple((s - d * (k - 1) - 1) // t + 1
                    for s, k, t, d in zip(xp.shape[2:], ks, st, dl))
        ctx.args = (x.shape[2:], ks, dl, pads, st, osz)
        cols = _im2col(xp, ks, st, dl, osz)  # (C, *ks, N, *osz)
        n, c = x.shape[:2]
        cols = cols.reshape((c * _prod(ks), n, _prod(osz))).swapaxes(0, 1)
        return np.ascontiguousarray(cols)

    @staticmethod
    def backward(ctx, g):
        size, ks, dl, pads, st, osz = ctx.args
        return Fold.apply(g, size, ks, dl, pads, st, osz), None, None, None, None


class Fold(Node):
    """Sum sliding blocks ``(N, C * kh * kw, L)`` back into ``(N, C, *size)`` (col2im)."""

    @staticmethod
    def meta(ctx, g, size, ks, dl, pads, st, osz):
        ctx.args = (ks, dl, pads, st)
        return MetaArray((g.shape[0], g.shape[1] // _prod(ks)) + tuple(size), g.dtype)

    @staticmethod
    def forward(ctx, g, size, ks, dl, pads, st, osz):
        ctx.args = (ks, dl, pads, st)
        n = g.shape[0]
        c = g.shape[1] // _prod(ks)
        cols = g.reshape((n, c) + ks + osz).transpose((1,) + tuple(range(2, 2 + len(ks)))
                                                      + (0,) + tuple(range(2 + len(ks),
                                                                           2 + 2 * len(ks))))
        return _col2im(cols, (n, c) + tuple(size), pads, ks, st, dl, osz)

    @staticmethod
    def backward(ctx, h):
        return (Unfold.apply(h, *ctx.args),) + (None,) * 6


def _fold_args(kernel_size, dilation, padding, stride, op):
    ks = _ntuple(kernel_size, 2, "kernel_size", op)
    dl = _ntuple(dilation, 2, "dilation", op)
    pd = _ntuple(padding, 2, "padding", op)
    st = _ntuple(stride, 2, "stride", op)
    if any(v <= 0 for v in ks + dl + st) or any(p < 0 for p in pd):
        raise RuntimeError(f"{op}: kernel_size, dilation and stride must be greater than zero "
                           f"and padding non-negative, but got kernel_size={list(ks)}, "
                           f"dilation={list(dl)}, padding={list(pd)}, stride={list(st)}")
    return ks, dl, tuple((p, p) for p in pd), st


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Extract sliding local blocks: ``(N, C, H, W)`` -> ``(N, C * prod(kernel_size), L)``."""
    if input.ndim not in (3, 4):
        raise NotImplementedError(f"Input Error: Only 3D or 4D input Tensors are supported "
                                  f"(got {input.ndim}D)")
    x, squeeze = _batched(input, 2, "unfold")
    ks, dl, pads, st = _fold_args(kernel_size, dilation, padding, stride, "unfold")
    for s, k, d, (p, _) in zip(x.shape[2:], ks, dl, pads):
        if s + 2 * p < d * (k - 1) + 1:
            raise RuntimeError(f"Given input with spatial size {list(x.shape[2:])}, "
                               f"kernel_size={list(ks)}, dilation={list(dl)}, padding="
                               f"{[p for p, _ in pads]}, calculated shape of the array of "
                               "sliding blocks is non-positive")
    return _unbatch(Unfold.apply(x, ks, dl, pads, st), squeeze)


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Combine sliding blocks ``(N, C * prod(kernel_size), L)`` into ``(N, C, *output_size)``,
    summing overlaps (the adjoint of ``unfold``)."""
    if input.ndim not in (2, 3):
        raise NotImplementedError(f"Input Error: Only unbatched (2D) or batched (3D) input "
                                  f"Tensors are supported (got {input.ndim}D)")
    squeeze = input.ndim == 2
    g = input.unsqueeze(0) if squeeze else input
    size = _ntuple(output_size, 2, "output_size", "fold")
    ks, dl, pads, st = _fold_args(kernel_size, dilation, padding, stride, "fold")
    if g.shape[1] % _prod(ks):
        raise RuntimeError(f"Expected size of input's dimension 1 to be divisible by the product "
                           f"of kernel_size, but got input.size(1)={g.shape[1]} and "
                           f"kernel_size={ks}")
    osz = tuple((s + 2 * p - d * (k - 1) - 1) // t + 1
                for s, k, t, d, (p, _) in zip(size, ks, st, dl, pads))
    if g.shape[2] != _prod(osz):
        raise RuntimeError(f"Given output_size={size}, kernel_size={ks}, dilation={dl}, "
                           f"padding={tuple(p for p, _ in pads)}, stride={st}, expected size of "
                           f"input's dimension 2 to match the calculated number of sliding "
                           f"blocks {osz[0]} * {osz[1]} = {_prod(osz)}, but got "
                           f"input.size(2)={g.shape[2]}.")
    return _unbatch(Fold.apply(g, size, ks, dl, pads, st, osz), squeeze)


# ====================================================================== pixel / channel shuffles
def pixel_shuffle(input, upscale_factor):
    """``(*, C * r**2, H, W)`` -> ``(*, C, H * r, W * r)``."""
    r = int(upscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_shuffle expects input to have at least 3 dimensions, but got "
                           f"input with {input.ndim} dimension(s)")
    *lead, c, h, w = input.shape
    if r <= 0:
        raise RuntimeError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be "
                           f"divisible by the square of upscale_factor, but input.size(-3)={c} "
                           f"is not divisible by {r * r}")
    lead = tuple(lead)
    k = len(lead)
    y = input.reshape(lead + (c // (r * r), r, r, h, w))
    y = y.permute(tuple(range(k)) + (k, k + 3, k + 1, k + 4, k + 2))
    return y.reshape(lead + (c // (r * r), h * r, w * r))


def pixel_unshuffle(input, downscale_factor):
    """``(*, C, H * r, W * r)`` -> ``(*, C * r**2, H, W)``."""
    r = int(downscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_unshuffle expects input to have at least 3 dimensions, but "
                           f"got input with {input.ndim} dimension(s)")
    *lead, c, h, w = input.shape
    if r <= 0:
        raise RuntimeError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    if h % r or w % r:
        raise RuntimeError(f"pixel_unshuffle expects height and width to be divisible by "
                           f"downscale_factor, but input.size(-2)={h} and input.size(-1)={w} "
                           f"are not divisible by {r}")
    lead = tuple(lead)
    k = len(lead)
    y = input.reshape(lead + (c, h // r, r, w // r, r))
    y = y.permute(tuple(range(k)) + (k, k + 2, k + 4, k + 1, k + 3))
    return y.reshape(lead + (c * r * r, h // r, w // r))


def channel_shuffle(input, groups):
    """Split the channels (dim 1) into ``groups`` and interleave them."""
    g = int(groups)
    if g <= 0:
        raise RuntimeError(f"Number of groups to divide channels in must be positive. Value of "
                           f"groups:{g}")
    if input.ndim < 3:
        raise RuntimeError(f"channel_shuffle expects input to have at least 3 dimensions, but "
                           f"got input with {input.ndim} dimension(s)")
    n, c = input.shape[:2]
    if c % g:
        raise RuntimeError(f"Number of channels must be divisible by groups. Got {c} channels "
                           f"and {g} groups.")
    rest = tuple(input.shape[2:])
    y = input.reshape((n, g, c // g) + rest).transpose(1, 2)
    return y.reshape((n, c) + rest)


native_channel_shuffle = channel_shuffle


# ====================================================================== interpolation
_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area",
          "lanczos")


def _scale(in_size, out_size, scale_factor, dtype):
    """PyTorch's source/destination scale: 1 / scale_factor when one is given, else in/out."""
    if scale_factor is not None and scale_factor > 0:
        return dtype.type(1.0 / scale_factor)
    return dtype.type(in_size) / dtype.type(out_size)


def _nearest_index(in_size, out_size, scale_factor, exact):
    sc = _scale(in_size, out_size, scale_factor, np.dtype(np.float32))
    dst = np.arange(out_size, dtype=np.float32)
    if exact:
        dst = dst + np.float32(0.5)
    return np.minimum(np.floor(dst * sc).astype(np.int64), in_size - 1)


def _cubic_coeffs(t, a):
    """Keys' cubic convolution weights for the 4 taps around fractional offset ``t``."""
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return far(t + 1), near(t), near(1 - t), far(2 - t)


def _aa_filter(mode):
    """The resampling filter of antialiased interpolation, and its half-width at scale 1."""
    if mode == "bilinear":  # triangle
        return (lambda x: np.maximum(1.0 - np.abs(x), 0.0)), 1.0
    if mode == "bicubic":  # Keys' cubic with a = -0.5 (Pillow's, not upsampling's -0.75)
        def cubic(x):
            x = np.abs(x)
            a = -0.5
            near = ((a + 2) * x - (a + 3)) * x * x + 1
            far = (((x - 5) * x + 8) * x - 4) * a
            return np.where(x < 1, near, np.where(x < 2, far, 0.0))
        return cubic, 2.0

    def lanczos3(x):  # sinc(x) sinc(x / 3) on |x| < 3
        return np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)
    return lanczos3, 3.0


def _aa_matrix(in_size, out_size, scale_factor, align_corners, mode, dtype):
    """The (out, in) matrix of antialiased 1-d resampling (``interpolate(antialias=True)``):
    each output sample averages the inputs under the filter centred on it, the filter
    widened by the downsampling factor (so every input contributes: no aliasing), weights
    normalised to sum to one over the inputs that exist; upsampling is the plain filter."""
    if align_corners:
        sc = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    else:
        sc = 1.0 / scale_factor if scale_factor is not None and scale_factor > 0 else \
            in_size / out_size
    filt, half = _aa_filter(mode)
    stretch = max(sc, 1.0)
    support = half * stretch
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        centre = sc * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        w = filt((np.arange(lo, hi) - centre + 0.5) / stretch)
        total = w.sum()
        m[i, lo:hi] = w / total if total != 0 else w
    return m.astype(dtype)


def _interp_matrix(in_size, out_size, scale_factor, align_corners, cubic, dtype):
    """The (out, in) matrix of 1-d linear or cubic interpolation (PyTorch's index rules)."""
    one = dtype.type(1)
    if align_corners:
        sc = dtype.type(in_size - 1) / dtype.type(out_size - 1) if out_size > 1 else \
            dtype.type(0)
        src = sc * np.arange(out_size, dtype=dtype)
    else:
        sc = _scale(in_size, out_size, scale_factor, dtype)
        src = sc * (np.arange(out_size, dtype=dtype) + dtype.type(0.5)) - dtype.type(0.5)
        if not cubic:
            src = np.maximum(src, dtype.type(0))
    m = np.zeros((out_size, in_size), dtype=dtype)
    rows = np.arange(out_size)
    if cubic:
        i0 = np.floor(src).astype(np.int64)
        t = src - i0.astype(dtype)
        for k, w in enumerate(_cubic_coeffs(t, dtype.type(-0.75))):
            np.add.at(m, (rows, np.clip(i0 - 1 + k, 0, in_size - 1)), w)
        return m
    i0 = src.astype(np.int64)
    i1 = i0 + (i0 < in_size - 1)
    l1 = src - i0.astype(dtype)
    np.add.at(m, (rows, i0), one - l1)
    np.add.at(m, (rows, i1), l1)
    return m


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resize the spatial dims of ``(N, C, *spatial)`` input (PyTorch's ``F.interpolate``)."""
    if mode not in _MODES:
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
            "the modes: nearest | linear | bilinear | bicubic | trilinear | area | nearest-exact "
            f"(got {mode})")
    if antialias and not (mode in ("bilinear", "bicubic", "lanczos") and input.ndim == 4):
        raise ValueError("Anti-alias option is restricted to bilinear, bicubic, and lanczos "
                         "modes and requires a 4-D tensor as input")
    if mode == "lanczos":
        if align_corners:
            raise ValueError("Lanczos mode does not support align_corners=True")
        if not antialias:
            raise ValueError("Lanczos mode requires antialias=True")
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating "
                             "modes: linear | bilinear | bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    nd = input.ndim - 2
    if nd not in (1, 2, 3):
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
            "the modes: nearest | linear | bilinear | bicubic | trilinear | area | nearest-exact "
            f"(got {mode})")
    need = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}.get(mode)
    if need is not None and need != nd:
        raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs "
                                  f"{need + 2}D input")
    spatial = tuple(input.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        if isinstance(size, (list, tuple)):
            if len(size) != nd:
                raise ValueError(
                    "Input and output must have the same number of spatial dimensions, but got "
                    f"input with spatial dimensions of {list(spatial)} and output size of "
                    f"{size}. Please provide input tensor in (N, C, d1, d2, ...,dK) format and "
                    "output size in (o1, o2, ...,oK) format.")
            out_size = tuple(int(s) for s in size)
        else:
            out_size = (int(size),) * nd
        scales = None
        if recompute_scale_factor:
            raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
    elif scale_factor is not None:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != nd:
                raise ValueError(
                    "Input and scale_factor must have the same number of spatial dimensions, but "
                    f"got input with spatial dimensions of {list(spatial)} and scale_factor of "
                    f"shape {scale_factor}. Please provide input tensor in (N, C, d1, d2, ...,dK) "
                    "format and scale_factor in (s1, s2, ...,sK) format.")
            scales = tuple(float(s) for s in scale_factor)
        else:
            scales = (float(scale_factor),) * nd
        out_size = None
    else:
        raise ValueError("either size or scale_factor should be defined")
    if mode == "area":
        return _adaptive_avg(nd, input, _resample_sizes(spatial, out_size, scales, True)[0])
    if mode not in ("nearest", "nearest-exact"):  # any dtype for nearest: a pure gather
        _check_float(input._data, f"upsample_{mode}")
    out = Interpolate.apply(input, out_size, scales, bool(recompute_scale_factor), mode,
                            align_corners, bool(antialias))
    if out.grad_fn is not None:  # PyTorch's node name, e.g. UpsampleBilinear2DBackward0
        kind = "".join(w.capitalize() for w in mode.split("-"))
        named(out, f"Upsample{kind}{nd}D{'Aa' if antialias else ''}Backward0")
    return out


def _resample_sizes(spatial, size, scales, recompute):
    """(output sizes, scale factors that map coordinates) of ``Interpolate``: ``size`` as
    given, else ``floor(in * scale)``; the coordinates follow the scale factors unless sizes
    were given or ``recompute`` (then in/out, as PyTorch's ``recompute_scale_factor``)."""
    if size is None:
        size = tuple(int(math.floor(s * f)) for s, f in zip(spatial, scales))
        coord = (None,) * len(spatial) if recompute else scales
    else:
        coord = (None,) * len(spatial)
    if any(o <= 0 for o in size):
        names = "DHW"[-len(spatial):]
        sin = ", ".join(f"{c}: {s}" for c, s in zip(names, spatial))
        sout = ", ".join(f"{c}: {s}" for c, s in zip(names, size))
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got input "
                           f"({sin}) output ({sout})")
    return size, coord


def _resample_steps(shape, size, coord, mode, align_corners, antialias, dtype):
    """The 1-d resamplings that make an interpolation, in order: ``(axis, shape before,
    index or matrix)``: a gather of source indices (nearest modes; unchanged dims skipped) or
    an (out, in) matrix (linear and cubic modes, last dim first)."""
    nd, steps, shape = len(size), [], list(shape)
    if mode in ("nearest", "nearest-exact"):
        for i in range(nd):
            n = shape[2 + i]
            if size[i] != n or coord[i] not in (None, 1.0):
                idx = _nearest_index(n, size[i], coord[i], mode == "nearest-exact")
                steps.append((2 + i, tuple(shape), idx))
                shape[2 + i] = size[i]
        return steps
    mdt = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)
    for i in range(nd - 1, -1, -1):
        if antialias:
            m = _aa_matrix(shape[2 + i], size[i], coord[i], align_corners, mode, mdt)
        else:
            m = _interp_matrix(shape[2 + i], size[i], coord[i], align_corners,
                               mode == "bicubic", mdt)
        steps.append((2 + i, tuple(shape), m))
        shape[2 + i] = size[i]
    return steps


def _matrix_along(x, axis, m):
    """``m`` (out, in) applied along ``axis`` of the array ``x``."""
    if axis == x.ndim - 1:
        return np.matmul(x, m.T)
    shape = x.shape
    y = np.matmul(m, x.reshape(_prod(shape[:axis]), shape[axis], _prod(shape[axis + 1:])))
    return y.reshape(shape[:axis] + (m.shape[0],) + shape[axis + 1:])


class Interpolate(Node):
    """``interpolate`` (every mode but 'area') as one op: captured graphs carry it whole (ONNX
    ``Resize``), and with scale factors its output size follows the input's at every call.
    Arguments after the input: output sizes (None: from ``scales``), scale factors (None:
    from the sizes), ``recompute_scale_factor``, mode, align_corners, antialias. Computed as
    a gather per dim (nearest modes) or a resampling matrix per dim (the others), in float32
    for half-precision inputs."""

    @staticmethod
    def _steps(ctx, shape, dtype, size, scales, recompute, mode, align_corners, antialias):
        size, coord = _resample_sizes(tuple(shape[2:]), size, scales, recompute)
        ctx.steps = _resample_steps(shape, size, coord, mode, align_corners, antialias, dtype)
        return tuple(shape[:2]) + tuple(size)

    @staticmethod
    def meta(ctx, x, size, scales, recompute, mode, align_corners, antialias):
        out = Interpolate._steps(ctx, x.shape, x.dtype, size, scales, recompute, mode,
                                 align_corners, antialias)
        return MetaArray(out, x.dtype)

    @staticmethod
    def forward(ctx, x, size, scales, recompute, mode, align_corners, antialias):
        Interpolate._steps(ctx, x.shape, x.dtype, size, scales, recompute, mode,
                           align_corners, antialias)
        out = x
        for axis, _, arr in ctx.steps:
            if arr.ndim == 1:
                out = np.take(out, arr, axis=axis)
            else:
                out = _matrix_along(out.astype(arr.dtype, copy=False), axis, arr)
        if out is x:
            return x.copy()
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, g):
        from .indexing import IndexAddZeros
        for axis, shape, arr in reversed(ctx.steps):
            if arr.ndim == 1:
                idx = [slice(None)] * len(shape)
                idx[axis] = arr
                g = IndexAddZeros.apply(g, shape, tuple(idx))
            else:
                g = _along_dim(g, axis, _make(arr.T.astype(g._data.dtype)))
        return g, None, None, None, None, None, None

    jvp = staticmethod(_fad.first_arg_linear_jvp)


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Deprecated alias of ``interpolate``."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(..., mode='nearest')``."""
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(..., mode='bilinear', align_corners=True)``."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


# ====================================================================== grid_sample / affine_grid
def _unnormalize(coord, size, align_corners):
    if align_corners:
        return (coord + 1) * ((size - 1) / 2)
    return ((coord + 1) * size - 1) / 2


def _source_coord(coord, size, padding_mode, align_corners):
    return _pad_coord(_unnormalize(coord, size, align_corners), size, padding_mode,
                      align_corners)


def _pad_coord(c, size, padding_mode, align_corners):
    """A source coordinate (Tensor) after the padding mode: as is (zeros), clamped (border),
    reflected then clamped (reflection)."""
    if padding_mode == "border":
        c = c.clamp(0, size - 1)
    elif padding_mode == "reflection":
        if align_corners:
            c = _reflect(c, 0, 2 * (size - 1))
        else:
            c = _reflect(c, -1, 2 * size - 1)
        c = c.clamp(0, size - 1)
    return c


def _reflect(coord, twice_low, twice_high):
    from .elementwise import where
    if twice_low == twice_high:
        return coord * 0
    low = twice_low / 2
    span = (twice_high - twice_low) / 2
    c = (coord - low).abs()
    extra = c.fmod(span)
    flips = (c / span).floor()
    return where(flips.fmod(2) == 0, extra + low, span - extra + low)


@autocast_function("fp32")
def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """Sample ``input`` (N, C, H, W) at ``grid`` (N, Ho, Wo, 2) locations in [-1, 1] (x then
    y), or a volume (N, C, D, H, W) at ``grid`` (N, Do, Ho, Wo, 3) (x, y, z); modes
    ``bilinear`` (trilinear on volumes), ``nearest`` and ``bicubic`` (4-D only), padding
    ``zeros``/``border``/``reflection``. Composed of ember ops: differentiable in the input
    and the grid."""
    if mode not in ("bilinear", "nearest", "bicubic"):
        raise ValueError(f"nn.functional.grid_sample(): expected mode to be 'bilinear', "
                         f"'nearest' or 'bicubic', but got: '{mode}'")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"nn.functional.grid_sample(): expected padding_mode to be 'zeros', "
                         f"'border', or 'reflection', but got: '{padding_mode}'")
    nd = input.ndim - 2
    if input.ndim not in (4, 5) or grid.ndim != input.ndim or grid.shape[-1] != nd:
        raise RuntimeError(f"grid_sampler(): expected 4D or 5D input and grid with same number "
                           f"of dimensions, but got input with sizes {list(input.shape)} and "
                           f"grid with sizes {list(grid.shape)}")
    if mode == "bicubic" and nd != 2:
        raise RuntimeError("grid_sampler(): bicubic interpolation only supports 4D input")
    if input.shape[0] != grid.shape[0]:
        raise RuntimeError(f"grid_sampler(): expected grid and input to have same batch size, "
                           f"but got input with sizes {list(input.shape)} and grid with sizes "
                           f"{list(grid.shape)}")
    if input.dtype != grid.dtype:
        raise RuntimeError(f"grid_sampler(): expected input and grid to have same dtype, but "
                           f"input has {input.dtype} and grid has {grid.dtype}")
    align_corners = bool(align_corners)
    n, c = input.shape[:2]
    sizes = tuple(input.shape[2:])  # (H, W) or (D, H, W)
    out_sp = tuple(grid.shape[1:-1])
    length = int(np.prod(out_sp))
    flat_in = input.reshape(n, c, int(np.prod(sizes)))
    dtype = input._data.dtype
    # the grid's last dim is (x, y[, z]): component k indexes spatial dim nd - 1 - k
    raw = [grid[..., nd - 1 - d].reshape(n, 1, length) for d in range(nd)]

    def tap(idx):
        """Input values at integer positions ``idx`` (one (N, 1, L) array per spatial dim),
        and 1.0 where the position is inside the input, 0.0 outside."""
        inside, flat = None, 0
        for i, size in zip(idx, sizes):
            ok = (i >= 0) & (i < size)
            inside = ok if inside is None else inside & ok
            flat = flat * size + np.clip(i, 0, size - 1)
        vals = flat_in.gather(2, _make(np.broadcast_to(flat, (n, c, length)).copy()))
        return vals, inside.astype(dtype)

    if mode == "bicubic":
        out = _grid_bicubic(raw, sizes, tap, padding_mode, align_corners)
    else:
        coords = [_source_coord(g, size, padding_mode, align_corners)
                  for g, size in zip(raw, sizes)]
        if mode == "nearest":  # nearest with ties to even, as PyTorch's nearbyint
            vals, inside = tap([np.rint(g._data).astype(np.int64) for g in coords])
            out = vals * _make(inside)
        else:
            lows, fracs = _floor_split(coords)
            out = None
            for corner in itertools.product((0, 1), repeat=nd):
                weight = None
                for bit, t in zip(corner, fracs):
                    f = t if bit else 1 - t
                    weight = f if weight is None else weight * f
                vals, inside = tap([lo + bit for lo, bit in zip(lows, corner)])
                term = vals * (weight * _make(inside))
                out = term if out is None else out + term
    return out.reshape(n, c, *out_sp)


def _grid_bicubic(raw, sizes, tap, padding_mode, align_corners):
    """Bicubic grid sampling (PyTorch's: Keys' cubic with a = -0.75 over the 4x4 taps around
    the unnormalised coordinate; the padding mode applies to each tap's position)."""
    coords = [_unnormalize(g, size, align_corners) for g, size in zip(raw, sizes)]
    lows, fracs = _floor_split(coords)
    weights = [_cubic_coeffs(t, -0.75) for t in fracs]  # 4 Tensors per dim
    out = None
    for ky in range(4):
        for kx in range(4):
            pos = [_pad_tap(lows[0] - 1 + ky, sizes[0], padding_mode, align_corners),
                   _pad_tap(lows[1] - 1 + kx, sizes[1], padding_mode, align_corners)]
            vals, inside = tap(pos)
            term = vals * (weights[0][ky] * weights[1][kx] * _make(inside))
            out = term if out is None else out + term
    return out


def _floor_split(coords):
    """Each coordinate Tensor as its integer floor (an int64 array) and the fractional
    part (a Tensor: the gradient flows through it)."""
    lows = [np.floor(g._data) for g in coords]
    return [lo.astype(np.int64) for lo in lows], [g - _make(lo) for g, lo in zip(coords, lows)]


def _pad_tap(i, size, padding_mode, align_corners):
    """An integer tap position (int64 array) after the padding mode (``_pad_coord``; zeros:
    as is, read as 0 outside). Reflections of integers about 0 or -0.5 are integers."""
    if padding_mode == "zeros":
        return i
    c = _pad_coord(_make(i.astype(np.float64)), size, padding_mode, align_corners)
    return np.rint(c._data).astype(np.int64)


def _base_coords(size, align_corners, dtype):
    if size <= 1:
        return np.zeros(size, dtype=dtype)
    v = np.linspace(-1, 1, size, dtype=dtype)
    return v if align_corners else v * dtype.type((size - 1) / size)


def affine_grid(theta, size, align_corners=None):
    """Sampling grid (N, H, W, 2) (or (N, D, H, W, 3)) for affine matrices ``theta`` (N, 2, 3)
    (or (N, 3, 4)), to feed ``grid_sample``."""
    import warnings
    if align_corners is None:
        warnings.warn("Default grid_sample and affine_grid behavior has changed to "
                      "align_corners=False since 1.3.0. Please specify align_corners=True if the "
                      "old behavior is desired. See the documentation of grid_sample for "
                      "details.", stacklevel=2)
        align_corners = False
    if not theta.is_floating_point():
        raise ValueError(f"Expected theta to have floating point type, but got {theta.dtype}")
    size = [int(s) for s in size]
    dtype = theta._data.dtype
    if len(size) == 4:
        if theta.ndim != 3 or tuple(theta.shape[-2:]) != (2, 3):
            raise ValueError(f"Expected a batch of 2D affine matrices of shape Nx2x3 for size "
                             f"{size}. Got {list(theta.shape)}.")
        h, w = size[2:]
        xs = _base_coords(w, align_corners, dtype)
        ys = _base_coords(h, align_corners, dtype)
        base = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], np.ones((1, 1), dtype)),
                        -1).reshape(1, h * w, 3)
        out_shape = (size[0], h, w, 2)
    elif len(size) == 5:
        if theta.ndim != 3 or tuple(theta.shape[-2:]) != (3, 4):
            raise ValueError(f"Expected a batch of 3D affine matrices of shape Nx3x4 for size "
                             f"{size}. Got {list(theta.shape)}.")
        d, h, w = size[2:]
        xs = _base_coords(w, align_corners, dtype)
        ys = _base_coords(h, align_corners, dtype)
        zs = _base_coords(d, align_corners, dtype)
        base = np.stack(np.broadcast_arrays(xs[None, None, :], ys[None, :, None],
                                            zs[:, None, None], np.ones((1, 1, 1), dtype)),
                        -1).reshape(1, d * h * w, 4)
        out_shape = (size[0], d, h, w, 3)
    else:
        raise NotImplementedError(f"affine_grid only supports 4D and 5D sizes, for 2D and 3D "
                                  f"affine transforms, respectively. Got size {size}.")
    if min(size) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {size}")
    if theta.shape[0] != size[0]:
        raise ValueError(f"Expected theta to have the same batch size as size: got "
                         f"{theta.shape[0]} and {size[0]}")
    grid = _make(np.ascontiguousarray(base)).matmul(theta.transpose(1, 2))
    return grid.reshape(out_shape)
