"""``torch.distributed.constants``: the default timeouts of process groups."""

from .distributed_c10d import default_pg_timeout

__all__ = ["default_pg_timeout", "default_pg_nccl_timeout"]

# there is no NCCL here; PyTorch's value without its NCCL_BLOCKING_WAIT setting is the default
default_pg_nccl_timeout = default_pg_timeout
