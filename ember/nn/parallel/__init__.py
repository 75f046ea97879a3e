"""``ember.nn.parallel``: ``DistributedDataParallel`` (over ``ember.distributed``) and
``DataParallel`` (one process; on CPU it runs the module, as PyTorch does without GPUs)."""

from . import comm, scatter_gather  # noqa: F401  (submodules; two more come with data_parallel)
from .data_parallel import (DataParallel, data_parallel, gather,  # noqa: F401
                            parallel_apply, replicate, scatter)
from .distributed import DistributedDataParallel  # noqa: F401

__all__ = ["DataParallel", "DistributedDataParallel", "data_parallel", "replicate",
           "scatter", "parallel_apply", "gather"]
