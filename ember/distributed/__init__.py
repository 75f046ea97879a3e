"""``ember.distributed``: PyTorch's ``torch.distributed`` on MPI (through mpi4py).

Start a job with ``emberrun --nproc-per-node N script.py`` (torchrun's command line; also
``python -m ember.distributed.run``) or ``mpiexec -n N python script.py``; in the script,
``init_process_group()`` (backend ``"mpi"``, or ``"gloo"``/None, which MPI serves) and the
collectives work as in PyTorch. Importing this package does not import mpi4py:
``init_process_group`` does.
"""

from __future__ import annotations

import importlib.util as _util
import os as _os

from ._buffers import ReduceOp, reduce_op  # noqa: F401
from .distributed_c10d import (  # noqa: F401
    Backend, GroupMember, P2POp, ProcessGroup, Work, all_gather, all_gather_into_tensor,
    all_gather_object, all_reduce, all_reduce_coalesced, all_to_all, all_to_all_single,
    barrier, batch_isend_irecv, broadcast, broadcast_object_list, default_pg_timeout,
    destroy_process_group, gather, gather_object, get_backend, get_debug_level,
    get_global_rank, get_group_rank, get_process_group_ranks, get_rank, get_world_size, group,
    init_process_group, irecv, is_backend_available, is_gloo_available, is_initialized,
    is_mpi_available, is_nccl_available, is_torchelastic_launched, is_ucc_available,
    is_xccl_available, isend, monitored_barrier, new_group, new_subgroups,
    new_subgroups_by_enumeration, recv, recv_object_list, reduce, reduce_scatter,
    reduce_scatter_tensor, scatter, scatter_object_list, send, send_object_list,
    _all_gather_base, _reduce_scatter_base)
from .device_mesh import DeviceMesh, init_device_mesh  # noqa: F401,E402


def is_available():
    """True when mpi4py is installed (checked without importing it, so without starting MPI)."""
    return _util.find_spec("mpi4py") is not None


def _torchrun_env_from_mpiexec():
    """Under plain ``mpiexec`` (Hydra sets PMI_RANK/PMI_SIZE), give the process torchrun's
    RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE too, so scripts that read them run unchanged."""
    env = _os.environ
    if "PMI_RANK" not in env or "RANK" in env:
        return
    env["RANK"], env["WORLD_SIZE"] = env["PMI_RANK"], env.get("PMI_SIZE", "1")
    env.setdefault("LOCAL_RANK", env.get("MPI_LOCALRANKID", env["PMI_RANK"]))
    env.setdefault("LOCAL_WORLD_SIZE", env.get("MPI_LOCALNRANKS", env["WORLD_SIZE"]))


_torchrun_env_from_mpiexec()
