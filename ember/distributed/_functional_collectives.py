"""``torch.distributed._functional_collectives``: collectives that return a new tensor
instead of writing into their argument, and that carry gradients (PyTorch 2.13 registers a
backward for the base ops, so the ``*_autograd`` names are the same functions).

The adjoints, as PyTorch's: all_reduce(sum) <-> all_reduce(sum); all_gather <->
reduce_scatter(sum); all_to_all_single with split sizes swapped. ember's collectives complete
before they return (MPI, no stream), so ``wait_tensor`` has nothing to wait for.

``group`` is what PyTorch accepts: a ProcessGroup (or None for the default group), a 1-D
DeviceMesh, ``(mesh, mesh_dim)``, or a list of global ranks naming the whole world (a
sub-list would need a communicator that every rank creates together: use ``new_group``)."""

from __future__ import annotations

import warnings

from ..autograd.graph import Function

__all__ = ["AsyncCollectiveTensor", "all_gather_into_tensor_coalesced", "all_gather_single",
           "all_gather_single_autograd", "all_gather_single_coalesced", "all_gather_tensor",
           "all_gather_tensor_autograd", "all_reduce", "all_reduce_coalesced",
           "all_to_all_single", "all_to_all_single_autograd", "broadcast", "permute_tensor",
           "reduce_scatter_single", "reduce_scatter_single_autograd",
           "reduce_scatter_single_coalesced", "reduce_scatter_tensor",
           "reduce_scatter_tensor_autograd", "reduce_scatter_tensor_coalesced", "wait_tensor"]

_REDUCE_NAMES = {"sum": "SUM", "avg": "AVG", "max": "MAX", "min": "MIN", "product": "PRODUCT"}


def _c10d():
    from . import distributed_c10d
    return distributed_c10d


def wait_tensor(tensor):
    """The collective that produced ``tensor`` has completed already; returns it."""
    return tensor


class AsyncCollectiveTensor:
    """PyTorch's wrapper for a collective's result that is still in flight. ember's
    collectives finish before returning, so none is ever made; the class exists for the
    ``isinstance`` checks libraries make."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("AsyncCollectiveTensor: ember's functional collectives complete "
                           "before they return and hand back plain tensors")


def _op(reduce_op):
    c10d = _c10d()
    if isinstance(reduce_op, str):
        try:
            return getattr(c10d.ReduceOp, _REDUCE_NAMES[reduce_op.lower()])
        except KeyError:
            raise ValueError(f"unknown reduce op {reduce_op!r}; expected one of "
                             f"{sorted(_REDUCE_NAMES)}") from None
    return reduce_op


def _op_name(reduce_op):
    return reduce_op.lower() if isinstance(reduce_op, str) else str(reduce_op).lower()


def _resolve_group(group, tag=""):
    """A ProcessGroup (None: the default group) from any of PyTorch's ``group`` forms."""
    c10d = _c10d()
    if group is None or isinstance(group, c10d.ProcessGroup):
        return group
    from .device_mesh import DeviceMesh
    if isinstance(group, DeviceMesh):
        return group.get_group()
    if isinstance(group, tuple) and len(group) == 2 and isinstance(group[0], DeviceMesh):
        return group[0].get_group(group[1])
    if isinstance(group, list):
        flat = [r for sub in group for r in sub] if group and isinstance(group[0], list) \
            else group
        world = list(range(c10d.get_world_size()))
        if sorted(int(r) for r in flat) == world:
            return None
        raise NotImplementedError(
            f"functional collectives: a rank list {group} that is not the whole world "
            f"({world}) needs a process group; make one with new_group({flat}) on every rank "
            f"and pass it")
    raise TypeError(f"functional collectives: group must be a ProcessGroup, a DeviceMesh, "
                    f"(DeviceMesh, int) or a list of ranks, got {type(group).__name__}")


def _size(pg):
    return _c10d().get_world_size(pg)


# ------------------------------------------------------------------ the differentiable ops
# Each forward writes into a new tensor through ember.distributed's in-place collectives;
# each backward is the adjoint collective applied to the gradient, itself differentiable.

class _AllReduce(Function):
    @staticmethod
    def forward(ctx, x, op, pg):
        ctx.op, ctx.pg = op, pg
        out = x.detach().clone()
        _c10d().all_reduce(out, op=_op(op), group=pg)
        return out

    @staticmethod
    def backward(ctx, g):
        if _op_name(ctx.op) != "sum":
            raise RuntimeError(f"all_reduce backward only supports 'sum' reduction, got "
                               f"'{_op_name(ctx.op)}'")
        return _AllReduce.apply(g.contiguous(), "sum", ctx.pg), None, None


