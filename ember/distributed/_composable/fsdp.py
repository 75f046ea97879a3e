"""``torch.distributed._composable.fsdp``: the same objects as ``ember.distributed.fsdp``."""

from ..fsdp import (CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy,  # noqa: F401
                    OffloadPolicy, fully_shard)

__all__ = ["CPUOffloadPolicy", "FSDPModule", "MixedPrecisionPolicy", "OffloadPolicy",
           "fully_shard"]
