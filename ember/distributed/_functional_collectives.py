"""``torch.distributed._functional_collectives``: collectives that return a new tensor
instead of writing into their argument. ember's collectives complete before they return (MPI,
no stream), so ``wait_tensor`` has nothing to wait for and returns its argument.

Not differentiable here (PyTorch's ``*_autograd`` variants are): DTensor's collectives in
``ember.distributed.tensor`` carry gradients for sharded training."""

from __future__ import annotations

__all__ = ["all_gather_tensor", "all_reduce", "reduce_scatter_tensor", "wait_tensor"]

_REDUCE_NAMES = {"sum": "SUM", "avg": "AVG", "max": "MAX", "min": "MIN", "product": "PRODUCT"}


def wait_tensor(tensor):
    """The collective that produced ``tensor`` has completed already; returns it."""
    return tensor


def _op(reduce_op):
    from .distributed_c10d import ReduceOp
    if isinstance(reduce_op, str):
        try:
            return getattr(ReduceOp, _REDUCE_NAMES[reduce_op.lower()])
        except KeyError:
            raise ValueError(f"unknown reduce op {reduce_op!r}; expected one of "
                             f"{sorted(_REDUCE_NAMES)}") from None
    return reduce_op


def all_reduce(self, reduceOp, group):
    """A new tensor: ``self`` reduced over ``group`` with ``reduceOp`` ("sum", "avg", ...)."""
    from . import distributed_c10d as c10d
    out = self.detach().clone()
    c10d.all_reduce(out, op=_op(reduceOp), group=group)
    return out


def all_gather_tensor(self, gather_dim, group):
    """A new tensor: every rank's ``self`` concatenated along ``gather_dim``."""
    from .. import cat
    from . import distributed_c10d as c10d
    parts = [self.detach().clone() for _ in range(c10d.get_world_size(group))]
    c10d.all_gather(parts, self.detach().contiguous(), group=group)
    return cat(parts, dim=gather_dim)


def reduce_scatter_tensor(self, reduceOp, scatter_dim, group):
    """A new tensor: ``self`` reduced over ``group``, then this rank's piece of
    ``scatter_dim`` cut in equal parts."""
    from . import distributed_c10d as c10d
    n = c10d.get_world_size(group)
    if self.shape[scatter_dim] % n:
        raise ValueError(f"reduce_scatter_tensor: dim {scatter_dim} of size "
                         f"{self.shape[scatter_dim]} does not split evenly over {n} ranks")
    full = all_reduce(self, reduceOp, group)
    return full.chunk(n, dim=scatter_dim)[c10d.get_rank(group)].contiguous()
