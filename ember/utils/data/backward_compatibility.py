"""``torch.utils.data.backward_compatibility``: the DataPipe-era ``worker_init_fn``."""

from __future__ import annotations

import warnings

__all__ = ["worker_init_fn"]


def worker_init_fn(worker_id):
    """Deprecated in PyTorch (the DataLoader shards DataPipes in each worker itself): does
    nothing but warn."""
    warnings.warn("Usage of `backward_compatibility.worker_init_fn` is deprecated as "
                  "`DataLoader` automatically applies sharding in every worker",
                  FutureWarning, stacklevel=2)
