"""``ember.distributed.tensor.parallel``: tensor parallelism (PyTorch's API):
``parallelize_module(module, tp_mesh, plan)`` with ``ColwiseParallel``, ``RowwiseParallel``,
``SequenceParallel``, ``PrepareModuleInput`` and ``PrepareModuleOutput``."""

from .api import parallelize_module
from .loss import loss_parallel
from .style import (ColwiseParallel, ParallelStyle, PrepareModuleInput, PrepareModuleOutput,
                    RowwiseParallel, SequenceParallel)

__all__ = ["parallelize_module", "ParallelStyle", "ColwiseParallel", "RowwiseParallel",
           "SequenceParallel", "PrepareModuleInput", "PrepareModuleOutput", "loss_parallel"]
