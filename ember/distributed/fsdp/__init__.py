"""``ember.distributed.fsdp``: fully sharded data parallelism, PyTorch's FSDP2 API
(``fully_shard``), on DTensor over MPI."""

from ._fully_shard import (CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy,
                           UnshardHandle, fully_shard)

__all__ = ["CPUOffloadPolicy", "FSDPModule", "FullyShardedDataParallel",
           "MixedPrecisionPolicy", "OffloadPolicy", "UnshardHandle", "fully_shard"]


class FullyShardedDataParallel:
    """PyTorch's first FSDP (the wrapper class) is not provided: use ``fully_shard``."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(
            "ember.distributed.fsdp.FullyShardedDataParallel (FSDP1, the wrapper module) is not "
            "implemented; apply fully_shard(block) to each block and then fully_shard(model) "
            "(FSDP2), which shards the same way")
