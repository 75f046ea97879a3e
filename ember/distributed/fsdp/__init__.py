"""``ember.distributed.fsdp``: fully sharded data parallelism, PyTorch's FSDP2 API
(``fully_shard``), on DTensor over MPI."""

from ._fully_shard import (CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, OffloadPolicy,
                           UnshardHandle, fully_shard)

__all__ = ["CPUOffloadPolicy", "FSDPModule", "MixedPrecisionPolicy", "OffloadPolicy",
           "UnshardHandle", "fully_shard"]
