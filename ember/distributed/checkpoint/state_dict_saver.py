"""``torch.distributed.checkpoint.state_dict_saver``'s names: ``save``, ``async_save`` and
``AsyncCheckpointerType`` (ember runs an async save in a thread; the process kind raises)."""

from __future__ import annotations

from enum import Enum

from ._fs import async_save, save

__all__ = ["AsyncCheckpointerType", "async_save", "save"]


class AsyncCheckpointerType(Enum):
    """Where ``async_save`` writes: in a background thread, or a process (not supported)."""

    THREAD = "thread"
    PROCESS = "process"