class _AllGather(Function):
    """Every rank's tensor stacked along dim 0."""

    @staticmethod
    def forward(ctx, x, pg):
        ctx.pg = pg
        from .. import empty
        x = x.detach().contiguous()
        out = empty((_size(pg) * x.shape[0],) + tuple(x.shape[1:]), dtype=x.dtype)
        _c10d().all_gather_into_tensor(out, x, group=pg)
        return out

    @staticmethod
    def backward(ctx, g):
        return _ReduceScatter.apply(g.contiguous(), "sum", ctx.pg), None


class _ReduceScatter(Function):
    """Reduced over the ranks, then this rank's equal piece of dim 0."""

    @staticmethod
    def forward(ctx, x, op, pg):
        ctx.op, ctx.pg = op, pg
        from .. import empty
        n = _size(pg)
        x = x.detach().contiguous()
        out = empty((x.shape[0] // n,) + tuple(x.shape[1:]), dtype=x.dtype)
        _c10d().reduce_scatter_tensor(out, x, op=_op(op), group=pg)
        return out

    @staticmethod
    def backward(ctx, g):
        if _op_name(ctx.op) != "sum":
            raise RuntimeError(f"reduce_scatter_tensor backward only supports 'sum' "
                               f"reduction, got '{_op_name(ctx.op)}'")
        return _AllGather.apply(g.contiguous(), ctx.pg), None, None


class _AllToAllSingle(Function):
    @staticmethod
    def forward(ctx, x, out_splits, in_splits, pg):
        ctx.out_splits, ctx.in_splits, ctx.pg = out_splits, in_splits, pg
        from .. import empty
        x = x.detach().contiguous()
        out = empty((int(sum(out_splits)),) + tuple(x.shape[1:]), dtype=x.dtype)
        _c10d().all_to_all_single(out, x, list(out_splits), list(in_splits), group=pg)
        return out

    @staticmethod
    def backward(ctx, g):
        # the gradient travels back: what was received is sent, with the splits swapped
        return (_AllToAllSingle.apply(g.contiguous(), ctx.in_splits, ctx.out_splits, ctx.pg),
                None, None, None)


# ------------------------------------------------------------------ PyTorch's functions

def broadcast(self, src, group, tag=""):
    """A new tensor holding global rank ``src``'s ``self`` on every rank."""
    out = self.detach().clone()
    _c10d().broadcast(out, src=src, group=_resolve_group(group, tag))
    return out


def all_reduce(self, reduceOp, group, tag=""):
    """A new tensor: ``self`` reduced over ``group`` with ``reduceOp`` ("sum", "avg", ...);
    differentiable for "sum"."""
    return _AllReduce.apply(self, reduceOp, _resolve_group(group, tag))


def _chunk_cat(t, n, from_dim, to_dim):
    """``n`` equal chunks of ``from_dim`` concatenated along ``to_dim``."""
    from .. import cat
    return cat(t.chunk(n, dim=from_dim), dim=to_dim)


def all_gather_single(self, gather_dim, group, tag=""):
    """Every rank's ``self`` concatenated along ``gather_dim`` (differentiable: the backward
    is a sum reduce-scatter)."""
    pg = _resolve_group(group, tag)
    out = _AllGather.apply(self, pg)
    if gather_dim % max(self.ndim, 1) != 0:
        out = _chunk_cat(out, _size(pg), 0, gather_dim)
    return out


def all_gather_single_autograd(self, gather_dim, group, tag=""):
    """The same as ``all_gather_single`` (which carries gradients)."""
    return all_gather_single(self, gather_dim, group, tag)


def reduce_scatter_single(self, reduceOp, scatter_dim, group, tag=""):
    """``self`` reduced over ``group``, then this rank's equal piece of ``scatter_dim``
    (differentiable for "sum": the backward is an all-gather)."""
    pg = _resolve_group(group, tag)
    n = _size(pg)
    if self.shape[scatter_dim] % n:
        raise AssertionError(f"input dimension {scatter_dim} ({self.shape[scatter_dim]}) must "
                             f"be a multiple of group_size {n}")
    if scatter_dim % max(self.ndim, 1) != 0:
        self = _chunk_cat(self, n, scatter_dim, 0)
    return _ReduceScatter.apply(self, reduceOp, pg)


def reduce_scatter_single_autograd(self, reduceOp, scatter_dim, group, tag=""):
    """The same as ``reduce_scatter_single`` (which carries gradients)."""
    return reduce_scatter_single(self, reduceOp, scatter_dim, group, tag)


def _deprecated(old, new):
    warnings.warn(f"`torch.distributed._functional_collectives.{old}` is deprecated. Please "
                  f"use `torch.distributed._functional_collectives.{new}` instead.",
                  FutureWarning, stacklevel=3)


def all_gather_tensor(self, gather_dim, group, tag=""):
    """Deprecated name of ``all_gather_single``."""
    _deprecated("all_gather_tensor", "all_gather_single")
    return all_gather_single(self, gather_dim, group, tag)


def all_gather_tensor_autograd(self, gather_dim, group, tag=""):
    """Deprecated name of ``all_gather_single_autograd``."""
    _deprecated("all_gather_tensor_autograd", "all_gather_single_autograd")
    return all_gather_single(self, gather_dim, group, tag)


def reduce_scatter_tensor(self, reduceOp, scatter_dim, group, tag=""):
    """Deprecated name of ``reduce_scatter_single``."""
    _deprecated("reduce_scatter_tensor", "reduce_scatter_single")
    return reduce_scatter_single(self, reduceOp, scatter_dim, group, tag)


def reduce_scatter_tensor_autograd(self, reduceOp, scatter_dim, group, tag=""):
    """Deprecated name of ``reduce_scatter_single_autograd``."""
    _deprecated("reduce_scatter_tensor_autograd", "reduce_scatter_single_autograd")
    return reduce_scatter_single(self, reduceOp, scatter_dim, group, tag)


def all_reduce_coalesced(self, reduceOp, group, tag=""):
    """``all_reduce`` of each tensor of a list."""
    return [all_reduce(t, reduceOp, group, tag) for t in self]


def all_gather_single_coalesced(self, group, tag=""):
    """``all_gather_single`` along dim 0 of each tensor of a list."""
    return [all_gather_single(t, 0, group, tag) for t in self]


def all_gather_into_tensor_coalesced(self, group, tag=""):
    """``all_gather_single`` along dim 0 of each tensor of a list."""
    return all_gather_single_coalesced(self, group, tag)


def reduce_scatter_single_coalesced(inputs, reduceOp, scatter_dim, group, tag=""):
    """``reduce_scatter_single`` of each tensor of a list, each along its ``scatter_dim``."""
    if len(scatter_dim) != len(inputs):
        raise AssertionError(f"Length of scatter_dim ({len(scatter_dim)}) must equal length "
                             f"of inputs ({len(inputs)})")
    return [reduce_scatter_single(t, reduceOp, d, group, tag)
            for t, d in zip(inputs, scatter_dim)]


def reduce_scatter_tensor_coalesced(inputs, reduceOp, scatter_dim, group, tag=""):
    """The same as ``reduce_scatter_single_coalesced``."""
    return reduce_scatter_single_coalesced(inputs, reduceOp, scatter_dim, group, tag)


def _check_splits(splits, what):
    if splits is not None and not all(isinstance(s, int) for s in splits):
        raise AssertionError(f"All {what} must be int or SymInt, got {splits}")


def all_to_all_single(self, output_split_sizes, input_split_sizes, group, tag=""):
    """Split ``self`` along dim 0 (evenly when the split sizes are None), send piece r to
    rank r, and concatenate what arrives (differentiable: the backward swaps the splits)."""
    _check_splits(output_split_sizes, "output_split_sizes")
    _check_splits(input_split_sizes, "input_split_sizes")
    pg = _resolve_group(group, tag)
    n = _size(pg)
    if output_split_sizes is None or input_split_sizes is None:
        if not (output_split_sizes is None and input_split_sizes is None):
            raise AssertionError("output_split_sizes and input_split_sizes must either be "
                                 "specified together or both set to None")
        output_split_sizes = input_split_sizes = [self.shape[0] // n] * n
    return _AllToAllSingle.apply(self, list(output_split_sizes), list(input_split_sizes), pg)


def all_to_all_single_autograd(self, output_split_sizes, input_split_sizes, group, tag=""):
    """The same as ``all_to_all_single`` (which carries gradients)."""
    return all_to_all_single(self, output_split_sizes, input_split_sizes, group, tag)


def permute_tensor(self, src_dst, group, tag=""):
    """Each rank sends ``self`` to ``src_dst[its group rank]``; returns what it receives.
    ``src_dst`` is a permutation of the group's ranks."""
    pg = _resolve_group(group, tag)
    n = _size(pg)
    if sorted(src_dst) != list(range(n)):
        raise ValueError(f"permute_tensor: src_dst {list(src_dst)} must be a permutation of "
                         f"range({n})")
    me = _c10d().get_rank(pg)
    src = list(src_dst).index(me)
    rows = self.shape[0] if self.ndim else 1
    flat = self.reshape(rows, -1) if self.ndim else self.reshape(1, 1)
    in_splits = [rows if r == src_dst[me] else 0 for r in range(n)]
    out_splits = [rows if r == src else 0 for r in range(n)]
    return _AllToAllSingle.apply(flat, out_splits, in_splits, pg).reshape(self.shape)
