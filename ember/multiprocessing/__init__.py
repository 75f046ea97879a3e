"""``ember.multiprocessing``: Python's ``multiprocessing`` with tensors that travel by shared
memory (PyTorch's ``torch.multiprocessing``).

Tensors put into a ``Queue`` or passed as ``Process`` arguments are moved to shared memory
and arrive in the other process as views of the same memory, not copies (see ``_shared``).
``model.share_memory()`` before starting workers gives Hogwild-style training: every process
updates the same parameters. ``spawn(fn, args, nprocs)`` runs ``fn(i, *args)`` in ``nprocs``
processes and re-raises a child's exception with its traceback.

Process groups need the processes to be one MPI job: start distributed training with
``emberrun``/``mpiexec``, not with ``spawn`` (``init_process_group`` says so if you try).
"""

from __future__ import annotations

import multiprocessing
from multiprocessing import *  # noqa: F401,F403

from ._shared import init_reductions, is_shared, share_memory_  # noqa: F401
from .spawn import (ProcessContext, ProcessException, ProcessExitedException,  # noqa: F401
                    ProcessRaisedException, spawn, start_processes)

__all__ = list(multiprocessing.__all__) + [
    "spawn", "start_processes", "ProcessContext", "ProcessException", "ProcessRaisedException",
    "ProcessExitedException", "get_sharing_strategy", "set_sharing_strategy",
    "get_all_sharing_strategies"]

_strategy = "file_descriptor"


def get_all_sharing_strategies():
    """The ways tensors are shared: ember passes file descriptors of anonymous memory."""
    return {"file_descriptor", "file_system"}


def get_sharing_strategy():
    return _strategy


def set_sharing_strategy(new_strategy):
    """Accepted for PyTorch compatibility; both strategies use descriptor passing here, which
    leaves no named files behind."""
    global _strategy
    if new_strategy not in get_all_sharing_strategies():
        raise ValueError(f"invalid sharing strategy {new_strategy!r}; expected one of "
                         f"{sorted(get_all_sharing_strategies())}")
    _strategy = new_strategy


init_reductions()
