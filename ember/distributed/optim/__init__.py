"""``ember.distributed.optim``: optimizers that shard their state over a process group."""

from .zero_redundancy_optimizer import ZeroRedundancyOptimizer

__all__ = ["ZeroRedundancyOptimizer"]
