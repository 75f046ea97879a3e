"""``DistributedSampler``: each of ``num_replicas`` processes reads its own share of a dataset."""

from __future__ import annotations

import math

from ... import _random
from ...ops.random import randperm
from .sampler import Sampler

__all__ = ["DistributedSampler"]


def _process_group_value(what):
    """``get_world_size()`` or ``get_rank()`` of ember.distributed, or a RuntimeError when no
    process group is running (then ``num_replicas`` and ``rank`` must be given)."""
    try:
        from ... import distributed as dist
        ready = dist.is_available() and dist.is_initialized()
    except (ImportError, AttributeError):
        ready = False
    if not ready:
        raise RuntimeError("Requires distributed package to be available: pass num_replicas "
                           "and rank to DistributedSampler when no process group is running")
    return dist.get_world_size() if what == "world_size" else dist.get_rank()


class DistributedSampler(Sampler):
    """Rank ``rank`` takes every ``num_replicas``-th index of one shared order.

    The order is ``0..n-1`` or, with ``shuffle``, a permutation seeded by ``seed + epoch``
    (call ``set_epoch`` before each epoch, the same on every rank). The list is padded by
    repeating its head so every rank gets ``ceil(n / num_replicas)`` indices, or with
    ``drop_last`` cut so every rank gets ``floor(n / num_replicas)``.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0,
                 drop_last=False):
        if num_replicas is None:
            num_replicas = _process_group_value("world_size")
        if rank is None:
            rank = _process_group_value("rank")
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval "
                             f"[0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(dataset)
        if drop_last and n % num_replicas != 0:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self):
        n = len(self.dataset)
        if self.shuffle:
            g = _random.Generator().manual_seed(self.seed + self.epoch)
            indices = randperm(n, generator=g).tolist()
        else:
            indices = list(range(n))
        if not self.drop_last:
            pad = self.total_size - len(indices)
            if pad <= len(indices):
                indices += indices[:pad]
            else:
                indices += (indices * math.ceil(pad / len(indices)))[:pad]
        else:
            indices = indices[:self.total_size]
        assert len(indices) == self.total_size
        own = indices[self.rank:self.total_size:self.num_replicas]
        assert len(own) == self.num_samples
        return iter(own)

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        """Set the epoch that seeds the shuffle (same value on every rank)."""
        self.epoch = epoch
