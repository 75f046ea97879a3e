"""Differentiable collectives on local tensors, the building blocks of ``redistribute``.

Convention (why these backward formulas): autograd runs on each rank's *local* tensors, and
every collective here is a linear map of all ranks' local values whose backward is its exact
adjoint. So the gradient a rank holds for its local tensor is the derivative of the loss by
that local copy: for a ``Shard`` it is the shard of the true gradient, for a ``Partial`` term
it is the true gradient, and for a ``Replicate`` copy it is that copy's share (the shares sum
to the true gradient). The adjoints follow: all_gather <-> reduce_scatter, all_reduce <->
all_reduce, taking a local chunk <-> zero padding, all_to_all <-> the reverse all_to_all.
``from_local``/``to_local``/leaf gradients convert shares to PyTorch's convention (whole
gradients on every rank) at the boundary with plain tensors (``_api.py``).
"""

from __future__ import annotations

import numpy as np

from .. import distributed_c10d as c10d
from .._buffers import ReduceOp
from ...autograd.graph import Function
from ..._tensor import _make

_OPS = {"sum": ReduceOp.SUM, "avg": ReduceOp.SUM, "max": ReduceOp.MAX, "min": ReduceOp.MIN}


def chunk_sizes(n, k):
    """Sizes of ``torch.chunk``'s pieces of ``n`` elements over ``k`` ranks, padded with empty
    pieces to ``k`` (as DTensor shards): ``ceil(n / k)`` each, the trailing ones smaller."""
    c = -(-n // k) if n else 0
    return [max(0, min(c, n - i * c)) for i in range(k)], c


def chunk_range(n, k, i):
    """(offset, size) of piece ``i`` of ``n`` elements over ``k`` ranks."""
    sizes, c = chunk_sizes(n, k)
    return min(i * c, n), sizes[i]


def _front(a, dim):
    """``a`` with ``dim`` moved first, contiguous (the layout MPI buffers need)."""
    return np.ascontiguousarray(np.moveaxis(a, dim, 0))


def _pad_rows(a, rows):
    if a.shape[0] == rows:
        return a
    out = np.zeros((rows,) + a.shape[1:], a.dtype)
    out[:a.shape[0]] = a
    return out


def all_gather_dim(arr, dim, full, pg):
    """Concatenate every rank's shard of ``full`` elements along ``dim`` (raw arrays)."""
    n = pg.size()
    _, c = chunk_sizes(full, n)
    src = _pad_rows(_front(arr, dim), c)
    out = np.empty((n * c,) + src.shape[1:], arr.dtype)
    c10d.all_gather_into_tensor(_make(out), _make(src), group=pg)
    return np.moveaxis(out[:full], 0, dim)


def reduce_scatter_dim(arr, dim, pg, op="sum"):
    """Reduce the ranks' full arrays and keep this rank's chunk along ``dim`` (raw arrays)."""
    n = pg.size()
    full = arr.shape[dim]
    sizes, c = chunk_sizes(full, n)
    src = _pad_rows(_front(arr, dim), n * c)
    out = np.empty((c,) + src.shape[1:], arr.dtype)
    c10d.reduce_scatter_tensor(_make(out), _make(src), op=_OPS[op], group=pg)
    if op == "avg":
        out = out / n
    return np.moveaxis(out[:sizes[pg.rank()]], 0, dim)


def all_reduce_arr(arr, pg, op="sum"):
    out = np.array(arr, copy=True, order="C")
    c10d.all_reduce(_make(out), op=_OPS[op], group=pg)
    if op == "avg":
        out = out / pg.size()
    return out


def chunk_arr(arr, dim, pg):
    off, size = chunk_range(arr.shape[dim], pg.size(), pg.rank())
    idx = [slice(None)] * arr.ndim
    idx[dim] = slice(off, off + size)
    return np.array(arr[tuple(idx)], copy=True)


def unchunk_arr(arr, dim, full, pg):
    """The adjoint of ``chunk_arr``: this rank's chunk placed into zeros of the full size."""
    off, size = chunk_range(full, pg.size(), pg.rank())
    shape = list(arr.shape)
    shape[dim] = full
    out = np.zeros(shape, arr.dtype)
    idx = [slice(None)] * arr.ndim
    idx[dim] = slice(off, off + size)
    out[tuple(idx)] = arr
    return out


def all_to_all_dims(arr, src_dim, dst_dim, full_src, pg):
    """Shard(src_dim) -> Shard(dst_dim): split along ``dst_dim`` and exchange, so that
    ``src_dim`` becomes whole and ``dst_dim`` this rank's chunk."""
    n, me = pg.size(), pg.rank()
    full_dst = arr.shape[dst_dim]
    src_sizes, _ = chunk_sizes(full_src, n)
    dst_sizes, _ = chunk_sizes(full_dst, n)
    sends, off = [], 0
    for r in range(n):
        idx = [slice(None)] * arr.ndim
        idx[dst_dim] = slice(off, off + dst_sizes[r])
        off += dst_sizes[r]
        sends.append(_make(np.ascontiguousarray(arr[tuple(idx)])))
    recvs = []
    for s in range(n):
        shape = list(arr.shape)
        shape[src_dim] = src_sizes[s]
        shape[dst_dim] = dst_sizes[me]
        recvs.append(_make(np.empty(shape, arr.dtype)))
    c10d.all_to_all(recvs, sends, group=pg)
    return np.concatenate([t._data for t in recvs], axis=src_dim)


def _t(arr):
    return _make(np.asarray(arr))


class AllGather(Function):
    """Shard(dim) -> Replicate; backward: reduce_scatter."""

    @staticmethod
    def forward(ctx, x, dim, full, pg):
        ctx.dim, ctx.pg = dim, pg
        return _t(all_gather_dim(x._data, dim, full, pg))

    @staticmethod
    def backward(ctx, g):
        return ReduceScatter.apply(g, ctx.dim, ctx.pg, "sum"), None, None, None


class ReduceScatter(Function):
    """Partial -> Shard(dim); backward: all_gather (``avg`` scales by 1/n both ways)."""

    @staticmethod
    def forward(ctx, x, dim, pg, op):
        if op not in ("sum", "avg"):
            ctx.mark_non_differentiable()
        ctx.dim, ctx.pg, ctx.op, ctx.full = dim, pg, op, x.shape[dim]
        return _t(reduce_scatter_dim(x._data, dim, pg, op))

    @staticmethod
    def backward(ctx, g):
        if ctx.op not in ("sum", "avg"):
            raise NotImplementedError(f"backward of a Partial({ctx.op}) redistribution is not "
                                      f"implemented (only sum and avg are linear)")
        out = AllGather.apply(g, ctx.dim, ctx.full, ctx.pg)
        if ctx.op == "avg":
            out = out / ctx.pg.size()
        return out, None, None, None


class AllReduce(Function):
    """Partial -> Replicate; backward: all_reduce (its own adjoint)."""

    @staticmethod
    def forward(ctx, x, pg, op):
        ctx.pg, ctx.op = pg, op
        return _t(all_reduce_arr(x._data, pg, op))

    @staticmethod
    def backward(ctx, g):
        if ctx.op not in ("sum", "avg"):
            raise NotImplementedError(f"backward of a Partial({ctx.op}) redistribution is not "
                                      f"implemented (only sum and avg are linear)")
        return AllReduce.apply(g, ctx.pg, ctx.op), None, None


class Chunk(Function):
    """Replicate -> Shard(dim): keep this rank's chunk; backward: zero padding."""

    @staticmethod
    def forward(ctx, x, dim, pg):
        ctx.dim, ctx.pg, ctx.full = dim, pg, x.shape[dim]
        return _t(chunk_arr(x._data, dim, pg))

    @staticmethod
    def backward(ctx, g):
        return Unchunk.apply(g, ctx.dim, ctx.full, ctx.pg), None, None


class Unchunk(Function):
    """The adjoint of ``Chunk`` (used by its backward)."""

    @staticmethod
    def forward(ctx, x, dim, full, pg):
        ctx.dim, ctx.pg = dim, pg
        return _t(unchunk_arr(x._data, dim, full, pg))

    @staticmethod
    def backward(ctx, g):
        return Chunk.apply(g, ctx.dim, ctx.pg), None, None, None


class AllToAll(Function):
    """Shard(src) -> Shard(dst); backward: the reverse all_to_all."""

    @staticmethod
    def forward(ctx, x, src, dst, full_src, pg):
        ctx.src, ctx.dst, ctx.pg, ctx.full_dst = src, dst, pg, x.shape[dst]
        return _t(all_to_all_dims(x._data, src, dst, full_src, pg))

    @staticmethod
    def backward(ctx, g):
        return AllToAll.apply(g, ctx.dst, ctx.src, ctx.full_dst, ctx.pg), None, None, None, None


class MaskToFirst(Function):
    """Keep the value on mesh coordinate 0 and zeros elsewhere (Replicate -> Partial(sum));
    the map is its own adjoint. With ``scale`` instead, multiply by it (Partial(avg))."""

    @staticmethod
    def forward(ctx, x, pg):
        ctx.pg = pg
        return _t(x._data.copy() if pg.rank() == 0 else np.zeros_like(x._data))

    @staticmethod
    def backward(ctx, g):
        return MaskToFirst.apply(g, ctx.pg), None


class ReduceGrad(Function):
    """Identity forward; backward all-reduces the gradient over ``pgs`` (turns the shares of a
    replicated copy into the whole gradient, at the boundary with plain tensors)."""

    @staticmethod
    def forward(ctx, x, pgs):
        ctx.pgs = pgs
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return ReduceShares.apply(g, ctx.pgs), None


class ReduceShares(Function):
    """All-reduce over ``pgs`` (the backward of ``ReduceGrad``); backward: ``MaskGrad``."""

    @staticmethod
    def forward(ctx, x, pgs):
        ctx.pgs = pgs
        a = x._data
        for pg in pgs:
            a = all_reduce_arr(a, pg)
        return _t(a)

    @staticmethod
    def backward(ctx, g):
        return MaskShares.apply(g, ctx.pgs), None


class MaskShares(Function):
    """Keep the value where every coordinate on ``pgs`` is 0, zeros elsewhere."""

    @staticmethod
    def forward(ctx, x, pgs):
        ctx.pgs = pgs
        first = all(pg.rank() == 0 for pg in pgs)
        return _t(x._data.copy() if first else np.zeros_like(x._data))

    @staticmethod
    def backward(ctx, g):
        return ReduceShares.apply(g, ctx.pgs), None


class MaskGrad(Function):
    """Identity forward; backward keeps the gradient on coordinate 0 of ``pgs`` only (turns a
    whole gradient, as plain tensors hold it, into shares of a replicated copy)."""

    @staticmethod
    def forward(ctx, x, pgs):
        ctx.pgs = pgs
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return MaskShares.apply(g, ctx.pgs), None
